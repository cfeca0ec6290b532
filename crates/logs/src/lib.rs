//! CloudWatch Logs: log groups, streams and events in the metadata store, in the
//! order they happened. Function and task output is appended through [`LogSink`];
//! the Logs API (`api.rs`) creates, reads, filters and expires them.
//!
//! Keys: `logs.groups/<group>`, `logs.streams/<group>\n<stream>`, and
//! `logs.events/<group>\n<stream>\n<timestamp, 13 digits>-<sequence, 10 digits>`.
//! A newline cannot occur in group or stream names, so a prefix scan never mixes
//! streams, and zero padding keeps events in time order. The sequence is the stream's
//! own counter, kept in its record and advanced in the batch that writes the events,
//! so a key is never reused: not after a restart, not by another node.

pub mod api;
pub mod filter;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_storage::{Expect, MetadataStore, Record, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};

const GROUPS: &str = "logs.groups";
const STREAMS: &str = "logs.streams";
const EVENTS: &str = "logs.events";

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Unix milliseconds when the line was written.
    pub timestamp: i64,
    pub message: String,
}

/// A log line as stored, with when it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub timestamp: i64,
    pub message: String,
    #[serde(default)]
    pub ingestion: i64,
    /// The event's key, which orders it in its stream (not stored: it is the key).
    #[serde(skip)]
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupRecord {
    pub created: i64,
    pub retention_days: Option<i64>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamRecord {
    pub created: i64,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    pub last_ingestion: Option<i64>,
    pub stored_bytes: u64,
    /// The sequence of the stream's next event; absent in records written before it
    /// was kept, and then seeded from the stream's events.
    #[serde(default)]
    pub next_sequence: Option<u64>,
}

/// Where log events are kept.
pub struct LogStore {
    meta: Arc<dyn MetadataStore>,
    /// Appends read and rewrite stream records: one at a time in this process (other
    /// nodes are kept out by the records' versions).
    appending: Mutex<()>,
}

/// How often an append re-reads stream records another writer changed meanwhile.
const APPEND_ATTEMPTS: usize = 8;

pub fn stream_key(group: &str, stream: &str) -> String {
    format!("{group}\n{stream}")
}

fn stream_prefix(group: &str, stream: &str) -> String {
    format!("{group}\n{stream}\n")
}

/// The first event key of a stream at or after `timestamp`, as a scan's `after`.
fn before_time(group: &str, stream: &str, timestamp: i64) -> String {
    format!("{}{:013}", stream_prefix(group, stream), timestamp.max(0))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn decode<T: for<'de> Deserialize<'de>>(record: &Record) -> Result<T, StoreError> {
    serde_json::from_slice(&record.value)
        .map_err(|err| StoreError::Backend(format!("corrupt log record {}: {err}", record.key)))
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("log records serialize")
}

impl LogStore {
    pub fn new(meta: Arc<dyn MetadataStore>) -> Self {
        Self {
            meta,
            appending: Mutex::new(()),
        }
    }

    pub fn group(&self, group: &str) -> Result<Option<(u64, GroupRecord)>, StoreError> {
        match self.meta.get(GROUPS, group)? {
            Some(record) => Ok(Some((record.version, decode(&record)?))),
            None => Ok(None),
        }
    }

    pub fn groups(&self, prefix: &str) -> Result<Vec<(String, GroupRecord)>, StoreError> {
        self.meta
            .scan_all(GROUPS, prefix)?
            .iter()
            .map(|record| Ok((record.key.clone(), decode(record)?)))
            .collect()
    }

    pub fn stream(&self, group: &str, stream: &str) -> Result<Option<StreamRecord>, StoreError> {
        match self.meta.get(STREAMS, &stream_key(group, stream))? {
            Some(record) => Ok(Some(decode(&record)?)),
            None => Ok(None),
        }
    }

    pub fn streams(
        &self,
        group: &str,
        prefix: &str,
    ) -> Result<Vec<(String, StreamRecord)>, StoreError> {
        let start = format!("{group}\n");
        self.meta
            .scan_all(STREAMS, &format!("{start}{prefix}"))?
            .iter()
            .map(|record| Ok((record.key[start.len()..].to_owned(), decode(record)?)))
            .collect()
    }

    /// Creates a group; false when it already exists.
    pub fn create_group(
        &self,
        group: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let record = GroupRecord {
            created: now_ms(),
            retention_days: None,
            tags,
        };
        match self.meta.commit(WriteBatch::new().put(
            GROUPS,
            group,
            encode(&record),
            Expect::Absent,
        )) {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    pub fn put_group(
        &self,
        group: &str,
        version: u64,
        record: &GroupRecord,
    ) -> Result<(), StoreError> {
        self.meta.commit(WriteBatch::new().put(
            GROUPS,
            group,
            encode(record),
            Expect::Version(version),
        ))
    }

    /// Creates a stream in an existing group; false when it already exists.
    pub fn create_stream(&self, group: &str, stream: &str) -> Result<bool, StoreError> {
        let record = StreamRecord {
            created: now_ms(),
            ..StreamRecord::default()
        };
        let key = stream_key(group, stream);
        match self.meta.commit(WriteBatch::new().put(
            STREAMS,
            &key,
            encode(&record),
            Expect::Absent,
        )) {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Deletes a stream's events in chunks, then the stream.
    pub fn delete_stream(&self, group: &str, stream: &str) -> Result<(), StoreError> {
        self.delete_events(group, stream, i64::MAX)?;
        self.meta.commit(WriteBatch::new().delete(
            STREAMS,
            &stream_key(group, stream),
            Expect::Anything,
        ))
    }

    /// Deletes a group's streams and events, then the group: a crash part way leaves
    /// the group, with fewer events, never events without a group.
    pub fn delete_group(&self, group: &str) -> Result<(), StoreError> {
        for (stream, _) in self.streams(group, "")? {
            self.delete_stream(group, &stream)?;
        }
        self.meta
            .commit(WriteBatch::new().delete(GROUPS, group, Expect::Anything))
    }

    /// Deletes a stream's events older than `cutoff` (ms); how many went.
    pub fn delete_events(
        &self,
        group: &str,
        stream: &str,
        cutoff: i64,
    ) -> Result<usize, StoreError> {
        let prefix = stream_prefix(group, stream);
        let end = before_time(group, stream, cutoff);
        let mut deleted = 0;
        loop {
            let old: Vec<Record> = self
                .meta
                .scan(EVENTS, &prefix, None, 1000)?
                .into_iter()
                .filter(|record| record.key < end)
                .collect();
            if old.is_empty() {
                return Ok(deleted);
            }
            deleted += old.len();
            let batch = old.iter().fold(WriteBatch::new(), |batch, record| {
                batch.delete(EVENTS, &record.key, Expect::Anything)
            });
            self.meta.commit(batch)?;
        }
    }

    /// Removes events older than their group's retention; how many went.
    pub fn expire(&self, now: i64) -> Result<usize, StoreError> {
        let mut expired = 0;
        for (group, record) in self.groups("")? {
            if let Some(days) = record.retention_days {
                for (stream, _) in self.streams(&group, "")? {
                    expired += self.delete_events(&group, &stream, now - days * 86_400_000)?;
                }
            }
        }
        Ok(expired)
    }

    /// Appends the events of many streams in one durable write, creating the groups
    /// and streams they name when missing (function and task output). The write is
    /// conditional on every record it read; a concurrent writer's change is re-read.
    fn append_all(&self, pending: &[Pending]) -> Result<(), StoreError> {
        let _one = self.appending.lock().expect("log appends");
        let mut attempt = 1;
        loop {
            match self.meta.commit(self.append_batch(pending)?) {
                Err(StoreError::Conflict { table, .. })
                    if table != EVENTS && attempt < APPEND_ATTEMPTS =>
                {
                    attempt += 1
                }
                written => return written,
            }
        }
    }

    /// The batch that appends `pending`: each event under a fresh key of its stream
    /// (refused by the store should it exist), each stream record advanced past them.
    fn append_batch(&self, pending: &[Pending]) -> Result<WriteBatch, StoreError> {
        let now = now_ms();
        let mut batch = WriteBatch::new();
        let mut streams: BTreeMap<String, (Expect, StreamRecord)> = BTreeMap::new();
        let mut new_groups = std::collections::BTreeSet::new();
        for Pending {
            group,
            stream,
            events,
            ..
        } in pending
        {
            if events.is_empty() {
                continue;
            }
            let key = stream_key(group, stream);
            if !streams.contains_key(&key) {
                let read = match self.meta.get(STREAMS, &key)? {
                    Some(record) => (Expect::Version(record.version), decode(&record)?),
                    None => {
                        if !new_groups.contains(group) && self.group(group)?.is_none() {
                            new_groups.insert(group);
                            let record = GroupRecord {
                                created: now,
                                ..GroupRecord::default()
                            };
                            batch = batch.put(GROUPS, group, encode(&record), Expect::Absent);
                        }
                        let record = StreamRecord {
                            created: now,
                            ..StreamRecord::default()
                        };
                        (Expect::Absent, record)
                    }
                };
                streams.insert(key.clone(), read);
            }
            let (_, record) = streams.get_mut(&key).expect("inserted above");
            let prefix = stream_prefix(group, stream);
            let mut sequence = match record.next_sequence {
                Some(next) => next,
                None => self.next_sequence(&prefix)?,
            };
            for event in events {
                let event_key = format!("{prefix}{:013}-{sequence:010}", event.timestamp.max(0));
                sequence += 1;
                let stored = StoredEvent {
                    timestamp: event.timestamp,
                    message: event.message.clone(),
                    ingestion: now,
                    key: String::new(),
                };
                batch = batch.put(EVENTS, &event_key, encode(&stored), Expect::Absent);
                record.first_event = Some(
                    record
                        .first_event
                        .map_or(event.timestamp, |t| t.min(event.timestamp)),
                );
                record.last_event = Some(
                    record
                        .last_event
                        .map_or(event.timestamp, |t| t.max(event.timestamp)),
                );
                record.stored_bytes += event.message.len() as u64;
            }
            record.next_sequence = Some(sequence);
            record.last_ingestion = Some(now);
        }
        for (key, (expect, record)) in &streams {
            batch = batch.put(STREAMS, key, encode(record), *expect);
        }
        Ok(batch)
    }

    /// The sequence after every event a stream holds (events kept before streams
    /// counted their own, or left by a stream deleted while written to).
    fn next_sequence(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut next = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.meta.scan(EVENTS, prefix, after.as_deref(), 1000)?;
            let Some(last) = page.last() else {
                return Ok(next);
            };
            for record in &page {
                let sequence = record.key.rsplit('-').next().and_then(|s| s.parse().ok());
                next = next.max(sequence.map_or(0, |s: u64| s + 1));
            }
            after = Some(last.key.clone());
        }
    }

    /// Appends events to one stream durably (PutLogEvents acknowledges after this).
    pub fn append(
        &self,
        group: &str,
        stream: &str,
        events: Vec<LogEvent>,
    ) -> Result<(), StoreError> {
        self.append_all(&[Pending {
            group: group.to_owned(),
            stream: stream.to_owned(),
            events,
            committed: None,
        }])
    }

    fn decode_events(records: Vec<Record>) -> Result<Vec<StoredEvent>, StoreError> {
        records
            .into_iter()
            .map(|record| {
                let mut event: StoredEvent = decode(&record)?;
                event.key = record.key;
                Ok(event)
            })
            .collect()
    }

    /// A stream's events from `after` (an event key) or from `start` (ms), in order,
    /// at most `limit`.
    pub fn events_after(
        &self,
        group: &str,
        stream: &str,
        after: Option<&str>,
        start: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let from = match after {
            Some(after) => after.to_owned(),
            None => before_time(group, stream, start),
        };
        Self::decode_events(self.meta.scan(
            EVENTS,
            &stream_prefix(group, stream),
            Some(&from),
            limit,
        )?)
    }

    /// A stream's events before `before` (an event key) or before `end` (ms), newest
    /// first, at most `limit`.
    pub fn events_before(
        &self,
        group: &str,
        stream: &str,
        before: Option<&str>,
        end: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let to = match before {
            Some(before) => before.to_owned(),
            None => before_time(group, stream, end),
        };
        Self::decode_events(self.meta.scan_back(
            EVENTS,
            &stream_prefix(group, stream),
            Some(&to),
            limit,
        )?)
    }

    /// A stream's events in order, at most `limit`.
    pub fn events(
        &self,
        group: &str,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError> {
        Ok(self
            .events_after(group, stream, None, 0, limit)?
            .into_iter()
            .map(|e| LogEvent {
                timestamp: e.timestamp,
                message: e.message,
            })
            .collect())
    }
}

/// How often retention is enforced.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(600);

/// Deletes expired events now and every ten minutes.
/// The sweep runs on the one node that holds `lease`.
pub fn start_expiry(store: Arc<LogStore>, lease: nimbus_cluster::Lease) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
        loop {
            tick.tick().await;
            if !lease.held() {
                continue;
            }
            let store = store.clone();
            match tokio::task::spawn_blocking(move || store.expire(now_ms())).await {
                Ok(Ok(expired)) if expired > 0 => {
                    tracing::info!(expired, "removed log events past their retention")
                }
                Ok(Err(err)) => tracing::error!(error = %err, "expiring log events failed"),
                _ => {}
            }
        }
    });
}

/// Events for one stream, on their way to the store.
struct Pending {
    group: String,
    stream: String,
    events: Vec<LogEvent>,
    /// Told whether the write holding the events committed, for a writer that must
    /// not let go of its copy before.
    committed: Option<tokio::sync::oneshot::Sender<bool>>,
}

/// How many events a write may gather, and how long it waits for more.
const BATCH_EVENTS: usize = 10_000;
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Appends queued before writers wait for the store.
const QUEUE: usize = 4096;

/// A background writer in front of a [`LogStore`]: appends from many invocations are
/// gathered into one durable write, so the request path never waits for the disk.
/// What [`LogSink::append`] queued and the writer holds when the process dies (at
/// most `BATCH_WAIT` of output) is lost, as with any asynchronous log pipeline; a
/// writer that keeps its own copy until it is stored uses [`LogSink::append_committed`].
#[derive(Clone)]
pub struct LogSink {
    queue: tokio::sync::mpsc::Sender<Pending>,
}

impl LogSink {
    pub fn start(store: Arc<LogStore>) -> Self {
        let (queue, mut incoming) = tokio::sync::mpsc::channel::<Pending>(QUEUE);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let mut count = batch[0].events.len();
                let deadline = tokio::time::sleep(BATCH_WAIT);
                tokio::pin!(deadline);
                while count < BATCH_EVENTS {
                    tokio::select! {
                        more = incoming.recv() => match more {
                            Some(more) => {
                                count += more.events.len();
                                batch.push(more);
                            }
                            None => break,
                        },
                        () = &mut deadline => break,
                    }
                }
                let store = store.clone();
                let written = tokio::task::spawn_blocking(move || {
                    let written = store.append_all(&batch);
                    (batch, written)
                })
                .await;
                let (batch, committed) = match written {
                    Ok((batch, Ok(()))) => (batch, true),
                    Ok((batch, Err(err))) => {
                        tracing::error!(error = %err, "writing log events failed");
                        (batch, false)
                    }
                    Err(err) => {
                        // The batch went with the failed thread; its waiters see
                        // their senders dropped.
                        tracing::error!(error = %err, "the log writer failed");
                        continue;
                    }
                };
                for waiter in batch.into_iter().filter_map(|p| p.committed) {
                    let _ = waiter.send(committed);
                }
            }
        });
        Self { queue }
    }

    /// Queues events for a stream; waits only when the writer is far behind.
    pub async fn append(&self, group: &str, stream: &str, events: Vec<LogEvent>) {
        self.queue_events(group, stream, events, None).await;
    }

    /// Queues events for a stream and waits until the write holding them has
    /// committed; false when it failed (the events may be offered again).
    pub async fn append_committed(&self, group: &str, stream: &str, events: Vec<LogEvent>) -> bool {
        let (committed, outcome) = tokio::sync::oneshot::channel();
        self.queue_events(group, stream, events, Some(committed))
            .await;
        outcome.await.unwrap_or(false)
    }

    async fn queue_events(
        &self,
        group: &str,
        stream: &str,
        events: Vec<LogEvent>,
        committed: Option<tokio::sync::oneshot::Sender<bool>>,
    ) {
        let pending = Pending {
            group: group.to_owned(),
            stream: stream.to_owned(),
            events,
            committed,
        };
        if self.queue.send(pending).await.is_err() {
            tracing::error!("the log writer has stopped; log events were dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_in_order_per_stream() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let logs = LogStore::new(meta);
        let event = |timestamp, message: &str| LogEvent {
            timestamp,
            message: message.into(),
        };
        let pending = |stream: &str, events: Vec<LogEvent>| Pending {
            group: "/aws/lambda/f".into(),
            stream: stream.into(),
            events,
            committed: None,
        };
        logs.append_all(&[
            pending("s1", vec![event(5, "a"), event(5, "b"), event(3, "early")]),
            pending("s10", vec![event(1, "other stream")]),
        ])
        .unwrap();
        let messages: Vec<String> = logs
            .events("/aws/lambda/f", "s1", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(messages, ["early", "a", "b"]);
        assert_eq!(logs.events("/aws/lambda/f", "s10", 10).unwrap().len(), 1);
    }

    #[test]
    fn event_keys_are_never_reused_across_restarts_or_writers() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let line = |message: &str| {
            vec![LogEvent {
                timestamp: 5,
                message: message.into(),
            }]
        };
        LogStore::new(meta.clone())
            .append("g", "s", line("before the restart"))
            .unwrap();
        // A restarted process, and a second node sharing the store.
        let restarted = LogStore::new(meta.clone());
        let other_node = LogStore::new(meta.clone());
        restarted
            .append("g", "s", line("after the restart"))
            .unwrap();
        other_node
            .append("g", "s", line("from another node"))
            .unwrap();
        restarted.append("g", "s", line("last")).unwrap();
        let messages: Vec<String> = restarted
            .events("g", "s", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(
            messages,
            [
                "before the restart",
                "after the restart",
                "from another node",
                "last"
            ]
        );
    }

    #[test]
    fn streams_without_a_counter_continue_after_their_events() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let stored = |message: &str| {
            encode(&StoredEvent {
                timestamp: 5,
                message: message.into(),
                ingestion: 0,
                key: String::new(),
            })
        };
        // As written before streams kept their own counter.
        meta.commit(
            WriteBatch::new()
                .put(
                    STREAMS,
                    &stream_key("g", "s"),
                    b"{\"created\":0,\"stored_bytes\":0}".to_vec(),
                    Expect::Absent,
                )
                .put(
                    EVENTS,
                    "g\ns\n0000000000005-0000000007",
                    stored("old"),
                    Expect::Absent,
                ),
        )
        .unwrap();
        let logs = LogStore::new(meta);
        logs.append(
            "g",
            "s",
            vec![LogEvent {
                timestamp: 5,
                message: "new".into(),
            }],
        )
        .unwrap();
        let messages: Vec<String> = logs
            .events("g", "s", 10)
            .unwrap()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(messages, ["old", "new"]);
    }

    #[test]
    fn retention_removes_only_old_events_and_groups_delete_whole() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let logs = LogStore::new(meta);
        let day = 86_400_000;
        let now = 100 * day;
        let events = |stamps: &[i64]| {
            stamps
                .iter()
                .map(|&timestamp| LogEvent {
                    timestamp,
                    message: timestamp.to_string(),
                })
                .collect()
        };
        logs.append("g", "s", events(&[now - 3 * day, now - 2 * day, now]))
            .unwrap();
        logs.append("kept", "s", events(&[now - 3 * day])).unwrap();
        let (version, mut group) = logs.group("g").unwrap().unwrap();
        group.retention_days = Some(1);
        logs.put_group("g", version, &group).unwrap();
        assert_eq!(logs.expire(now).unwrap(), 2);
        assert_eq!(logs.events("g", "s", 10).unwrap().len(), 1);
        assert_eq!(logs.events("kept", "s", 10).unwrap().len(), 1);
        let stream = logs.stream("g", "s").unwrap().unwrap();
        assert_eq!(
            (stream.first_event, stream.last_event),
            (Some(now - 3 * day), Some(now))
        );
        logs.delete_group("g").unwrap();
        assert!(logs.group("g").unwrap().is_none());
        assert!(logs.streams("g", "").unwrap().is_empty());
        assert!(logs.events("g", "s", 10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_sink_writes_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let store = Arc::new(LogStore::new(meta));
        let sink = LogSink::start(store.clone());
        for i in 0..3 {
            sink.append(
                "g",
                "s",
                vec![LogEvent {
                    timestamp: i,
                    message: i.to_string(),
                }],
            )
            .await;
        }
        for _ in 0..100 {
            if store.events("g", "s", 10).unwrap().len() == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the sink did not write the events");
    }

    #[tokio::test]
    async fn a_committed_append_is_stored_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let store = Arc::new(LogStore::new(meta));
        let sink = LogSink::start(store.clone());
        let line = vec![LogEvent {
            timestamp: 1,
            message: "kept".into(),
        }];
        assert!(sink.append_committed("g", "s", line.clone()).await);
        assert_eq!(store.events("g", "s", 10).unwrap(), line);
    }
}
