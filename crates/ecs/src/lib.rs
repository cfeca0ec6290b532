//! ECS over json-1.1 (`AmazonEC2ContainerServiceV20141113`): clusters, task
//! definitions and tasks run on this node. Services and container instances join here
//! as they land.
//!
//! Tables: `ecs.clusters/<name>` and `ecs.taskdefs/<family>:<revision, 10 digits>`
//! (so a family's revisions list in order).

mod agent;
pub mod api;
pub mod credentials;
mod error;
pub mod images;
pub mod instances;
pub mod monitor;
pub mod network;
pub mod placement;
pub mod runner;
pub mod services;
mod tagging;
pub mod taskdefs;
pub mod tasks;

use std::sync::Arc;

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde_json::{Value, json};

use crate::error::{client, cluster_not_found, internal, invalid};

pub(crate) const CLUSTERS: &str = "ecs.clusters";
pub(crate) const TASKDEFS: &str = "ecs.taskdefs";
const DEFAULT_CLUSTER: &str = "default";

/// Where tasks' state changes go: EventBridge's `ECS Task State Change`.
pub trait TaskEvents: Send + Sync {
    /// The writes that deliver a task's new state, committed with the state itself.
    fn staged(&self, task: &Value) -> Vec<(String, String, Vec<u8>)>;

    /// Takes up committed writes now.
    fn wake(&self);
}

pub struct Ecs {
    meta: Arc<dyn MetadataStore>,
    region: String,
    account: String,
    /// What runs tasks here; none when the server has no OCI runtime or is not a
    /// worker.
    node: Option<Arc<tasks::Node>>,
    /// The deployment's nodes: each worker is a container instance of every cluster.
    cluster: Arc<nimbus_cluster::Cluster>,
    /// Services are reconciled, and lost nodes' tasks stopped, by its holder.
    lease: nimbus_cluster::Lease,
    /// Wakes the service reconciler after a change.
    wake: tokio::sync::Notify,
    reconciler: services::Reconciler,
    events: Option<Arc<dyn TaskEvents>>,
}

pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Value, AwsError> {
    serde_json::from_slice(bytes).map_err(internal)
}

pub(crate) fn revision_key(family: &str, revision: i64) -> String {
    format!("{family}:{revision:010}")
}

impl Ecs {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        region: &str,
        account: &str,
        node: Option<Arc<tasks::Node>>,
        cluster: Arc<nimbus_cluster::Cluster>,
        events: Option<Arc<dyn TaskEvents>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            meta,
            region: region.to_owned(),
            account: account.to_owned(),
            node,
            lease: cluster.lease("ecs"),
            cluster,
            wake: tokio::sync::Notify::new(),
            reconciler: services::Reconciler::default(),
            events,
        })
    }

    fn arn(&self, rest: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{rest}", self.region, self.account)
    }

    /// The cluster name a `cluster` parameter (a name or ARN, default `default`) names.
    fn cluster_name<'a>(&self, cluster: Option<&'a str>) -> &'a str {
        let cluster = cluster.unwrap_or(DEFAULT_CLUSTER);
        cluster
            .rsplit_once(":cluster/")
            .map_or(cluster, |(_, name)| name)
    }

    /// A cluster as ECS describes it, with its instance, task and service counts.
    fn cluster_json(&self, name: &str, record: &Value) -> Result<Value, AwsError> {
        let count = |table: &str| -> Result<Vec<Value>, AwsError> {
            self.meta
                .scan_all(table, &format!("{name}/"))
                .map_err(internal)?
                .iter()
                .map(|r| decode(&r.value))
                .collect()
        };
        let tasks = count(tasks::TASKS)?;
        let live = |t: &&Value| t["lastStatus"] != "STOPPED";
        let running = tasks
            .iter()
            .filter(live)
            .filter(|t| t["lastStatus"] == "RUNNING")
            .count();
        let pending = tasks.iter().filter(live).count() - running;
        let instances = count(instances::INSTANCES)?
            .iter()
            .filter(|i| i["status"] != "INACTIVE")
            .count();
        let services = count(services::SERVICES)?
            .iter()
            .filter(|s| s["status"] == "ACTIVE")
            .count();
        Ok(json!({
            "clusterArn": self.arn(&format!("cluster/{name}")),
            "clusterName": name,
            "status": record["status"],
            "registeredContainerInstancesCount": instances,
            "runningTasksCount": running,
            "pendingTasksCount": pending,
            "activeServicesCount": services,
            "statistics": [],
            "tags": record["tags"],
            "settings": [{ "name": "containerInsights", "value": "disabled" }],
            "capacityProviders": [],
            "defaultCapacityProviderStrategy": [],
        }))
    }

    pub fn create_cluster(&self, input: &Value) -> Result<Value, AwsError> {
        let name = input["clusterName"].as_str().unwrap_or(DEFAULT_CLUSTER);
        let valid = taskdefs::is_name(name, 255);
        if !valid {
            return Err(invalid(
                "Cluster name must be 1 to 255 letters, digits, hyphens and underscores.",
            ));
        }
        // Creating a cluster that exists returns it, as ECS does.
        let record = match self.meta.get(CLUSTERS, name).map_err(internal)? {
            Some(existing) if decode(&existing.value)?["status"] == "ACTIVE" => {
                decode(&existing.value)?
            }
            _ => {
                let record = json!({
                    "status": "ACTIVE",
                    "tags": input["tags"].as_array().cloned().unwrap_or_default(),
                    "createdAt": now(),
                });
                self.meta
                    .commit(WriteBatch::new().put(
                        CLUSTERS,
                        name,
                        record.to_string().into_bytes(),
                        Expect::Anything,
                    ))
                    .map_err(internal)?;
                record
            }
        };
        self.register_node(name, false)?;
        Ok(json!({ "cluster": self.cluster_json(name, &record)? }))
    }

    pub fn describe_clusters(&self, input: &Value) -> Result<Value, AwsError> {
        let names: Vec<String> = match input["clusters"].as_array() {
            Some(names) if !names.is_empty() => names
                .iter()
                .filter_map(Value::as_str)
                .map(|c| self.cluster_name(Some(c)).to_owned())
                .collect(),
            _ => vec![DEFAULT_CLUSTER.to_owned()],
        };
        let (mut clusters, mut failures) = (Vec::new(), Vec::new());
        for name in names {
            match self.meta.get(CLUSTERS, &name).map_err(internal)? {
                Some(record) => clusters.push(self.cluster_json(&name, &decode(&record.value)?)?),
                None => failures.push(json!({
                    "arn": self.arn(&format!("cluster/{name}")),
                    "reason": "MISSING",
                })),
            }
        }
        Ok(json!({ "clusters": clusters, "failures": failures }))
    }

    pub fn list_clusters(&self) -> Result<Value, AwsError> {
        let mut arns = Vec::new();
        for record in self.meta.scan_all(CLUSTERS, "").map_err(internal)? {
            if decode(&record.value)?["status"] == "ACTIVE" {
                arns.push(self.arn(&format!("cluster/{}", record.key)));
            }
        }
        Ok(json!({ "clusterArns": arns }))
    }

    pub fn delete_cluster(&self, input: &Value) -> Result<Value, AwsError> {
        let name = self.cluster_name(input["cluster"].as_str());
        let record = self
            .meta
            .get(CLUSTERS, name)
            .map_err(internal)?
            .ok_or_else(cluster_not_found)?;
        let mut cluster = decode(&record.value)?;
        let described = self.cluster_json(name, &cluster)?;
        let refuse = |code: &'static str, message: &str| {
            Err(AwsError::new(http::StatusCode::BAD_REQUEST, code, message))
        };
        if described["activeServicesCount"].as_u64().unwrap_or(0) > 0 {
            return refuse(
                "ClusterContainsServicesException",
                "The Cluster cannot be deleted while Services are active.",
            );
        }
        if described["runningTasksCount"].as_u64().unwrap_or(0)
            + described["pendingTasksCount"].as_u64().unwrap_or(0)
            > 0
        {
            return refuse(
                "ClusterContainsTasksException",
                "The Cluster cannot be deleted while Tasks are active.",
            );
        }
        cluster["status"] = "INACTIVE".into();
        // This node leaves the cluster with it.
        let mut batch = WriteBatch::new().delete(CLUSTERS, name, Expect::Version(record.version));
        for instance in self
            .meta
            .scan_all(instances::INSTANCES, &format!("{name}/"))
            .map_err(internal)?
        {
            batch = batch.delete(instances::INSTANCES, &instance.key, Expect::Anything);
        }
        self.meta.commit(batch).map_err(internal)?;
        let mut out = described;
        out["status"] = "INACTIVE".into();
        out["registeredContainerInstancesCount"] = 0.into();
        Ok(json!({ "cluster": out }))
    }

    fn taskdef_json(&self, family: &str, revision: i64, record: &Value) -> Value {
        let mut out = record.clone();
        out["taskDefinitionArn"] = self
            .arn(&format!("task-definition/{family}:{revision}"))
            .into();
        out["revision"] = revision.into();
        out
    }

    pub fn register_task_definition(&self, input: &Value) -> Result<Value, AwsError> {
        let mut definition = taskdefs::validate(input)?;
        let family = definition["family"].as_str().unwrap_or_default().to_owned();
        loop {
            let latest = self
                .meta
                .scan_back(TASKDEFS, &format!("{family}:"), None, 1)
                .map_err(internal)?;
            let revision = latest
                .first()
                .and_then(|r| r.key.rsplit(':').next())
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
                + 1;
            definition["status"] = "ACTIVE".into();
            definition["registeredAt"] = now().into();
            let record = json!({ "definition": definition, "tags": input["tags"] });
            match self.meta.commit(WriteBatch::new().put(
                TASKDEFS,
                &revision_key(&family, revision),
                record.to_string().into_bytes(),
                Expect::Absent,
            )) {
                Ok(()) => {
                    return Ok(json!({
                        "taskDefinition": self.taskdef_json(&family, revision, &definition),
                        "tags": input["tags"].as_array().cloned().unwrap_or_default(),
                    }));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// The ARN of the revision a `taskDefinition` parameter names: as given with its
    /// revision (whether or not it exists, so that a caller learns that only once
    /// allowed), else the family's latest.
    pub fn taskdef_arn(&self, reference: &str) -> Result<String, AwsError> {
        let given = reference
            .rsplit_once(":task-definition/")
            .map_or(reference, |(_, rest)| rest);
        match given.rsplit_once(':') {
            Some((family, revision)) if revision.parse::<u64>().is_ok() => {
                Ok(self.arn(&format!("task-definition/{family}:{revision}")))
            }
            _ => {
                let (family, revision, _, _) = self.find_taskdef(reference)?;
                Ok(self.arn(&format!("task-definition/{family}:{revision}")))
            }
        }
    }

    /// The revision a `taskDefinition` parameter names: `family`, `family:revision`
    /// or an ARN; a bare family is its latest ACTIVE revision.
    pub(crate) fn find_taskdef(
        &self,
        reference: &str,
    ) -> Result<(String, i64, u64, Value), AwsError> {
        let reference = reference
            .rsplit_once(":task-definition/")
            .map_or(reference, |(_, rest)| rest);
        let missing = || client("Unable to describe task definition.");
        let records = match reference.rsplit_once(':') {
            Some((family, revision)) => {
                let revision: i64 = revision.parse().map_err(|_| missing())?;
                self.meta
                    .get(TASKDEFS, &revision_key(family, revision))
                    .map_err(internal)?
                    .into_iter()
                    .collect::<Vec<_>>()
            }
            None => self
                .meta
                .scan_all(TASKDEFS, &format!("{reference}:"))
                .map_err(internal)?
                .into_iter()
                .rev()
                .collect(),
        };
        for record in records {
            let stored = decode(&record.value)?;
            let explicit = reference.contains(':');
            if explicit || stored["definition"]["status"] == "ACTIVE" {
                let (family, revision) = record.key.rsplit_once(':').ok_or_else(missing)?;
                let revision = revision.parse().map_err(|_| missing())?;
                return Ok((family.to_owned(), revision, record.version, stored));
            }
        }
        Err(missing())
    }

    pub fn describe_task_definition(&self, input: &Value) -> Result<Value, AwsError> {
        let reference = input["taskDefinition"]
            .as_str()
            .ok_or_else(|| invalid("taskDefinition is required"))?;
        let (family, revision, _, stored) = self.find_taskdef(reference)?;
        let mut out = json!({ "taskDefinition": self.taskdef_json(&family, revision, &stored["definition"]) });
        if input["include"]
            .as_array()
            .is_some_and(|i| i.iter().any(|v| v == "TAGS"))
        {
            out["tags"] = stored["tags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into();
        }
        Ok(out)
    }

    pub fn deregister_task_definition(&self, input: &Value) -> Result<Value, AwsError> {
        let reference = input["taskDefinition"].as_str().unwrap_or_default();
        if !reference.contains(':') {
            return Err(client(
                "Invalid revision number. Number: a revision is required to deregister",
            ));
        }
        let (family, revision, version, mut stored) = self.find_taskdef(reference)?;
        stored["definition"]["status"] = "INACTIVE".into();
        stored["definition"]["deregisteredAt"] = now().into();
        self.meta
            .commit(WriteBatch::new().put(
                TASKDEFS,
                &revision_key(&family, revision),
                stored.to_string().into_bytes(),
                Expect::Version(version),
            ))
            .map_err(internal)?;
        Ok(json!({ "taskDefinition": self.taskdef_json(&family, revision, &stored["definition"]) }))
    }

    /// Task definition ARNs, or families, by prefix and status, in order.
    pub fn list_task_definitions(&self, input: &Value, families: bool) -> Result<Value, AwsError> {
        let prefix = input["familyPrefix"].as_str().unwrap_or_default();
        let status = input["status"]
            .as_str()
            .unwrap_or(if families { "ALL" } else { "ACTIVE" });
        let mut out: Vec<String> = Vec::new();
        for record in self.meta.scan_all(TASKDEFS, prefix).map_err(internal)? {
            let stored = decode(&record.value)?;
            let state = stored["definition"]["status"].as_str().unwrap_or_default();
            if status != "ALL" && state != status {
                continue;
            }
            let Some((family, revision)) = record.key.rsplit_once(':') else {
                continue;
            };
            if families {
                if out.last().map(String::as_str) != Some(family) {
                    out.push(family.to_owned());
                }
            } else {
                let revision: i64 = revision.parse().unwrap_or_default();
                out.push(self.arn(&format!("task-definition/{family}:{revision}")));
            }
        }
        if input["sort"] == "DESC" {
            out.reverse();
        }
        let max = input["maxResults"].as_i64().unwrap_or(100).clamp(1, 100) as usize;
        let start: usize = input["nextToken"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let page: Vec<&String> = out.iter().skip(start).take(max).collect();
        let key = if families {
            "families"
        } else {
            "taskDefinitionArns"
        };
        let mut response = json!({ key: page });
        if start + max < out.len() {
            response["nextToken"] = (start + max).to_string().into();
        }
        Ok(response)
    }
}
