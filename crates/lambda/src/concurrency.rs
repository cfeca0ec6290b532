//! Concurrency limits that hold across the deployment's nodes. Each node counts the
//! invocations it runs; the limits (a function's reserved concurrency, the account's
//! unreserved pool) are shared out as slots recorded in the store
//! (`lambda.concurrency/<pool>`: slots held, by node). A node runs an invocation
//! within the slots it holds, takes more by a conditional write when they run out,
//! and gives back those it no longer uses twice a second. Slots of nodes that are
//! lost or left count for nobody. A node alone in its deployment keeps no slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nimbus_cluster::Cluster;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};

pub const LEDGER: &str = "lambda.concurrency";
/// The pool of the functions without reserved concurrency (no function name has `$`).
pub const UNRESERVED: &str = "$unreserved";
/// Slots of the unreserved pool taken at once, so that a busy node does not write to
/// the store for every invocation.
const UNRESERVED_CHUNK: i64 = 10;
/// Conditional writes tried before an invocation is throttled for contention.
const ATTEMPTS: usize = 5;

pub struct Ledger {
    meta: Arc<dyn MetadataStore>,
    cluster: Arc<Cluster>,
    /// Slots this node holds, by pool; the lock also keeps this node's own writes in
    /// turn.
    held: Mutex<HashMap<String, i64>>,
}

impl Ledger {
    /// Forgets the slots an earlier run of this node left.
    pub fn new(meta: Arc<dyn MetadataStore>, cluster: Arc<Cluster>) -> Arc<Self> {
        let ledger = Arc::new(Self {
            meta,
            cluster,
            held: Mutex::new(HashMap::new()),
        });
        let me = ledger.cluster.me().name.clone();
        for pool in ledger.meta.scan_all(LEDGER, "").unwrap_or_default() {
            let slots: HashMap<String, i64> =
                serde_json::from_slice(&pool.value).unwrap_or_default();
            if slots.contains_key(&me) {
                let _ = ledger.write(&pool.key, 0);
            }
        }
        ledger
    }

    /// Whether the limits must be agreed with other nodes.
    pub fn shared(&self) -> bool {
        !self.cluster.alone()
    }

    /// Whether this node holds `busy` slots of `pool` already.
    pub fn covers(&self, pool: &str, busy: i64) -> bool {
        self.held
            .lock()
            .expect("ledger")
            .get(pool)
            .is_some_and(|held| *held >= busy)
    }

    /// Takes slots of `pool` (limited to `limit` across the deployment) until this
    /// node holds `busy`; false when the other nodes hold the rest.
    pub fn take(&self, pool: &str, limit: i64, busy: i64) -> Result<bool, StoreError> {
        let chunk = if pool == UNRESERVED {
            UNRESERVED_CHUNK
        } else {
            1
        };
        let mut held = self.held.lock().expect("ledger");
        if held.get(pool).is_some_and(|h| *h >= busy) {
            return Ok(true);
        }
        for _ in 0..ATTEMPTS {
            let current = self.meta.get(LEDGER, pool)?;
            let mut slots = self.slots(current.as_ref().map(|r| r.value.as_slice()));
            let others: i64 = slots.values().sum();
            let want = (busy - 1 + chunk).min(limit - others);
            if want < busy {
                return Ok(false);
            }
            slots.insert(self.cluster.me().name.clone(), want);
            let expect = current.map_or(Expect::Absent, |r| Expect::Version(r.version));
            match self.meta.commit(WriteBatch::new().put(
                LEDGER,
                pool,
                serde_json::to_vec(&slots).expect("slots serialize"),
                expect,
            )) {
                Ok(()) => {
                    held.insert(pool.to_owned(), want);
                    return Ok(true);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(false)
    }

    /// The slots other live nodes hold in a pool's record.
    fn slots(&self, record: Option<&[u8]>) -> HashMap<String, i64> {
        let live = self.cluster.others_active();
        let mut slots: HashMap<String, i64> = record
            .and_then(|value| serde_json::from_slice(value).ok())
            .unwrap_or_default();
        slots.retain(|node, held| live.contains(node) && *held > 0);
        slots
    }

    /// Records that this node holds `count` slots of `pool`.
    fn write(&self, pool: &str, count: i64) -> Result<(), StoreError> {
        for _ in 0..ATTEMPTS {
            let current = self.meta.get(LEDGER, pool)?;
            let mut slots = self.slots(current.as_ref().map(|r| r.value.as_slice()));
            if count > 0 {
                slots.insert(self.cluster.me().name.clone(), count);
            }
            let expect = current.map_or(Expect::Absent, |r| Expect::Version(r.version));
            let batch = if slots.is_empty() {
                WriteBatch::new().delete(LEDGER, pool, expect)
            } else {
                WriteBatch::new().put(
                    LEDGER,
                    pool,
                    serde_json::to_vec(&slots).expect("slots serialize"),
                    expect,
                )
            };
            match self.meta.commit(batch) {
                Err(StoreError::Conflict { .. }) => continue,
                done => return done,
            }
        }
        Err(StoreError::Conflict {
            table: LEDGER.into(),
            key: pool.into(),
        })
    }

    /// Gives back the slots of every pool beyond what `busy` says runs here now.
    pub fn give_back(&self, busy: impl Fn(&str) -> i64) {
        let mut held = self.held.lock().expect("ledger");
        let spare: Vec<(String, i64)> = held
            .iter()
            .filter_map(|(pool, count)| {
                let running = busy(pool);
                (*count > running).then(|| (pool.clone(), running))
            })
            .collect();
        for (pool, running) in spare {
            if self.write(&pool, running).is_ok() {
                if running == 0 {
                    held.remove(&pool);
                } else {
                    held.insert(pool, running);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_cluster::{NodeSpec, Roles};
    use nimbus_storage::SqliteStore;

    fn node(meta: &Arc<dyn MetadataStore>, name: &str) -> Arc<Ledger> {
        let spec = NodeSpec {
            name: name.into(),
            identity: name.into(),
            advertise: format!("{name}:4566"),
            zone: "us-east-1a".into(),
            roles: Roles::ALL,
        };
        let cluster = Cluster::join_as(true, meta.clone(), spec).unwrap();
        Ledger::new(meta.clone(), cluster)
    }

    #[test]
    fn limits_hold_across_nodes_and_free_slots_move() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let (a, b) = (node(&meta, "a"), node(&meta, "b"));
        // Each node sees the other once its view is refreshed by a heartbeat.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        assert!(a.shared() && b.shared());

        assert!(a.take("f", 1, 1).unwrap());
        assert!(!b.take("f", 1, 1).unwrap(), "a holds the one slot");
        a.give_back(|_| 0);
        assert!(b.take("f", 1, 1).unwrap(), "a gave it back");
        assert!(b.covers("f", 1) && !a.covers("f", 1));

        // The unreserved pool is taken a chunk at a time, within what is left.
        assert!(a.take(UNRESERVED, 15, 1).unwrap());
        assert!(a.covers(UNRESERVED, 10));
        assert!(!b.take(UNRESERVED, 15, 6).unwrap());
        assert!(b.take(UNRESERVED, 15, 5).unwrap());

        // A restarted node gives up what its earlier run held.
        let _a_again = node(&meta, "a");
        assert!(b.take(UNRESERVED, 15, 15).unwrap());
    }
}
