//! ECS across the deployment's nodes. RunTask and the service reconciler place a
//! task on any node's instance; a task placed on another node is handed over through
//! an assignment (`ecs.assignments/<node>/<cluster>/<task>`: `start` or `stop`),
//! written in the batch that records the task, which that node's agent takes up.
//! The agent also registers its node in clusters other nodes created and stops what
//! the store says is stopped. The holder of the `ecs` lease records the tasks of
//! nodes that stopped heart-beating as stopped, so their services replace them on
//! the nodes that remain.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, StoreError, WriteBatch};
use serde_json::Value;

use crate::error::internal;
use crate::network::{SUBNETS, numbered_subnet};
use crate::tasks::{Node, TASKS};
use crate::{CLUSTERS, Ecs, decode};

pub(crate) const ASSIGNMENTS: &str = "ecs.assignments";
pub(crate) const START: &[u8] = b"start";
pub(crate) const STOP: &[u8] = b"stop";

/// How often a node looks for tasks handed to it.
const POLL: Duration = Duration::from_millis(200);
/// How often a node checks its registrations and its tasks against the store.
const RECHECK: Duration = Duration::from_secs(3);
/// How often the tasks of nodes already found lost are looked at again.
const RELOOK: Duration = Duration::from_secs(60);

pub(crate) fn assignment_key(node: &str, cluster: &str, id: &str) -> String {
    format!("{node}/{cluster}/{id}")
}

impl Ecs {
    /// This worker node's share of ECS, for as long as the server runs.
    pub async fn work_forever(self: Arc<Self>) {
        let Some(node) = self.node.clone() else {
            return;
        };
        let mut checked = Instant::now() - RECHECK;
        let mut started = false;
        loop {
            let recheck = checked.elapsed() >= RECHECK;
            if recheck {
                checked = Instant::now();
            }
            let (ecs, node) = (self.clone(), node.clone());
            let first = !started;
            let pass = tokio::task::spawn_blocking(move || {
                if first {
                    ecs.register_everywhere(true)?;
                }
                ecs.take_assignments(&node)?;
                // Alone, no other node hands this one work or stops its tasks.
                if recheck && !ecs.cluster.alone() {
                    ecs.register_everywhere(false)?;
                    ecs.stop_stale(&node)?;
                    ecs.route_tasks(&node)?;
                }
                Ok::<_, AwsError>(())
            })
            .await;
            match pass {
                Ok(Err(err)) => {
                    tracing::warn!(error = %err.message, "the ECS agent's pass failed");
                }
                _ => started = true,
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts or stops the tasks other nodes handed to this one. An assignment goes
    /// only once carried out, so a failure part-way leaves it for the next pass; a
    /// task this node already holds is not started twice.
    fn take_assignments(self: &Arc<Self>, node: &Arc<Node>) -> Result<(), AwsError> {
        let me = self.cluster.me().name.clone();
        let prefix = format!("{me}/");
        for record in self.meta.scan_all(ASSIGNMENTS, &prefix).map_err(internal)? {
            let Some((cluster, id)) = record.key[prefix.len()..].split_once('/') else {
                continue;
            };
            if record.value == STOP {
                self.signal_task(node, id);
            } else if !node.holds(id)
                && let Err(err) = self.start_assigned(node, cluster, id)
            {
                tracing::warn!(task = %id, error = %err.message, "taking up a task failed; trying again");
                continue;
            }
            match self.meta.commit(WriteBatch::new().delete(
                ASSIGNMENTS,
                &record.key,
                Expect::Version(record.version),
            )) {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(internal(err)),
            }
        }
        Ok(())
    }

    fn start_assigned(
        self: &Arc<Self>,
        node: &Arc<Node>,
        cluster: &str,
        id: &str,
    ) -> Result<(), AwsError> {
        let Some(record) = self
            .meta
            .get(TASKS, &format!("{cluster}/{id}"))
            .map_err(internal)?
        else {
            return Ok(());
        };
        let task = decode(&record.value)?;
        if task["lastStatus"] != "PROVISIONING" {
            return Ok(());
        }
        if task["desiredStatus"] == "STOPPED" {
            self.stopped(
                cluster,
                id,
                "UserInitiated",
                "Task stopped before it started",
                &HashMap::new(),
            );
            return Ok(());
        }
        let reference = task["taskDefinitionArn"].as_str().unwrap_or_default();
        let definition = match self.find_taskdef(reference) {
            Ok((_, _, _, stored)) => stored["definition"].clone(),
            Err(err) => {
                self.stopped(
                    cluster,
                    id,
                    "TaskFailedToStart",
                    &err.message,
                    &HashMap::new(),
                );
                return Ok(());
            }
        };
        match node.reserve_ports(id, &definition) {
            Ok(ports) => {
                let overrides = &task["overrides"]["containerOverrides"];
                self.spawn_lifecycle(node, cluster, id, &definition, overrides, ports);
            }
            Err(reason) => {
                self.stopped(cluster, id, "TaskFailedToStart", &reason, &HashMap::new());
            }
        }
        Ok(())
    }

    /// Registers this node as an instance of every cluster, those made through other
    /// nodes included; `again` where it was deregistered too, at the node's start.
    fn register_everywhere(&self, again: bool) -> Result<(), AwsError> {
        for record in self.meta.scan_all(CLUSTERS, "").map_err(internal)? {
            if decode(&record.value)?["status"] == "ACTIVE" {
                self.register_node(&record.key, again)?;
            }
        }
        Ok(())
    }

    /// Routes the other nodes' task subnets through their addresses, so this node's
    /// tasks reach theirs.
    fn route_tasks(&self, node: &Arc<Node>) -> Result<(), AwsError> {
        let Ok(networks) = &node.networks else {
            return Ok(());
        };
        let me = self.cluster.me().name.as_str();
        let addresses: HashMap<String, std::net::IpAddr> = self
            .cluster
            .nodes()
            .into_iter()
            .filter(|n| n.name != me && n.reachable())
            .filter_map(|n| {
                Some((
                    n.name,
                    n.advertise.parse::<std::net::SocketAddr>().ok()?.ip(),
                ))
            })
            .collect();
        let routes = self
            .meta
            .scan_all(SUBNETS, "")
            .map_err(internal)?
            .into_iter()
            .filter_map(|r| {
                let via = addresses.get(std::str::from_utf8(&r.value).ok()?)?;
                Some((numbered_subnet(r.key.parse().ok()?), *via))
            })
            .collect();
        networks.route(routes);
        Ok(())
    }

    /// Stops this node's running tasks that the store says should stop: a stop whose
    /// assignment was missed, or a task another node recorded as lost while this one
    /// could not heart-beat.
    fn stop_stale(&self, node: &Arc<Node>) -> Result<(), AwsError> {
        let me = self.cluster.me().name.as_str();
        for record in self.meta.scan_all(TASKS, "").map_err(internal)? {
            let task: Value = decode(&record.value)?;
            let Some((_, id)) = record.key.split_once('/') else {
                continue;
            };
            if task["node"] == me
                && task["desiredStatus"] == "STOPPED"
                && node.is_running(id)
                && !node.is_stopping(id)
            {
                self.signal_task(node, id);
            }
        }
        Ok(())
    }

    /// Records the live tasks of nodes that stopped heart-beating (or left) as
    /// stopped, as ECS does for the tasks of a terminated instance.
    pub(crate) fn stop_tasks_of_lost_nodes(&self) -> Result<(), AwsError> {
        let mut handled = self.reconciler.lost_handled.lock().expect("lost nodes");
        if handled.0.is_none_or(|since| since.elapsed() >= RELOOK) {
            *handled = (Some(Instant::now()), HashSet::new());
        }
        let nodes = self.cluster.nodes();
        // A node that came back may be lost again.
        handled
            .1
            .retain(|name| nodes.iter().any(|n| n.name == *name && !n.active()));
        let gone: Vec<_> = nodes
            .into_iter()
            .filter(|n| !n.active() && !handled.1.contains(&n.name))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        for record in self.meta.scan_all(TASKS, "").map_err(internal)? {
            let task: Value = decode(&record.value)?;
            if task["lastStatus"] == "STOPPED" {
                continue;
            }
            let Some(lost) = gone.iter().find(|n| task["node"] == n.name.as_str()) else {
                continue;
            };
            let Some((cluster, id)) = record.key.split_once('/') else {
                continue;
            };
            let reason = format!(
                "Host EC2 (instance {}) stopped/terminated",
                lost.instance_id
            );
            tracing::warn!(task = %id, node = %lost.name, "recording a lost node's task as stopped");
            self.stopped(cluster, id, "TerminationNotice", &reason, &HashMap::new());
        }
        handled.1.extend(gone.into_iter().map(|n| n.name));
        Ok(())
    }
}
