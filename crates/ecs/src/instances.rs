//! Container instances: every worker node of the deployment registers itself in every
//! cluster, with its CPU (1,024 units per core), memory and zone, under its
//! EC2-shaped instance id; tasks are placed on an instance only while it is ACTIVE,
//! its node's heartbeat is current (`agentConnected`) and it has the cpu and memory
//! they reserve, else RunTask reports ECS's `RESOURCE:CPU` / `RESOURCE:MEMORY`
//! failures.
//!
//! Records: `ecs.instances/<cluster>/<id>`, naming the node and its zone.

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, WriteBatch};
use serde_json::{Value, json};

use crate::error::{internal, invalid};
use crate::placement::{Placement, Query};
use crate::{Ecs, decode, now};

pub(crate) const INSTANCES: &str = "ecs.instances";

/// Where a task was placed: the instance, its node and zone.
pub(crate) struct Placed {
    pub arn: String,
    pub node: String,
    pub zone: String,
}

/// What this machine offers tasks: cpu units and memory in MiB.
pub fn node_resources() -> (i64, i64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as i64);
    let memory_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .unwrap_or(0);
    (cores * 1024, memory_kb / 1024)
}

fn resource(name: &str, value: i64) -> Value {
    json!({ "name": name, "type": "INTEGER", "integerValue": value, "doubleValue": 0.0, "longValue": 0 })
}

/// The cpu units and memory (MiB) a task reserves: task-level sizes, else the sum of
/// its containers' (memory limit, else reservation).
pub fn reservation(definition: &Value) -> (i64, i64) {
    let containers = definition["containerDefinitions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let cpu = definition["cpu"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| {
            containers
                .iter()
                .map(|c| c["cpu"].as_i64().unwrap_or(0))
                .sum()
        });
    let memory = definition["memory"]
        .as_str()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| {
            containers
                .iter()
                .map(|c| {
                    c["memory"]
                        .as_i64()
                        .or(c["memoryReservation"].as_i64())
                        .unwrap_or(0)
                })
                .sum()
        });
    (cpu, memory)
}

impl Ecs {
    pub(crate) fn instance_arn(&self, cluster: &str, id: &str) -> String {
        self.arn(&format!("container-instance/{cluster}/{id}"))
    }

    /// Registers this node in `cluster` (once) when it runs tasks; `again` also
    /// registers it where it was deregistered, as a node does when it starts.
    pub(crate) fn register_node(&self, cluster: &str, again: bool) -> Result<(), AwsError> {
        if self.node.is_none() {
            return Ok(());
        }
        let (cpu, memory) = node_resources();
        let me = self.cluster.me();
        let record = json!({
            "status": "ACTIVE",
            "registeredAt": now(),
            "cpu": cpu,
            "memory": memory,
            "node": me.name,
            "zone": me.zone,
        });
        let key = format!("{cluster}/{}", me.instance_id());
        let expect = match self.meta.get(INSTANCES, &key).map_err(internal)? {
            Some(stored) if again && decode(&stored.value)?["status"] == "INACTIVE" => {
                Expect::Version(stored.version)
            }
            Some(_) => return Ok(()),
            None => Expect::Absent,
        };
        match self.meta.commit(WriteBatch::new().put(
            INSTANCES,
            &key,
            record.to_string().into_bytes(),
            expect,
        )) {
            Ok(()) | Err(nimbus_storage::StoreError::Conflict { .. }) => Ok(()),
            Err(err) => Err(internal(err)),
        }
    }

    /// The cluster's instances: (id, record).
    pub(crate) fn instances(&self, cluster: &str) -> Result<Vec<(String, Value)>, AwsError> {
        self.meta
            .scan_all(INSTANCES, &format!("{cluster}/"))
            .map_err(internal)?
            .iter()
            .map(|record| {
                let id = record.key.rsplit('/').next().unwrap_or_default().to_owned();
                Ok((id, decode(&record.value)?))
            })
            .collect()
    }

    /// Whether an instance's node is heart-beating.
    pub(crate) fn connected(&self, record: &Value) -> bool {
        let node = record["node"].as_str().unwrap_or_default();
        self.cluster
            .nodes()
            .iter()
            .any(|n| n.name == node && n.active())
    }

    /// What an instance has left, after the tasks placed on it: (cpu, memory, running,
    /// pending).
    fn remaining(
        &self,
        cluster: &str,
        id: &str,
        record: &Value,
    ) -> Result<(i64, i64, i64, i64), AwsError> {
        let (mut cpu, mut memory) = (
            record["cpu"].as_i64().unwrap_or(0),
            record["memory"].as_i64().unwrap_or(0),
        );
        let (mut running, mut pending) = (0, 0);
        let arn = self.instance_arn(cluster, id);
        for task in self.tasks_of(cluster)? {
            if task["lastStatus"] == "STOPPED" || task["containerInstanceArn"] != arn.as_str() {
                continue;
            }
            cpu -= task["reservedCpu"].as_i64().unwrap_or(0);
            memory -= task["reservedMemory"].as_i64().unwrap_or(0);
            if task["lastStatus"] == "RUNNING" {
                running += 1;
            } else {
                pending += 1;
            }
        }
        Ok((cpu, memory, running, pending))
    }

    /// How many of a cluster's container instances take tasks.
    pub(crate) fn active_instances(&self, cluster: &str) -> Result<i64, AwsError> {
        Ok(self
            .instances(cluster)?
            .iter()
            .filter(|(_, record)| record["status"] == "ACTIVE" && self.connected(record))
            .count() as i64)
    }

    /// Where a task that reserves `cpu` and `memory` goes under its placement
    /// constraints and strategy: the instance ARN, or ECS's failure.
    pub(crate) fn place(
        &self,
        cluster: &str,
        cpu: i64,
        memory: i64,
        placement: &Placement,
    ) -> Result<Result<Placed, Value>, AwsError> {
        let mut reason = "AGENT";
        let instances = self.instances(cluster)?;
        let zone_of = |arn: &str| {
            instances
                .iter()
                .find(|(id, _)| self.instance_arn(cluster, id) == arn)
                .map(|(_, record)| record["zone"].clone())
        };
        let mut candidates = Vec::new();
        for (id, record) in &instances {
            if record["status"] != "ACTIVE" || !self.connected(record) {
                continue;
            }
            let arn = self.instance_arn(cluster, id);
            let described = self.instance_json(cluster, id, record)?;
            if !placement.queries.iter().all(|q| q.matches(&described)) {
                reason = "MemberOf placement constraint unsatisfied.";
                continue;
            }
            if placement.distinct && placement.taken.contains(&arn) {
                reason = "DistinctInstance placement constraint unsatisfied.";
                continue;
            }
            let (free_cpu, free_memory, ..) = self.remaining(cluster, id, record)?;
            if free_memory < memory {
                reason = "RESOURCE:MEMORY";
            } else if free_cpu < cpu {
                reason = "RESOURCE:CPU";
            } else {
                // The group's tasks on this instance, and in its zone: what spread
                // evens out.
                let here = placement.taken.iter().filter(|t| **t == arn).count();
                let in_zone = placement
                    .taken
                    .iter()
                    .filter(|t| zone_of(t).is_some_and(|z| z == record["zone"]))
                    .count();
                candidates.push((id.clone(), arn, free_cpu, free_memory, here, in_zone));
            }
        }
        match placement
            .strategy
            .as_ref()
            .map(|(t, f)| (t.as_str(), f.as_str()))
        {
            Some(("binpack", "memory")) => candidates.sort_by_key(|c| c.3),
            Some(("binpack", _)) => candidates.sort_by_key(|c| c.2),
            Some(("spread", "instanceid")) => candidates.sort_by_key(|c| c.4),
            Some(("random", _)) if !candidates.is_empty() => {
                let by = usize::from(crate::tasks::random_u16()) % candidates.len();
                candidates.rotate_left(by);
            }
            // Spread by zone, then by instance: ECS's default for services, and what
            // keeps a group alive when a zone or a node goes.
            _ => candidates.sort_by_key(|c| (c.5, c.4)),
        }
        Ok(match candidates.into_iter().next() {
            Some((id, arn, ..)) => {
                let record = &instances
                    .iter()
                    .find(|(i, _)| *i == id)
                    .expect("candidate")
                    .1;
                Ok(Placed {
                    arn,
                    node: record["node"].as_str().unwrap_or_default().to_owned(),
                    zone: record["zone"]
                        .as_str()
                        .map_or_else(|| format!("{}a", self.region), str::to_owned),
                })
            }
            None => {
                Err(json!({ "arn": self.arn(&format!("cluster/{cluster}")), "reason": reason }))
            }
        })
    }

    fn instance_json(&self, cluster: &str, id: &str, record: &Value) -> Result<Value, AwsError> {
        let (cpu, memory, running, pending) = self.remaining(cluster, id, record)?;
        let zone = record["zone"]
            .as_str()
            .map_or_else(|| format!("{}a", self.region), str::to_owned);
        Ok(json!({
            "containerInstanceArn": self.instance_arn(cluster, id),
            "ec2InstanceId": id,
            "version": 1,
            "versionInfo": { "agentVersion": env!("CARGO_PKG_VERSION"), "agentHash": "nimbus", "dockerVersion": "runc" },
            "registeredResources": [resource("CPU", record["cpu"].as_i64().unwrap_or(0)), resource("MEMORY", record["memory"].as_i64().unwrap_or(0))],
            "remainingResources": [resource("CPU", cpu), resource("MEMORY", memory)],
            "status": record["status"],
            "agentConnected": self.connected(record),
            "runningTasksCount": running,
            "pendingTasksCount": pending,
            "attributes": [
                { "name": "ecs.os-type", "value": "linux" },
                { "name": "ecs.availability-zone", "value": zone },
                { "name": "ecs.instance-type", "value": "nimbus" },
                { "name": "ecs.cpu-architecture", "value": "x86_64" },
                { "name": "ecs.capability.task-iam-role" },
                { "name": "com.amazonaws.ecs.capability.logging-driver.awslogs" },
            ],
            "registeredAt": record["registeredAt"],
        }))
    }

    pub fn list_container_instances(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let status = input["status"].as_str();
        let filter = input["filter"]
            .as_str()
            .map(Query::parse)
            .transpose()
            .map_err(|err| invalid(format!("Invalid filter: {err}")))?;
        let mut arns = Vec::new();
        for (id, record) in self.instances(&cluster)? {
            let wanted = match &filter {
                Some(query) => query.matches(&self.instance_json(&cluster, &id, &record)?),
                None => true,
            };
            // Deregistered instances are described but no longer listed.
            let listed = match status {
                Some(status) => record["status"] == status,
                None => record["status"] != "INACTIVE",
            };
            if wanted && listed {
                arns.push(self.instance_arn(&cluster, &id));
            }
        }
        Ok(json!({ "containerInstanceArns": arns }))
    }

    pub fn describe_container_instances(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let known = self.instances(&cluster)?;
        let (mut found, mut failures) = (Vec::new(), Vec::new());
        for wanted in input["containerInstances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let id = wanted.rsplit('/').next().unwrap_or(wanted);
            match known.iter().find(|(known_id, _)| known_id == id) {
                Some((id, record)) => found.push(self.instance_json(&cluster, id, record)?),
                None => failures
                    .push(json!({ "arn": self.instance_arn(&cluster, id), "reason": "MISSING" })),
            }
        }
        Ok(json!({ "containerInstances": found, "failures": failures }))
    }

    /// Records an instance's new status, unless it changed since read at `version`.
    fn set_instance_status(
        &self,
        key: &str,
        record: &mut Value,
        status: &str,
        version: u64,
    ) -> Result<(), AwsError> {
        record["status"] = status.into();
        self.meta
            .commit(WriteBatch::new().put(
                INSTANCES,
                key,
                record.to_string().into_bytes(),
                Expect::Version(version),
            ))
            .map_err(internal)
    }

    /// Takes an instance out of its cluster for good (its node registers it again only
    /// when it next starts). With `force`, its tasks are stopped; without, an instance
    /// with live tasks is refused, as on ECS.
    pub fn deregister_container_instance(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let wanted = input["containerInstance"]
            .as_str()
            .ok_or_else(|| invalid("containerInstance is required"))?;
        let id = wanted.rsplit('/').next().unwrap_or(wanted).to_owned();
        let key = format!("{cluster}/{id}");
        let stored = self
            .meta
            .get(INSTANCES, &key)
            .map_err(internal)?
            .ok_or_else(|| invalid("The referenced container instance was not found."))?;
        let mut record = decode(&stored.value)?;
        let arn = self.instance_arn(&cluster, &id);
        let live: Vec<String> = self
            .meta
            .scan_all(crate::tasks::TASKS, &format!("{cluster}/"))
            .map_err(internal)?
            .iter()
            .map(|r| decode(&r.value))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|t| t["containerInstanceArn"] == arn.as_str() && t["lastStatus"] != "STOPPED")
            .filter_map(|t| t["taskArn"].as_str().map(str::to_owned))
            .collect();
        if !live.is_empty() && input["force"] != true {
            return Err(invalid(
                "Found running tasks on the instance: stop them first, or deregister with force.",
            ));
        }
        self.set_instance_status(&key, &mut record, "INACTIVE", stored.version)?;
        for task in live {
            let id = task.rsplit('/').next().unwrap_or(&task);
            self.stop(
                &cluster,
                id,
                "Container instance deregistered",
                "TerminationNotice",
            )?;
        }
        Ok(json!({ "containerInstance": self.instance_json(&cluster, &id, &record)? }))
    }

    pub fn update_container_instances_state(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let status = input["status"].as_str().unwrap_or_default();
        if !matches!(status, "ACTIVE" | "DRAINING") {
            return Err(invalid(format!(
                "Invalid status {status}: ACTIVE or DRAINING"
            )));
        }
        let (mut updated, mut failures) = (Vec::new(), Vec::new());
        for wanted in input["containerInstances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let id = wanted.rsplit('/').next().unwrap_or(wanted).to_owned();
            let key = format!("{cluster}/{id}");
            match self.meta.get(INSTANCES, &key).map_err(internal)? {
                Some(stored) if decode(&stored.value)?["status"] != "INACTIVE" => {
                    let mut record = decode(&stored.value)?;
                    self.set_instance_status(&key, &mut record, status, stored.version)?;
                    updated.push(self.instance_json(&cluster, &id, &record)?);
                }
                _ => failures
                    .push(json!({ "arn": self.instance_arn(&cluster, &id), "reason": "MISSING" })),
            }
        }
        Ok(json!({ "containerInstances": updated, "failures": failures }))
    }
}
