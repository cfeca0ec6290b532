//! Services: a desired count of tasks kept running by a reconciler, deployments that
//! roll from one task definition to the next within `minimumHealthyPercent` and
//! `maximumPercent`, the deployment circuit breaker with rollback, and service events.
//!
//! Records: `ecs.services/<cluster>/<name>`. A service's tasks carry
//! `startedBy: ecs-svc/<deployment id>` and `group: service:<name>`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, StoreError, WriteBatch};
use serde_json::{Value, json};

use crate::error::{internal, invalid};
use crate::{Ecs, decode, now};

pub(crate) const SERVICES: &str = "ecs.services";
const MAX_EVENTS: usize = 100;
/// How often services are reconciled when nothing wakes the reconciler.
const TICK: Duration = Duration::from_millis(500);

fn service_key(cluster: &str, name: &str) -> String {
    format!("{cluster}/{name}")
}

fn deployment_id() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    format!(
        "ecs-svc/{}",
        u64::from_le_bytes(bytes) % 10_000_000_000_000_000_000
    )
}

/// Failed tasks after which a deployment's circuit breaker trips: half the desired
/// count, at least 3 and at most 200, as ECS computes it.
fn failure_threshold(desired: i64) -> i64 {
    (desired / 2).clamp(3, 200)
}

/// The reconciler's memory of stopped tasks it has already counted, and of lost nodes
/// whose tasks it has already stopped.
#[derive(Default)]
pub struct Reconciler {
    counted: Mutex<HashSet<String>>,
    /// Lost nodes whose tasks were all recorded stopped, and since when the list
    /// holds: looked at again once a minute, in case a task reached one late.
    pub(crate) lost_handled: Mutex<(Option<std::time::Instant>, HashSet<String>)>,
}

fn event(service: &mut Value, message: String) {
    let events = service["events"].as_array_mut();
    let Some(events) = events else {
        service["events"] = json!([]);
        return event(service, message);
    };
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    events.insert(
        0,
        json!({ "id": format!("{:032x}", u128::from_le_bytes(bytes)), "createdAt": now(), "message": message }),
    );
    events.truncate(MAX_EVENTS);
}

impl Ecs {
    fn service_arn(&self, cluster: &str, name: &str) -> String {
        self.arn(&format!("service/{cluster}/{name}"))
    }

    fn deployment(&self, taskdef: &str, desired: i64, status: &str) -> Value {
        json!({
            "id": deployment_id(),
            "status": status,
            "taskDefinition": taskdef,
            "desiredCount": desired,
            "pendingCount": 0,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": now(),
            "updatedAt": now(),
            "launchType": "EC2",
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": "ECS deployment in progress.",
        })
    }

    fn resolve_taskdef_arn(&self, reference: &str) -> Result<String, AwsError> {
        let (family, revision, _, _) = self.find_taskdef(reference)?;
        Ok(self.arn(&format!("task-definition/{family}:{revision}")))
    }

    pub fn create_service(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let name = input["serviceName"].as_str().unwrap_or_default().to_owned();
        let valid = crate::taskdefs::is_name(&name, 255);
        if !valid {
            return Err(invalid(
                "serviceName must be 1 to 255 letters, digits, hyphens and underscores.",
            ));
        }
        let taskdef = self.resolve_taskdef_arn(
            input["taskDefinition"]
                .as_str()
                .ok_or_else(|| invalid("taskDefinition is required"))?,
        )?;
        let scheduling = input["schedulingStrategy"].as_str().unwrap_or("REPLICA");
        if scheduling != "REPLICA" && scheduling != "DAEMON" {
            return Err(invalid(format!("Invalid schedulingStrategy {scheduling}")));
        }
        let daemon = scheduling == "DAEMON";
        if daemon && !input["desiredCount"].is_null() {
            return Err(invalid(
                "The daemon scheduling strategy does not support a desired count for services.",
            ));
        }
        // A DAEMON service runs one task on every active instance.
        let desired = if daemon {
            self.active_instances(&cluster)?
        } else {
            input["desiredCount"].as_i64().unwrap_or(0)
        };
        if desired < 0 {
            return Err(invalid("desiredCount must not be negative"));
        }
        let configuration = &input["deploymentConfiguration"];
        let min_healthy = configuration["minimumHealthyPercent"]
            .as_i64()
            .unwrap_or(if daemon { 0 } else { 100 });
        let max_percent = configuration["maximumPercent"]
            .as_i64()
            .unwrap_or(if daemon { 100 } else { 200 });
        if !(0..=100).contains(&min_healthy) || max_percent < 100 {
            return Err(invalid(
                "minimumHealthyPercent must be 0 to 100 and maximumPercent at least 100",
            ));
        }
        crate::placement::Placement::of(
            &input["placementConstraints"],
            &input["placementStrategy"],
        )
        .map_err(invalid)?;
        let mut service = json!({
            "serviceArn": self.service_arn(&cluster, &name),
            "serviceName": name,
            "clusterArn": self.arn(&format!("cluster/{cluster}")),
            "taskDefinition": taskdef,
            "desiredCount": desired,
            "runningCount": 0,
            "pendingCount": 0,
            "launchType": input["launchType"].as_str().unwrap_or("EC2"),
            "status": "ACTIVE",
            "schedulingStrategy": scheduling,
            "deploymentConfiguration": {
                "minimumHealthyPercent": min_healthy,
                "maximumPercent": max_percent,
                "deploymentCircuitBreaker": {
                    "enable": configuration["deploymentCircuitBreaker"]["enable"].as_bool().unwrap_or(false),
                    "rollback": configuration["deploymentCircuitBreaker"]["rollback"].as_bool().unwrap_or(false),
                },
            },
            "deployments": [self.deployment(&taskdef, desired, "PRIMARY")],
            "events": [],
            "createdAt": now(),
            "tags": input["tags"].as_array().cloned().unwrap_or_default(),
            "placementConstraints": input["placementConstraints"].as_array().cloned().unwrap_or_default(),
            "placementStrategy": input["placementStrategy"].as_array().cloned().unwrap_or_default(),
            "networkConfiguration": input["networkConfiguration"],
        });
        event(&mut service, format!("(service {name}) was created."));
        match self.meta.commit(WriteBatch::new().put(
            SERVICES,
            &service_key(&cluster, &name),
            service.to_string().into_bytes(),
            Expect::Absent,
        )) {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(invalid("Creation of service was not idempotent."));
            }
            Err(err) => return Err(internal(err)),
        }
        self.wake.notify_one();
        Ok(json!({ "service": service }))
    }

    fn load_service(&self, cluster: &str, name: &str) -> Result<(u64, Value), AwsError> {
        let name = name.rsplit('/').next().unwrap_or(name);
        let record = self
            .meta
            .get(SERVICES, &service_key(cluster, name))
            .map_err(internal)?
            .ok_or_else(|| {
                AwsError::new(
                    http::StatusCode::BAD_REQUEST,
                    "ServiceNotFoundException",
                    "Service not found.",
                )
            })?;
        Ok((record.version, decode(&record.value)?))
    }

    fn save_service(
        &self,
        cluster: &str,
        service: &Value,
        expect: Expect,
    ) -> Result<(), StoreError> {
        let name = service["serviceName"].as_str().unwrap_or_default();
        self.meta.commit(WriteBatch::new().put(
            SERVICES,
            &service_key(cluster, name),
            service.to_string().into_bytes(),
            expect,
        ))
    }

    pub fn update_service(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let name = input["service"]
            .as_str()
            .ok_or_else(|| invalid("service is required"))?;
        loop {
            let (version, mut service) = self.load_service(&cluster, name)?;
            if service["status"] != "ACTIVE" {
                return Err(AwsError::new(
                    http::StatusCode::BAD_REQUEST,
                    "ServiceNotActiveException",
                    "Service was not ACTIVE.",
                ));
            }
            if let Some(desired) = input["desiredCount"].as_i64() {
                if service["schedulingStrategy"] == "DAEMON" && service["status"] == "ACTIVE" {
                    return Err(invalid(
                        "The daemon scheduling strategy does not support a desired count for services.",
                    ));
                }
                if desired < 0 {
                    return Err(invalid("desiredCount must not be negative"));
                }
                service["desiredCount"] = desired.into();
                for deployment in service["deployments"].as_array_mut().into_iter().flatten() {
                    if deployment["status"] == "PRIMARY" {
                        deployment["desiredCount"] = desired.into();
                    }
                }
            }
            if let Some(configuration) = input["deploymentConfiguration"].as_object() {
                for (key, value) in configuration {
                    service["deploymentConfiguration"][key] = value.clone();
                }
            }
            let changed_taskdef = match input["taskDefinition"].as_str() {
                Some(reference) => Some(self.resolve_taskdef_arn(reference)?),
                None => None,
            };
            if changed_taskdef.is_some() || input["forceNewDeployment"] == true {
                let taskdef = changed_taskdef.unwrap_or_else(|| {
                    service["taskDefinition"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                });
                self.start_deployment(&mut service, &taskdef);
            }
            match self.save_service(&cluster, &service, Expect::Version(version)) {
                Ok(()) => {
                    self.wake.notify_one();
                    return Ok(json!({ "service": service }));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// Makes `taskdef` the service's PRIMARY deployment; the previous ones become
    /// ACTIVE and are drained as the new one comes up.
    fn start_deployment(&self, service: &mut Value, taskdef: &str) {
        let desired = service["desiredCount"].as_i64().unwrap_or(0);
        for deployment in service["deployments"].as_array_mut().into_iter().flatten() {
            if deployment["status"] == "PRIMARY" {
                deployment["status"] = "ACTIVE".into();
            }
        }
        let deployment = self.deployment(taskdef, desired, "PRIMARY");
        let id = deployment["id"].as_str().unwrap_or_default().to_owned();
        if let Some(deployments) = service["deployments"].as_array_mut() {
            deployments.insert(0, deployment);
        }
        service["taskDefinition"] = taskdef.into();
        let name = service["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        event(
            service,
            format!("(service {name}) has started deployment {id} of {taskdef}."),
        );
    }

    pub fn describe_services(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let (mut services, mut failures) = (Vec::new(), Vec::new());
        for name in input["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            match self.load_service(&cluster, name) {
                Ok((_, service)) => services.push(service),
                Err(_) => failures
                    .push(json!({ "arn": self.service_arn(&cluster, name), "reason": "MISSING" })),
            }
        }
        Ok(json!({ "services": services, "failures": failures }))
    }

    pub fn list_services(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let mut arns = Vec::new();
        for record in self
            .meta
            .scan_all(SERVICES, &format!("{cluster}/"))
            .map_err(internal)?
        {
            let service = decode(&record.value)?;
            if service["status"] == "ACTIVE" {
                arns.push(service["serviceArn"].clone());
            }
        }
        Ok(json!({ "serviceArns": arns }))
    }

    pub fn delete_service(&self, input: &Value) -> Result<Value, AwsError> {
        let cluster = self.cluster_name(input["cluster"].as_str()).to_owned();
        self.cluster_exists(&cluster)?;
        let name = input["service"]
            .as_str()
            .ok_or_else(|| invalid("service is required"))?;
        let (version, mut service) = self.load_service(&cluster, name)?;
        if service["desiredCount"].as_i64().unwrap_or(0) > 0 && input["force"] != true {
            return Err(invalid(
                "The service cannot be stopped while it is scaled above 0.",
            ));
        }
        service["status"] = "DRAINING".into();
        service["desiredCount"] = 0.into();
        // Forced: every deployment scales to nothing.
        for deployment in service["deployments"].as_array_mut().into_iter().flatten() {
            deployment["desiredCount"] = 0.into();
        }
        self.save_service(&cluster, &service, Expect::Version(version))
            .map_err(internal)?;
        self.wake.notify_one();
        Ok(json!({ "service": service }))
    }

    /// Keeps every service's tasks as its deployments want them; runs until the
    /// server stops.
    pub async fn reconcile_forever(self: Arc<Self>) {
        loop {
            let ecs = self.clone();
            let pass = move || {
                if !ecs.lease.held() {
                    return Ok(());
                }
                ecs.stop_tasks_of_lost_nodes()?;
                ecs.reconcile()
            };
            if let Ok(Err(err)) = tokio::task::spawn_blocking(pass).await {
                tracing::error!(error = %err.message, "reconciling services failed");
            }
            let _ = tokio::time::timeout(TICK, self.wake.notified()).await;
        }
    }

    fn reconcile(self: &Arc<Self>) -> Result<(), AwsError> {
        for record in self.meta.scan_all(SERVICES, "").map_err(internal)? {
            let Some((cluster, _)) = record.key.split_once('/') else {
                continue;
            };
            let cluster = cluster.to_owned();
            let mut service = decode(&record.value)?;
            if service["status"] == "INACTIVE" {
                continue;
            }
            let name = service["serviceName"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let tasks = self.service_tasks(&cluster, &name)?;
            let changed = self.reconcile_service(&cluster, &mut service, &tasks)?;
            if changed {
                match self.save_service(&cluster, &service, Expect::Version(record.version)) {
                    Ok(()) | Err(StoreError::Conflict { .. }) => {}
                    Err(err) => return Err(internal(err)),
                }
            }
        }
        Ok(())
    }

    /// A service's tasks: (task id, deployment id, last status, desired status, stop code).
    fn service_tasks(&self, cluster: &str, name: &str) -> Result<Vec<Value>, AwsError> {
        let group = format!("service:{name}");
        Ok(self
            .tasks_of(cluster)?
            .into_iter()
            .filter(|task| task["group"] == group.as_str())
            .collect())
    }

    fn reconcile_service(
        self: &Arc<Self>,
        cluster: &str,
        service: &mut Value,
        tasks: &[Value],
    ) -> Result<bool, AwsError> {
        let before = service.clone();
        let name = service["serviceName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if service["schedulingStrategy"] == "DAEMON" && service["status"] == "ACTIVE" {
            // Instances drained or activated change how many a daemon runs.
            let active = self.active_instances(cluster)?;
            service["desiredCount"] = active.into();
            if let Some(primary) = service["deployments"]
                .as_array_mut()
                .and_then(|d| d.iter_mut().find(|d| d["status"] == "PRIMARY"))
            {
                primary["desiredCount"] = active.into();
            }
        }
        let desired = service["desiredCount"].as_i64().unwrap_or(0);
        let min_healthy = service["deploymentConfiguration"]["minimumHealthyPercent"]
            .as_i64()
            .unwrap_or(100);
        let max_percent = service["deploymentConfiguration"]["maximumPercent"]
            .as_i64()
            .unwrap_or(200);
        let breaker = service["deploymentConfiguration"]["deploymentCircuitBreaker"].clone();
        let live = |t: &&Value| t["desiredStatus"] == "RUNNING" && t["lastStatus"] != "STOPPED";
        let running = |t: &&Value| t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING";
        let deployments: Vec<Value> = service["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(primary) = deployments
            .iter()
            .find(|d| d["status"] == "PRIMARY")
            .cloned()
        else {
            return Ok(false);
        };
        let primary_id = primary["id"].as_str().unwrap_or_default().to_owned();
        let of = |id: &str| {
            tasks
                .iter()
                .filter(move |t| t["startedBy"] == id)
                .collect::<Vec<_>>()
        };
        // Count tasks of the primary that stopped on their own: failures.
        let mut failed_now = 0;
        {
            let mut counted = self.reconciler.counted.lock().expect("counted tasks");
            for task in of(&primary_id) {
                let id = task["taskArn"].as_str().unwrap_or_default().to_owned();
                if task["lastStatus"] == "STOPPED"
                    && task["stopCode"] != "ServiceSchedulerInitiated"
                    && task["stopCode"] != "TerminationNotice"
                    && counted.insert(id)
                {
                    failed_now += 1;
                }
            }
        }
        if failed_now > 0 {
            let failed = primary["failedTasks"].as_i64().unwrap_or(0) + failed_now;
            set_deployment(service, &primary_id, |d| d["failedTasks"] = failed.into());
            event(
                service,
                format!(
                    "(service {name}) has {failed_now} stopped task(s) that failed; replacing them."
                ),
            );
            let never_ran = of(&primary_id)
                .iter()
                .all(|t| t["startedAt"].is_null() || t["lastStatus"] == "STOPPED");
            if breaker["enable"] == true && failed >= failure_threshold(desired) && never_ran {
                set_deployment(service, &primary_id, |d| {
                    d["rolloutState"] = "FAILED".into();
                    d["rolloutStateReason"] =
                        "ECS deployment circuit breaker: tasks failed to start.".into();
                });
                event(
                    service,
                    format!(
                        "(service {name}) deployment {primary_id} deployment failed: tasks failed to start."
                    ),
                );
                let previous = deployments
                    .iter()
                    .find(|d| d["status"] == "ACTIVE")
                    .and_then(|d| d["taskDefinition"].as_str())
                    .map(str::to_owned);
                match previous {
                    Some(previous) if breaker["rollback"] == true => {
                        event(
                            service,
                            format!("(service {name}) rolling back to {previous}."),
                        );
                        // The failed deployment goes; the rollback is a new PRIMARY.
                        if let Some(list) = service["deployments"].as_array_mut() {
                            list.retain(|d| d["id"] != primary_id.as_str());
                        }
                        self.start_deployment(service, &previous);
                    }
                    _ => {
                        // Without rollback the failed deployment stops launching tasks.
                        set_deployment(service, &primary_id, |d| d["desiredCount"] = 0.into());
                    }
                }
                return Ok(*service != before);
            }
        }
        let primary = service["deployments"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["status"] == "PRIMARY"))
            .cloned()
            .unwrap_or(primary);
        let primary_id = primary["id"].as_str().unwrap_or_default().to_owned();
        let target = primary["desiredCount"].as_i64().unwrap_or(desired);
        let all_live: Vec<&Value> = tasks.iter().filter(live).collect();
        // Tasks on a DRAINING instance are replaced as an old deployment's are: new
        // ones start elsewhere first, and they stop while enough stay healthy.
        let draining: HashSet<String> = self
            .instances(cluster)?
            .iter()
            .filter(|(_, record)| record["status"] == "DRAINING")
            .map(|(id, _)| self.instance_arn(cluster, id))
            .collect();
        let current = |t: &Value| {
            t["startedBy"] == primary_id.as_str()
                && t["containerInstanceArn"]
                    .as_str()
                    .is_none_or(|arn| !draining.contains(arn))
        };
        let primary_live: Vec<&Value> = all_live.iter().copied().filter(|t| current(t)).collect();
        let old_live: Vec<&Value> = all_live.iter().copied().filter(|t| !current(t)).collect();
        let healthy = tasks.iter().filter(running).count() as i64;
        let max_total = desired * max_percent / 100;
        let min_running = (desired * min_healthy + 99) / 100;
        // Start new tasks up to the target, within maximumPercent.
        let room = (max_total.max(target) - all_live.len() as i64).max(0);
        let to_start = (target - primary_live.len() as i64).clamp(0, room);
        if to_start > 0 {
            let taskdef = primary["taskDefinition"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let input = json!({
                "cluster": cluster,
                "taskDefinition": taskdef,
                "count": to_start.min(10),
                "startedBy": primary_id,
                "group": format!("service:{name}"),
                "launchType": service["launchType"],
                "placementConstraints": service["placementConstraints"],
                "placementStrategy": service["placementStrategy"],
                "networkConfiguration": service["networkConfiguration"],
            });
            match self.run_task(&input) {
                Ok(placed) => {
                    let started = placed["tasks"].as_array().map_or(0, Vec::len);
                    if started > 0 {
                        event(
                            service,
                            format!("(service {name}) has started {started} tasks."),
                        );
                    }
                    if let Some(failure) = placed["failures"].as_array().and_then(|f| f.first()) {
                        let reason = failure["reason"].as_str().unwrap_or_default().to_owned();
                        event(
                            service,
                            format!(
                                "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: {reason}"
                            ),
                        );
                    }
                }
                Err(err) => event(
                    service,
                    format!(
                        "(service {name}) was unable to place a task. Reason: {}",
                        err.message
                    ),
                ),
            }
        }
        // Stop old tasks while enough stay healthy, then primary tasks beyond the target.
        let mut stoppable = healthy - min_running;
        let mut extra_primary = primary_live.len() as i64 - target;
        let mut stops: Vec<&Value> = Vec::new();
        for task in old_live.iter().chain(primary_live.iter().rev()) {
            let is_primary = current(task);
            if is_primary && extra_primary <= 0 {
                continue;
            }
            if task["lastStatus"] == "RUNNING" {
                if stoppable <= 0 {
                    continue;
                }
                stoppable -= 1;
            }
            if is_primary {
                extra_primary -= 1;
            }
            stops.push(task);
        }
        for task in &stops {
            let id = task["taskArn"]
                .as_str()
                .and_then(|arn| arn.rsplit('/').next())
                .unwrap_or_default();
            let reason = format!("Scaling activity initiated by (deployment {primary_id})");
            let _ = self.stop(cluster, id, &reason, "ServiceSchedulerInitiated");
        }
        if !stops.is_empty() {
            event(
                service,
                format!(
                    "(service {name}) has stopped {} running tasks.",
                    stops.len()
                ),
            );
        }
        // Tasks that failed their health checks are replaced.
        for task in all_live.iter().filter(|t| t["healthStatus"] == "UNHEALTHY") {
            let id = task["taskArn"]
                .as_str()
                .and_then(|arn| arn.rsplit('/').next())
                .unwrap_or_default();
            let _ = self.stop(
                cluster,
                id,
                "Task failed container health checks",
                "TaskFailedToStart",
            );
            event(
                service,
                format!(
                    "(service {name}) deregistered 1 task that failed its container health checks."
                ),
            );
        }
        // Counts, and the end of a deployment.
        let counts: HashMap<String, (i64, i64)> = deployments
            .iter()
            .map(|d| {
                let id = d["id"].as_str().unwrap_or_default().to_owned();
                let mine: Vec<&Value> = tasks
                    .iter()
                    .filter(|t| t["startedBy"] == id.as_str())
                    .collect();
                let running_count = mine.iter().filter(|t| running(t)).count() as i64;
                let pending_count = mine
                    .iter()
                    .filter(|t| live(t) && t["lastStatus"] != "RUNNING")
                    .count() as i64;
                (id, (running_count, pending_count))
            })
            .collect();
        for deployment in service["deployments"].as_array_mut().into_iter().flatten() {
            let id = deployment["id"].as_str().unwrap_or_default().to_owned();
            let (running_count, pending_count) = counts.get(&id).copied().unwrap_or((0, 0));
            deployment["runningCount"] = running_count.into();
            deployment["pendingCount"] = pending_count.into();
        }
        service["runningCount"] = (healthy).into();
        service["pendingCount"] = (all_live.len() as i64 - healthy).max(0).into();
        let steady = old_live.is_empty()
            && counts
                .get(&primary_id)
                .is_some_and(|(r, p)| *r == target && *p == 0);
        if steady {
            let mut finished = false;
            if let Some(list) = service["deployments"].as_array_mut() {
                list.retain(|d| d["status"] == "PRIMARY");
                for d in list.iter_mut() {
                    if d["rolloutState"] == "IN_PROGRESS" {
                        d["rolloutState"] = "COMPLETED".into();
                        d["rolloutStateReason"] = "ECS deployment completed.".into();
                        finished = true;
                    }
                }
            }
            if finished {
                event(
                    service,
                    format!("(service {name}) deployment {primary_id} deployment completed."),
                );
                event(
                    service,
                    format!("(service {name}) has reached a steady state."),
                );
            }
        }
        if service["status"] == "DRAINING" && all_live.is_empty() {
            service["status"] = "INACTIVE".into();
        }
        Ok(*service != before)
    }
}

fn set_deployment(service: &mut Value, id: &str, edit: impl Fn(&mut Value)) {
    for deployment in service["deployments"].as_array_mut().into_iter().flatten() {
        if deployment["id"] == id {
            edit(deployment);
            deployment["updatedAt"] = now().into();
        }
    }
}
