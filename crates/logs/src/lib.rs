//! Log events by group and stream, in the metadata store, in the order they happened.
//! Function and task output is appended here; the CloudWatch Logs API reads it back.
//!
//! Keys: `logs.events/<group>\n<stream>\n<timestamp, 13 digits>-<sequence, 10 digits>`.
//! A newline cannot occur in group or stream names, so a prefix scan never mixes
//! streams, and zero padding keeps events in time order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};

const EVENTS: &str = "logs.events";

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Unix milliseconds when the line was written.
    pub timestamp: i64,
    pub message: String,
}

/// Where log events are kept.
pub struct LogStore {
    meta: Arc<dyn MetadataStore>,
    /// Orders events that share a millisecond; unique within this process, and the
    /// timestamp before it keeps order across restarts.
    sequence: AtomicU64,
}

fn stream_prefix(group: &str, stream: &str) -> String {
    format!("{group}\n{stream}\n")
}

impl LogStore {
    pub fn new(meta: Arc<dyn MetadataStore>) -> Self {
        Self {
            meta,
            sequence: AtomicU64::new(0),
        }
    }

    /// Appends events to a stream in one durable write.
    pub fn append(&self, group: &str, stream: &str, events: &[LogEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let prefix = stream_prefix(group, stream);
        let mut batch = WriteBatch::new();
        for event in events {
            let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
            let key = format!("{prefix}{:013}-{sequence:010}", event.timestamp.max(0));
            batch = batch.put(
                EVENTS,
                &key,
                serde_json::to_vec(event).expect("events serialize"),
                Expect::Anything,
            );
        }
        self.meta.commit(batch)
    }

    /// A stream's events in order, at most `limit`.
    pub fn events(
        &self,
        group: &str,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError> {
        self.meta
            .scan(EVENTS, &stream_prefix(group, stream), None, limit)?
            .into_iter()
            .map(|record| {
                serde_json::from_slice(&record.value).map_err(|err| {
                    StoreError::Backend(format!("corrupt log event {}: {err}", record.key))
                })
            })
            .collect()
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
        logs.append(
            "/aws/lambda/f",
            "s1",
            &[event(5, "a"), event(5, "b"), event(3, "early")],
        )
        .unwrap();
        logs.append("/aws/lambda/f", "s10", &[event(1, "other stream")])
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
}
