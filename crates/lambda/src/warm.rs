//! Where functions are warm across the deployment's nodes, and how busy each worker
//! is, so that an invoke finding no idle environment on the node that received it
//! goes to a node that has one before a cold start is made, and a cold start goes to
//! the least busy worker. Each worker publishes the functions it holds idle
//! environments of and the invocations it runs (`lambda.warm/<node>`, written when
//! either changes) and reads the other nodes' twice a second. A node alone in its
//! deployment writes nothing and reads nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nimbus_cluster::{Cluster, NodeView};
use nimbus_storage::{Expect, MetadataStore, WriteBatch};

use crate::Invoker;

pub const WARM: &str = "lambda.warm";
const REFRESH: Duration = Duration::from_millis(500);

/// What a worker publishes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    /// The functions with an idle environment there, sorted.
    pub warm: Vec<String>,
    /// The invocations running there.
    pub running: i64,
}

pub struct WarmMap {
    meta: Arc<dyn MetadataStore>,
    cluster: Arc<Cluster>,
    /// This node's invoker, when it runs functions.
    invoker: Option<Arc<Invoker>>,
    /// What other nodes published, by node name.
    others: RwLock<HashMap<String, (HashSet<String>, i64)>>,
    turn: AtomicUsize,
}

impl WarmMap {
    /// Publishes this node's warm functions (on a worker) and follows the others'.
    pub fn start(
        meta: Arc<dyn MetadataStore>,
        cluster: Arc<Cluster>,
        invoker: Option<Arc<Invoker>>,
    ) -> Arc<Self> {
        let map = Arc::new(Self {
            meta,
            cluster,
            invoker,
            others: RwLock::new(HashMap::new()),
            turn: AtomicUsize::new(0),
        });
        let looping = map.clone();
        tokio::spawn(async move {
            let mut published: Option<Load> = None;
            loop {
                let map = looping.clone();
                let last = published.clone();
                if let Ok(now) = tokio::task::spawn_blocking(move || map.refresh(last)).await {
                    published = now;
                }
                tokio::time::sleep(REFRESH).await;
            }
        });
        map
    }

    /// One round: this node's set written if it changed, the others' read. What was
    /// published, for the next round.
    fn refresh(&self, published: Option<Load>) -> Option<Load> {
        let me = self.cluster.me().name.clone();
        if self.cluster.alone() {
            // Nobody to tell: published again as soon as another node is about.
            self.others.write().expect("warm map").clear();
            return None;
        }
        let mut now = published.clone();
        if let Some(invoker) = &self.invoker {
            let load = Load {
                warm: invoker.idle_functions(),
                running: invoker.running(),
            };
            if published.as_ref() != Some(&load) {
                let written = self.meta.commit(WriteBatch::new().put(
                    WARM,
                    &me,
                    serde_json::to_vec(&load).expect("loads serialize"),
                    Expect::Anything,
                ));
                if written.is_ok() {
                    now = Some(load);
                }
            }
        }
        if let Ok(records) = self.meta.scan_all(WARM, "") {
            let others = records
                .into_iter()
                .filter(|r| r.key != me)
                .filter_map(|r| {
                    let load: Load = serde_json::from_slice(&r.value).ok()?;
                    Some((r.key, (load.warm.into_iter().collect(), load.running)))
                })
                .collect();
            *self.others.write().expect("warm map") = others;
        }
        now
    }

    /// The node (`host:port`) to hand an invoke of `function` to: none when this node
    /// has an idle environment of it; else a node that has one; else the least busy
    /// worker for a cold start (this one when none is less busy).
    pub fn route(&self, function: &str) -> Option<String> {
        if let Some(invoker) = &self.invoker
            && (invoker.has_idle(function) || self.others.read().expect("warm map").is_empty())
        {
            return None;
        }
        let others = self.others.read().expect("warm map");
        let me = self.cluster.me().name.as_str();
        let workers: Vec<NodeView> = self
            .cluster
            .nodes()
            .into_iter()
            .filter(|n| n.active() && n.worker() && n.reachable() && n.name != me)
            .collect();
        let warm: Vec<&NodeView> = workers
            .iter()
            .filter(|n| {
                others
                    .get(&n.name)
                    .is_some_and(|(f, _)| f.contains(function))
            })
            .collect();
        if !warm.is_empty() {
            return Some(self.pick(&warm));
        }
        // A cold start: on the least busy worker, this one first among equals.
        let running = |n: &NodeView| others.get(&n.name).map_or(0, |(_, running)| *running);
        let least = workers.iter().map(running).min()?;
        if let Some(invoker) = &self.invoker
            && invoker.running() <= least
        {
            return None;
        }
        let idlest: Vec<&NodeView> = workers.iter().filter(|n| running(n) == least).collect();
        Some(self.pick(&idlest))
    }

    /// For requests naming no function (a function URL's id): a worker in turn, from
    /// a node that runs no functions; none on a worker.
    pub fn route_any(&self) -> Option<String> {
        if self.invoker.is_some() {
            return None;
        }
        let workers: Vec<NodeView> = self
            .cluster
            .nodes()
            .into_iter()
            .filter(|n| n.active() && n.worker() && n.reachable())
            .collect();
        (!workers.is_empty()).then(|| self.pick(&workers.iter().collect::<Vec<_>>()))
    }

    fn pick(&self, nodes: &[&NodeView]) -> String {
        let next = self.turn.fetch_add(1, Ordering::Relaxed);
        nodes[next % nodes.len()].advertise.clone()
    }
}

/// The function an invoke's path names (`/2015-03-31/functions/<name, ARN or
/// name:qualifier>/invocations`), as its environments are pooled: by plain name.
pub fn invoked_function(path: &str) -> Option<String> {
    let rest = path.split_once("/functions/")?.1;
    let segment = rest
        .strip_suffix("/invocations")
        .or_else(|| rest.strip_suffix("/response-streaming-invocations"))?;
    let decoded = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    let name = match decoded.split_once("function:") {
        Some((_, after)) => after,
        None => &decoded,
    };
    let name = name.split(':').next()?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invokes_name_their_function_however_written() {
        for (path, name) in [
            ("/2015-03-31/functions/hello/invocations", Some("hello")),
            (
                "/2015-03-31/functions/hello%3Aprod/invocations",
                Some("hello"),
            ),
            (
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahello%3A3/invocations",
                Some("hello"),
            ),
            (
                "/2021-11-15/functions/000000000000:function:hello/response-streaming-invocations",
                Some("hello"),
            ),
            ("/2015-03-31/functions/hello/configuration", None),
            ("/2015-03-31/functions//invocations", None),
        ] {
            assert_eq!(invoked_function(path).as_deref(), name, "{path}");
        }
    }
}
