//! CloudWatch Logs: log groups, streams and events in the metadata store, in the
//! order they happened. Function and task output is appended through [`LogSink`];
//! the Logs API (`api.rs`) creates, reads, filters and expires them.
//!
//! Keys: `logs.groups/<group>`, `logs.streams/<group>\n<stream>`, and
//! `logs.events/<group>\n<stream>\n<timestamp, 13 digits>-<sequence, 10 digits>`.
//! A newline cannot occur in group or stream names, so a prefix scan never mixes
//! streams, and zero padding keeps events in time order.

pub mod api;
pub mod filter;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

/// Where log events are kept.
pub struct LogStore {
    meta: Arc<dyn MetadataStore>,
    /// Orders events that share a millisecond; unique within this process, and the
    /// timestamp before it keeps order across restarts.
    sequence: AtomicU64,
    /// Appends read and rewrite stream records: one at a time.
    appending: Mutex<()>,
}

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
            sequence: AtomicU64::new(0),
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
    /// and streams they name when missing (function and task output).
    fn append_all(&self, pending: &[Pending]) -> Result<(), StoreError> {
        let _one = self.appending.lock().expect("log appends");
        let now = now_ms();
        let mut batch = WriteBatch::new();
        let mut streams: BTreeMap<String, StreamRecord> = BTreeMap::new();
        for Pending {
            group,
            stream,
            events,
        } in pending
        {
            if events.is_empty() {
                continue;
            }
            let key = stream_key(group, stream);
            if !streams.contains_key(&key) {
                let record = match self.stream(group, stream)? {
                    Some(record) => record,
                    None => {
                        if self.group(group)?.is_none() {
                            let record = GroupRecord {
                                created: now,
                                ..GroupRecord::default()
                            };
                            batch = batch.put(GROUPS, group, encode(&record), Expect::Anything);
                        }
                        StreamRecord {
                            created: now,
                            ..StreamRecord::default()
                        }
                    }
                };
                streams.insert(key.clone(), record);
            }
            let record = streams.get_mut(&key).expect("inserted above");
            let prefix = stream_prefix(group, stream);
            for event in events {
                let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
                let event_key = format!("{prefix}{:013}-{sequence:010}", event.timestamp.max(0));
                let stored = StoredEvent {
                    timestamp: event.timestamp,
                    message: event.message.clone(),
                    ingestion: now,
                    key: String::new(),
                };
                batch = batch.put(EVENTS, &event_key, encode(&stored), Expect::Anything);
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
            record.last_ingestion = Some(now);
        }
        for (key, record) in &streams {
            batch = batch.put(STREAMS, key, encode(record), Expect::Anything);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.meta.commit(batch)
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
pub fn start_expiry(store: Arc<LogStore>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
        loop {
            tick.tick().await;
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
}

/// How many events a write may gather, and how long it waits for more.
const BATCH_EVENTS: usize = 10_000;
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Appends queued before writers wait for the store.
const QUEUE: usize = 4096;

/// A background writer in front of a [`LogStore`]: appends from many invocations are
/// gathered into one durable write, so the request path never waits for the disk.
/// What the writer holds when the process dies (at most `BATCH_WAIT` of output) is
/// lost, as with any asynchronous log pipeline.
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
                let written = tokio::task::spawn_blocking(move || store.append_all(&batch)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => tracing::error!(error = %err, "writing log events failed"),
                    Err(err) => tracing::error!(error = %err, "the log writer failed"),
                }
            }
        });
        Self { queue }
    }

    /// Queues events for a stream; waits only when the writer is far behind.
    pub async fn append(&self, group: &str, stream: &str, events: Vec<LogEvent>) {
        let pending = Pending {
            group: group.to_owned(),
            stream: stream.to_owned(),
            events,
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
}
