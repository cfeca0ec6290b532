//! Messages: sent, received under a visibility timeout, deleted by receipt handle.
//!
//! Each message is a record of `sqs.messages` under a key that never changes:
//! `<queue>/<message id>` in a standard queue, `<queue>/<sequence number>` (send
//! order) in a FIFO queue. A standard queue also indexes its messages by when they
//! are visible next (`sqs.visibility/<queue>/<unix ms, 13 digits>-<id>`, valued `d`
//! before the first receive and `r` after), so a receive is a scan from the queue's
//! start up to now; taking a message moves its index entry and rewrites it, both
//! conditional on what was read, which two consumers cannot both win. A FIFO receive
//! walks the queue in order, skipping every group whose earliest message is in
//! flight. FIFO deduplication ids live in `sqs.dedup` for five minutes. A message
//! received `maxReceiveCount` times goes to the dead-letter queue at its next receive.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, Record, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::attributes::{self, Attributes};
use crate::error::{
    internal, invalid_contents, invalid_parameter, invalid_receipt, missing_parameter,
    not_inflight, over_limit,
};
use crate::queues::Queue;
use crate::{POLL, Sqs, now_ms};

pub const MESSAGES: &str = "sqs.messages";
pub const VISIBILITY: &str = "sqs.visibility";
pub const DEDUP: &str = "sqs.dedup";
const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
const PAGE: usize = 200;
pub const MAX_VISIBILITY: i64 = 43_200;
/// How often a node recounts a queue's messages in flight.
const IN_FLIGHT_RECOUNT: Duration = Duration::from_secs(1);

/// A message as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub body: String,
    pub sent_ms: i64,
    #[serde(default)]
    pub receives: u32,
    #[serde(default)]
    pub first_receive_ms: Option<i64>,
    #[serde(default)]
    pub attributes: Attributes,
    /// `AWSTraceHeader`, the one system attribute a sender may set.
    #[serde(default)]
    pub system: Attributes,
    pub sender: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub dedup: Option<String>,
    #[serde(default)]
    pub sequence: Option<String>,
    /// The nonce of the latest receive, which its receipt handle carries.
    #[serde(default)]
    pub receipt: Option<String>,
    pub visible_ms: i64,
    /// The queue it was sent to, once a dead-letter queue holds it.
    #[serde(default)]
    pub source: Option<String>,
}

/// One message to send, as `SendMessage` or a batch entry gives it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: String,
    pub delay: Option<i64>,
    pub attributes: Attributes,
    pub system: Attributes,
    pub group: Option<String>,
    pub dedup: Option<String>,
}

/// What a send returns.
#[derive(Debug, Clone)]
pub struct Sent {
    pub id: String,
    pub md5_body: String,
    pub md5_attributes: Option<String>,
    pub md5_system: Option<String>,
    pub sequence: Option<String>,
}

/// A received message and its receipt handle.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Message,
    pub handle: String,
}

/// How many messages a queue holds, by state.
pub struct Counts {
    pub visible: usize,
    pub in_flight: usize,
    pub delayed: usize,
}

impl Message {
    /// A message as sent now, visible at once.
    fn new(outgoing: Outgoing, sender: &str, now: i64) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            body: outgoing.body,
            sent_ms: now,
            receives: 0,
            first_receive_ms: None,
            attributes: outgoing.attributes,
            system: outgoing.system,
            sender: sender.to_owned(),
            group: outgoing.group,
            dedup: None,
            sequence: None,
            receipt: None,
            visible_ms: now,
            source: None,
        }
    }
}

impl Outgoing {
    /// A plain message: a body and nothing else.
    pub fn body(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            delay: None,
            attributes: Attributes::new(),
            system: Attributes::new(),
            group: None,
            dedup: None,
        }
    }

    /// An entry of `SendMessage`'s shape (`MessageBody`, `DelaySeconds`, ...).
    pub fn parse(input: &Value) -> Result<Self, AwsError> {
        let body = input["MessageBody"]
            .as_str()
            .ok_or_else(|| missing_parameter("MessageBody"))?;
        let delay = match &input["DelaySeconds"] {
            Value::Null => None,
            value => Some(crate::api::integer(value, "DelaySeconds")?),
        };
        let text = |name: &str| input[name].as_str().map(str::to_owned);
        Ok(Self {
            body: body.to_owned(),
            delay,
            attributes: attributes::parse(&input["MessageAttributes"])?,
            system: system_attributes(&input["MessageSystemAttributes"])?,
            group: text("MessageGroupId"),
            dedup: text("MessageDeduplicationId"),
        })
    }
}

fn system_attributes(input: &Value) -> Result<Attributes, AwsError> {
    if let Some(name) = input
        .as_object()
        .and_then(|m| m.keys().find(|k| *k != "AWSTraceHeader"))
    {
        return Err(invalid_parameter(format!(
            "Message system attribute name '{name}' is invalid."
        )));
    }
    let mut parsed = Attributes::new();
    if let Some(trace) = input.get("AWSTraceHeader") {
        if trace["DataType"] != "String" || trace["StringValue"].as_str().is_none() {
            return Err(invalid_parameter(
                "The message system attribute AWSTraceHeader must be a String.",
            ));
        }
        parsed.insert(
            "AWSTraceHeader".into(),
            attributes::AttributeValue {
                data_type: "String".into(),
                string: trace["StringValue"].as_str().map(str::to_owned),
                binary: None,
            },
        );
    }
    Ok(parsed)
}

/// Whether every character is one SQS accepts in a message: #x9, #xA, #xD and
/// #x20 to #x10FFFF without the surrogates and #xFFFE, #xFFFF.
fn valid_characters(body: &str) -> bool {
    body.chars().all(|c| {
        matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

fn message_key(queue: &str, id: &str) -> String {
    format!("{queue}/{id}")
}

fn index_key(queue: &str, visible_ms: i64, id: &str) -> String {
    format!("{queue}/{:013}-{id}", visible_ms.max(0))
}

/// The index entry's value: whether the message was received (in flight when not
/// visible) or not (delayed).
fn index_value(message: &Message) -> Vec<u8> {
    if message.receipt.is_some() {
        b"r".to_vec()
    } else {
        b"d".to_vec()
    }
}

fn fifo_key(queue: &str, sequence: &str) -> String {
    format!("{queue}/{sequence}")
}

/// A FIFO sequence number: increasing within this process, ordered by time across
/// nodes, 20 digits as SQS writes them.
fn next_sequence() -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = (now_ms() as u64) * 1_000_000;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return format!("{next:020}"),
            Err(seen) => last = seen,
        }
    }
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `<key>\n<nonce>`, base64 (URL-safe): where the message is now, and which receive.
fn encode_handle(key: &str, nonce: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{key}\n{nonce}"))
}

fn decode_handle(queue: &str, handle: &str) -> Result<(String, String), AwsError> {
    let invalid = || {
        invalid_receipt(format!(
            "The input receipt handle \"{handle}\" is not a valid receipt handle."
        ))
    };
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(handle)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (key, nonce) = text.split_once('\n').ok_or_else(invalid)?;
    if !key.starts_with(&format!("{queue}/")) {
        return Err(invalid());
    }
    Ok((key.to_owned(), nonce.to_owned()))
}

/// Marks a message received now and hidden for `visibility` seconds; the nonce of
/// its receipt handle.
fn take(message: &mut Message, now: i64, visibility: i64) -> String {
    let nonce = nonce();
    message.receives += 1;
    message.first_receive_ms.get_or_insert(now);
    message.receipt = Some(nonce.clone());
    message.visible_ms = now + visibility * 1000;
    nonce
}

fn decode(record: &Record) -> Result<Message, AwsError> {
    serde_json::from_slice(&record.value).map_err(internal)
}

fn encode(message: &Message) -> Vec<u8> {
    serde_json::to_vec(message).expect("messages serialize")
}

impl Sqs {
    /// Sends one message; for a FIFO queue, a message whose deduplication id was seen
    /// in the last five minutes is accepted but not sent again.
    pub fn send(&self, queue: &Queue, outgoing: Outgoing, sender: &str) -> Result<Sent, AwsError> {
        let limit = queue.number("MaximumMessageSize") as usize;
        let size = outgoing.body.len() + attributes::size(&outgoing.attributes);
        if outgoing.body.is_empty() {
            return Err(missing_parameter("MessageBody"));
        }
        if size > limit {
            return Err(invalid_parameter(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
            )));
        }
        if !valid_characters(&outgoing.body) {
            return Err(invalid_contents(
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
            ));
        }
        let now = now_ms();
        let md5_body = attributes::md5_hex(outgoing.body.as_bytes());
        let md5_attributes = attributes::md5_of(&outgoing.attributes);
        let md5_system = attributes::md5_of(&outgoing.system);
        let dedup = outgoing.dedup.clone();
        let delay = outgoing.delay;
        let mut message = Message::new(outgoing, sender, now);
        let sent = |message: &Message| Sent {
            id: message.id.clone(),
            md5_body: md5_body.clone(),
            md5_attributes: md5_attributes.clone(),
            md5_system: md5_system.clone(),
            sequence: message.sequence.clone(),
        };
        if !queue.fifo() {
            if dedup.is_some() {
                return Err(invalid_parameter(
                    "The request include parameter MessageDeduplicationId that is not valid for this queue type",
                ));
            }
            let delay = delay.unwrap_or_else(|| queue.number("DelaySeconds"));
            if !(0..=900).contains(&delay) {
                return Err(invalid_parameter(format!(
                    "Value {delay} for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided."
                )));
            }
            message.visible_ms = now + delay * 1000;
            let key = self.key_in(queue, &mut message);
            self.meta
                .commit(store(WriteBatch::new(), queue, &key, &message))
                .map_err(internal)?;
            if message.visible_ms <= now {
                self.wake(&queue.name);
            }
            return Ok(sent(&message));
        }
        if delay.is_some_and(|d| d != 0) {
            return Err(invalid_parameter(
                "Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.",
            ));
        }
        let Some(group) = message.group.clone() else {
            return Err(missing_parameter("MessageGroupId"));
        };
        let dedup = match dedup {
            Some(dedup) => dedup,
            None if queue.flag("ContentBasedDeduplication") => {
                let digest = Sha256::digest(message.body.as_bytes());
                digest.iter().map(|b| format!("{b:02x}")).collect()
            }
            None => {
                return Err(invalid_parameter(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
        };
        let dedup_key = match queue.attribute("DeduplicationScope").as_deref() {
            Some("messageGroup") => format!("{}/{group}/{dedup}", queue.name),
            _ => format!("{}/{dedup}", queue.name),
        };
        message.dedup = Some(dedup);
        message.visible_ms = now + queue.number("DelaySeconds") * 1000;
        loop {
            let seen = self.meta.get(DEDUP, &dedup_key).map_err(internal)?;
            let expect = match &seen {
                Some(record) => {
                    let earlier: Value = serde_json::from_slice(&record.value).map_err(internal)?;
                    if earlier["expires"].as_i64().unwrap_or(0) > now {
                        message.id = earlier["id"].as_str().unwrap_or_default().to_owned();
                        message.sequence = earlier["sequence"].as_str().map(str::to_owned);
                        return Ok(sent(&message));
                    }
                    Expect::Version(record.version)
                }
                None => Expect::Absent,
            };
            let sequence = next_sequence();
            message.sequence = Some(sequence.clone());
            let batch = WriteBatch::new()
                .put(
                    DEDUP,
                    &dedup_key,
                    json!({"id": message.id, "sequence": sequence, "expires": now + DEDUP_WINDOW_MS})
                        .to_string()
                        .into_bytes(),
                    expect,
                )
                .put(MESSAGES, &fifo_key(&queue.name, &sequence), encode(&message), Expect::Absent);
            match self.meta.commit(batch) {
                Ok(()) => break,
                // Another send of the same id won: answered as a duplicate next round.
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
        self.wake(&queue.name);
        Ok(sent(&message))
    }

    /// The writes that send `body` to a standard queue, for another service to commit
    /// with its own change (S3's bucket events): (table, key, value).
    pub fn staged(
        &self,
        queue: &Queue,
        body: &str,
        sender: &str,
    ) -> Vec<(String, String, Vec<u8>)> {
        let mut message = Message::new(Outgoing::body(body), sender, now_ms());
        let key = self.key_in(queue, &mut message);
        vec![
            (MESSAGES.to_owned(), key, encode(&message)),
            (
                VISIBILITY.to_owned(),
                index_key(&queue.name, message.visible_ms, &message.id),
                index_value(&message),
            ),
        ]
    }

    /// Takes up to `max` messages that are visible now, hiding each for `visibility`
    /// seconds; long polls for up to `wait` until one comes.
    pub async fn receive(
        self: &std::sync::Arc<Self>,
        queue: Queue,
        max: usize,
        visibility: i64,
        wait: Duration,
    ) -> Result<Vec<Received>, AwsError> {
        let deadline = Instant::now() + wait;
        let waker = self.waker(&queue.name);
        loop {
            let woken = waker.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let sqs = self.clone();
            let queue_now = queue.clone();
            let got =
                tokio::task::spawn_blocking(move || sqs.receive_now(&queue_now, max, visibility))
                    .await
                    .map_err(internal)??;
            let left = deadline.saturating_duration_since(Instant::now());
            if !got.is_empty() || left.is_zero() {
                return Ok(got);
            }
            tokio::select! {
                () = &mut woken => {}
                () = tokio::time::sleep(left.min(POLL)) => {}
            }
        }
    }

    /// One look at the queue: the messages visible now, taken. A queue at its
    /// in-flight limit gives none: a standard queue says so with `OverLimit`, a FIFO
    /// queue returns nothing, as SQS does.
    pub fn receive_now(
        &self,
        queue: &Queue,
        max: usize,
        visibility: i64,
    ) -> Result<Vec<Received>, AwsError> {
        let limit = self.in_flight_limit(queue);
        if self.in_flight(queue, limit)? >= limit {
            if queue.fifo() {
                return Ok(Vec::new());
            }
            return Err(over_limit(format!(
                "The queue {} has {limit} messages in flight, the most a standard queue may have: delete or let some become visible first",
                queue.name
            )));
        }
        if queue.fifo() {
            self.receive_fifo(queue, max, visibility)
        } else {
            self.receive_standard(queue, max, visibility)
        }
    }

    /// How many of a queue's messages are in flight, counted up to `limit` at most
    /// once a second per queue on this node: a receive near the limit may take a
    /// few more, as on SQS, where the count is approximate too.
    fn in_flight(&self, queue: &Queue, limit: usize) -> Result<usize, AwsError> {
        if let Some((at, count)) = self.in_flight.lock().expect("in flight").get(&queue.name)
            && at.elapsed() < IN_FLIGHT_RECOUNT
        {
            return Ok(*count);
        }
        let now = now_ms();
        let prefix = format!("{}/", queue.name);
        let mut count = 0;
        if queue.fifo() {
            self.walk(MESSAGES, &prefix, |record| {
                let message = decode(&record)?;
                if message.receipt.is_some() && message.visible_ms > now {
                    count += 1;
                }
                Ok(count < limit)
            })?;
        } else {
            // Entries visible later than now: received (`r`) or delayed (`d`).
            let after = format!("{prefix}{now:013}~");
            self.walk_after(VISIBILITY, &prefix, Some(after), |entry| {
                if entry.value == b"r" {
                    count += 1;
                }
                Ok(count < limit)
            })?;
        }
        self.in_flight
            .lock()
            .expect("in flight")
            .insert(queue.name.clone(), (Instant::now(), count));
        Ok(count)
    }

    fn receive_standard(
        &self,
        queue: &Queue,
        max: usize,
        visibility: i64,
    ) -> Result<Vec<Received>, AwsError> {
        let now = now_ms();
        let prefix = format!("{}/", queue.name);
        let due = format!("{prefix}{:013}", now + 1);
        let mut taken = Vec::new();
        self.walk(VISIBILITY, &prefix, |entry| {
            if entry.key >= due {
                return Ok(false);
            }
            let Some((_, id)) = entry.key[prefix.len()..].split_once('-') else {
                return Ok(true);
            };
            let key = message_key(&queue.name, id);
            let Some(record) = self.meta.get(MESSAGES, &key).map_err(internal)? else {
                // The message was deleted after this entry was read.
                return Ok(true);
            };
            let mut message = decode(&record)?;
            if index_key(&queue.name, message.visible_ms, id) != entry.key {
                return Ok(true);
            }
            let unindexed = WriteBatch::new()
                .delete(VISIBILITY, &entry.key, Expect::Version(entry.version))
                .delete(MESSAGES, &key, Expect::Version(record.version));
            if self.leaves(queue, unindexed, &message, now)? {
                return Ok(true);
            }
            let nonce = take(&mut message, now, visibility);
            let batch = WriteBatch::new()
                .delete(VISIBILITY, &entry.key, Expect::Version(entry.version))
                .put(
                    VISIBILITY,
                    &index_key(&queue.name, message.visible_ms, id),
                    index_value(&message),
                    Expect::Absent,
                )
                .put(
                    MESSAGES,
                    &key,
                    encode(&message),
                    Expect::Version(record.version),
                );
            match self.meta.commit(batch) {
                Ok(()) => {}
                // Taken by another consumer first.
                Err(StoreError::Conflict { .. }) => return Ok(true),
                Err(err) => return Err(internal(err)),
            }
            taken.push(Received {
                handle: encode_handle(&key, &nonce),
                message,
            });
            Ok(taken.len() < max)
        })?;
        Ok(taken)
    }

    fn receive_fifo(
        &self,
        queue: &Queue,
        max: usize,
        visibility: i64,
    ) -> Result<Vec<Received>, AwsError> {
        let now = now_ms();
        let prefix = format!("{}/", queue.name);
        let mut blocked: HashSet<String> = HashSet::new();
        let mut taken = Vec::new();
        self.walk(MESSAGES, &prefix, |record| {
            let mut message = decode(&record)?;
            let group = message.group.clone().unwrap_or_default();
            if blocked.contains(&group) {
                return Ok(true);
            }
            let removed =
                WriteBatch::new().delete(MESSAGES, &record.key, Expect::Version(record.version));
            // A group waits while its earliest message is in flight or delayed.
            if message.visible_ms > now {
                blocked.insert(group);
                return Ok(true);
            }
            if self.leaves(queue, removed, &message, now)? {
                return Ok(true);
            }
            let nonce = take(&mut message, now, visibility);
            match self.meta.commit(WriteBatch::new().put(
                MESSAGES,
                &record.key,
                encode(&message),
                Expect::Version(record.version),
            )) {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => {
                    // Another consumer took the group's head: the group is theirs.
                    blocked.insert(group);
                    return Ok(true);
                }
                Err(err) => return Err(internal(err)),
            }
            taken.push(Received {
                handle: encode_handle(&record.key, &nonce),
                message,
            });
            Ok(taken.len() < max)
        })?;
        Ok(taken)
    }

    /// Visits the records of `table` under `prefix` in key order, a page at a time,
    /// while `visit` says to go on.
    pub(crate) fn walk(
        &self,
        table: &str,
        prefix: &str,
        visit: impl FnMut(Record) -> Result<bool, AwsError>,
    ) -> Result<(), AwsError> {
        self.walk_after(table, prefix, None, visit)
    }

    /// Visits the records under `prefix` after the key `after` (from the first
    /// without), in key order, while `visit` says go on.
    fn walk_after(
        &self,
        table: &str,
        prefix: &str,
        mut after: Option<String>,
        mut visit: impl FnMut(Record) -> Result<bool, AwsError>,
    ) -> Result<(), AwsError> {
        loop {
            let page = self
                .meta
                .scan(table, prefix, after.as_deref(), PAGE)
                .map_err(internal)?;
            let full = page.len() == PAGE;
            after = page.last().map(|r| r.key.clone());
            for record in page {
                if !visit(record)? {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Takes a message out of the queue, by `removed`, if it outlived the retention
    /// period (dropped) or used up its receives (to the dead-letter queue).
    fn leaves(
        &self,
        queue: &Queue,
        removed: WriteBatch,
        message: &Message,
        now: i64,
    ) -> Result<bool, AwsError> {
        if message.sent_ms + queue.number("MessageRetentionPeriod") * 1000 <= now {
            self.settle(removed)?;
            return Ok(true);
        }
        match queue.redrive() {
            Some((target, max_receives)) if i64::from(message.receives) >= max_receives => {
                self.dead_letter(queue, removed, message, &target)
            }
            _ => Ok(false),
        }
    }

    /// Commits the removal of a message; one already changed by another request is
    /// left to it.
    fn settle(&self, batch: WriteBatch) -> Result<(), AwsError> {
        match self.meta.commit(batch) {
            Ok(()) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(err) => Err(internal(err)),
        }
    }

    /// Moves a message that used up its receives to the dead-letter queue, `removed`
    /// taking it out of its own; false when that queue is gone (the message stays).
    fn dead_letter(
        &self,
        queue: &Queue,
        removed: WriteBatch,
        message: &Message,
        target: &str,
    ) -> Result<bool, AwsError> {
        let Ok(dlq) = self.queue_by_arn(target) else {
            return Ok(false);
        };
        let mut moved = message.clone();
        moved.source.get_or_insert_with(|| self.arn(&queue.name));
        self.transfer(removed, &dlq, moved)?;
        Ok(true)
    }

    /// Puts `message` into `queue` (visible now, unreceived) in the batch that takes it
    /// out of where it was.
    pub(crate) fn transfer(
        &self,
        removed: WriteBatch,
        queue: &Queue,
        mut message: Message,
    ) -> Result<(), AwsError> {
        message.receipt = None;
        message.visible_ms = now_ms();
        let key = self.key_in(queue, &mut message);
        self.settle(store(removed, queue, &key, &message))?;
        self.wake(&queue.name);
        Ok(())
    }

    /// Where a message goes in `queue`, giving it a sequence number in a FIFO queue.
    pub(crate) fn key_in(&self, queue: &Queue, message: &mut Message) -> String {
        if queue.fifo() {
            let sequence = next_sequence();
            message.sequence = Some(sequence.clone());
            fifo_key(&queue.name, &sequence)
        } else {
            message_key(&queue.name, &message.id)
        }
    }

    /// The batch that removes a message (and its index entry) as read.
    pub(crate) fn removal(&self, queue: &Queue, record: &Record, message: &Message) -> WriteBatch {
        let batch =
            WriteBatch::new().delete(MESSAGES, &record.key, Expect::Version(record.version));
        if queue.fifo() {
            batch
        } else {
            batch.delete(
                VISIBILITY,
                &index_key(&queue.name, message.visible_ms, &message.id),
                Expect::Anything,
            )
        }
    }

    /// Deletes a received message. A handle of an earlier receive deletes nothing
    /// in a standard queue, as on SQS; in a FIFO queue it has expired.
    pub fn delete(&self, queue: &Queue, handle: &str) -> Result<(), AwsError> {
        let (key, nonce) = decode_handle(&queue.name, handle)?;
        let Some(record) = self.meta.get(MESSAGES, &key).map_err(internal)? else {
            return Ok(());
        };
        let message = decode(&record)?;
        if message.receipt.as_deref() != Some(nonce.as_str()) {
            if queue.fifo() {
                return Err(invalid_receipt("The receipt handle has expired."));
            }
            return Ok(());
        }
        self.settle(self.removal(queue, &record, &message))?;
        // The next message of its group may go now.
        if queue.fifo() {
            self.wake(&queue.name);
        }
        Ok(())
    }

    /// Changes how long a received message stays hidden, counted from now.
    pub fn change_visibility(
        &self,
        queue: &Queue,
        handle: &str,
        timeout: i64,
    ) -> Result<(), AwsError> {
        if !(0..=MAX_VISIBILITY).contains(&timeout) {
            return Err(invalid_parameter(format!(
                "Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided."
            )));
        }
        let (key, nonce) = decode_handle(&queue.name, handle)?;
        let now = now_ms();
        let record = self
            .meta
            .get(MESSAGES, &key)
            .map_err(internal)?
            .ok_or_else(not_inflight)?;
        let mut message = decode(&record)?;
        if message.receipt.as_deref() != Some(nonce.as_str()) || message.visible_ms <= now {
            return Err(not_inflight());
        }
        let was = message.visible_ms;
        message.visible_ms = now + timeout * 1000;
        let mut batch = WriteBatch::new().put(
            MESSAGES,
            &key,
            encode(&message),
            Expect::Version(record.version),
        );
        if !queue.fifo() {
            batch = batch
                .delete(
                    VISIBILITY,
                    &index_key(&queue.name, was, &message.id),
                    Expect::Anything,
                )
                .put(
                    VISIBILITY,
                    &index_key(&queue.name, message.visible_ms, &message.id),
                    index_value(&message),
                    Expect::Anything,
                );
        }
        match self.meta.commit(batch) {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => return Err(not_inflight()),
            Err(err) => return Err(internal(err)),
        }
        if timeout == 0 {
            self.wake(&queue.name);
        }
        Ok(())
    }

    /// Drops the messages of a queue past its retention period and the deduplication
    /// ids past their five minutes; receives drop expired messages they meet too, but
    /// a queue nobody reads must not keep them.
    pub fn expire(&self, queue: &Queue) -> Result<usize, AwsError> {
        let now = now_ms();
        let retention = queue.number("MessageRetentionPeriod") * 1000;
        let prefix = format!("{}/", queue.name);
        let mut expired = Vec::new();
        self.walk(MESSAGES, &prefix, |record| {
            let message = decode(&record)?;
            if message.sent_ms + retention <= now {
                expired.push(self.removal(queue, &record, &message));
            }
            Ok(true)
        })?;
        let count = expired.len();
        for batch in expired {
            self.settle(batch)?;
        }
        let mut stale = Vec::new();
        self.walk(DEDUP, &prefix, |record| {
            let seen: Value = serde_json::from_slice(&record.value).unwrap_or_default();
            if seen["expires"].as_i64().unwrap_or(0) <= now {
                stale.push(WriteBatch::new().delete(
                    DEDUP,
                    &record.key,
                    Expect::Version(record.version),
                ));
            }
            Ok(true)
        })?;
        for batch in stale {
            self.settle(batch)?;
        }
        Ok(count)
    }

    /// Deletes every message of a queue.
    pub fn purge(&self, queue: &Queue) -> Result<(), AwsError> {
        self.remove_all(MESSAGES, &format!("{}/", queue.name))?;
        self.remove_all(VISIBILITY, &format!("{}/", queue.name))?;
        Ok(())
    }

    pub fn counts(&self, queue: &Queue) -> Result<Counts, AwsError> {
        let now = now_ms();
        let prefix = format!("{}/", queue.name);
        let mut counts = Counts {
            visible: 0,
            in_flight: 0,
            delayed: 0,
        };
        let mut count = |visible_ms: i64, received: bool| {
            if visible_ms <= now {
                counts.visible += 1;
            } else if received {
                counts.in_flight += 1;
            } else {
                counts.delayed += 1;
            }
        };
        if queue.fifo() {
            for record in self.meta.scan_all(MESSAGES, &prefix).map_err(internal)? {
                let message = decode(&record)?;
                count(message.visible_ms, message.receipt.is_some());
            }
        } else {
            for entry in self.meta.scan_all(VISIBILITY, &prefix).map_err(internal)? {
                let visible_ms = entry.key[prefix.len()..]
                    .split('-')
                    .next()
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                count(visible_ms, entry.value == b"r");
            }
        }
        Ok(counts)
    }
}

/// `message` under `key` in `queue`, with its visibility entry in a standard queue.
fn store(batch: WriteBatch, queue: &Queue, key: &str, message: &Message) -> WriteBatch {
    let batch = batch.put(MESSAGES, key, encode(message), Expect::Absent);
    if queue.fifo() {
        batch
    } else {
        batch.put(
            VISIBILITY,
            &index_key(&queue.name, message.visible_ms, &message.id),
            index_value(message),
            Expect::Absent,
        )
    }
}

/// The system attributes a receive asked for (`All` or by name), as SQS names them.
pub fn system_view(message: &Message, wanted: &[String]) -> serde_json::Map<String, Value> {
    let all = wanted.iter().any(|w| w == "All");
    let wants = |name: &str| all || wanted.iter().any(|w| w == name);
    let mut out = serde_json::Map::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value
            && wants(name)
        {
            out.insert(name.to_owned(), value.into());
        }
    };
    put("SenderId", Some(message.sender.clone()));
    put("SentTimestamp", Some(message.sent_ms.to_string()));
    put(
        "ApproximateReceiveCount",
        Some(message.receives.to_string()),
    );
    put(
        "ApproximateFirstReceiveTimestamp",
        message.first_receive_ms.map(|t| t.to_string()),
    );
    put("MessageGroupId", message.group.clone());
    put("MessageDeduplicationId", message.dedup.clone());
    put("SequenceNumber", message.sequence.clone());
    put("DeadLetterQueueSourceArn", message.source.clone());
    put(
        "AWSTraceHeader",
        message
            .system
            .get("AWSTraceHeader")
            .and_then(|v| v.string.clone()),
    );
    out
}

/// The message attributes a receive asked for: `All`, `.*`, names, or `prefix.*`.
pub fn attribute_view(message: &Message, wanted: &[String]) -> Attributes {
    message
        .attributes
        .iter()
        .filter(|(name, _)| {
            wanted.iter().any(|w| {
                w == "All"
                    || w == ".*"
                    || w == *name
                    || w.strip_suffix(".*")
                        .is_some_and(|prefix| name.starts_with(&format!("{prefix}.")))
            })
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_name_their_queue_and_reject_forgeries() {
        let handle = encode_handle("q1/abc", "n1");
        assert_eq!(
            decode_handle("q1", &handle).unwrap(),
            ("q1/abc".to_owned(), "n1".to_owned())
        );
        assert!(decode_handle("q2", &handle).is_err());
        assert_eq!(
            decode_handle("q1", "garbage!").unwrap_err().code,
            "ReceiptHandleIsInvalid"
        );
    }

    #[test]
    fn sequences_increase_and_have_twenty_digits() {
        let (a, b) = (next_sequence(), next_sequence());
        assert_eq!(a.len(), 20);
        assert!(b > a);
    }

    #[test]
    fn message_characters_are_sqs_s() {
        assert!(valid_characters("hello\tworld\n\u{10000}"));
        assert!(!valid_characters("bad\u{1}"));
        assert!(!valid_characters("\u{FFFE}"));
    }

    #[test]
    fn receives_choose_attributes_by_name_and_prefix() {
        let value = attributes::AttributeValue {
            data_type: "String".into(),
            string: Some("v".into()),
            binary: None,
        };
        let message = Message {
            id: "id".into(),
            body: "b".into(),
            sent_ms: 5,
            receives: 2,
            first_receive_ms: Some(6),
            attributes: [("a.x".to_owned(), value.clone()), ("b".to_owned(), value)].into(),
            system: Attributes::new(),
            sender: "AIDA".into(),
            group: None,
            dedup: None,
            sequence: None,
            receipt: None,
            visible_ms: 0,
            source: None,
        };
        assert_eq!(attribute_view(&message, &["a.*".into()]).len(), 1);
        assert_eq!(attribute_view(&message, &["All".into()]).len(), 2);
        assert!(attribute_view(&message, &[]).is_empty());
        let system = system_view(&message, &["ApproximateReceiveCount".into()]);
        assert_eq!(system["ApproximateReceiveCount"], "2");
        assert_eq!(system.len(), 1);
        assert_eq!(system_view(&message, &["All".into()]).len(), 4);
    }
}
