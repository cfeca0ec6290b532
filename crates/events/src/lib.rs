//! EventBridge: event buses, rules that match events by pattern, and targets that
//! receive what matched. `PutEvents` commits one outbox record (`events.outbox`, a
//! [`nimbus_cluster::outbox::Outbox`]) per matching rule target in a single batch, so
//! every accepted event reaches its targets at least once, whatever crashes; the
//! holder of the `events-delivery` lease hands each to its target through
//! [`Targets`], retried with backoff within the target's `RetryPolicy`, then written
//! to its dead-letter queue.
//!
//! Records: `events.buses/<name>` (the `default` bus always exists) and
//! `events.rules/<bus>/<name>` (pattern, state and targets). `api.rs` is the json-1.1
//! API; `transform.rs` what a target receives; `archives.rs` archives and replays.

pub mod api;
pub mod archives;
pub mod transform;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use nimbus_cluster::outbox::{Handled, Outbox, now_ms};
use nimbus_edge::AwsError;
use nimbus_scheduler::expression::{Expression, time_zone};
use nimbus_sns::Undelivered;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use api::EventsApi;

pub const BUSES: &str = "events.buses";
pub const RULES: &str = "events.rules";
pub const OUTBOX: &str = "events.outbox";
/// Each scheduled rule's next firing: `events.fires/<bus>/<name>`.
pub const FIRES: &str = "events.fires";
/// How often the lease holder looks for scheduled rules that are due.
const TICK: Duration = Duration::from_secs(1);
pub const DEFAULT_BUS: &str = "default";
/// A target's retry policy unless it sets one: 185 attempts within a day.
const RETRIES: u32 = 185;
const MAX_AGE_S: i64 = 86_400;
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Targets per rule, as EventBridge allows.
const MAX_TARGETS: usize = 5;

/// Where events go: functions, queues, topics and ECS clusters, reached as `events.amazonaws.com`
/// for the rule (their policies must allow it, as on AWS).
pub trait Targets: Send + Sync {
    /// Delivers `input` (with SQS message attributes, for a queue) to `target_arn`.
    fn deliver(
        &self,
        target_arn: &str,
        rule_arn: &str,
        input: &str,
        attributes: &Value,
    ) -> Result<(), Undelivered>;

    /// Runs the tasks an ECS target (`Arn` a cluster, `EcsParameters`) names, as its
    /// `RoleArn`, with `input` as the tasks' overrides.
    fn run_task(&self, target: &Value, rule_arn: &str, input: &str) -> Result<(), Undelivered>;
}

pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

pub fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ResourceNotFoundException",
        message,
    )
}

fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "eventbridge failed");
    AwsError::internal(nimbus_edge::Protocol::Json11)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bus {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created: f64,
    /// Its resource policy (`PutPermission`'s statements), a JSON document.
    #[serde(default)]
    pub policy: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub bus: String,
    pub pattern: Option<String>,
    pub schedule: Option<String>,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    pub description: Option<String>,
    pub role_arn: Option<String>,
    /// Each as `PutTargets` gave it.
    pub targets: Vec<Value>,
}

/// A scheduled rule's firings: counted from `anchor_ms` for `expression`, the next
/// at `next_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Fire {
    expression: String,
    anchor_ms: i64,
    next_ms: Option<i64>,
}

impl Fire {
    fn first(expression: &str, now: i64) -> Self {
        Self {
            expression: expression.to_owned(),
            anchor_ms: now,
            next_ms: None,
        }
    }
}

/// A rule's schedule: `rate(...)` or `cron(...)`, read in UTC (`at(...)` is
/// Scheduler's alone).
fn schedule_of(text: &str) -> Result<Expression, AwsError> {
    match Expression::parse(text) {
        Ok(expression) if !expression.is_one_time() => Ok(expression),
        _ => Err(invalid("Parameter ScheduleExpression is not valid.")),
    }
}

/// One event on its way to one target.
#[derive(Debug, Serialize, Deserialize)]
struct Delivery {
    rule_arn: String,
    target: Value,
    event: Value,
    attempts: u32,
    first_ms: i64,
}

pub struct Events {
    meta: Arc<dyn MetadataStore>,
    pub region: String,
    pub account: String,
    targets: Arc<dyn Targets>,
    outbox: Arc<Outbox>,
}

pub(crate) fn now_seconds() -> f64 {
    now_ms() as f64 / 1000.0
}

fn rule_key(bus: &str, name: &str) -> String {
    format!("{bus}/{name}")
}

fn timestamp(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Events {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        region: &str,
        account: &str,
        targets: Arc<dyn Targets>,
    ) -> Arc<Self> {
        Arc::new(Self {
            outbox: Outbox::new(meta.clone(), OUTBOX),
            meta,
            region: region.to_owned(),
            account: account.to_owned(),
            targets,
        })
    }

    /// Delivers events, fires scheduled rules, replays archives and expires archived
    /// events, on the one node that holds `lease`.
    pub fn start(self: &Arc<Self>, lease: nimbus_cluster::Lease) {
        let events = self.clone();
        self.outbox
            .start(lease.clone(), move |value| events.take_up(value));
        let events = self.clone();
        tokio::spawn(async move {
            // Where the archived events' sweep goes on from, a page a minute.
            let mut swept: Option<String> = None;
            for tick in 0u64.. {
                tokio::time::sleep(TICK).await;
                if !lease.held() {
                    continue;
                }
                let (events, after) = (events.clone(), swept.clone());
                let round = move || {
                    events.fire_due(now_ms())?;
                    if events.replay_step()? {
                        events.outbox.wake();
                    }
                    if tick % 60 == 0 {
                        return events.expire_archived(now_ms(), after).map(Some);
                    }
                    Ok::<_, AwsError>(None)
                };
                match tokio::task::spawn_blocking(round).await {
                    Ok(Ok(Some(next))) => swept = next,
                    Ok(Ok(None)) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err.message, "scheduled rules wait for the next round")
                    }
                    Err(err) => tracing::error!(error = %err, "a scheduled rules round failed"),
                }
            }
        });
    }

    /// Fires every enabled scheduled rule that is due at `now`: one `Scheduled Event`
    /// to each target, committed with the rule's next firing, so a firing is staged
    /// once whatever node does it. A rule's first firing is one period after it is
    /// first seen (for `rate`) or its cron's next time; firings missed while no node
    /// held the lease collapse into one.
    pub fn fire_due(&self, now: i64) -> Result<(), AwsError> {
        let rules = self.rules(DEFAULT_BUS)?;
        let mut fired = false;
        for record in self.meta.scan_all(FIRES, "").map_err(internal)? {
            let gone = !rules
                .iter()
                .any(|r| r.schedule.is_some() && rule_key(&r.bus, &r.name) == record.key);
            if gone {
                let batch =
                    WriteBatch::new().delete(FIRES, &record.key, Expect::Version(record.version));
                let _ = self.meta.commit(batch);
            }
        }
        for rule in rules.iter().filter(|r| r.schedule.is_some()) {
            let text = rule.schedule.as_deref().unwrap_or_default();
            let Ok(expression) = schedule_of(text) else {
                continue;
            };
            let key = rule_key(&rule.bus, &rule.name);
            let current = self.meta.get(FIRES, &key).map_err(internal)?;
            let state: Option<(Fire, u64)> = current.and_then(|record| {
                let fire: Fire = serde_json::from_slice(&record.value).ok()?;
                Some((fire, record.version))
            });
            // A new rule, or a changed expression: counted from now.
            let (fire, expect) = match state {
                Some((fire, version)) if fire.expression == text => {
                    (fire, Expect::Version(version))
                }
                Some((_, version)) => (Fire::first(text, now), Expect::Version(version)),
                None => (Fire::first(text, now), Expect::Absent),
            };
            let Ok(zone) = time_zone(None) else {
                continue;
            };
            let Some(next_ms) = fire
                .next_ms
                .or_else(|| expression.next(now, false, fire.anchor_ms, &zone))
            else {
                continue;
            };
            let mut batch = WriteBatch::new();
            let mut next = Fire {
                next_ms: Some(next_ms),
                ..fire.clone()
            };
            if next_ms <= now {
                if rule.state == "ENABLED" {
                    let event = self.event(
                        "aws.events",
                        "Scheduled Event",
                        json!([self.rule_arn(&rule.bus, &rule.name)]),
                        json!({}),
                        timestamp(next_ms),
                    );
                    for (table, key, value) in self.deliveries_to(rule, &event) {
                        batch = batch.put(&table, &key, value, Expect::Absent);
                    }
                    fired = true;
                }
                next.next_ms = expression.next(now, false, fire.anchor_ms, &zone);
            } else if fire.next_ms.is_some() && !matches!(expect, Expect::Absent) {
                continue;
            }
            let value = serde_json::to_vec(&next).expect("fires serialize");
            batch = batch.put(FIRES, &key, value, expect);
            match self.meta.commit(batch) {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(internal(err)),
            }
        }
        if fired {
            self.outbox.wake();
        }
        Ok(())
    }

    pub fn bus_arn(&self, bus: &str) -> String {
        format!(
            "arn:aws:events:{}:{}:event-bus/{bus}",
            self.region, self.account
        )
    }

    /// A rule's ARN: `rule/<name>` on the default bus, `rule/<bus>/<name>` elsewhere.
    pub fn rule_arn(&self, bus: &str, name: &str) -> String {
        let path = if bus == DEFAULT_BUS {
            name.to_owned()
        } else {
            rule_key(bus, name)
        };
        format!(
            "arn:aws:events:{}:{}:rule/{path}",
            self.region, self.account
        )
    }

    // --- Buses ----------------------------------------------------------------------

    /// A bus and its record's version; the default bus, always there, has a record
    /// only once it has a policy.
    fn bus_record(&self, name: &str) -> Result<(Bus, Option<u64>), AwsError> {
        match self.meta.get(BUSES, name).map_err(internal)? {
            Some(record) => Ok((
                serde_json::from_slice(&record.value).map_err(internal)?,
                Some(record.version),
            )),
            None if name == DEFAULT_BUS => Ok((
                Bus {
                    name: DEFAULT_BUS.to_owned(),
                    description: None,
                    created: 0.0,
                    policy: None,
                },
                None,
            )),
            None => Err(not_found(format!("Event bus {name} does not exist."))),
        }
    }

    pub fn bus(&self, name: &str) -> Result<Bus, AwsError> {
        self.bus_record(name).map(|(bus, _)| bus)
    }

    /// Changes a bus's policy by `change`, retried on a concurrent write.
    pub fn change_policy(
        &self,
        name: &str,
        change: impl Fn(&mut Vec<Value>) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        loop {
            let (mut bus, version) = self.bus_record(name)?;
            let mut statements = bus
                .policy
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .and_then(|p| p["Statement"].as_array().cloned())
                .unwrap_or_default();
            change(&mut statements)?;
            bus.policy = (!statements.is_empty())
                .then(|| json!({ "Version": "2012-10-17", "Statement": statements }).to_string());
            let expect = version.map_or(Expect::Absent, Expect::Version);
            let value = serde_json::to_vec(&bus).expect("buses serialize");
            match self
                .meta
                .commit(WriteBatch::new().put(BUSES, name, value, expect))
            {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    pub fn create_bus(&self, name: &str, description: Option<&str>) -> Result<Bus, AwsError> {
        // No `/` (partner buses' names have one): a bus's rules are found by the
        // prefix `<bus>/`, which must name that bus alone.
        check_name("Name", name, 256)?;
        if name == DEFAULT_BUS {
            return Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "ResourceAlreadyExistsException",
                "Event bus default already exists.",
            ));
        }
        let bus = Bus {
            name: name.to_owned(),
            description: description.map(str::to_owned),
            created: now_seconds(),
            policy: None,
        };
        match self.meta.commit(WriteBatch::new().put(
            BUSES,
            name,
            serde_json::to_vec(&bus).expect("buses serialize"),
            Expect::Absent,
        )) {
            Ok(()) => Ok(bus),
            Err(StoreError::Conflict { .. }) => Err(AwsError::new(
                StatusCode::BAD_REQUEST,
                "ResourceAlreadyExistsException",
                format!("Event bus {name} already exists."),
            )),
            Err(err) => Err(internal(err)),
        }
    }

    /// Deletes a bus and its rules, as EventBridge does.
    pub fn delete_bus(&self, name: &str) -> Result<(), AwsError> {
        if name == DEFAULT_BUS {
            return Err(invalid("Cannot delete event bus default."));
        }
        let mut batch = WriteBatch::new().delete(BUSES, name, Expect::Anything);
        for record in self
            .meta
            .scan_all(RULES, &format!("{name}/"))
            .map_err(internal)?
        {
            batch = batch.delete(RULES, &record.key, Expect::Anything);
        }
        self.meta.commit(batch).map_err(internal)
    }

    pub fn buses(&self) -> Result<Vec<Bus>, AwsError> {
        let mut buses = vec![self.bus(DEFAULT_BUS)?];
        for record in self.meta.scan_all(BUSES, "").map_err(internal)? {
            if record.key != DEFAULT_BUS {
                buses.push(serde_json::from_slice(&record.value).map_err(internal)?);
            }
        }
        Ok(buses)
    }

    // --- Rules ----------------------------------------------------------------------

    pub fn rule(&self, bus: &str, name: &str) -> Result<(Rule, u64), AwsError> {
        let record = self
            .meta
            .get(RULES, &rule_key(bus, name))
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("Rule {name} does not exist on EventBus {bus}.")))?;
        Ok((
            serde_json::from_slice(&record.value).map_err(internal)?,
            record.version,
        ))
    }

    pub fn rules(&self, bus: &str) -> Result<Vec<Rule>, AwsError> {
        self.bus(bus)?;
        self.meta
            .scan_all(RULES, &format!("{bus}/"))
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    fn save(&self, rule: &Rule, expect: Expect) -> Result<(), StoreError> {
        self.meta.commit(WriteBatch::new().put(
            RULES,
            &rule_key(&rule.bus, &rule.name),
            serde_json::to_vec(rule).expect("rules serialize"),
            expect,
        ))
    }

    /// Creates or updates a rule, keeping its targets.
    pub fn put_rule(&self, mut rule: Rule) -> Result<String, AwsError> {
        check_name("Name", &rule.name, 64)?;
        self.bus(&rule.bus)?;
        if let Some(pattern) = &rule.pattern {
            check_pattern(pattern)?;
        }
        if let Some(schedule) = &rule.schedule {
            if rule.bus != DEFAULT_BUS {
                return Err(invalid(
                    "ScheduleExpression is supported only on the default event bus.",
                ));
            }
            schedule_of(schedule)?;
        }
        if rule.pattern.is_none() && rule.schedule.is_none() {
            return Err(invalid(
                "Parameter(s) EventPattern or ScheduleExpression must be specified.",
            ));
        }
        if !matches!(rule.state.as_str(), "ENABLED" | "DISABLED") {
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]",
                rule.state
            )));
        }
        loop {
            let (expect, targets) = match self.rule(&rule.bus, &rule.name) {
                Ok((old, version)) => (Expect::Version(version), old.targets),
                Err(err) if err.code == "ResourceNotFoundException" => (Expect::Absent, Vec::new()),
                Err(err) => return Err(err),
            };
            rule.targets = targets;
            match self.save(&rule, expect) {
                Ok(()) => return Ok(self.rule_arn(&rule.bus, &rule.name)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// Changes a rule by `change`, retried on a concurrent write.
    pub fn update_rule(
        &self,
        bus: &str,
        name: &str,
        change: impl Fn(&mut Rule) -> Result<(), AwsError>,
    ) -> Result<Rule, AwsError> {
        loop {
            let (mut rule, version) = self.rule(bus, name)?;
            change(&mut rule)?;
            match self.save(&rule, Expect::Version(version)) {
                Ok(()) => return Ok(rule),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    pub fn delete_rule(&self, bus: &str, name: &str, force: bool) -> Result<(), AwsError> {
        let (rule, version) = match self.rule(bus, name) {
            Ok(found) => found,
            // Deleting a rule that is not there succeeds, as on AWS.
            Err(err) if err.code == "ResourceNotFoundException" => return Ok(()),
            Err(err) => return Err(err),
        };
        if !rule.targets.is_empty() && !force {
            return Err(invalid("Rule can't be deleted since it has targets."));
        }
        self.meta
            .commit(WriteBatch::new().delete(RULES, &rule_key(bus, name), Expect::Version(version)))
            .map_err(internal)
    }

    /// Adds or replaces targets by id; returns the entries that failed.
    pub fn put_targets(
        &self,
        bus: &str,
        name: &str,
        targets: &[Value],
    ) -> Result<Vec<Value>, AwsError> {
        let mut failed = Vec::new();
        let mut good = Vec::new();
        for target in targets {
            match check_target(target) {
                Ok(()) => good.push(target.clone()),
                Err(message) => failed.push(json!({
                    "TargetId": target["Id"], "ErrorCode": "ValidationException", "ErrorMessage": message,
                })),
            }
        }
        self.update_rule(bus, name, |rule| {
            for target in &good {
                rule.targets.retain(|t| t["Id"] != target["Id"]);
                rule.targets.push(target.clone());
            }
            if rule.targets.len() > MAX_TARGETS {
                return Err(AwsError::new(
                    StatusCode::BAD_REQUEST,
                    "LimitExceededException",
                    format!("The requested resource exceeds the maximum number allowed: a rule has at most {MAX_TARGETS} targets."),
                ));
            }
            Ok(())
        })?;
        Ok(failed)
    }

    pub fn remove_targets(&self, bus: &str, name: &str, ids: &[&str]) -> Result<(), AwsError> {
        self.update_rule(bus, name, |rule| {
            rule.targets
                .retain(|t| !ids.contains(&t["Id"].as_str().unwrap_or_default()));
            Ok(())
        })
        .map(drop)
    }

    // --- Events ---------------------------------------------------------------------

    /// Accepts events: each entry its event id, or its error. The deliveries of every
    /// accepted entry are committed together before this returns.
    pub fn put_events(&self, entries: &[Value]) -> Result<Vec<Value>, AwsError> {
        let mut results = Vec::new();
        let mut batch = WriteBatch::new();
        let mut rules: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
        let archives = self.archives()?;
        for entry in entries {
            let event = match self.event_of(entry) {
                Ok(event) => event,
                Err((code, message)) => {
                    results.push(json!({ "ErrorCode": code, "ErrorMessage": message }));
                    continue;
                }
            };
            let bus = bus_name(entry["EventBusName"].as_str().unwrap_or(DEFAULT_BUS));
            if !rules.contains_key(bus) {
                match self.rules(bus) {
                    Ok(found) => rules.insert(bus.to_owned(), found),
                    Err(err) => {
                        results.push(json!({ "ErrorCode": err.code, "ErrorMessage": err.message }));
                        continue;
                    }
                };
            }
            let archived = self.archived(&archives, bus, &event);
            for (table, key, value) in self
                .deliveries(&rules[bus], &event)
                .into_iter()
                .chain(archived)
            {
                batch = batch.put(&table, &key, value, Expect::Absent);
            }
            results.push(json!({ "EventId": event["id"] }));
        }
        self.meta.commit(batch).map_err(internal)?;
        self.outbox.wake();
        Ok(results)
    }

    /// The outbox records delivering `event` to the targets of the enabled `rules` it
    /// matches.
    fn deliveries(&self, rules: &[Rule], event: &Value) -> Vec<(String, String, Vec<u8>)> {
        rules
            .iter()
            .filter(|rule| rule.state == "ENABLED" && rule_matches(rule, event))
            .flat_map(|rule| self.deliveries_to(rule, event))
            .collect()
    }

    /// The outbox records delivering `event` to each of `rule`'s targets.
    fn deliveries_to(&self, rule: &Rule, event: &Value) -> Vec<(String, String, Vec<u8>)> {
        rule.targets
            .iter()
            .map(|target| {
                let delivery = Delivery {
                    rule_arn: self.rule_arn(&rule.bus, &rule.name),
                    target: target.clone(),
                    event: event.clone(),
                    attempts: 0,
                    first_ms: now_ms(),
                };
                self.outbox.record(
                    now_ms(),
                    serde_json::to_vec(&delivery).expect("deliveries serialize"),
                )
            })
            .collect()
    }

    /// The writes that deliver an event a service emits (S3's `Object Created`) to
    /// the default bus's rules, for the service to commit with its own change; `wake`
    /// once committed.
    pub fn staged(
        &self,
        source: &str,
        detail_type: &str,
        resources: Vec<String>,
        detail: Value,
    ) -> Result<Vec<(String, String, Vec<u8>)>, AwsError> {
        let event = self.event(
            source,
            detail_type,
            resources.into(),
            detail,
            timestamp(now_ms()),
        );
        let mut records = self.deliveries(&self.rules(DEFAULT_BUS)?, &event);
        records.extend(self.archived(&self.archives()?, DEFAULT_BUS, &event));
        Ok(records)
    }

    /// Takes up staged deliveries now.
    pub fn wake(&self) {
        self.outbox.wake();
    }

    /// EventBridge's event.
    fn event(
        &self,
        source: &str,
        detail_type: &str,
        resources: Value,
        detail: Value,
        time: String,
    ) -> Value {
        json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": detail_type,
            "source": source,
            "account": self.account,
            "time": time,
            "region": self.region,
            "resources": resources,
            "detail": detail,
        })
    }

    /// The event an entry makes, or its error code and message.
    fn event_of(&self, entry: &Value) -> Result<Value, (&'static str, String)> {
        let field = |name: &str| {
            entry[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .ok_or(("InvalidArgument", format!("Parameter {name} is not valid.")))
        };
        let (source, detail_type, detail) =
            (field("Source")?, field("DetailType")?, field("Detail")?);
        // AWS's own sources are AWS's to send.
        if source.starts_with("aws.") {
            return Err((
                "NotAuthorizedForSourceException",
                "Not authorized for the source.".to_owned(),
            ));
        }
        let detail: Value = serde_json::from_str(detail)
            .ok()
            .filter(Value::is_object)
            .ok_or(("MalformedDetail", "Detail is malformed.".to_owned()))?;
        let time = match &entry["Time"] {
            Value::Number(seconds) => timestamp((seconds.as_f64().unwrap_or(0.0) * 1000.0) as i64),
            Value::String(text) => text.clone(),
            _ => timestamp(now_ms()),
        };
        let resources = entry["Resources"].as_array().cloned().unwrap_or_default();
        Ok(self.event(source, detail_type, resources.into(), detail, time))
    }

    /// Hands one delivery to its target: a failure on the way is retried within the
    /// target's retry policy; a refusal, or a delivery out of retries, goes to the
    /// target's dead-letter queue.
    fn take_up(&self, value: &[u8]) -> Handled {
        let mut delivery: Delivery = match serde_json::from_slice(value) {
            Ok(delivery) => delivery,
            Err(err) => {
                tracing::error!(error = %err, "dropping an unreadable event delivery");
                return Handled::Done;
            }
        };
        let arn = delivery.target["Arn"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let input = target_input(&delivery.target, &delivery.event, &delivery.rule_arn);
        let delivered = if is_cluster(&arn) {
            self.targets
                .run_task(&delivery.target, &delivery.rule_arn, &input)
        } else {
            self.targets
                .deliver(&arn, &delivery.rule_arn, &input, &Value::Null)
        };
        let reason = match delivered {
            Ok(()) => return Handled::Done,
            Err(Undelivered::Failed(reason)) => {
                let policy = &delivery.target["RetryPolicy"];
                let retries = policy["MaximumRetryAttempts"]
                    .as_u64()
                    .map_or(RETRIES, |n| n as u32);
                let max_age = policy["MaximumEventAgeInSeconds"]
                    .as_i64()
                    .unwrap_or(MAX_AGE_S);
                let young = now_ms() - delivery.first_ms < max_age * 1000;
                if delivery.attempts < retries && young {
                    let backoff = (Duration::from_secs(1)
                        * 2u32.saturating_pow(delivery.attempts.min(16)))
                    .min(MAX_BACKOFF);
                    delivery.attempts += 1;
                    let due = now_ms() + backoff.as_millis() as i64;
                    match self.outbox.put(
                        due,
                        serde_json::to_vec(&delivery).expect("deliveries serialize"),
                    ) {
                        Ok(()) => return Handled::Done,
                        Err(err) => return Handled::Again(err.to_string()),
                    }
                }
                reason
            }
            Err(Undelivered::Refused(reason)) => reason,
        };
        self.dead_letter(&delivery, &arn, &reason);
        Handled::Done
    }

    /// Sends an event no target took to the target's dead-letter queue, with
    /// EventBridge's attributes naming the rule, the target and the error.
    fn dead_letter(&self, delivery: &Delivery, target: &str, reason: &str) {
        let Some(queue) = delivery.target["DeadLetterConfig"]["Arn"].as_str() else {
            tracing::warn!(rule = %delivery.rule_arn, %target, %reason, "an event was not delivered and its target has no dead-letter queue");
            return;
        };
        let text = |value: &str| json!({ "DataType": "String", "StringValue": value });
        let attributes = json!({
            "RULE_ARN": text(&delivery.rule_arn),
            "TARGET_ARN": text(target),
            "ERROR_CODE": text("SDK_CLIENT_ERROR"),
            "ERROR_MESSAGE": text(reason),
        });
        let event = delivery.event.to_string();
        if let Err(err) = self
            .targets
            .deliver(queue, &delivery.rule_arn, &event, &attributes)
        {
            tracing::warn!(rule = %delivery.rule_arn, %queue, error = %err, "an event could not reach its dead-letter queue either");
        }
    }
}

/// The bus an `EventBusName` (a name or an ARN) names.
pub fn bus_name(name_or_arn: &str) -> &str {
    name_or_arn
        .rsplit_once(":event-bus/")
        .map_or(name_or_arn, |(_, name)| name)
}

/// Whether a rule's pattern matches an event.
fn rule_matches(rule: &Rule, event: &Value) -> bool {
    rule.pattern
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
        .is_some_and(|pattern| nimbus_patterns::matches(&pattern, event))
}

/// What a target receives of an event.
fn target_input(target: &Value, event: &Value, rule_arn: &str) -> String {
    if let Some(input) = target["Input"].as_str() {
        return input.to_owned();
    }
    if let Some(path) = target["InputPath"].as_str() {
        return transform::select(event, path)
            .cloned()
            .unwrap_or(Value::Null)
            .to_string();
    }
    let transformer = &target["InputTransformer"];
    if let Some(template) = transformer["InputTemplate"].as_str() {
        let empty = serde_json::Map::new();
        let paths = transformer["InputPathsMap"].as_object().unwrap_or(&empty);
        return transform::fill(template, paths, event, rule_arn);
    }
    event.to_string()
}

pub fn check_pattern(pattern: &str) -> Result<(), AwsError> {
    let parsed: Value = serde_json::from_str(pattern).map_err(|err| {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidEventPatternException",
            format!("Event pattern is not valid. Reason: {err}"),
        )
    })?;
    if nimbus_patterns::valid(&parsed) {
        Ok(())
    } else {
        Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidEventPatternException",
            "Event pattern is not valid. Reason: each field must hold an object or a non-empty list of matchers",
        ))
    }
}

fn check_name(field: &str, name: &str, max: usize) -> Result<(), AwsError> {
    let valid = (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at '{}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+",
            field.to_ascii_lowercase()
        )))
    }
}

/// Why a target cannot be put, if it cannot.
/// Whether a target ARN names an ECS cluster, whose target runs tasks.
fn is_cluster(arn: &str) -> bool {
    arn.starts_with("arn:aws:ecs:") && arn.contains(":cluster/")
}

fn check_target(target: &Value) -> Result<(), String> {
    let id = target["Id"].as_str().unwrap_or_default();
    if !(1..=64).contains(&id.len()) {
        return Err("Target Id must be 1 to 64 characters.".into());
    }
    let arn = target["Arn"].as_str().unwrap_or_default();
    if is_cluster(arn) {
        if target["RoleArn"].as_str().is_none() {
            return Err(
                "RoleArn is required for target arn: ECS targets run tasks as a role.".into(),
            );
        }
        if target["EcsParameters"]["TaskDefinitionArn"]
            .as_str()
            .is_none()
        {
            return Err("EcsParameters.TaskDefinitionArn is required for an ECS target.".into());
        }
    } else if !["arn:aws:lambda:", "arn:aws:sqs:", "arn:aws:sns:"]
        .iter()
        .any(|kind| arn.starts_with(kind))
    {
        return Err(format!(
            "Target {arn} is not a Lambda function, SQS queue, SNS topic or ECS cluster: this nimbus delivers events to those"
        ));
    }
    let kinds = ["Input", "InputPath", "InputTransformer"]
        .iter()
        .filter(|k| !target[**k].is_null())
        .count();
    if kinds > 1 {
        return Err("Only one of Input, InputPath, or InputTransformer may be specified.".into());
    }
    if let Some(input) = target["Input"].as_str()
        && serde_json::from_str::<Value>(input).is_err()
    {
        return Err("Input is not valid JSON.".into());
    }
    if let Some(path) = target["InputPath"].as_str()
        && !transform::valid_path(path)
    {
        return Err(format!("InputPath {path} is not a valid JSON path."));
    }
    let transformer = &target["InputTransformer"];
    if !transformer.is_null() {
        if transformer["InputTemplate"].as_str().is_none() {
            return Err("InputTransformer needs an InputTemplate.".into());
        }
        let paths = transformer["InputPathsMap"].as_object();
        if let Some(bad) = paths
            .into_iter()
            .flatten()
            .find(|(_, path)| !path.as_str().is_some_and(transform::valid_path))
        {
            return Err(format!("InputPathsMap {} is not a valid JSON path.", bad.0));
        }
    }
    if let Some(dlq) = target["DeadLetterConfig"]["Arn"].as_str()
        && !dlq.starts_with("arn:aws:sqs:")
    {
        return Err(format!("DeadLetterConfig {dlq} is not an SQS queue."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_storage::SqliteStore;

    struct Nowhere;

    impl Targets for Nowhere {
        fn deliver(&self, _: &str, _: &str, _: &str, _: &Value) -> Result<(), Undelivered> {
            Ok(())
        }

        fn run_task(&self, _: &Value, _: &str, _: &str) -> Result<(), Undelivered> {
            Ok(())
        }
    }

    /// The events staged in the outbox.
    fn staged(meta: &dyn MetadataStore) -> Vec<Value> {
        meta.scan_all(OUTBOX, "")
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.value).unwrap()["event"].clone())
            .collect()
    }

    #[test]
    fn archived_events_go_with_their_retention_or_their_archive() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let events = Events::new(meta.clone(), "us-east-1", "000000000000", Arc::new(Nowhere));
        for (name, days) in [("day", 1), ("always", 0)] {
            events
                .create_archive(archives::Archive {
                    name: name.into(),
                    bus: DEFAULT_BUS.into(),
                    description: None,
                    pattern: None,
                    retention_days: days,
                    created: 0.0,
                })
                .unwrap();
        }
        let entry = json!({ "Source": "shop", "DetailType": "t", "Detail": "{}" });
        events.put_events(&[entry.clone(), entry]).unwrap();
        let held = |name: &str| {
            meta.scan_all(archives::ARCHIVED, &format!("{name}/"))
                .unwrap()
                .len()
        };
        assert_eq!((held("day"), held("always")), (2, 2));
        let later = now_ms() + 2 * 86_400_000;
        assert_eq!(events.expire_archived(later, None).unwrap(), None);
        assert_eq!((held("day"), held("always")), (0, 2));
        events.delete_archive("always").unwrap();
        events.expire_archived(later, None).unwrap();
        assert_eq!(held("always"), 0);
    }

    #[test]
    fn a_scheduled_rule_fires_once_per_period_to_each_target() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let events = Events::new(meta.clone(), "us-east-1", "000000000000", Arc::new(Nowhere));
        let rule = |schedule: &str, bus: &str| Rule {
            name: "tick".into(),
            bus: bus.into(),
            pattern: None,
            schedule: Some(schedule.into()),
            state: "ENABLED".into(),
            description: None,
            role_arn: None,
            targets: Vec::new(),
        };
        for refused in ["at(2030-01-01T00:00:00)", "rate(0 minutes)", "every minute"] {
            assert!(events.put_rule(rule(refused, DEFAULT_BUS)).is_err());
        }
        events.create_bus("custom", None).unwrap();
        assert!(events.put_rule(rule("rate(5 minutes)", "custom")).is_err());
        events
            .put_rule(rule("rate(5 minutes)", DEFAULT_BUS))
            .unwrap();
        let targets = [json!({ "Id": "a", "Arn": "arn:aws:sqs:us-east-1:000000000000:q" })];
        assert!(
            events
                .put_targets(DEFAULT_BUS, "tick", &targets)
                .unwrap()
                .is_empty()
        );

        let start = 1_800_000_000_000;
        events.fire_due(start).unwrap();
        events.fire_due(start + 299_000).unwrap();
        assert!(staged(meta.as_ref()).is_empty());
        events.fire_due(start + 300_000).unwrap();
        // Missed periods collapse into one firing.
        events.fire_due(start + 301_000).unwrap();
        let fired = staged(meta.as_ref());
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (
                &fired[0]["source"],
                &fired[0]["detail-type"],
                &fired[0]["detail"]
            ),
            (&json!("aws.events"), &json!("Scheduled Event"), &json!({}))
        );
        assert_eq!(
            fired[0]["resources"],
            json!(["arn:aws:events:us-east-1:000000000000:rule/tick"])
        );
        assert_eq!(fired[0]["time"], timestamp(start + 300_000));
        events.fire_due(start + 1_000_000).unwrap();
        assert_eq!(staged(meta.as_ref()).len(), 2);

        // A disabled rule keeps its pace without firing; a deleted one is forgotten.
        events
            .update_rule(DEFAULT_BUS, "tick", |r| {
                r.state = "DISABLED".into();
                Ok(())
            })
            .unwrap();
        events.fire_due(start + 2_000_000).unwrap();
        assert_eq!(staged(meta.as_ref()).len(), 2);
        events.delete_rule(DEFAULT_BUS, "tick", true).unwrap();
        events.fire_due(start + 3_000_000).unwrap();
        assert!(meta.scan_all(FIRES, "").unwrap().is_empty());
    }
}
