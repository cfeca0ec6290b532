//! The nodes of one deployment. Servers that share a metadata store (and a blob
//! store) are one deployment: each records itself as a node with a heartbeat, work
//! that must run on one node at a time is held by a lease, and caches learn of other
//! nodes' writes through the store's change counters. The embedded single-server
//! setup is a deployment of one node: it holds every lease and its caches see every
//! write.
//!
//! Tables: `cluster.nodes/<name>` (one record per node, written by that node only)
//! and `cluster.leases/<work>` (the holder and until when, by its clock).
//!
//! Everything here is blocking store calls on one thread of its own (`nimbus-cluster`),
//! so neither heartbeats nor lease renewals wait behind request work. On a store only
//! one server can use (embedded SQLite, locked with its data dir) the node is alone
//! for good: it records itself once and holds every lease without writing.

pub mod outbox;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};

pub const NODES: &str = "cluster.nodes";
pub const LEASES: &str = "cluster.leases";
/// The deployment's secret, which nodes sign what they tell each other with.
const SECRET: &str = "cluster.secret";

/// How often a node writes its heartbeat and renews its leases.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is lost: its work moves elsewhere.
pub const LOST_AFTER: Duration = Duration::from_secs(10);
/// How long a lease lasts past its last renewal, by the holder's clock.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// How far apart the nodes' clocks may be: a holder stops acting this much before its
/// lease ends by its own clock, so it is done before another node's clock lets that
/// node take over.
const CLOCK_SKEW: Duration = Duration::from_secs(1);
/// How often change counters are read when no notification came sooner: a write on
/// one node reaches every other node's caches within this (plus one store round trip),
/// and usually within a round trip of the store's notification.
const CHANGE_POLL: Duration = Duration::from_millis(200);
/// How long a node alone in its deployment holds a lease: for as long as it runs.
const ALONE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a node does: answer API calls, run sandboxes and tasks, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub worker: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        worker: true,
    };

    /// `api`, `worker` or both, comma-separated.
    pub fn parse(names: &[String]) -> Result<Roles, String> {
        let mut roles = Roles {
            api: false,
            worker: false,
        };
        for name in names.iter().map(|n| n.trim()) {
            match name {
                "api" => roles.api = true,
                "worker" => roles.worker = true,
                other => {
                    return Err(format!(
                        "unknown node role {other:?}: expected api, worker or both"
                    ));
                }
            }
        }
        if !roles.api && !roles.worker {
            return Err("a node needs at least one role: api, worker".into());
        }
        Ok(roles)
    }

    fn names(self) -> Vec<String> {
        [(self.api, "api"), (self.worker, "worker")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, name)| name.to_owned())
            .collect()
    }
}

/// This node, as its flags describe it.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    /// Who is behind the name: the same on every start from one data dir, so a node
    /// restarting (on any address) is told from another taking its name.
    pub identity: String,
    /// Where other nodes and load balancers reach this node's edge (`host:port`).
    pub advertise: String,
    pub zone: String,
    pub roles: Roles,
}

impl NodeSpec {
    /// The node's container instance id, EC2-shaped (`i-` and 17 hex digits) and the
    /// same on every start under the same name.
    pub fn instance_id(&self) -> String {
        instance_id(&self.name)
    }
}

/// A node name's EC2-shaped instance id.
pub fn instance_id(name: &str) -> String {
    // FNV-1a: stable across builds and platforms, which the std hasher is not.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("i-0{hash:016x}")
}

/// A node's record in the store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeRecord {
    name: String,
    #[serde(default)]
    identity: String,
    advertise: String,
    zone: String,
    roles: Vec<String>,
    started_at: u64,
    /// Milliseconds since the epoch, by the node's clock.
    heartbeat: u64,
    /// `active`, or `left` after a graceful stop.
    state: String,
}

/// A node as this node last saw it.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    pub name: String,
    pub advertise: String,
    pub zone: String,
    pub roles: Vec<String>,
    pub instance_id: String,
    /// `active`; `lost` when its heartbeat stopped; `left` after a graceful stop.
    pub state: &'static str,
    pub heartbeat_age_ms: u64,
}

impl NodeView {
    pub fn active(&self) -> bool {
        self.state == "active"
    }

    pub fn worker(&self) -> bool {
        self.roles.iter().any(|r| r == "worker")
    }

    /// Whether other nodes can reach it at its advertised address.
    pub fn reachable(&self) -> bool {
        reachable(&self.advertise)
    }
}

/// Whether other nodes can reach an advertised address: not an unspecified one
/// (`0.0.0.0`, `[::]`), which a default `--advertise` takes from `--listen`.
pub fn reachable(advertise: &str) -> bool {
    advertise
        .parse::<std::net::SocketAddr>()
        .map_or(true, |address| !address.ip().is_unspecified())
}

#[derive(Serialize, Deserialize)]
struct LeaseRecord {
    holder: String,
    /// Milliseconds since the epoch, by the holder's clock.
    until: u64,
}

struct LeaseState {
    name: String,
    held_until: Mutex<Option<Instant>>,
}

/// Work one node does at a time. Whoever holds it checks [`Lease::held`] before each
/// pass; a holder that stops renewing (lost, partitioned, stopped) lets another node
/// take it once it ran out.
#[derive(Clone)]
pub struct Lease(Arc<LeaseState>);

impl Lease {
    pub fn held(&self) -> bool {
        self.0
            .held_until
            .lock()
            .expect("lease")
            .is_some_and(|until| Instant::now() < until)
    }
}

type Invalidate = Arc<dyn Fn() + Send + Sync>;

pub struct Cluster {
    meta: Arc<dyn MetadataStore>,
    me: NodeSpec,
    started_at: u64,
    nodes: RwLock<Vec<NodeView>>,
    leases: Mutex<Vec<Arc<LeaseState>>>,
    watchers: Mutex<Vec<(Vec<String>, Invalidate)>>,
    counters: Mutex<Option<HashMap<String, i64>>>,
    stopped: AtomicBool,
    /// Whether other servers may share the store: else this node is alone for good.
    shared: bool,
    /// The deployment's secret, on a shared store.
    secret: Option<[u8; 32]>,
    /// Since when this node's heartbeats have been landing: until it has for
    /// `LOST_AFTER`, no other node's old heartbeat says it is lost (after a store
    /// outage nobody could write one).
    beating_since: Mutex<Option<Instant>>,
}

/// The deployment's secret, made by the first node to need it.
fn deployment_secret(meta: &dyn MetadataStore) -> Result<[u8; 32], String> {
    let read = || -> Result<Option<[u8; 32]>, String> {
        Ok(meta
            .get(SECRET, "key")
            .map_err(|err| format!("reading the deployment secret: {err}"))?
            .and_then(|r| <[u8; 32]>::try_from(r.value.as_slice()).ok()))
    };
    if let Some(secret) = read()? {
        return Ok(secret);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|err| format!("making a secret: {err}"))?;
    match meta.commit(WriteBatch::new().put(SECRET, "key", secret.to_vec(), Expect::Absent)) {
        // Another node made it first: its secret is the deployment's.
        Ok(()) | Err(StoreError::Conflict { .. }) => {}
        Err(err) => return Err(format!("recording the deployment secret: {err}")),
    }
    read()?.ok_or_else(|| "the deployment secret is unreadable".into())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Cluster {
    /// Records this node in the deployment and starts its heartbeat. Refuses a name
    /// another live node at another address goes by.
    pub fn join(meta: Arc<dyn MetadataStore>, me: NodeSpec) -> Result<Arc<Self>, String> {
        Self::join_as(meta.shared(), meta, me)
    }

    /// [`Cluster::join`] on a store that others may share, or not (tests share an
    /// SQLite file).
    pub fn join_as(
        shared: bool,
        meta: Arc<dyn MetadataStore>,
        me: NodeSpec,
    ) -> Result<Arc<Self>, String> {
        if let Some(existing) = meta
            .get(NODES, &me.name)
            .map_err(|err| format!("reading the deployment's nodes: {err}"))?
            && let Ok(record) = serde_json::from_slice::<NodeRecord>(&existing.value)
            && record.state == "active"
            && record.identity != me.identity
            && now_ms().saturating_sub(record.heartbeat) < LOST_AFTER.as_millis() as u64
        {
            return Err(format!(
                "another node named {:?} is running at {}: give this one its own --node-name",
                me.name, record.advertise
            ));
        }
        let cluster = Arc::new(Self {
            me,
            started_at: now_ms(),
            nodes: RwLock::new(Vec::new()),
            leases: Mutex::new(Vec::new()),
            watchers: Mutex::new(Vec::new()),
            counters: Mutex::new(None),
            stopped: AtomicBool::new(false),
            shared,
            beating_since: Mutex::new(None),
            secret: if shared {
                Some(deployment_secret(meta.as_ref())?)
            } else {
                None
            },
            meta,
        });
        cluster
            .beat("active")
            .map_err(|err| format!("recording this node: {err}"))?;
        *cluster.beating_since.lock().expect("heartbeat") = Some(Instant::now());
        cluster.refresh_nodes();
        if !cluster.shared {
            return Ok(cluster);
        }
        let looping = cluster.clone();
        std::thread::Builder::new()
            .name("nimbus-cluster".into())
            .spawn(move || looping.run())
            .map_err(|err| format!("starting the cluster thread: {err}"))?;
        Ok(cluster)
    }

    pub fn me(&self) -> &NodeSpec {
        &self.me
    }

    /// The secret every node of the deployment shares (none for a node alone on its
    /// store): what nodes sign the requests they hand each other with.
    pub fn secret(&self) -> Option<[u8; 32]> {
        self.secret
    }

    /// Every node of the deployment as of the last heartbeat, by name.
    pub fn nodes(&self) -> Vec<NodeView> {
        let mut nodes = self.nodes.read().expect("nodes").clone();
        if !self.shared {
            // Alone: this node is as fresh as this call.
            for node in nodes.iter_mut().filter(|n| n.name == self.me.name) {
                node.heartbeat_age_ms = 0;
                node.state = if self.stopped.load(Ordering::Acquire) {
                    "left"
                } else {
                    "active"
                };
            }
        }
        nodes
    }

    /// The names of the other nodes that are active: whose claims on work stand.
    pub fn others_active(&self) -> std::collections::HashSet<String> {
        self.nodes()
            .into_iter()
            .filter(|n| n.active() && n.name != self.me.name)
            .map(|n| n.name)
            .collect()
    }

    /// Whether no other node is active: nothing to share work or news with.
    pub fn alone(&self) -> bool {
        !self.shared
            || !self
                .nodes
                .read()
                .expect("nodes")
                .iter()
                .any(|n| n.name != self.me.name && n.active())
    }

    /// A lease on `work`, tried at once (so a single node holds its leases from the
    /// start) and renewed with the heartbeat.
    pub fn lease(&self, work: &str) -> Lease {
        let state = Arc::new(LeaseState {
            name: work.to_owned(),
            held_until: Mutex::new(None),
        });
        self.try_hold(&state);
        self.leases.lock().expect("leases").push(state.clone());
        Lease(state)
    }

    /// Calls `invalidate` whenever any node writes to one of `tables`, within
    /// `CHANGE_POLL` of the write's commit.
    pub fn on_change(
        &self,
        tables: &[&str],
        invalidate: impl Fn() + Send + Sync + 'static,
    ) -> Result<(), StoreError> {
        self.meta.watch_tables(tables)?;
        self.watchers.lock().expect("watchers").push((
            tables.iter().map(|t| (*t).to_owned()).collect(),
            Arc::new(invalidate),
        ));
        Ok(())
    }

    /// A graceful stop: the node says it left and gives its leases up, so others take
    /// its work over at once instead of after `LOST_AFTER`.
    pub fn leave(&self) {
        self.stopped.store(true, Ordering::Release);
        for lease in self.leases.lock().expect("leases").iter() {
            *lease.held_until.lock().expect("lease") = None;
            if let Ok(Some(current)) = self.meta.get(LEASES, &lease.name)
                && serde_json::from_slice::<LeaseRecord>(&current.value)
                    .is_ok_and(|r| r.holder == self.me.name)
            {
                let _ = self.meta.commit(WriteBatch::new().delete(
                    LEASES,
                    &lease.name,
                    Expect::Version(current.version),
                ));
            }
        }
        if let Err(err) = self.beat("left") {
            tracing::warn!(error = %err, "recording that this node left failed");
        }
    }

    fn run(self: Arc<Self>) {
        let mut last_beat = Instant::now();
        while !self.stopped.load(Ordering::Acquire) {
            self.meta.wait_for_changes(CHANGE_POLL);
            self.poll_changes();
            if last_beat.elapsed() >= HEARTBEAT {
                last_beat = Instant::now();
                let mut since = self.beating_since.lock().expect("heartbeat");
                match self.beat("active") {
                    Ok(()) => {
                        since.get_or_insert_with(Instant::now);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "writing this node's heartbeat failed");
                        *since = None;
                    }
                }
                drop(since);
                self.refresh_nodes();
                let leases: Vec<Arc<LeaseState>> = self.leases.lock().expect("leases").clone();
                for lease in &leases {
                    self.try_hold(lease);
                }
            }
        }
    }

    fn beat(&self, state: &str) -> Result<(), StoreError> {
        if state == "active" && self.stopped.load(Ordering::Acquire) {
            return Ok(());
        }
        let record = NodeRecord {
            name: self.me.name.clone(),
            identity: self.me.identity.clone(),
            advertise: self.me.advertise.clone(),
            zone: self.me.zone.clone(),
            roles: self.me.roles.names(),
            started_at: self.started_at,
            heartbeat: now_ms(),
            state: state.to_owned(),
        };
        self.meta.commit(WriteBatch::new().put(
            NODES,
            &self.me.name,
            serde_json::to_vec(&record).expect("node record serializes"),
            Expect::Anything,
        ))
    }

    fn refresh_nodes(&self) {
        let Ok(records) = self.meta.scan_all(NODES, "") else {
            return;
        };
        let now = now_ms();
        let judging = self
            .beating_since
            .lock()
            .expect("heartbeat")
            .is_some_and(|since| since.elapsed() >= LOST_AFTER);
        let views = records
            .iter()
            .filter_map(|r| serde_json::from_slice::<NodeRecord>(&r.value).ok())
            .map(|record| {
                let age = now.saturating_sub(record.heartbeat);
                let state = if record.state == "left" {
                    "left"
                } else if judging && age > LOST_AFTER.as_millis() as u64 {
                    "lost"
                } else {
                    "active"
                };
                NodeView {
                    instance_id: instance_id(&record.name),
                    name: record.name,
                    advertise: record.advertise,
                    zone: record.zone,
                    roles: record.roles,
                    state,
                    heartbeat_age_ms: age,
                }
            })
            .collect();
        *self.nodes.write().expect("nodes") = views;
    }

    fn try_hold(&self, lease: &LeaseState) {
        let attempt = Instant::now();
        if !self.shared {
            // Nobody else can take it.
            *lease.held_until.lock().expect("lease") = Some(attempt + ALONE);
            return;
        }
        let now = now_ms();
        let expect = match self.meta.get(LEASES, &lease.name) {
            Ok(None) => Expect::Absent,
            Ok(Some(current)) => {
                let theirs = serde_json::from_slice::<LeaseRecord>(&current.value)
                    .ok()
                    .filter(|r| r.holder != self.me.name && r.until > now);
                if theirs.is_some() {
                    *lease.held_until.lock().expect("lease") = None;
                    return;
                }
                Expect::Version(current.version)
            }
            // Unknown: a held lease runs out on its own.
            Err(_) => return,
        };
        let record = LeaseRecord {
            holder: self.me.name.clone(),
            until: now + LEASE_TTL.as_millis() as u64,
        };
        let written = self.meta.commit(WriteBatch::new().put(
            LEASES,
            &lease.name,
            serde_json::to_vec(&record).expect("lease record serializes"),
            expect,
        ));
        let mut held = lease.held_until.lock().expect("lease");
        match written {
            Ok(()) => {
                if held.is_none() {
                    tracing::info!(lease = %lease.name, "this node now holds the lease");
                }
                *held = Some(attempt + LEASE_TTL - CLOCK_SKEW);
            }
            Err(StoreError::Conflict { .. }) => *held = None,
            Err(_) => {}
        }
    }

    fn poll_changes(&self) {
        if self.watchers.lock().expect("watchers").is_empty() {
            return;
        }
        let Ok(counters) = self.meta.change_counters() else {
            return;
        };
        let counters: HashMap<String, i64> = counters.into_iter().collect();
        let mut last = self.counters.lock().expect("change counters");
        for (tables, invalidate) in self.watchers.lock().expect("watchers").iter() {
            // The first read is the baseline: what was cached before it may already
            // be stale.
            let changed = last.as_ref().is_none_or(|last| {
                tables
                    .iter()
                    .any(|table| last.get(table) != counters.get(table))
            });
            if changed {
                invalidate();
            }
        }
        *last = Some(counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_storage::SqliteStore;

    fn spec(name: &str, advertise: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            identity: advertise.into(),
            advertise: advertise.into(),
            zone: "us-east-1a".into(),
            roles: Roles::ALL,
        }
    }

    /// SQLite standing in for a store several servers share (`join_as(true, ...)`).
    fn store() -> (tempfile::TempDir, Arc<dyn MetadataStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
        (dir, Arc::new(store))
    }

    #[test]
    fn a_node_alone_on_its_store_writes_no_heartbeats_and_holds_every_lease() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let node = Cluster::join(meta.clone(), spec("a", "127.0.0.1:4566")).unwrap();
        assert!(node.lease("work").held());
        assert!(node.alone());
        assert!(meta.get(LEASES, "work").unwrap().is_none());
        let written = meta.get(NODES, "a").unwrap().unwrap().version;
        std::thread::sleep(HEARTBEAT + CHANGE_POLL);
        assert_eq!(meta.get(NODES, "a").unwrap().unwrap().version, written);
        assert_eq!(node.nodes()[0].state, "active");
    }

    #[test]
    fn roles_parse_and_refuse_unknown_names() {
        assert!(!Roles::parse(&["api".into()]).unwrap().worker);
        assert_eq!(
            Roles::parse(&["api".into(), "worker".into()]).unwrap(),
            Roles::ALL
        );
        assert!(Roles::parse(&["db".into()]).is_err());
        assert!(Roles::parse(&[]).is_err());
    }

    #[test]
    fn instance_ids_are_ec2_shaped_and_stable() {
        let id = instance_id("node-1");
        assert_eq!(id.len(), 19);
        assert!(id.starts_with("i-0"));
        assert_eq!(id, instance_id("node-1"));
        assert_ne!(id, instance_id("node-2"));
    }

    #[test]
    fn one_node_holds_a_lease_until_it_leaves() {
        let (_dir, meta) = store();
        let a = Cluster::join_as(true, meta.clone(), spec("a", "10.0.0.1:4566")).unwrap();
        let b = Cluster::join_as(true, meta.clone(), spec("b", "10.0.0.2:4566")).unwrap();
        let held_a = a.lease("work");
        let held_b = b.lease("work");
        assert!(held_a.held());
        assert!(!held_b.held());
        a.leave();
        assert!(!held_a.held());
        b.try_hold(&held_b.0);
        assert!(held_b.held());
        let states: Vec<(String, &str)> =
            b.nodes().into_iter().map(|n| (n.name, n.state)).collect();
        assert!(states.contains(&("b".into(), "active")));
        b.refresh_nodes();
        assert!(b.nodes().iter().any(|n| n.name == "a" && n.state == "left"));
    }

    #[test]
    fn a_node_judges_others_lost_only_once_its_own_heartbeats_have_landed_for_long() {
        let (_dir, meta) = store();
        let ghost = NodeRecord {
            name: "ghost".into(),
            identity: "x".into(),
            advertise: "10.0.0.9:4566".into(),
            zone: "us-east-1a".into(),
            roles: Roles::ALL.names(),
            started_at: 0,
            heartbeat: 0,
            state: "active".into(),
        };
        meta.commit(WriteBatch::new().put(
            NODES,
            "ghost",
            serde_json::to_vec(&ghost).unwrap(),
            Expect::Anything,
        ))
        .unwrap();
        let b = Cluster::join_as(true, meta, spec("b", "10.0.0.2:4566")).unwrap();
        // Just started (or just back from a store outage): nobody could write.
        let state = |b: &Cluster| {
            b.nodes()
                .into_iter()
                .find(|n| n.name == "ghost")
                .unwrap()
                .state
        };
        assert_eq!(state(&b), "active");
        *b.beating_since.lock().unwrap() = Some(Instant::now() - LOST_AFTER);
        b.refresh_nodes();
        assert_eq!(state(&b), "lost");
    }

    #[test]
    fn a_name_in_use_elsewhere_is_refused() {
        let (_dir, meta) = store();
        let _a = Cluster::join_as(true, meta.clone(), spec("a", "10.0.0.1:4566")).unwrap();
        let err = Cluster::join_as(true, meta.clone(), spec("a", "10.0.0.9:4566"))
            .err()
            .unwrap();
        assert!(err.contains("--node-name"), "{err}");
        // The same identity is the same node starting again (after a crash).
        Cluster::join_as(true, meta, spec("a", "10.0.0.1:4566")).unwrap();
    }
}
