//! Where functions are warm across the deployment's nodes, so that an invoke finding
//! no idle environment on the node that received it goes to a node that has one
//! before a cold start is made. Each worker publishes the functions it holds idle
//! environments of (`lambda.warm/<node>`, written when that set changes) and reads
//! the other nodes' twice a second. A node alone in its deployment writes nothing and
//! reads nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use nimbus_cluster::{Cluster, NodeView};
use nimbus_storage::{Expect, MetadataStore, WriteBatch};

use crate::Invoker;

pub const WARM: &str = "lambda.warm";
const REFRESH: Duration = Duration::from_millis(500);

pub struct WarmMap {
    meta: Arc<dyn MetadataStore>,
    cluster: Arc<Cluster>,
    /// This node's invoker, when it runs functions.
    invoker: Option<Arc<Invoker>>,
    /// The functions other nodes hold idle environments of, by node name.
    others: RwLock<HashMap<String, HashSet<String>>>,
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
            let mut published: Option<Vec<String>> = None;
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
    fn refresh(&self, published: Option<Vec<String>>) -> Option<Vec<String>> {
        let me = self.cluster.me().name.clone();
        if self.cluster.alone() {
            // Nobody to tell: published again as soon as another node is about.
            self.others.write().expect("warm map").clear();
            return None;
        }
        let mut now = published.clone();
        if let Some(invoker) = &self.invoker {
            let warm = invoker.idle_functions();
            if published.as_ref() != Some(&warm) {
                let written = self.meta.commit(WriteBatch::new().put(
                    WARM,
                    &me,
                    serde_json::to_vec(&warm).expect("names serialize"),
                    Expect::Anything,
                ));
                if written.is_ok() {
                    now = Some(warm);
                }
            }
        }
        if let Ok(records) = self.meta.scan_all(WARM, "") {
            let others = records
                .into_iter()
                .filter(|r| r.key != me)
                .filter_map(|r| Some((r.key, serde_json::from_slice(&r.value).ok()?)))
                .collect();
            *self.others.write().expect("warm map") = others;
        }
        now
    }

    /// The node (`host:port`) to hand an invoke of `function` to: none when this node
    /// has an idle environment of it; else a node that has one; else, on a node that
    /// runs no functions, any worker in turn (a worker cold-starts here).
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
            .filter(|n| n.active() && n.worker() && n.name != me)
            .collect();
        let warm: Vec<&NodeView> = workers
            .iter()
            .filter(|n| others.get(&n.name).is_some_and(|f| f.contains(function)))
            .collect();
        if !warm.is_empty() {
            return Some(self.pick(&warm));
        }
        if self.invoker.is_some() || workers.is_empty() {
            return None;
        }
        Some(self.pick(&workers.iter().collect::<Vec<_>>()))
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
            .filter(|n| n.active() && n.worker())
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
