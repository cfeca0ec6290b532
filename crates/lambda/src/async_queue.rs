//! Asynchronous (`Event`) invocations: accepted into a durable queue, then run with
//! retries. An event leaves the queue only once it has run (or used up its retries or
//! its maximum age), so delivery is at least once and survives a restart.
//!
//! Keys: `lambda.async/<due, unix ms, 13 digits>-<request id>`, so a scan from the
//! start yields the events that are due, oldest first.
//!
//! Every worker of a deployment runs the queue. A worker claims an event before it
//! runs it, by rewriting the event with its name on condition that nobody changed it
//! since it was read (the store's equivalent of `FOR UPDATE SKIP LOCKED`); others skip
//! an event claimed by a live node, and take over one whose claimant was lost, so an
//! event a lost worker was running is retried elsewhere.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, MetadataStore, Record, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::error::service;
use crate::invoke::{InvokeRequest, Invoker};
use crate::names::FunctionRef;
use crate::now_ms;

const QUEUE: &str = "lambda.async";
/// The delay before the first retry; each further retry waits twice as long.
const RETRY_BASE_MS: i64 = 1000;
/// A throttled event, or one for a function being updated, waits this long before it
/// is tried again, twice as long each time up to `MAX_DEFER_MS`.
const DEFER_BASE_MS: i64 = 500;
const MAX_DEFER_MS: i64 = 60_000;
/// Events of one function running at once, so one busy function cannot hold every
/// slot while others' events wait.
const MAX_RUNNING_PER_FUNCTION: usize = 16;
/// Events running at once.
const MAX_RUNNING: usize = 64;
/// How often the queue is looked at when nothing wakes it.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueuedEvent {
    request_id: String,
    function: String,
    qualifier: Option<String>,
    /// The payload, base64.
    payload: String,
    enqueued_ms: i64,
    attempts: u32,
    /// Times the function could not take the event yet (throttled, or still being
    /// updated); these back off without using up retries.
    #[serde(default)]
    deferrals: u32,
    /// The node running the event, on a shared store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claimed_by: Option<String>,
}

fn key(due_ms: i64, request_id: &str) -> String {
    format!("{:013}-{request_id}", due_ms.max(0))
}

/// The events being run, overall and per function.
#[derive(Default)]
struct Running {
    keys: HashSet<String>,
    per_function: HashMap<String, usize>,
}

impl Running {
    /// Takes a slot for an event unless it already runs or its limits are reached.
    fn start(&mut self, key: &str, function: &str) -> bool {
        let mine = self.per_function.get(function).copied().unwrap_or(0);
        if self.keys.len() >= MAX_RUNNING
            || mine >= MAX_RUNNING_PER_FUNCTION
            || self.keys.contains(key)
        {
            return false;
        }
        self.keys.insert(key.to_owned());
        *self.per_function.entry(function.to_owned()).or_default() += 1;
        true
    }

    fn finish(&mut self, key: &str, function: &str) {
        self.keys.remove(key);
        if let Some(count) = self.per_function.get_mut(function) {
            *count -= 1;
            if *count == 0 {
                self.per_function.remove(function);
            }
        }
    }
}

pub struct AsyncQueue {
    meta: Arc<dyn MetadataStore>,
    invoker: Arc<Invoker>,
    wake: Notify,
    running: Mutex<Running>,
    cluster: Arc<nimbus_cluster::Cluster>,
    sqs: Arc<nimbus_sqs::Sqs>,
    sns: Arc<nimbus_sns::Sns>,
}

impl AsyncQueue {
    /// The queue, whose events this node runs (including those a restart left) when
    /// it is a worker; else it only accepts them.
    pub fn start(
        meta: Arc<dyn MetadataStore>,
        invoker: Arc<Invoker>,
        cluster: Arc<nimbus_cluster::Cluster>,
        sqs: Arc<nimbus_sqs::Sqs>,
        sns: Arc<nimbus_sns::Sns>,
    ) -> Arc<Self> {
        let worker = cluster.me().roles.worker;
        let queue = Arc::new(Self {
            meta,
            invoker,
            wake: Notify::new(),
            running: Mutex::new(Running::default()),
            cluster,
            sqs,
            sns,
        });
        if worker {
            let worker = queue.clone();
            tokio::spawn(async move { worker.work().await });
        }
        queue
    }

    /// The queue entry for an event, for a caller to commit in a batch of its own
    /// (S3 commits bucket events with the object change); `wake` once committed.
    pub fn stage(
        &self,
        function: FunctionRef,
        request_id: &str,
        payload: &[u8],
    ) -> (String, String, Vec<u8>) {
        let now = now_ms();
        let event = QueuedEvent {
            request_id: request_id.to_owned(),
            function: function.name,
            qualifier: function.qualifier,
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            enqueued_ms: now,
            attempts: 0,
            deferrals: 0,
            claimed_by: None,
        };
        (QUEUE.to_owned(), key(now, request_id), encode(&event))
    }

    /// Looks at the queue now rather than at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Accepts an event durably; it runs soon after.
    pub async fn enqueue(
        &self,
        function: FunctionRef,
        request_id: &str,
        payload: Bytes,
    ) -> Result<(), AwsError> {
        let (table, key, value) = self.stage(function, request_id, &payload);
        let batch = WriteBatch::new().put(&table, &key, value, Expect::Absent);
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || meta.commit(batch))
            .await
            .map_err(|_| service("An internal error occurred."))?
            .map_err(|err| {
                tracing::error!(error = %err, "queueing an event failed");
                service("The event could not be queued.")
            })?;
        self.wake();
        Ok(())
    }

    /// Sends `function`'s invocation record to a destination: a function (as an
    /// event of its own), a bucket (as an object), a queue or a topic (as a message).
    /// Lambda sends it as the function's execution role, as on AWS: the role must be
    /// allowed `s3:PutObject` on the object, `lambda:InvokeFunction` on the function,
    /// `sqs:SendMessage` on the queue or `sns:Publish` on the topic.
    async fn deliver(
        &self,
        function: &FunctionRef,
        destination: &str,
        event: &QueuedEvent,
        record: Vec<u8>,
    ) -> Result<(), String> {
        let functions = self.invoker.functions.clone();
        let (sqs, sns) = (self.sqs.clone(), self.sns.clone());
        let (function, destination) = (function.clone(), destination.to_owned());
        let key = format!("aws/lambda/async/{}/{}", event.function, event.request_id);
        let to_function = tokio::task::spawn_blocking(move || {
            let role = functions
                .resolve(&function)
                .map_err(|err| err.message)?
                .config
                .role;
            let caller = functions.as_role(&role)?;
            if is_message_target(&destination) {
                let record = String::from_utf8(record).map_err(|err| err.to_string())?;
                let sender = (functions.as_ref(), sqs.as_ref(), &sns, &caller);
                send_message_as(sender, &destination, &record, &json!({}))?;
                return Ok(None);
            }
            if let Some(bucket) = destination.strip_prefix("arn:aws:s3:::") {
                functions
                    .objects()
                    .put_object_as(&caller, bucket, &key, &record, "application/json")
                    .map_err(|err| err.detail())?;
                return Ok(None);
            }
            let target = FunctionRef::parse(&destination, &functions.region, &functions.account)
                .map_err(|err| err.message)?;
            functions
                .authorize_invoke(&caller, &target)
                .map_err(|err| err.message)?;
            Ok::<_, String>(Some((target, record)))
        })
        .await
        .map_err(|err| err.to_string())??;
        let Some((target, record)) = to_function else {
            return Ok(());
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        self.enqueue(target, &request_id, Bytes::from(record))
            .await
            .map_err(|err| err.message)
    }

    /// Sends a failed event to the function's dead-letter queue or topic, if it has
    /// one, as its execution role: the event as the message, with Lambda's
    /// `RequestID`, `ErrorCode` and `ErrorMessage` attributes.
    async fn dead_letter(
        &self,
        function: &FunctionRef,
        event: &QueuedEvent,
        payload: &Bytes,
        result: &Result<crate::invoke::InvokeResult, AwsError>,
    ) -> Result<(), String> {
        let (code, error) = match result {
            Ok(outcome) => (200, String::from_utf8_lossy(&outcome.payload).into_owned()),
            Err(err) => (err.status.as_u16(), err.message.clone()),
        };
        // The first kilobyte of the error, as Lambda sends.
        let mut end = error.len().min(1024);
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        let attributes = json!({
            "RequestID": {"DataType": "String", "StringValue": event.request_id},
            "ErrorCode": {"DataType": "Number", "StringValue": code.to_string()},
            "ErrorMessage": {"DataType": "String", "StringValue": if end == 0 { "unknown" } else { &error[..end] }},
        });
        let body = String::from_utf8_lossy(payload).into_owned();
        let functions = self.invoker.functions.clone();
        let (sqs, sns, function) = (self.sqs.clone(), self.sns.clone(), function.clone());
        tokio::task::spawn_blocking(move || {
            let config = functions
                .resolve(&function)
                .map_err(|err| err.message)?
                .config;
            let Some(target) = config.dead_letter_config.and_then(|c| c.target_arn) else {
                return Ok(());
            };
            let caller = functions.as_role(&config.role)?;
            let sender = (functions.as_ref(), sqs.as_ref(), &sns, &caller);
            send_message_as(sender, &target, &body, &attributes)
        })
        .await
        .map_err(|err| err.to_string())?
    }

    async fn work(self: Arc<Self>) {
        loop {
            self.clone().start_due().await;
            let _ = tokio::time::timeout(POLL, self.wake.notified()).await;
        }
    }

    /// Starts the due events that have a slot, reading the queue in due order page by
    /// page until a page ends in events not yet due or every slot is taken: events
    /// that cannot start (running already, or of a function at its limit) must not
    /// hide the due events of other functions behind them.
    async fn start_due(self: Arc<Self>) {
        let mut after: Option<String> = None;
        loop {
            let page = {
                let (meta, after) = (self.meta.clone(), after.clone());
                tokio::task::spawn_blocking(move || {
                    meta.scan(QUEUE, "", after.as_deref(), MAX_RUNNING * 2)
                })
                .await
            };
            let records = match page {
                Ok(Ok(records)) => records,
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "reading the event queue failed");
                    return;
                }
                Err(err) => {
                    tracing::error!(error = %err, "the event queue reader failed");
                    return;
                }
            };
            let full_page = records.len() == MAX_RUNNING * 2;
            after = records.last().map(|record| record.key.clone());
            let now = now_ms();
            let me = self.cluster.me().name.clone();
            let live = self.cluster.others_active();
            for record in records {
                let due_ms: i64 = record
                    .key
                    .split('-')
                    .next()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                if due_ms > now {
                    return;
                }
                let Ok(mut event) = serde_json::from_slice::<QueuedEvent>(&record.value) else {
                    tracing::error!(key = %record.key, "dropping an unreadable queued event");
                    let meta = self.meta.clone();
                    let batch = WriteBatch::new().delete(QUEUE, &record.key, Expect::Anything);
                    let _ = tokio::task::spawn_blocking(move || meta.commit(batch)).await;
                    continue;
                };
                if event.claimed_by.as_ref().is_some_and(|n| live.contains(n)) {
                    continue;
                }
                // An event this node claimed but is not running was left by its
                // earlier run: it is this node's to run again.
                let started = {
                    let mut running = self.running.lock().expect("queue state");
                    if running.keys.len() >= MAX_RUNNING {
                        return;
                    }
                    running.start(&record.key, &event.function)
                };
                if !started {
                    continue;
                }
                if !self.claim(&record, &mut event, &me).await {
                    self.running
                        .lock()
                        .expect("queue state")
                        .finish(&record.key, &event.function);
                    continue;
                }
                let queue = self.clone();
                tokio::spawn(async move { queue.run(record.key, event).await });
            }
            if !full_page {
                return;
            }
        }
    }

    /// Claims an event for this node, unless another node changed it since it was
    /// read. A node alone on its store needs no claim.
    async fn claim(&self, record: &Record, event: &mut QueuedEvent, me: &str) -> bool {
        if !self.meta.shared() {
            return true;
        }
        event.claimed_by = Some(me.to_owned());
        let batch = WriteBatch::new().put(
            QUEUE,
            &record.key,
            encode(event),
            Expect::Version(record.version),
        );
        let meta = self.meta.clone();
        matches!(
            tokio::task::spawn_blocking(move || meta.commit(batch)).await,
            Ok(Ok(()))
        )
    }

    async fn run(self: Arc<Self>, key_now: String, mut event: QueuedEvent) {
        let payload = base64::engine::general_purpose::STANDARD
            .decode(&event.payload)
            .map(Bytes::from)
            .unwrap_or_default();
        let function = FunctionRef {
            name: event.function.clone(),
            qualifier: event.qualifier.clone(),
        };
        let config = {
            let (functions, function) = (self.invoker.functions.clone(), function.clone());
            tokio::task::spawn_blocking(move || functions.event_invoke(&function))
                .await
                .unwrap_or_default()
        };
        let result = self
            .invoker
            .invoke(InvokeRequest {
                function: function.clone(),
                request_id: event.request_id.clone(),
                payload: payload.clone(),
                client_context: None,
                tail: false,
            })
            .await;
        let now = now_ms();
        let next_due = match &result {
            Ok(outcome) if outcome.function_error.is_none() => None,
            Err(err)
                if err.status == http::StatusCode::TOO_MANY_REQUESTS
                    || err.status == http::StatusCode::CONFLICT =>
            {
                event.deferrals += 1;
                Some(now + (DEFER_BASE_MS << event.deferrals.min(8)).min(MAX_DEFER_MS))
            }
            Err(err) if err.status.is_client_error() => {
                tracing::warn!(request_id = %event.request_id, error = %err.message, "dropping an event whose function cannot run it");
                None
            }
            _ => {
                event.attempts += 1;
                (event.attempts <= config.retries())
                    .then(|| now + RETRY_BASE_MS * (1 << (event.attempts - 1)))
            }
        };
        let mut expired = false;
        let next_due = next_due.filter(|_| {
            let young = now - event.enqueued_ms < config.max_age_ms();
            if !young {
                expired = true;
                tracing::warn!(request_id = %event.request_id, "dropping an event past its maximum age");
            }
            young
        });
        if next_due.is_none() {
            let condition = match &result {
                Ok(outcome) if outcome.function_error.is_none() => Some("Success"),
                _ if expired => Some("EventAgeExceeded"),
                Ok(_) => Some("RetriesExhausted"),
                Err(err) if err.status.is_server_error() => Some("RetriesExhausted"),
                Err(_) => None,
            };
            if condition == Some("RetriesExhausted") {
                tracing::warn!(request_id = %event.request_id, attempts = event.attempts, "event failed after its retries");
            }
            if matches!(condition, Some("RetriesExhausted" | "EventAgeExceeded"))
                && let Err(err) = self.dead_letter(&function, &event, &payload, &result).await
            {
                tracing::error!(request_id = %event.request_id, error = %err, "sending a dead letter failed");
            }
            if let Some(condition) = condition
                && let Some(destination) = config.destination(condition == "Success")
            {
                let record = invocation_record(
                    &event,
                    &self.invoker.functions,
                    &function,
                    condition,
                    &payload,
                    &result,
                );
                if let Err(err) = self.deliver(&function, destination, &event, record).await {
                    tracing::error!(%destination, error = %err, "delivering an invocation record failed");
                }
            }
        }
        let mut batch = WriteBatch::new().delete(QUEUE, &key_now, Expect::Anything);
        if let Some(due) = next_due {
            event.claimed_by = None;
            batch = batch.put(
                QUEUE,
                &key(due, &event.request_id),
                encode(&event),
                Expect::Anything,
            );
        }
        let meta = self.meta.clone();
        match tokio::task::spawn_blocking(move || meta.commit(batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "updating the event queue failed"),
            Err(err) => tracing::error!(error = %err, "the event queue writer failed"),
        }
        self.running
            .lock()
            .expect("queue state")
            .finish(&key_now, &event.function);
        self.wake.notify_one();
    }
}

/// Whether an ARN names a queue or a topic, which take messages.
fn is_message_target(arn: &str) -> bool {
    arn.starts_with("arn:aws:sqs:") || arn.starts_with("arn:aws:sns:")
}

/// Who sends a message, and through which services.
type Sender<'a> = (
    &'a crate::functions::Functions,
    &'a nimbus_sqs::Sqs,
    &'a Arc<nimbus_sns::Sns>,
    &'a nimbus_auth::Caller,
);

/// Sends `body` with message `attributes` (`{name: {DataType, StringValue}}`) to a
/// queue or a topic as the caller, who must be allowed `sqs:SendMessage` or
/// `sns:Publish` on it (with the queue's or topic's policy): for destinations and
/// dead letters.
fn send_message_as(
    (functions, sqs, sns, caller): Sender<'_>,
    arn: &str,
    body: &str,
    attributes: &Value,
) -> Result<(), String> {
    if arn.starts_with("arn:aws:sns:") {
        let name = sns.topic_name(arn).map_err(|err| err.message)?;
        let (topic, _) = sns.topic(name).map_err(|err| err.message)?;
        let policy = topic.attributes.get("Policy").map(String::as_str);
        functions
            .authorize_as(caller, "sns:Publish", arn, policy)
            .map_err(|err| err.message)?;
        let outgoing = nimbus_sns::Outgoing {
            message: body.to_owned(),
            attributes: attributes
                .as_object()
                .map(|map| map.clone().into_iter().collect())
                .unwrap_or_default(),
            ..Default::default()
        };
        return sns
            .publish(name, outgoing, &sns.endpoint)
            .map(drop)
            .map_err(|err| err.message);
    }
    let queue = sqs.queue_by_arn(arn).map_err(|err| err.message)?;
    let policy = queue.attributes.get("Policy").map(String::as_str);
    functions
        .authorize_as(caller, "sqs:SendMessage", arn, policy)
        .map_err(|err| err.message)?;
    let mut outgoing = nimbus_sqs::messages::Outgoing::body(body);
    outgoing.attributes = nimbus_sqs::attributes::parse(attributes).map_err(|err| err.message)?;
    sqs.send(&queue, outgoing, &caller.principal.user_id())
        .map(drop)
        .map_err(|err| err.message)
}

fn encode(event: &QueuedEvent) -> Vec<u8> {
    serde_json::to_vec(event).expect("events serialize")
}

/// Lambda's invocation record, as destinations receive it.
fn invocation_record(
    event: &QueuedEvent,
    functions: &crate::functions::Functions,
    function: &FunctionRef,
    condition: &str,
    payload: &Bytes,
    result: &Result<crate::invoke::InvokeResult, AwsError>,
) -> Vec<u8> {
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let qualifier = function.qualifier.as_deref().unwrap_or("$LATEST");
    let mut record = serde_json::json!({
        "version": "1.0",
        "timestamp": timestamp,
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": functions.arn(&function.name, Some(qualifier)),
            "condition": condition,
            // Failed attempts are counted as they happen; a success adds its own.
            "approximateInvokeCount": event.attempts + u32::from(condition == "Success"),
        },
        "requestPayload": serde_json::from_slice::<serde_json::Value>(payload).unwrap_or(serde_json::Value::Null),
    });
    if let Ok(outcome) = result {
        let mut context =
            serde_json::json!({ "statusCode": 200, "executedVersion": outcome.executed_version });
        if let Some(error) = outcome.function_error {
            context["functionError"] = error.into();
        }
        record["responseContext"] = context;
        record["responsePayload"] =
            serde_json::from_slice(&outcome.payload).unwrap_or(serde_json::Value::Null);
    }
    serde_json::to_vec(&record).expect("records serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_function_cannot_take_every_slot() {
        let mut running = Running::default();
        for i in 0..MAX_RUNNING_PER_FUNCTION {
            assert!(running.start(&format!("k{i}"), "busy"));
        }
        assert!(!running.start("one-more", "busy"));
        assert!(running.start("other", "quiet"));
        assert!(
            !running.start("other", "quiet"),
            "an event runs once at a time"
        );
        running.finish("k0", "busy");
        assert!(running.start("one-more", "busy"));
    }
}
