//! Tasks: RunTask, StopTask, DescribeTasks and ListTasks with ECS's lifecycle
//! (PROVISIONING → PENDING → RUNNING → STOPPING → STOPPED), stop codes and container
//! exit codes, run on this node by `runner.rs` from images `images.rs` unpacks.
//!
//! Records: `ecs.tasks/<cluster>/<task id>`. Containers outlive a nimbus that
//! crashes (their monitors keep them); a start re-adopts the running tasks a previous
//! run left.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_edge::AwsError;
use nimbus_logs::LogStore;
use nimbus_storage::{Expect, StoreError, WriteBatch};
use serde_json::{Value, json};

use crate::credentials::{Grants, TaskRoles, image_puller};
use crate::error::{client, cluster_not_found, internal, invalid};
use crate::images::{Image, Images, read_image_file};
use crate::network::{Attachment, HostPorts, Networks, PortMapping};
use crate::placement::Placement;
use crate::runner::{Container, Handle, Launch, Netns, Runner};
use crate::{CLUSTERS, Ecs, agent, decode, now, taskdefs};

pub(crate) const TASKS: &str = "ecs.tasks";
/// How long a stopped container gets after SIGTERM before SIGKILL, unless its
/// definition says otherwise.
const DEFAULT_STOP_TIMEOUT: u64 = 30;

/// What runs tasks on this node.
pub struct Node {
    pub images: Arc<Images>,
    pub runner: Arc<Runner>,
    pub logs: Arc<LogStore>,
    /// Task roles, and the edge address containers fetch their credentials from.
    pub roles: Option<(Arc<dyn TaskRoles>, std::net::SocketAddr)>,
    pub grants: Arc<Grants>,
    /// The bridge and awsvpc network modes, when the CNI plugins are installed (else
    /// why not).
    pub networks: Result<Arc<Networks>, String>,
    ports: HostPorts,
    /// The host ports each task holds.
    held: Mutex<HashMap<String, Vec<PortMapping>>>,
    /// Running containers by task id: how to signal them.
    running: Mutex<HashMap<String, Vec<(Handle, u64)>>>,
    /// Tasks being stopped, whose containers are not restarted.
    stopping: Mutex<HashSet<String>>,
}

impl Node {
    pub fn new(
        images: Arc<Images>,
        runner: Arc<Runner>,
        logs: Arc<LogStore>,
        roles: Option<(Arc<dyn TaskRoles>, std::net::SocketAddr)>,
        networks: Result<Arc<Networks>, String>,
    ) -> Self {
        Self {
            images,
            runner,
            logs,
            roles,
            grants: Arc::new(Grants::default()),
            networks,
            ports: HostPorts::default(),
            held: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashSet::new()),
        }
    }

    /// Takes the host ports a task's containers ask for, all or none.
    pub(crate) fn reserve_ports(
        &self,
        id: &str,
        definition: &Value,
    ) -> Result<Vec<(String, PortMapping)>, String> {
        let wanted = wanted_ports(definition);
        let specs: Vec<(u16, u16, String)> = wanted.iter().map(|(_, w)| w.clone()).collect();
        let taken = self.ports.reserve(&specs)?;
        let ports: Vec<(String, PortMapping)> = wanted
            .into_iter()
            .map(|(name, _)| name)
            .zip(taken)
            .collect();
        self.held.lock().expect("held ports").insert(
            id.to_owned(),
            ports.iter().map(|(_, p)| p.clone()).collect(),
        );
        Ok(ports)
    }

    /// Whether this node took a task up (its host ports are held until it stops).
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.held.lock().expect("held ports").contains_key(id)
    }

    pub(crate) fn is_running(&self, id: &str) -> bool {
        self.running.lock().expect("running tasks").contains_key(id)
    }

    pub(crate) fn is_stopping(&self, id: &str) -> bool {
        self.stopping.lock().expect("stopping tasks").contains(id)
    }

    /// Gives back the host ports a task held.
    fn release_ports(&self, id: &str) {
        if let Some(ports) = self.held.lock().expect("held ports").remove(id) {
            self.ports.release(&ports);
        }
    }

    /// Tears down the networks of a task and of its containers.
    async fn detach_networks(&self, id: &str) {
        if let Ok(networks) = &self.networks {
            networks.detach_task(id).await;
        }
    }
}

/// The host ports a task's containers ask for: their container ports in host mode,
/// their host ports (0 for any) in bridge mode, none otherwise.
fn wanted_ports(definition: &Value) -> Vec<(String, (u16, u16, String))> {
    let mode = definition["networkMode"].as_str().unwrap_or("bridge");
    if !matches!(mode, "host" | "bridge") {
        return Vec::new();
    }
    let mut wanted = Vec::new();
    for container in definition["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = container["name"].as_str().unwrap_or_default();
        for mapping in container["portMappings"].as_array().into_iter().flatten() {
            let port = |key: &str| mapping[key].as_u64().unwrap_or(0) as u16;
            let container_port = port("containerPort");
            let host = if mode == "host" {
                container_port
            } else {
                port("hostPort")
            };
            let protocol = mapping["protocol"].as_str().unwrap_or("tcp").to_owned();
            wanted.push((name.to_owned(), (host, container_port, protocol)));
        }
    }
    wanted
}

/// The `networkBindings` of a container.
fn bindings(ports: &[(String, PortMapping)], name: &str) -> Value {
    ports
        .iter()
        .filter(|(container, _)| container == name)
        .map(|(_, p)| {
            json!({
                "bindIP": "0.0.0.0",
                "containerPort": p.container,
                "hostPort": p.host,
                "protocol": p.protocol,
            })
        })
        .collect()
}

fn task_key(cluster: &str, id: &str) -> String {
    format!("{cluster}/{id}")
}

/// The numeric uid and gid a `user` setting names, reading the image's /etc/passwd
/// and /etc/group for names, inside the image's own layers only.
fn user_ids(user: Option<&str>, image: &Image) -> Result<(u32, u32), String> {
    let Some(user) = user else {
        return Ok((0, 0));
    };
    let (name, group) = user.split_once(':').unwrap_or((user, ""));
    let lookup = |file: &str, wanted: &str| -> Result<Option<(u32, u32)>, String> {
        let Some(bytes) = read_image_file(&image.layers, &format!("/etc/{file}"), 4 << 20)? else {
            return Ok(None);
        };
        Ok(String::from_utf8_lossy(&bytes).lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&wanted)).then(|| {
                (
                    fields.get(2).and_then(|v| v.parse().ok()).unwrap_or(0),
                    fields.get(3).and_then(|v| v.parse().ok()).unwrap_or(0),
                )
            })
        }))
    };
    let (uid, primary) = match name.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => lookup("passwd", name)?.ok_or_else(|| format!("unable to find user {name}"))?,
    };
    let gid = match group {
        "" => primary,
        group => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("group", group)?
                .map(|(gid, _)| gid)
                .ok_or_else(|| format!("unable to find group {group}"))?,
        },
    };
    Ok((uid, gid))
}

/// A health check's command as the runtime runs it: `CMD` runs its arguments,
/// `CMD-SHELL` runs one string with the container's `/bin/sh -c`.
fn health_command(command: &[Value]) -> Vec<String> {
    let parts: Vec<String> = command
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    match parts.split_first() {
        Some((kind, rest)) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), rest.join(" ")]
        }
        Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
        _ => parts,
    }
}

/// A container's health-check timing, with ECS's defaults.
struct HealthSettings {
    interval: Duration,
    timeout: Duration,
    retries: u32,
    start_period: Duration,
}

impl HealthSettings {
    fn of(check: &Value) -> Self {
        let secs =
            |name: &str, default: u64| Duration::from_secs(check[name].as_u64().unwrap_or(default));
        Self {
            interval: secs("interval", 30),
            timeout: secs("timeout", 5),
            retries: check["retries"].as_u64().unwrap_or(3) as u32,
            start_period: secs("startPeriod", 0),
        }
    }
}

fn env_pairs(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| {
            Some(format!(
                "{}={}",
                pair["name"].as_str()?,
                pair["value"].as_str().unwrap_or_default()
            ))
        })
        .collect()
}

/// A container's `restartPolicy`: it is run again when it exits, unless with an
/// ignored exit code or before it has run for the attempt period.
struct RestartPolicy {
    ignored: Vec<i64>,
    period: Duration,
}

impl RestartPolicy {
    fn of(definition: &Value) -> Option<Self> {
        let policy = &definition["restartPolicy"];
        (policy["enabled"] == true).then(|| Self {
            ignored: policy["ignoredExitCodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect(),
            period: Duration::from_secs(policy["restartAttemptPeriod"].as_u64().unwrap_or(300)),
        })
    }

    fn restarts(&self, code: i32, ran: Duration) -> bool {
        !self.ignored.contains(&i64::from(code)) && ran >= self.period
    }
}

/// A task's started containers, each waited for from its start: which have ended
/// with which code, and a channel of ends in the order they happen.
struct Watch {
    node: Arc<Node>,
    task: String,
    ended: Arc<Mutex<HashMap<String, i32>>>,
    ended_signal: Arc<tokio::sync::Notify>,
    exits: tokio::sync::mpsc::UnboundedSender<bool>,
    exits_rx: tokio::sync::mpsc::UnboundedReceiver<bool>,
    waiting: Vec<tokio::task::JoinHandle<Container>>,
}

impl Watch {
    fn new(node: Arc<Node>, task: &str) -> Self {
        let (exits, exits_rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            node,
            task: task.to_owned(),
            ended: Arc::default(),
            ended_signal: Arc::default(),
            exits,
            exits_rx,
            waiting: Vec::new(),
        }
    }

    fn add(
        &mut self,
        name: String,
        essential: bool,
        mut container: Container,
        restart: Option<RestartPolicy>,
    ) {
        let (ended, ended_signal, exits) = (
            self.ended.clone(),
            self.ended_signal.clone(),
            self.exits.clone(),
        );
        let (node, task) = (self.node.clone(), self.task.clone());
        self.waiting.push(tokio::spawn(async move {
            let code = loop {
                let started = std::time::Instant::now();
                let code = container.wait().await;
                let stopping = node.stopping.lock().expect("stopping tasks").contains(&task);
                if stopping || !restart.as_ref().is_some_and(|r| r.restarts(code, started.elapsed())) {
                    break code;
                }
                match node.runner.restart(&mut container).await {
                    Ok(()) => tracing::info!(%task, container = %name, code, "restarted a container"),
                    Err(err) => {
                        tracing::warn!(%task, container = %name, error = %err, "restarting a container failed");
                        break code;
                    }
                }
            };
            ended.lock().expect("ended containers").insert(name, code);
            ended_signal.notify_waiters();
            let _ = exits.send(essential);
            container
        }));
    }

    /// The exit codes of the containers that have ended.
    fn ended(&self) -> HashMap<String, i32> {
        self.ended.lock().expect("ended containers").clone()
    }

    /// Whether the next container to end is essential; `None` once all have ended.
    async fn next_exit(&mut self) -> Option<bool> {
        if self.ended.lock().expect("ended containers").len() == self.waiting.len()
            && self.exits_rx.is_empty()
        {
            return None;
        }
        self.exits_rx.recv().await
    }

    /// Removes every container once it has ended; their exit codes.
    async fn remove_all(self) -> HashMap<String, i32> {
        for waiting in self.waiting {
            if let Ok(container) = waiting.await {
                container.remove().await;
            }
        }
        self.ended.lock().expect("ended containers").clone()
    }
}

impl Ecs {
    /// Whether any node can run tasks: this one, or another worker.
    fn runs_tasks(&self) -> Result<(), AwsError> {
        let me = self.cluster.me().name.as_str();
        let elsewhere = self
            .cluster
            .nodes()
            .iter()
            .any(|n| n.active() && n.worker() && n.name != me);
        if self.node.is_none() && !elsewhere {
            return Err(client(
                "This nimbus server runs no tasks (no OCI runtime), and no other node does.",
            ));
        }
        Ok(())
    }

    /// Applies `edit` to a stored task, retrying when another change lands first. A
    /// change of its `lastStatus` is committed with the event that reports it.
    fn update_task(
        &self,
        cluster: &str,
        id: &str,
        edit: impl Fn(&mut Value),
    ) -> Result<Value, StoreError> {
        loop {
            let Some(record) = self.meta.get(TASKS, &task_key(cluster, id))? else {
                return Ok(Value::Null);
            };
            let mut task: Value = serde_json::from_slice(&record.value).unwrap_or(Value::Null);
            let before = task["lastStatus"].clone();
            edit(&mut task);
            task["version"] = (task["version"].as_i64().unwrap_or(0) + 1).into();
            let mut batch = WriteBatch::new().put(
                TASKS,
                &task_key(cluster, id),
                task.to_string().into_bytes(),
                Expect::Version(record.version),
            );
            let events = self
                .events
                .as_ref()
                .filter(|_| task["lastStatus"] != before);
            for (table, key, value) in events.map(|e| e.staged(&task)).unwrap_or_default() {
                batch = batch.put(&table, &key, value, Expect::Absent);
            }
            match self.meta.commit(batch) {
                Ok(()) => {
                    if let Some(events) = events {
                        events.wake();
                    }
                    return Ok(task);
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
    }

    pub(crate) fn cluster_exists(&self, cluster: &str) -> Result<(), AwsError> {
        self.meta
            .get(CLUSTERS, cluster)
            .map_err(internal)?
            .map(|_| ())
            .ok_or_else(cluster_not_found)
    }

    pub fn run_task(self: &Arc<Self>, input: &Value) -> Result<Value, AwsError> {
        self.runs_tasks()?;
        let local = self.node.clone();
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let reference = input["taskDefinition"]
            .as_str()
            .ok_or_else(|| invalid("taskDefinition is required"))?;
        let (family, revision, _, stored) = self.find_taskdef(reference)?;
        let definition = stored["definition"].clone();
        let count = input["count"].as_i64().unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(invalid("count must be between 1 and 10"));
        }
        let launch_type = input["launchType"].as_str().unwrap_or("EC2");
        let network_mode = definition["networkMode"].as_str().unwrap_or("bridge");
        if launch_type == "FARGATE" && network_mode != "awsvpc" {
            return Err(invalid(
                "Task definition does not support launch_type FARGATE.",
            ));
        }
        if network_mode == "awsvpc"
            && input["networkConfiguration"]["awsvpcConfiguration"]["subnets"]
                .as_array()
                .is_none_or(Vec::is_empty)
        {
            return Err(invalid(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ));
        }
        if let ("bridge" | "awsvpc", Some(Err(reason))) =
            (network_mode, local.as_ref().map(|node| &node.networks))
        {
            return Err(invalid(format!(
                "networkMode {network_mode} is not available on this node: {reason}"
            )));
        }
        let group = input["group"]
            .as_str()
            .map_or(format!("family:{family}"), str::to_owned);
        let mut placement =
            Placement::of(&input["placementConstraints"], &input["placementStrategy"])
                .map_err(invalid)?;
        placement.taken = self
            .tasks_of(&cluster)?
            .iter()
            .filter(|t| t["lastStatus"] != "STOPPED" && t["group"] == group.as_str())
            .filter_map(|t| t["containerInstanceArn"].as_str().map(str::to_owned))
            .collect();
        let overrides = &input["overrides"]["containerOverrides"];
        let (reserved_cpu, reserved_memory) = crate::instances::reservation(&definition);
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        let me = self.cluster.me().name.clone();
        for _ in 0..count {
            // Fargate capacity is nimbus's to choose, outside the instances: this node
            // when it runs tasks, else the worker running the fewest.
            let (instance, node_name, zone) = if launch_type == "FARGATE" {
                match self.fargate_node(local.is_some())? {
                    Some((node, zone)) => (None, node, zone),
                    None => {
                        failures.push(json!({ "arn": self.arn(&format!("cluster/{cluster}")), "reason": "AGENT" }));
                        continue;
                    }
                }
            } else {
                match self.place(&cluster, reserved_cpu, reserved_memory, &placement)? {
                    Ok(placed) => {
                        placement.taken.push(placed.arn.clone());
                        (Some(placed.arn), placed.node, placed.zone)
                    }
                    Err(failure) => {
                        failures.push(failure);
                        continue;
                    }
                }
            };
            let id = uuid_hex();
            // Host ports are held by the node that runs the task: here now, or by
            // its node when it takes the task up.
            let here = local.as_ref().filter(|_| node_name == me);
            let ports = match here {
                Some(node) => match node.reserve_ports(&id, &definition) {
                    Ok(ports) => ports,
                    Err(reason) => {
                        failures.push(json!({ "arn": instance, "reason": reason }));
                        continue;
                    }
                },
                None => Vec::new(),
            };
            let task_arn = self.arn(&format!("task/{cluster}/{id}"));
            let containers: Vec<Value> = definition["containerDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    json!({
                        "containerArn": self.arn(&format!("container/{cluster}/{id}/{}", uuid_hex())),
                        "taskArn": task_arn,
                        "name": c["name"],
                        "image": c["image"],
                        "lastStatus": "PENDING",
                        "networkBindings": [],
                        "networkInterfaces": [],
                        "cpu": c["cpu"].as_i64().unwrap_or(0).to_string(),
                        "memory": c["memory"].as_i64().map(|m| m.to_string()),
                        "memoryReservation": c["memoryReservation"].as_i64().map(|m| m.to_string()),
                    })
                })
                .collect();
            let task = json!({
                "taskArn": task_arn,
                "clusterArn": self.arn(&format!("cluster/{cluster}")),
                "taskDefinitionArn": self.arn(&format!("task-definition/{family}:{revision}")),
                "lastStatus": "PROVISIONING",
                "desiredStatus": "RUNNING",
                "launchType": launch_type,
                "cpu": definition["cpu"],
                "memory": definition["memory"],
                "createdAt": now(),
                "group": group,
                "startedBy": input["startedBy"],
                "containers": containers,
                "overrides": input["overrides"].as_object().map_or(json!({"containerOverrides": []}), |o| Value::Object(o.clone())),
                "tags": input["tags"].as_array().cloned().unwrap_or_default(),
                "version": 1,
                "attachments": if network_mode == "awsvpc" {
                    json!([{
                        "id": uuid_dashed(),
                        "type": "ElasticNetworkInterface",
                        "status": "PRECREATED",
                        "details": [{
                            "name": "subnetId",
                            "value": input["networkConfiguration"]["awsvpcConfiguration"]["subnets"][0],
                        }],
                    }])
                } else {
                    json!([])
                },
                "availabilityZone": zone,
                "containerInstanceArn": instance,
                "node": node_name,
                "reservedCpu": reserved_cpu,
                "reservedMemory": reserved_memory,
                "connectivity": "CONNECTED",
                "platformVersion": (launch_type == "FARGATE").then_some("1.4.0"),
                "capacityProviderName": (launch_type == "FARGATE").then_some("FARGATE"),
            });
            let mut batch = WriteBatch::new().put(
                TASKS,
                &task_key(&cluster, &id),
                task.to_string().into_bytes(),
                Expect::Absent,
            );
            if here.is_none() {
                batch = batch.put(
                    agent::ASSIGNMENTS,
                    &agent::assignment_key(&node_name, &cluster, &id),
                    agent::START.to_vec(),
                    Expect::Anything,
                );
            }
            if let Err(err) = self.meta.commit(batch) {
                if let Some(node) = here {
                    node.release_ports(&id);
                }
                return Err(internal(err));
            }
            tasks.push(task);
            if let Some(node) = here {
                self.spawn_lifecycle(node, &cluster, &id, &definition, overrides, ports);
            }
        }
        Ok(json!({ "tasks": tasks, "failures": failures }))
    }

    /// Starts a placed task's containers on this node.
    pub(crate) fn spawn_lifecycle(
        self: &Arc<Self>,
        node: &Arc<Node>,
        cluster: &str,
        id: &str,
        definition: &Value,
        overrides: &Value,
        ports: Vec<(String, PortMapping)>,
    ) {
        let ecs = self.clone();
        let (node, cluster, id, definition, overrides) = (
            node.clone(),
            cluster.to_owned(),
            id.to_owned(),
            definition.clone(),
            overrides.clone(),
        );
        tokio::spawn(async move {
            ecs.lifecycle(node, cluster, id, definition, overrides, ports)
                .await
        });
    }

    /// Where a Fargate task runs: this node when it is a worker, else the active
    /// worker running the fewest tasks; (node, zone).
    fn fargate_node(&self, here: bool) -> Result<Option<(String, String)>, AwsError> {
        let me = self.cluster.me();
        if here {
            return Ok(Some((me.name.clone(), me.zone.clone())));
        }
        let live: Vec<Value> = self
            .meta
            .scan_all(TASKS, "")
            .map_err(internal)?
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.value).ok())
            .filter(|t| t["lastStatus"] != "STOPPED")
            .collect();
        Ok(self
            .cluster
            .nodes()
            .into_iter()
            .filter(|n| n.active() && n.worker())
            .min_by_key(|n| live.iter().filter(|t| t["node"] == n.name.as_str()).count())
            .map(|n| (n.name, n.zone)))
    }

    /// StartTask: a task on each container instance named, which must be the
    /// cluster's; placed as RunTask places.
    pub fn start_task(self: &Arc<Self>, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let named: Vec<&str> = input["containerInstances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if named.is_empty() || named.len() > 10 {
            return Err(invalid(
                "containerInstances must name 1 to 10 container instances",
            ));
        }
        let known: Vec<String> = self
            .instances(&cluster)?
            .iter()
            .map(|(id, _)| self.instance_arn(&cluster, id))
            .collect();
        let (found, missing): (Vec<&str>, Vec<&str>) = named.into_iter().partition(|arn| {
            known
                .iter()
                .any(|k| k == arn || k.rsplit('/').next() == Some(arn))
        });
        let mut failures: Vec<Value> = missing
            .iter()
            .map(|arn| json!({ "arn": arn, "reason": "MISSING" }))
            .collect();
        if found.is_empty() {
            return Ok(json!({ "tasks": [], "failures": failures }));
        }
        let mut run = input.clone();
        run["count"] = found.len().into();
        run["launchType"] = "EC2".into();
        let mut started = self.run_task(&run)?;
        if let Some(more) = started["failures"].as_array() {
            failures.extend(more.iter().cloned());
        }
        started["failures"] = failures.into();
        Ok(started)
    }

    /// Marks a task stopped with `code` and `reason`, its containers with it.
    pub(crate) fn stopped(
        &self,
        cluster: &str,
        id: &str,
        code: &str,
        reason: &str,
        exits: &HashMap<String, i32>,
    ) {
        if let Some(node) = &self.node {
            node.grants.revoke(id);
            node.release_ports(id);
            node.stopping.lock().expect("stopping tasks").remove(id);
        }
        let result = self.update_task(cluster, id, |task| {
            let at = now();
            task["lastStatus"] = "STOPPED".into();
            task["desiredStatus"] = "STOPPED".into();
            task["stoppedAt"] = at.into();
            task["executionStoppedAt"] = at.into();
            if task["stopCode"].is_null() {
                task["stopCode"] = code.into();
                task["stoppedReason"] = reason.into();
            }
            for container in task["containers"].as_array_mut().into_iter().flatten() {
                container["lastStatus"] = "STOPPED".into();
                let name = container["name"].as_str().unwrap_or_default().to_owned();
                if let Some(code) = exits.get(&name) {
                    container["exitCode"] = (*code).into();
                } else if container["reason"].is_null() {
                    container["reason"] = reason.into();
                }
            }
        });
        if let Err(err) = result {
            tracing::error!(task = %id, error = %err, "recording a stopped task failed");
        }
    }

    async fn lifecycle(
        self: Arc<Self>,
        node: Arc<Node>,
        cluster: String,
        id: String,
        definition: Value,
        overrides: Value,
        ports: Vec<(String, PortMapping)>,
    ) {
        let set = |edit: &dyn Fn(&mut Value)| {
            if let Err(err) = self.update_task(&cluster, &id, edit) {
                tracing::error!(task = %id, error = %err, "updating a task failed");
            }
        };
        set(&|task| {
            task["lastStatus"] = "PENDING".into();
            task["pullStartedAt"] = now().into();
        });
        let containers: Vec<Value> = definition["containerDefinitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Pull (unpack) every image first, as the task's execution role: a task
        // starts whole or not at all.
        let roles = node.roles.as_ref().map(|(roles, _)| roles.as_ref());
        let puller = match image_puller(roles, &id, &definition) {
            Ok(puller) => puller,
            Err(err) => {
                let reason = format!("ResourceInitializationError: {err}");
                self.stopped(&cluster, &id, "TaskFailedToStart", &reason, &HashMap::new());
                return;
            }
        };
        let mut images = Vec::new();
        for container in &containers {
            let reference = container["image"].as_str().unwrap_or_default().to_owned();
            let (images_node, puller) = (node.clone(), puller.clone());
            let pulled = tokio::task::spawn_blocking(move || match &puller {
                Some(puller) => images_node.images.pull_as(puller, &reference),
                None => images_node.images.pull(&reference),
            })
            .await
            .unwrap_or_else(|err| Err(err.to_string()));
            match pulled {
                Ok(image) => images.push(image),
                Err(err) => {
                    let reason = format!(
                        "CannotPullContainerError: pull image manifest has been retried 1 time(s): {}: {err}",
                        container["image"].as_str().unwrap_or_default()
                    );
                    self.stopped(&cluster, &id, "TaskFailedToStart", &reason, &HashMap::new());
                    return;
                }
            }
        }
        set(&|task| task["pullStoppedAt"] = now().into());
        let role_env = match self.task_role_env(&node, &id, &definition) {
            Ok(env) => env,
            Err(err) => {
                self.stopped(&cluster, &id, "TaskFailedToStart", &err, &HashMap::new());
                return;
            }
        };
        node.running
            .lock()
            .expect("running tasks")
            .insert(id.clone(), Vec::new());
        // Each container is waited for from its start, so later containers can depend
        // on it ending (COMPLETE, SUCCESS).
        let mut watch = Watch::new(node.clone(), &id);
        let mode = definition["networkMode"].as_str().unwrap_or("bridge");
        let mut failure = None;
        let mut task_netns = PathBuf::new();
        if mode == "awsvpc" {
            match self.attach_task_network(&node, &cluster, &id).await {
                Ok(netns) => task_netns = netns,
                Err(err) => failure = Some(format!("ResourceInitializationError: {err}")),
            }
        }
        let mut images: HashMap<String, Image> = containers
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
            .zip(images)
            .collect();
        // A cycle cannot be registered; should one be stored, start in order.
        let order =
            taskdefs::start_order(&containers).unwrap_or_else(|| containers.iter().collect());
        for container in order {
            if failure.is_some() {
                break;
            }
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            if let Err(reason) = self
                .await_dependencies(&cluster, &id, container, &watch)
                .await
            {
                failure = Some(reason);
                break;
            }
            let override_of = overrides
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| o["name"] == name.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            let image = images.remove(&name).expect("one image per container");
            let network = match mode {
                "host" => Netns::Host,
                "awsvpc" => Netns::Path(task_netns.clone()),
                "bridge" => {
                    let mapped = ports
                        .iter()
                        .filter(|(owner, _)| *owner == name)
                        .map(|(_, p)| p.clone())
                        .collect();
                    let attached = match &node.networks {
                        Ok(networks) => networks.attach(&format!("{id}-{name}"), mapped).await,
                        Err(reason) => Err(reason.clone()),
                    };
                    match attached {
                        Ok(attachment) => Netns::Path(attachment.netns),
                        Err(err) => {
                            failure = Some(format!("CannotStartContainerError: {err}"));
                            break;
                        }
                    }
                }
                _ => Netns::None,
            };
            let launched = match self.launch(
                &node,
                &id,
                &definition,
                container,
                &override_of,
                image,
                &role_env,
                network,
            ) {
                Ok(launch) => node.runner.start(launch).await,
                Err(err) => Err(err),
            };
            let started = match launched {
                Ok(started) => started,
                Err(err) => {
                    failure = Some(format!("CannotStartContainerError: {err}"));
                    break;
                }
            };
            self.watch_container(&node, &cluster, &id, container, started, &mut watch);
        }
        if let Some(reason) = failure {
            self.signal_task(&node, &id);
            node.running.lock().expect("running tasks").remove(&id);
            let exits = watch.remove_all().await;
            node.detach_networks(&id).await;
            self.stopped(&cluster, &id, "TaskFailedToStart", &reason, &exits);
            return;
        }
        let ended_now = watch.ended();
        set(&|task| {
            // A task StopTask reached while it started stays STOPPING.
            if task["desiredStatus"] != "STOPPED" {
                task["lastStatus"] = "RUNNING".into();
            }
            task["startedAt"] = now().into();
            task["connectivityAt"] = now().into();
            for container in task["containers"].as_array_mut().into_iter().flatten() {
                let name = container["name"].as_str().unwrap_or_default().to_owned();
                container["runtimeId"] = format!("{id}-{name}").into();
                if mode != "awsvpc" {
                    container["networkBindings"] = bindings(&ports, &name);
                }
                // An init container that already ran to completion shows as stopped.
                match ended_now.get(&name) {
                    Some(code) => {
                        container["lastStatus"] = "STOPPED".into();
                        container["exitCode"] = (*code).into();
                    }
                    None => container["lastStatus"] = "RUNNING".into(),
                }
            }
        });
        // A StopTask that came while the containers were starting had none to signal.
        if node.stopping.lock().expect("stopping tasks").contains(&id) {
            self.signal_task(&node, &id);
        }
        self.supervise(node, cluster, id, watch).await;
    }

    /// The network namespace of an awsvpc task, recorded as its elastic network
    /// interface: address, MAC, and the containers' network interfaces.
    async fn attach_task_network(
        &self,
        node: &Node,
        cluster: &str,
        id: &str,
    ) -> Result<PathBuf, String> {
        let networks = node.networks.as_ref().map_err(Clone::clone)?;
        let Attachment { netns, ip, mac, .. } = networks.attach(id, Vec::new()).await?;
        let interface = format!("eni-{}", &uuid_hex()[..17]);
        let dns = format!("ip-{}.ec2.internal", ip.replace('.', "-"));
        self.update_task(cluster, id, |task| {
            // RunTask recorded the interface as PRECREATED.
            let Some(attachment) = task["attachments"].get_mut(0) else {
                return;
            };
            attachment["status"] = "ATTACHED".into();
            if let Some(details) = attachment["details"].as_array_mut() {
                details.extend([
                    json!({ "name": "networkInterfaceId", "value": interface }),
                    json!({ "name": "macAddress", "value": mac }),
                    json!({ "name": "privateDnsName", "value": dns }),
                    json!({ "name": "privateIPv4Address", "value": ip }),
                ]);
            }
            let attachment_id = attachment["id"].clone();
            for container in task["containers"].as_array_mut().into_iter().flatten() {
                container["networkInterfaces"] = json!([{
                    "attachmentId": attachment_id,
                    "privateIpv4Address": ip,
                }]);
            }
        })
        .map_err(|err| err.to_string())?;
        Ok(netns)
    }

    /// Registers a started container with its task: how to stop it, its health check
    /// and the wait for its end.
    fn watch_container(
        self: &Arc<Self>,
        node: &Arc<Node>,
        cluster: &str,
        id: &str,
        definition: &Value,
        container: Container,
        watch: &mut Watch,
    ) {
        let name = definition["name"].as_str().unwrap_or_default().to_owned();
        let handle = container.handle();
        let timeout = definition["stopTimeout"]
            .as_u64()
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        if let Some(list) = node.running.lock().expect("running tasks").get_mut(id) {
            list.push((handle.clone(), timeout));
        }
        let check = &definition["healthCheck"];
        if let Some(command) = check["command"].as_array() {
            let ecs = self.clone();
            let (cluster, id, node, name) = (
                cluster.to_owned(),
                id.to_owned(),
                node.clone(),
                name.clone(),
            );
            let args = health_command(command);
            let settings = HealthSettings::of(check);
            tokio::spawn(async move {
                ecs.watch_health(node, cluster, id, name, handle, args, settings)
                    .await
            });
        }
        watch.add(
            name,
            definition["essential"] != false,
            container,
            RestartPolicy::of(definition),
        );
    }

    /// Follows a started task until its containers have ended: the first essential
    /// container to end stops the others; then the task is recorded as stopped.
    async fn supervise(
        self: Arc<Self>,
        node: Arc<Node>,
        cluster: String,
        id: String,
        mut watch: Watch,
    ) {
        let set = |edit: &dyn Fn(&mut Value)| {
            if let Err(err) = self.update_task(&cluster, &id, edit) {
                tracing::error!(task = %id, error = %err, "updating a task failed");
            }
        };
        let mut stopping = false;
        while let Some(essential) = watch.next_exit().await {
            if essential && !stopping {
                stopping = true;
                let reason = "Essential container in task exited";
                set(&|task| {
                    if task["stopCode"].is_null() {
                        task["stopCode"] = "EssentialContainerExited".into();
                        task["stoppedReason"] = reason.into();
                    }
                    task["lastStatus"] = "DEACTIVATING".into();
                    task["desiredStatus"] = "STOPPED".into();
                });
                self.signal_task(&node, &id);
            }
        }
        node.running.lock().expect("running tasks").remove(&id);
        let exits = watch.remove_all().await;
        node.detach_networks(&id).await;
        self.stopped(
            &cluster,
            &id,
            "EssentialContainerExited",
            "Essential container in task exited",
            &exits,
        );
    }

    /// Waits until every `dependsOn` condition of `container` holds: START (its
    /// dependency started before it), COMPLETE (ended), SUCCESS (ended with 0), HEALTHY
    /// (passing its health check); the reason the task cannot start otherwise.
    async fn await_dependencies(
        &self,
        cluster: &str,
        id: &str,
        container: &Value,
        watch: &Watch,
    ) -> Result<(), String> {
        let limit = Duration::from_secs(container["startTimeout"].as_u64().unwrap_or(180));
        let deadline = tokio::time::Instant::now() + limit;
        for dependency in container["dependsOn"].as_array().into_iter().flatten() {
            let other = dependency["containerName"].as_str().unwrap_or_default();
            let condition = dependency["condition"].as_str().unwrap_or("START");
            loop {
                let exit = watch.ended().get(other).copied();
                let satisfied = match (condition, exit) {
                    ("START", _) => true,
                    ("COMPLETE", Some(_)) | ("SUCCESS", Some(0)) => true,
                    ("SUCCESS", Some(code)) => {
                        return Err(format!(
                            "CannotStartContainerError: dependency {other} exited with code {code}, not 0"
                        ));
                    }
                    ("HEALTHY", Some(_)) => {
                        return Err(format!(
                            "CannotStartContainerError: dependency {other} ended before it was healthy"
                        ));
                    }
                    ("HEALTHY", None) => self
                        .meta
                        .get(TASKS, &task_key(cluster, id))
                        .ok()
                        .flatten()
                        .and_then(|record| serde_json::from_slice::<Value>(&record.value).ok())
                        .is_some_and(|task| {
                            task["containers"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|c| c["name"] == other && c["healthStatus"] == "HEALTHY")
                        }),
                    _ => false,
                };
                if satisfied {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!(
                        "DependencyTimeout: {other} did not reach {condition} within {}s",
                        limit.as_secs()
                    ));
                }
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), watch.ended_signal.notified())
                        .await;
            }
        }
        Ok(())
    }

    /// The environment that points a task's SDKs at its role's credentials, after
    /// checking ECS tasks may assume the role; none without a task role.
    fn task_role_env(
        &self,
        node: &Node,
        id: &str,
        definition: &Value,
    ) -> Result<Vec<String>, String> {
        let Some(role) = definition["taskRoleArn"].as_str() else {
            return Ok(Vec::new());
        };
        let Some((roles, edge)) = &node.roles else {
            return Err(
                "ResourceInitializationError: this server gives tasks no role credentials"
                    .to_owned(),
            );
        };
        roles.check(role).map_err(|reason| {
            format!("ResourceInitializationError: unable to assume the task role: {reason}")
        })?;
        let token = node.grants.grant(id, role);
        Ok(vec![
            format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:{}/_nimbus/ecs/credentials/{id}",
                edge.port()
            ),
            format!("AWS_CONTAINER_AUTHORIZATION_TOKEN={token}"),
        ])
    }

    /// Runs a container's health check until its task stops, recording HEALTHY or
    /// UNHEALTHY (after `retries` failures in a row, once the start period is over)
    /// on the container and the task.
    #[allow(clippy::too_many_arguments)]
    async fn watch_health(
        self: Arc<Self>,
        node: Arc<Node>,
        cluster: String,
        id: String,
        name: String,
        handle: Handle,
        args: Vec<String>,
        settings: HealthSettings,
    ) {
        let started = std::time::Instant::now();
        let mut failures = 0;
        loop {
            tokio::time::sleep(settings.interval).await;
            if !node
                .running
                .lock()
                .expect("running tasks")
                .contains_key(&id)
            {
                return;
            }
            let healthy = handle.exec(&args, settings.timeout).await;
            failures = if healthy { 0 } else { failures + 1 };
            let status = if healthy {
                "HEALTHY"
            } else if failures >= settings.retries && started.elapsed() >= settings.start_period {
                "UNHEALTHY"
            } else {
                continue;
            };
            let result = self.update_task(&cluster, &id, |task| {
                for container in task["containers"].as_array_mut().into_iter().flatten() {
                    if container["name"] == name.as_str() {
                        container["healthStatus"] = status.into();
                    }
                }
                let statuses: Vec<&str> = task["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["healthStatus"].as_str())
                    .collect();
                task["healthStatus"] = if statuses.contains(&"UNHEALTHY") {
                    "UNHEALTHY"
                } else if !statuses.is_empty() && statuses.iter().all(|s| *s == "HEALTHY") {
                    "HEALTHY"
                } else {
                    "UNKNOWN"
                }
                .into();
            });
            if let Err(err) = result {
                tracing::error!(task = %id, error = %err, "recording a health check failed");
            }
            self.wake.notify_one();
        }
    }

    /// SIGTERM to every container of a task, SIGKILL after each one's stop timeout.
    pub(crate) fn signal_task(&self, node: &Arc<Node>, id: &str) {
        node.stopping
            .lock()
            .expect("stopping tasks")
            .insert(id.to_owned());
        let containers = node
            .running
            .lock()
            .expect("running tasks")
            .get(id)
            .cloned()
            .unwrap_or_default();
        for (handle, timeout) in containers {
            tokio::spawn(async move {
                handle.signal("TERM").await;
                tokio::time::sleep(Duration::from_secs(timeout)).await;
                handle.signal("KILL").await;
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        node: &Node,
        id: &str,
        definition: &Value,
        container: &Value,
        overrides: &Value,
        image: Image,
        role_env: &[String],
        network: Netns,
    ) -> Result<Launch, String> {
        let name = container["name"].as_str().unwrap_or_default();
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
        };
        let entry = strings(&container["entryPoint"]);
        let command = strings(&overrides["command"]).or_else(|| strings(&container["command"]));
        let mut args = entry.clone().unwrap_or_else(|| image.entrypoint.clone());
        match command {
            Some(command) => args.extend(command),
            // An entry point of the task definition replaces the image's command too.
            None if entry.is_none() => args.extend(image.cmd.clone()),
            None => {}
        }
        if args.is_empty() {
            return Err(format!("container {name} has no command to run"));
        }
        let mut env =
            vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
        env.extend(image.env.clone());
        env.push(format!("AWS_REGION={}", self.region));
        env.push(format!("AWS_DEFAULT_REGION={}", self.region));
        env.push("AWS_EXECUTION_ENV=AWS_ECS_EC2".to_owned());
        env.extend(role_env.iter().cloned());
        env.extend(env_pairs(&container["environment"]));
        env.extend(env_pairs(&overrides["environment"]));
        let (uid, gid) = user_ids(container["user"].as_str().or(image.user.as_deref()), &image)?;
        let cwd = container["workingDirectory"]
            .as_str()
            .map(str::to_owned)
            .or(image.working_dir.clone())
            .unwrap_or_else(|| "/".to_owned());
        let memory_mb = container["memory"]
            .as_i64()
            .or_else(|| definition["memory"].as_str().and_then(|m| m.parse().ok()));
        let log = match container.get("logConfiguration") {
            Some(config) if config["logDriver"] == "awslogs" => {
                let options = &config["options"];
                let group = options["awslogs-group"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let exists = node
                    .logs
                    .group(&group)
                    .map_err(|err| err.to_string())?
                    .is_some();
                if !exists {
                    if options["awslogs-create-group"] == "true" {
                        node.logs
                            .create_group(&group, Default::default())
                            .map_err(|err| err.to_string())?;
                    } else {
                        return Err(format!(
                            "ResourceInitializationError: failed to validate logger args: The specified log group does not exist: {group}"
                        ));
                    }
                }
                let stream = match options["awslogs-stream-prefix"].as_str() {
                    Some(prefix) => format!("{prefix}/{name}/{id}"),
                    None => format!("{name}/{id}"),
                };
                Some((group, stream))
            }
            _ => None,
        };
        Ok(Launch {
            id: format!("{id}-{name}"),
            image,
            args,
            env,
            cwd,
            uid,
            gid,
            memory_mb,
            memory_reservation_mb: container["memoryReservation"].as_i64(),
            network,
            log,
        })
    }

    /// The cluster and id a `task` parameter (an id or ARN) names.
    pub(crate) fn task_ref(&self, cluster: Option<&str>, task: &str) -> (String, String) {
        if let Some((_, rest)) = task.split_once(":task/") {
            if let Some((cluster, id)) = rest.split_once('/') {
                return (cluster.to_owned(), id.to_owned());
            }
            return (self.cluster_name(cluster).to_owned(), rest.to_owned());
        }
        (self.cluster_name(cluster).to_owned(), task.to_owned())
    }

    pub fn stop_task(&self, input: &Value) -> Result<Value, AwsError> {
        let task = input["task"]
            .as_str()
            .ok_or_else(|| invalid("task is required"))?;
        let (cluster, id) = self.task_ref(input["cluster"].as_str(), task);
        self.cluster_exists(&cluster)?;
        let reason = input["reason"].as_str().unwrap_or("Task stopped by user");
        self.stop(&cluster, &id, reason, "UserInitiated")
    }

    /// Stops a task with the reason and stop code the stopper gives.
    pub(crate) fn stop(
        &self,
        cluster: &str,
        id: &str,
        reason: &str,
        code: &str,
    ) -> Result<Value, AwsError> {
        let (cluster, id, reason) = (cluster.to_owned(), id.to_owned(), reason.to_owned());
        let current = self
            .meta
            .get(TASKS, &task_key(&cluster, &id))
            .map_err(internal)?
            .ok_or_else(|| invalid("The referenced task was not found."))?;
        let current = decode(&current.value)?;
        if current["lastStatus"] == "STOPPED" {
            return Ok(json!({ "task": current }));
        }
        let task = self
            .update_task(&cluster, &id, |task| {
                task["desiredStatus"] = "STOPPED".into();
                task["lastStatus"] = "STOPPING".into();
                task["stoppingAt"] = now().into();
                if task["stopCode"].is_null() {
                    task["stopCode"] = code.into();
                    task["stoppedReason"] = reason.clone().into();
                }
            })
            .map_err(internal)?;
        // The node running the task stops it: this one, or another told through an
        // assignment.
        match task["node"].as_str() {
            Some(other) if other != self.cluster.me().name => self
                .meta
                .commit(WriteBatch::new().put(
                    agent::ASSIGNMENTS,
                    &agent::assignment_key(other, &cluster, &id),
                    agent::STOP.to_vec(),
                    Expect::Anything,
                ))
                .map_err(internal)?,
            _ => {
                if let Some(node) = &self.node {
                    self.signal_task(node, &id);
                }
            }
        }
        Ok(json!({ "task": task }))
    }

    pub fn describe_tasks(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let (mut tasks, mut failures) = (Vec::new(), Vec::new());
        for task in input["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let (task_cluster, id) = self.task_ref(Some(&cluster), task);
            match self.meta.get(TASKS, &task_key(&task_cluster, &id)).map_err(internal)? {
                Some(record) => tasks.push(decode(&record.value)?),
                None => failures.push(json!({ "arn": self.arn(&format!("task/{task_cluster}/{id}")), "reason": "MISSING" })),
            }
        }
        Ok(json!({ "tasks": tasks, "failures": failures }))
    }

    /// Every task record of a cluster.
    pub(crate) fn tasks_of(&self, cluster: &str) -> Result<Vec<Value>, AwsError> {
        self.meta
            .scan_all(TASKS, &format!("{cluster}/"))
            .map_err(internal)?
            .iter()
            .map(|record| decode(&record.value))
            .collect()
    }

    pub fn list_tasks(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let desired = input["desiredStatus"].as_str().unwrap_or("RUNNING");
        let family = input["family"].as_str();
        let started_by = input["startedBy"].as_str();
        let service = input["serviceName"]
            .as_str()
            .map(|name| format!("service:{}", name.rsplit('/').next().unwrap_or(name)));
        let mut arns = Vec::new();
        for record in self
            .meta
            .scan_all(TASKS, &format!("{cluster}/"))
            .map_err(internal)?
        {
            let task = decode(&record.value)?;
            let family_ok = family.is_none_or(|f| task["group"] == format!("family:{f}").as_str());
            let service_ok = service
                .as_ref()
                .is_none_or(|group| task["group"] == group.as_str());
            if task["desiredStatus"] == desired
                && family_ok
                && service_ok
                && started_by.is_none_or(|s| task["startedBy"] == s)
            {
                arns.push(task["taskArn"].clone());
            }
        }
        Ok(json!({ "taskArns": arns }))
    }

    /// Tasks a previous run of nimbus left. A started task whose containers' monitors
    /// still watch them (or recorded their ends) is re-adopted and followed as before;
    /// a task still starting, or with nothing left to adopt, is recorded as stopped.
    /// The containers adopted, which the runner's sweep must keep.
    pub async fn resume_after_restart(self: &Arc<Self>) -> Result<HashSet<String>, AwsError> {
        let mut adopted = HashSet::new();
        for record in self.meta.scan_all(TASKS, "").map_err(internal)? {
            let task = decode(&record.value)?;
            let Some((cluster, id)) = record.key.split_once('/') else {
                continue;
            };
            // Another node's tasks are that node's to resume.
            let mine = task["node"]
                .as_str()
                .is_none_or(|node| node == self.cluster.me().name);
            if task["lastStatus"] == "STOPPED" || !mine {
                continue;
            }
            let started = matches!(
                task["lastStatus"].as_str(),
                Some("RUNNING" | "DEACTIVATING" | "STOPPING")
            );
            let resumed = match (&self.node, started) {
                (Some(node), true) => self.adopt_task(node, cluster, id, &task, &mut adopted),
                _ => false,
            };
            if !resumed {
                let reason = if started {
                    "The task's containers were lost while nimbus was stopped"
                } else {
                    "nimbus restarted while the task was starting"
                };
                self.stopped(cluster, id, "TaskFailedToStart", reason, &HashMap::new());
            }
        }
        if let Some(Ok(networks)) = self.node.as_ref().map(|node| &node.networks) {
            // A task's network is named by the task, a container's by itself.
            let keep: HashSet<String> = adopted
                .iter()
                .flat_map(|runtime_id| {
                    let task = runtime_id.split_once('-').map_or("", |(task, _)| task);
                    [runtime_id.clone(), task.to_owned()]
                })
                .collect();
            networks.sweep(&keep).await;
        }
        Ok(adopted)
    }

    /// Re-adopts the running containers of a started task; whether any was left.
    fn adopt_task(
        self: &Arc<Self>,
        node: &Arc<Node>,
        cluster: &str,
        id: &str,
        task: &Value,
        adopted: &mut HashSet<String>,
    ) -> bool {
        let reference = task["taskDefinitionArn"].as_str().unwrap_or_default();
        let Ok((_, _, _, stored)) = self.find_taskdef(reference) else {
            return false;
        };
        let definition = &stored["definition"];
        node.running
            .lock()
            .expect("running tasks")
            .insert(id.to_owned(), Vec::new());
        let mut watch = Watch::new(node.clone(), id);
        let mut lost_essential = false;
        for container in task["containers"].as_array().into_iter().flatten() {
            if container["lastStatus"] != "RUNNING" {
                continue;
            }
            let name = container["name"].as_str().unwrap_or_default();
            let Some(container_def) = definition["containerDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
            else {
                continue;
            };
            let runtime_id = format!("{id}-{name}");
            let Some(running) = node.runner.adopt(&runtime_id) else {
                lost_essential |= container_def["essential"] != false;
                continue;
            };
            if let Some(role) = definition["taskRoleArn"].as_str()
                && let Some(token) = running
                    .env()
                    .iter()
                    .find_map(|v| v.strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN="))
            {
                node.grants.restore(id, role, token);
            }
            adopted.insert(runtime_id);
            self.watch_container(node, cluster, id, container_def, running, &mut watch);
        }
        if watch.waiting.is_empty() {
            node.running.lock().expect("running tasks").remove(id);
            return false;
        }
        let held: Vec<PortMapping> = task["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["networkBindings"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| {
                Some(PortMapping {
                    host: b["hostPort"].as_u64()? as u16,
                    container: b["containerPort"].as_u64()? as u16,
                    protocol: b["protocol"].as_str().unwrap_or("tcp").to_owned(),
                })
            })
            .collect();
        node.ports.hold(&held);
        node.held
            .lock()
            .expect("held ports")
            .insert(id.to_owned(), held);
        if lost_essential || task["desiredStatus"] == "STOPPED" {
            if lost_essential {
                let _ = self.update_task(cluster, id, |task| {
                    if task["stopCode"].is_null() {
                        task["stopCode"] = "EssentialContainerExited".into();
                        task["stoppedReason"] =
                            "An essential container was lost while nimbus was stopped".into();
                    }
                });
            }
            self.signal_task(node, id);
        }
        let ecs = self.clone();
        let (node, cluster, id) = (node.clone(), cluster.to_owned(), id.to_owned());
        tokio::spawn(async move { ecs.supervise(node, cluster, id, watch).await });
        true
    }
}

/// A uuid in its usual form, as ECS names attachments.
fn uuid_dashed() -> String {
    let hex = uuid_hex();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A random number, for spreading choices.
pub(crate) fn random_u16() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    u16::from_le_bytes(bytes)
}

fn uuid_hex() -> String {
    let mut bytes = [0u8; 16];
    // An id from the OS's randomness; all zeros only if there is none at all.
    let _ = getrandom::fill(&mut bytes);
    format!("{:032x}", u128::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_skip_ignored_codes_and_short_runs() {
        assert!(RestartPolicy::of(&json!({})).is_none());
        assert!(RestartPolicy::of(&json!({"restartPolicy": {"enabled": false}})).is_none());
        let policy = RestartPolicy::of(&json!({"restartPolicy": {
            "enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60,
        }}))
        .unwrap();
        assert!(policy.restarts(1, Duration::from_secs(61)));
        assert!(!policy.restarts(0, Duration::from_secs(61)), "ignored code");
        assert!(
            !policy.restarts(1, Duration::from_secs(59)),
            "ran too briefly"
        );
        let default = RestartPolicy::of(&json!({"restartPolicy": {"enabled": true}})).unwrap();
        assert_eq!(default.period, Duration::from_secs(300));
    }

    #[test]
    fn host_ports_follow_the_network_mode() {
        let definition = |mode: &str| {
            json!({"networkMode": mode, "containerDefinitions": [{"name": "web", "portMappings": [
                {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "udp"}]}]})
        };
        let wanted = |mode: &str| -> Vec<(u16, u16, String)> {
            wanted_ports(&definition(mode))
                .into_iter()
                .map(|(_, w)| w)
                .collect()
        };
        assert_eq!(
            wanted("bridge"),
            [(8080, 80, "tcp".to_owned()), (0, 53, "udp".to_owned())]
        );
        assert_eq!(
            wanted("host"),
            [(80, 80, "tcp".to_owned()), (53, 53, "udp".to_owned())]
        );
        assert!(wanted("awsvpc").is_empty());
    }
}
