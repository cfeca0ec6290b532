//! Log events by group and stream, in the metadata store, in the order they happened.
//! Function and task output is appended here; the CloudWatch Logs API reads it back.
//!
//! Keys: `logs.events/<group>\n<stream>\n<timestamp, 13 digits>-<sequence, 10 digits>`.
//! A newline cannot occur in group or stream names, so a prefix scan never mixes
//! streams, and zero padding keeps events in time order.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

    /// Appends the events of many streams in one durable write.
    fn append_all(&self, pending: &[Pending]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::new();
        for Pending {
            group,
            stream,
            events,
        } in pending
        {
            let prefix = stream_prefix(group, stream);
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
        }
        if batch.is_empty() {
            return Ok(());
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
