//! Event source mappings: functions fed from SQS queues. A mapping is a record of
//! `lambda.event-sources/<uuid>`; every worker node runs pollers for each enabled
//! mapping, which long-poll the queue (a receive is atomic, so pollers on several
//! nodes never take the same message), filter what they got, invoke the function
//! with a batch as Lambda's SQS event and delete what it handled: the whole batch,
//! or with `ReportBatchItemFailures` all but the items it reported. A failed batch
//! stays in the queue and comes back after its visibility timeout, reaching the
//! queue's dead-letter queue by its redrive policy. The pollers act as the
//! function's execution role, which must be allowed to read and delete messages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use nimbus_edge::AwsError;
use nimbus_sqs::Sqs;
use nimbus_sqs::messages::{Received, system_view};
use nimbus_sqs::queues::Queue;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::error::{invalid_parameter, service};
use crate::functions::Functions;
use crate::invoke::{InvokeRequest, Invoker};
use crate::names::FunctionRef;
use nimbus_patterns as filters;

pub const MAPPINGS: &str = "lambda.event-sources";
/// Pollers per mapping on each node while its queue is quiet, unless
/// `ScalingConfig` asks for fewer.
const MIN_POLLERS: usize = 2;
/// Pollers per mapping on each node at most, however long its backlog; each one
/// holds at most one invoke in flight.
const MAX_POLLERS: usize = 32;
/// How long a receive waits for messages.
const LONG_POLL: Duration = Duration::from_secs(20);
/// How often nodes look for new, changed and deleted mappings.
const SUPERVISE: Duration = Duration::from_secs(1);
/// What a poller waits after a failure it cannot act on (a queue gone, a role that
/// may not read it, a throttled function).
const BACK_OFF: Duration = Duration::from_secs(2);
/// The actions the execution role needs on the queue.
const QUEUE_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];

/// A mapping as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mapping {
    pub uuid: String,
    pub source_arn: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub batch_size: i64,
    pub window: i64,
    pub response_types: Vec<String>,
    pub max_concurrency: Option<i64>,
    /// The filter patterns, as given.
    pub filters: Vec<String>,
    pub enabled: bool,
    /// `Creating`, `Enabling`, `Enabled`, `Disabling`, `Disabled`, `Updating` or
    /// `Deleting`.
    pub state: String,
    /// `LastProcessingResult`: `OK` or `PROBLEM: ...`, once a batch was tried.
    #[serde(default)]
    pub last_result: Option<String>,
    /// Seconds since the epoch, with milliseconds.
    pub modified: f64,
}

fn conflict(message: String) -> AwsError {
    AwsError::new(StatusCode::CONFLICT, "ResourceConflictException", message)
}

fn not_found(uuid: &str) -> AwsError {
    AwsError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!(
            "The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})"
        ),
    )
}

fn now_seconds() -> f64 {
    crate::now_ms() as f64 / 1000.0
}

impl Mapping {
    /// A new mapping with Lambda's defaults for SQS: batches of 10, no window.
    fn new(source_arn: &str, function: &FunctionRef) -> Self {
        Self {
            uuid: uuid::Uuid::new_v4().to_string(),
            source_arn: source_arn.to_owned(),
            function: function.name.clone(),
            qualifier: function.qualifier.clone(),
            batch_size: 10,
            window: 0,
            response_types: Vec::new(),
            max_concurrency: None,
            filters: Vec::new(),
            enabled: true,
            state: "Creating".into(),
            modified: now_seconds(),
            last_result: None,
        }
    }

    pub fn to_json(&self, region: &str, account: &str) -> Value {
        let mut out = json!({
            "UUID": self.uuid,
            "EventSourceArn": self.source_arn,
            "FunctionArn": crate::names::function_arn(region, account, &self.function, self.qualifier.as_deref()),
            "BatchSize": self.batch_size,
            "MaximumBatchingWindowInSeconds": self.window,
            "FunctionResponseTypes": self.response_types,
            "LastModified": self.modified,
            "State": self.state,
            "StateTransitionReason": "USER_INITIATED",
            "LastProcessingResult": self.last_result.as_deref().unwrap_or("No records processed"),
            "EventSourceMappingArn": format!("arn:aws:lambda:{region}:{account}:event-source-mapping:{}", self.uuid),
        });
        if let Some(max) = self.max_concurrency {
            out["ScalingConfig"] = json!({ "MaximumConcurrency": max });
        }
        if !self.filters.is_empty() {
            out["FilterCriteria"] = json!({
                "Filters": self.filters.iter().map(|p| json!({ "Pattern": p })).collect::<Vec<_>>(),
            });
        }
        out
    }

    /// Applies the settings `input` carries (CreateEventSourceMapping's or
    /// UpdateEventSourceMapping's), checked as Lambda checks them.
    fn apply(&mut self, input: &Value, fifo: bool) -> Result<(), AwsError> {
        let number = |name: &str| input[name].as_i64();
        if let Some(size) = number("BatchSize") {
            self.batch_size = size;
        }
        if let Some(window) = number("MaximumBatchingWindowInSeconds") {
            self.window = window;
        }
        let max_batch = if fifo { 10 } else { 10_000 };
        if !(1..=max_batch).contains(&self.batch_size) {
            return Err(invalid_parameter(format!(
                "BatchSize must be between 1 and {max_batch} for this event source."
            )));
        }
        if !(0..=300).contains(&self.window) {
            return Err(invalid_parameter(
                "MaximumBatchingWindowInSeconds must be between 0 and 300.",
            ));
        }
        if self.batch_size > 10 && self.window == 0 {
            return Err(invalid_parameter(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
            ));
        }
        if let Some(types) = input["FunctionResponseTypes"].as_array() {
            self.response_types = types
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            if self
                .response_types
                .iter()
                .any(|t| t != "ReportBatchItemFailures")
            {
                return Err(invalid_parameter(
                    "FunctionResponseTypes may only hold ReportBatchItemFailures.",
                ));
            }
        }
        if let Some(max) = input["ScalingConfig"]["MaximumConcurrency"].as_i64() {
            if !(2..=1000).contains(&max) {
                return Err(invalid_parameter(
                    "MaximumConcurrency must be between 2 and 1000.",
                ));
            }
            self.max_concurrency = Some(max);
        }
        if let Some(filters) = input["FilterCriteria"]["Filters"].as_array() {
            if filters.len() > 5 {
                return Err(invalid_parameter("A mapping may have at most 5 filters."));
            }
            self.filters = Vec::new();
            for filter in filters {
                let pattern = filter["Pattern"].as_str().unwrap_or_default();
                let parsed: Value = serde_json::from_str(pattern).unwrap_or(Value::Null);
                if !filters::valid(&parsed) {
                    return Err(invalid_parameter(format!(
                        "Invalid filter pattern definition: {pattern}"
                    )));
                }
                self.filters.push(pattern.to_owned());
            }
        }
        if let Some(enabled) = input["Enabled"].as_bool() {
            self.enabled = enabled;
        }
        Ok(())
    }

    /// Whether a record passes the filters (none: everything passes).
    fn wants(&self, record: &Value) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let mut view = record.clone();
        // Patterns see a JSON body as the object it holds.
        if let Some(body) = record["body"].as_str()
            && let Ok(parsed) = serde_json::from_str::<Value>(body)
            && parsed.is_object()
        {
            view["body"] = parsed;
        }
        self.filters.iter().any(|pattern| {
            serde_json::from_str(pattern).is_ok_and(|p: Value| filters::matches(&p, &view))
        })
    }
}

/// A mapping's pollers on this node, for the mapping's `modified` they were started
/// for. They scale with the backlog as Lambda's do: a poller that got a full batch
/// starts another, up to the limit; one whose long poll came back empty, or whose
/// invoke was throttled (the function is at its concurrency), stops while more than
/// the minimum remain.
struct Pollers {
    modified: f64,
    /// The `LastProcessingResult` these pollers last wrote.
    last_result: Mutex<Option<String>>,
    tasks: Mutex<JoinSet<()>>,
    running: AtomicUsize,
    min: usize,
    max: usize,
}

impl Pollers {
    fn new(mapping: &Mapping) -> Arc<Self> {
        let max = mapping
            .max_concurrency
            .map_or(MAX_POLLERS, |max| (max as usize).min(MAX_POLLERS));
        Arc::new(Self {
            modified: mapping.modified,
            last_result: Mutex::new(mapping.last_result.clone()),
            tasks: Mutex::new(JoinSet::new()),
            running: AtomicUsize::new(0),
            min: MIN_POLLERS.min(max),
            max,
        })
    }

    /// Starts one more poller unless the limit is reached.
    fn grow(self: &Arc<Self>, sources: &Arc<EventSources>, mapping: &Arc<Mapping>) {
        let grown = self
            .running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if grown.is_err() {
            return;
        }
        let (group, sources, mapping) = (self.clone(), sources.clone(), mapping.clone());
        let mut tasks = self.tasks.lock().expect("pollers");
        // Stopped pollers leave their results behind.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move { sources.poll(mapping, group).await });
    }

    /// Whether the calling poller may stop: more than the minimum are running.
    fn shrink(&self) -> bool {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > self.min).then_some(n - 1)
            })
            .is_ok()
    }

    fn stop(&self) {
        self.tasks.lock().expect("pollers").abort_all();
    }
}

/// What one poll came to.
enum Polled {
    /// The queue had nothing for the whole long poll.
    Empty,
    /// A batch was taken; `full` when the queue had at least as many as asked for,
    /// with what became of it (`OK` or `PROBLEM: ...`).
    Batch { full: bool, result: &'static str },
    /// The function was at its concurrency; the batch goes back to the queue.
    Throttled,
}

pub struct EventSources {
    meta: Arc<dyn MetadataStore>,
    functions: Arc<Functions>,
    invoker: Arc<Invoker>,
    sqs: Arc<Sqs>,
    /// The pollers this node runs, by mapping.
    pollers: Mutex<HashMap<String, Arc<Pollers>>>,
}

impl EventSources {
    /// Starts following the mappings; `worker` nodes run their pollers.
    pub fn start(
        meta: Arc<dyn MetadataStore>,
        functions: Arc<Functions>,
        invoker: Arc<Invoker>,
        sqs: Arc<Sqs>,
        worker: bool,
    ) -> Arc<Self> {
        let sources = Arc::new(Self {
            meta,
            functions,
            invoker,
            sqs,
            pollers: Mutex::new(HashMap::new()),
        });
        let supervisor = sources.clone();
        tokio::spawn(async move {
            loop {
                let sources = supervisor.clone();
                let mappings = tokio::task::spawn_blocking(move || sources.settle()).await;
                if worker && let Ok(Ok(mappings)) = mappings {
                    supervisor.run_pollers(mappings);
                }
                tokio::time::sleep(SUPERVISE).await;
            }
        });
        sources
    }

    fn load(&self, uuid: &str) -> Result<(Mapping, u64), AwsError> {
        let record = self
            .meta
            .get(MAPPINGS, uuid)
            .map_err(store)?
            .ok_or_else(|| not_found(uuid))?;
        Ok((
            serde_json::from_slice(&record.value).map_err(store)?,
            record.version,
        ))
    }

    fn save(&self, mapping: &Mapping, expect: Expect) -> Result<(), StoreError> {
        self.meta.commit(WriteBatch::new().put(
            MAPPINGS,
            &mapping.uuid,
            serde_json::to_vec(mapping).expect("mappings serialize"),
            expect,
        ))
    }

    fn all(&self) -> Result<Vec<(Mapping, u64)>, AwsError> {
        self.meta
            .scan_all(MAPPINGS, "")
            .map_err(store)?
            .into_iter()
            .map(|r| Ok((serde_json::from_slice(&r.value).map_err(store)?, r.version)))
            .collect()
    }

    /// Moves mappings out of their passing states (the first node to look wins) and
    /// returns them.
    fn settle(&self) -> Result<Vec<Mapping>, AwsError> {
        let mut settled = Vec::new();
        for (mut mapping, version) in self.all()? {
            let next = match mapping.state.as_str() {
                "Creating" | "Enabling" | "Updating" | "Disabling" => Some(if mapping.enabled {
                    "Enabled"
                } else {
                    "Disabled"
                }),
                "Deleting" => {
                    let _ = self.meta.commit(WriteBatch::new().delete(
                        MAPPINGS,
                        &mapping.uuid,
                        Expect::Version(version),
                    ));
                    continue;
                }
                _ => None,
            };
            if let Some(next) = next {
                mapping.state = next.to_owned();
                let _ = self.save(&mapping, Expect::Version(version));
            }
            settled.push(mapping);
        }
        Ok(settled)
    }

    /// Runs pollers for the enabled mappings, restarting those of a changed mapping,
    /// and stops the rest.
    fn run_pollers(self: &Arc<Self>, mappings: Vec<Mapping>) {
        let mut pollers = self.pollers.lock().expect("pollers");
        let enabled: HashMap<&str, &Mapping> = mappings
            .iter()
            .filter(|m| m.state == "Enabled")
            .map(|m| (m.uuid.as_str(), m))
            .collect();
        pollers.retain(|uuid, group| {
            let keep = enabled
                .get(uuid.as_str())
                .is_some_and(|m| m.modified == group.modified);
            if !keep {
                group.stop();
            }
            keep
        });
        for (uuid, mapping) in enabled {
            if pollers.contains_key(uuid) {
                continue;
            }
            let (group, mapping) = (Pollers::new(mapping), Arc::new(mapping.clone()));
            for _ in 0..group.min {
                group.grow(self, &mapping);
            }
            pollers.insert(uuid.to_owned(), group);
        }
    }

    /// One poller: receive a batch, invoke, delete what was handled, again; starting
    /// another poller or stopping as the backlog asks.
    async fn poll(self: Arc<Self>, mapping: Arc<Mapping>, group: Arc<Pollers>) {
        loop {
            match self.clone().poll_once(&mapping).await {
                Ok(Polled::Batch { full, result }) => {
                    self.record_result(&mapping, &group, result).await;
                    if full {
                        group.grow(&self, &mapping);
                    }
                }
                Ok(Polled::Empty) => {
                    if group.shrink() {
                        return;
                    }
                }
                Ok(Polled::Throttled) => {
                    if group.shrink() {
                        return;
                    }
                    tokio::time::sleep(BACK_OFF).await;
                }
                Err(err) => {
                    tracing::warn!(uuid = %mapping.uuid, error = %err.message, "an event source poller failed");
                    let problem = format!("PROBLEM: {}", err.message);
                    self.record_result(&mapping, &group, &problem).await;
                    tokio::time::sleep(BACK_OFF).await;
                }
            }
        }
    }

    /// Writes a mapping's `LastProcessingResult` when it changed from what this
    /// node's pollers last wrote: a write per change, not per batch.
    async fn record_result(&self, mapping: &Mapping, group: &Pollers, result: &str) {
        {
            let mut last = group.last_result.lock().expect("pollers");
            if last.as_deref() == Some(result) {
                return;
            }
            *last = Some(result.to_owned());
        }
        let (meta, uuid, result) = (self.meta.clone(), mapping.uuid.clone(), result.to_owned());
        let _ = tokio::task::spawn_blocking(move || {
            let Some(record) = meta.get(MAPPINGS, &uuid).ok().flatten() else {
                return;
            };
            let Ok(mut stored) = serde_json::from_slice::<Mapping>(&record.value) else {
                return;
            };
            stored.last_result = Some(result);
            // Lost to a concurrent change of the mapping, which restarts the pollers.
            let _ = meta.commit(WriteBatch::new().put(
                MAPPINGS,
                &uuid,
                serde_json::to_vec(&stored).expect("mappings serialize"),
                Expect::Version(record.version),
            ));
        })
        .await;
    }

    /// The queue of a mapping, checked to be readable as the function's role.
    fn readable_queue(&self, mapping: &Mapping) -> Result<Queue, AwsError> {
        let queue = self.sqs.queue_by_arn(&mapping.source_arn)?;
        let function = FunctionRef {
            name: mapping.function.clone(),
            qualifier: mapping.qualifier.clone(),
        };
        let role = self.functions.resolve(&function)?.config.role;
        let caller = self.functions.as_role(&role).map_err(service)?;
        let policy = queue.attributes.get("Policy").cloned();
        for action in QUEUE_ACTIONS {
            self.functions
                .authorize_as(&caller, action, &mapping.source_arn, policy.as_deref())
                .map_err(|_| {
                    invalid_parameter(format!(
                        "The function execution role does not have permissions to call {} on SQS",
                        action.trim_start_matches("sqs:")
                    ))
                })?;
        }
        Ok(queue)
    }

    /// Receives, invokes and deletes once.
    async fn poll_once(self: Arc<Self>, mapping: &Mapping) -> Result<Polled, AwsError> {
        let sources = self.clone();
        let owned = mapping.clone();
        let queue = tokio::task::spawn_blocking(move || sources.readable_queue(&owned))
            .await
            .map_err(|_| service("An internal error occurred."))??;
        let visibility = queue.number("VisibilityTimeout");
        let window = Duration::from_secs(mapping.window as u64);
        let mut batch: Vec<Received> = Vec::new();
        let mut full = false;
        let started = Instant::now();
        while (batch.len() as i64) < mapping.batch_size {
            let wait = if batch.is_empty() {
                LONG_POLL.max(window)
            } else {
                window.saturating_sub(started.elapsed())
            };
            let want = (mapping.batch_size as usize - batch.len()).min(10);
            let got = self
                .sqs
                .receive(queue.clone(), want, visibility, wait)
                .await?;
            if got.is_empty() {
                break;
            }
            full = got.len() == want;
            batch.extend(got);
            if started.elapsed() >= window {
                break;
            }
        }
        if batch.is_empty() {
            return Ok(Polled::Empty);
        }
        let mut polled = Polled::Batch { full, result: "OK" };
        let region = self.sqs.region.clone();
        let records: Vec<(Value, String)> = batch
            .iter()
            .map(|r| {
                (
                    sqs_record(r, &mapping.source_arn, &region),
                    r.handle.clone(),
                )
            })
            .collect();
        let (wanted, filtered): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|(record, _)| mapping.wants(record));
        // Messages no filter wants are deleted, as Lambda does for SQS.
        let mut done: Vec<String> = filtered.into_iter().map(|(_, handle)| handle).collect();
        if !wanted.is_empty() {
            let payload = json!({ "Records": wanted.iter().map(|(r, _)| r).collect::<Vec<_>>() });
            let result = self
                .invoker
                .invoke(InvokeRequest {
                    function: FunctionRef {
                        name: mapping.function.clone(),
                        qualifier: mapping.qualifier.clone(),
                    },
                    request_id: uuid::Uuid::new_v4().to_string(),
                    payload: Bytes::from(payload.to_string()),
                    client_context: None,
                    tail: false,
                })
                .await;
            match result {
                Ok(outcome) if outcome.function_error.is_none() => {
                    let reporting = mapping
                        .response_types
                        .iter()
                        .any(|t| t == "ReportBatchItemFailures");
                    // A response that names no valid item fails the whole batch.
                    if let Some(failed) = failures(reporting, &outcome.payload, &wanted) {
                        done.extend(
                            wanted
                                .iter()
                                .filter(|(r, _)| {
                                    !failed.iter().any(|id| r["messageId"] == id.as_str())
                                })
                                .map(|(_, h)| h.clone()),
                        );
                    }
                }
                Ok(_) => {
                    polled = Polled::Batch {
                        full,
                        result: "PROBLEM: Function call failed",
                    }
                }
                Err(err) if err.code == "TooManyRequestsException" => polled = Polled::Throttled,
                Err(err) => {
                    tracing::info!(uuid = %mapping.uuid, error = %err.message, "an event source batch was not taken");
                    polled = Polled::Batch {
                        full,
                        result: "PROBLEM: Function call failed",
                    };
                    tokio::time::sleep(BACK_OFF).await;
                }
            }
        }
        let sqs = self.sqs.clone();
        tokio::task::spawn_blocking(move || {
            for handle in done {
                if let Err(err) = sqs.delete(&queue, &handle) {
                    tracing::warn!(error = %err.message, "deleting a handled message failed");
                }
            }
        })
        .await
        .map_err(|_| service("An internal error occurred."))?;
        Ok(polled)
    }

    // --- The API ---------------------------------------------------------------

    pub fn create(&self, input: &Value) -> Result<Value, AwsError> {
        let source_arn = input["EventSourceArn"].as_str().ok_or_else(|| {
            invalid_parameter("EventSourceArn is required for SQS event sources.")
        })?;
        let queue = self.sqs.queue_by_arn(source_arn).map_err(|_| {
            invalid_parameter("Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue. SQS Error Message: The specified queue does not exist.")
        })?;
        let function = FunctionRef::parse(
            input["FunctionName"].as_str().unwrap_or_default(),
            &self.sqs.region,
            &self.sqs.account,
        )?;
        self.functions.resolve(&function)?;
        let mut mapping = Mapping::new(source_arn, &function);
        mapping.apply(input, queue.fifo())?;
        self.readable_queue(&mapping)?;
        if let Some((existing, _)) = self.all()?.into_iter().find(|(m, _)| {
            m.source_arn == mapping.source_arn
                && m.function == mapping.function
                && m.qualifier == mapping.qualifier
        }) {
            return Err(conflict(format!(
                "An event source mapping with SQS arn (\" {} \") and function (\" {} \") already exists. Please update or delete the existing mapping with UUID {}",
                mapping.source_arn, mapping.function, existing.uuid
            )));
        }
        self.save(&mapping, Expect::Absent).map_err(store)?;
        Ok(mapping.to_json(&self.sqs.region, &self.sqs.account))
    }

    pub fn get(&self, uuid: &str) -> Result<Value, AwsError> {
        Ok(self
            .load(uuid)?
            .0
            .to_json(&self.sqs.region, &self.sqs.account))
    }

    pub fn update(&self, uuid: &str, input: &Value) -> Result<Value, AwsError> {
        loop {
            let (mut mapping, version) = self.load(uuid)?;
            if mapping.state == "Deleting" {
                return Err(conflict(format!(
                    "The event source mapping {uuid} is being deleted."
                )));
            }
            let was_enabled = mapping.enabled;
            let fifo = self
                .sqs
                .queue_by_arn(&mapping.source_arn)
                .is_ok_and(|q| q.fifo());
            if let Some(name) = input["FunctionName"].as_str() {
                let function = FunctionRef::parse(name, &self.sqs.region, &self.sqs.account)?;
                self.functions.resolve(&function)?;
                mapping.function = function.name;
                mapping.qualifier = function.qualifier;
            }
            mapping.apply(input, fifo)?;
            mapping.state = match (was_enabled, mapping.enabled) {
                (false, true) => "Enabling",
                (true, false) => "Disabling",
                _ => "Updating",
            }
            .into();
            mapping.modified = now_seconds();
            match self.save(&mapping, Expect::Version(version)) {
                Ok(()) => return Ok(mapping.to_json(&self.sqs.region, &self.sqs.account)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(store(err)),
            }
        }
    }

    pub fn delete(&self, uuid: &str) -> Result<Value, AwsError> {
        loop {
            let (mut mapping, version) = self.load(uuid)?;
            mapping.state = "Deleting".into();
            match self.save(&mapping, Expect::Version(version)) {
                Ok(()) => return Ok(mapping.to_json(&self.sqs.region, &self.sqs.account)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(store(err)),
            }
        }
    }

    /// Mappings of a function and/or a source, after `marker`, at most `max`.
    pub fn list(
        &self,
        function: Option<&str>,
        source: Option<&str>,
        marker: Option<&str>,
        max: usize,
    ) -> Result<Value, AwsError> {
        let function = function
            .map(|f| FunctionRef::parse(f, &self.sqs.region, &self.sqs.account))
            .transpose()?;
        let mut mappings: Vec<Mapping> = self
            .all()?
            .into_iter()
            .map(|(m, _)| m)
            .filter(|m| function.as_ref().is_none_or(|f| f.name == m.function))
            .filter(|m| source.is_none_or(|s| s == m.source_arn))
            .filter(|m| marker.is_none_or(|after| m.uuid.as_str() > after))
            .collect();
        mappings.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        let more = mappings.len() > max;
        mappings.truncate(max);
        let mut out = json!({
            "EventSourceMappings": mappings.iter().map(|m| m.to_json(&self.sqs.region, &self.sqs.account)).collect::<Vec<_>>(),
        });
        if more && let Some(last) = mappings.last() {
            out["NextMarker"] = last.uuid.clone().into();
        }
        Ok(out)
    }
}

fn store(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "event source mappings failed");
    service("An internal error occurred.")
}

/// The items a function reported failed (`{"batchItemFailures": [{"itemIdentifier":
/// ...}]}`), empty when it reported none or does not report; `None` when its answer
/// is not a valid report, which fails the whole batch.
fn failures(reporting: bool, payload: &[u8], batch: &[(Value, String)]) -> Option<Vec<String>> {
    if !reporting {
        return Some(Vec::new());
    }
    let answer: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let items = match &answer["batchItemFailures"] {
        Value::Null => return Some(Vec::new()),
        Value::Array(items) => items,
        _ => return None,
    };
    let ids: Vec<&str> = batch
        .iter()
        .filter_map(|(r, _)| r["messageId"].as_str())
        .collect();
    items
        .iter()
        .map(|item| {
            item["itemIdentifier"]
                .as_str()
                .filter(|id| ids.contains(id))
                .map(str::to_owned)
        })
        .collect()
}

/// One message as Lambda's SQS event carries it.
fn sqs_record(received: &Received, source_arn: &str, region: &str) -> Value {
    let message = &received.message;
    let mut attributes = system_view(message, &["All".to_owned()]);
    attributes.remove("DeadLetterQueueSourceArn");
    let message_attributes: serde_json::Map<String, Value> = message
        .attributes
        .iter()
        .map(|(name, value)| {
            let mut out = json!({
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value.data_type,
            });
            if let Some(string) = &value.string {
                out["stringValue"] = string.as_str().into();
            }
            if let Some(binary) = &value.binary {
                out["binaryValue"] = binary.as_str().into();
            }
            (name.clone(), out)
        })
        .collect();
    let mut record = json!({
        "messageId": message.id,
        "receiptHandle": received.handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": nimbus_sqs::attributes::md5_hex(message.body.as_bytes()),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": region,
    });
    if let Some(md5) = nimbus_sqs::attributes::md5_of(&message.attributes) {
        record["md5OfMessageAttributes"] = md5.into();
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_failures_name_items_of_the_batch() {
        let batch = vec![
            (json!({"messageId": "a"}), "ha".to_owned()),
            (json!({"messageId": "b"}), "hb".to_owned()),
        ];
        assert_eq!(failures(false, b"garbage", &batch), Some(vec![]));
        assert_eq!(failures(true, b"null", &batch), Some(vec![]));
        assert_eq!(
            failures(true, br#"{"batchItemFailures": []}"#, &batch),
            Some(vec![])
        );
        assert_eq!(
            failures(
                true,
                br#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#,
                &batch
            ),
            Some(vec!["b".to_owned()])
        );
        assert_eq!(
            failures(
                true,
                br#"{"batchItemFailures": [{"itemIdentifier": "zz"}]}"#,
                &batch
            ),
            None
        );
        assert_eq!(
            failures(true, br#"{"batchItemFailures": "b"}"#, &batch),
            None
        );
    }

    #[test]
    fn settings_are_checked_as_lambda_checks_them() {
        let mut mapping = Mapping::new(
            "arn",
            &FunctionRef {
                name: "f".into(),
                qualifier: None,
            },
        );
        for (input, fifo, ok) in [
            (json!({"BatchSize": 100}), false, false),
            (
                json!({"BatchSize": 100, "MaximumBatchingWindowInSeconds": 1}),
                false,
                true,
            ),
            (
                json!({"BatchSize": 11, "MaximumBatchingWindowInSeconds": 1}),
                true,
                false,
            ),
            (json!({"FunctionResponseTypes": ["Other"]}), false, false),
            (
                json!({"FilterCriteria": {"Filters": [{"Pattern": "{bad"}]}}),
                false,
                false,
            ),
        ] {
            assert_eq!(mapping.clone().apply(&input, fifo).is_ok(), ok, "{input}");
        }
        mapping
            .apply(&json!({"FilterCriteria": {"Filters": [{"Pattern": "{\"body\": {\"kind\": [\"order\"]}}"}]}}), false)
            .unwrap();
        assert!(mapping.wants(&json!({"body": "{\"kind\": \"order\"}"})));
        assert!(!mapping.wants(&json!({"body": "{\"kind\": \"refund\"}"})));
        assert!(!mapping.wants(&json!({"body": "plain text"})));
    }
}
