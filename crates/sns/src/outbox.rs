//! Messages on their way later: those other services publish as part of their own
//! commits (a bucket event with its object change), and deliveries to queues and
//! functions that failed on the way and wait for a retry. Each is a record of
//! `sns.outbox/<due, unix ms, 13 digits>-<id>`, committed with the change that caused
//! it, taken up when due by the node holding the `sns-outbox` lease and removed once
//! done. So a staged message goes out at least once if and only if its change
//! happened, whatever crashes in between.
//!
//! A delivery a queue or function refuses (it is gone, or its policy does not let
//! the topic deliver), or that still fails after its retries, goes to the
//! subscription's dead-letter queue (`RedrivePolicy`), or else is dropped.

use std::sync::Arc;
use std::time::Duration;

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Outgoing, Sns, Undelivered, internal};

pub const OUTBOX: &str = "sns.outbox";
/// How often the lease holder looks at the outbox when nothing on its own node woke
/// it: messages staged through other nodes, and retries coming due.
const POLL: Duration = Duration::from_millis(500);
const PAGE: usize = 100;
/// Retries of a delivery that failed on the way, the first after one second, each
/// wait twice the last up to `MAX_BACKOFF`.
const RETRIES: u32 = 8;
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// One delivery of a message to a queue or a function subscription.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Delivery {
    pub subscription: String,
    /// `sqs` or `lambda`.
    pub protocol: String,
    pub endpoint: String,
    pub topic_arn: String,
    /// The message (or envelope) for a queue; the event for a function.
    pub body: String,
    /// What the dead-letter queue gets: the message or its envelope.
    pub dead_letter: String,
    /// SQS message attributes of a raw delivery.
    pub attributes: Value,
    /// A FIFO topic's group and deduplication ids.
    pub fifo: Option<(String, String)>,
    pub attempts: u32,
}

/// What waits in the outbox.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Pending {
    /// A message to publish to a topic.
    Publish {
        topic: String,
        message: String,
        subject: Option<String>,
    },
    /// A delivery to retry.
    Retry(Delivery),
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The outbox record of `pending`, due at `due_ms`.
fn record(due_ms: i64, pending: &Pending) -> (String, String, Vec<u8>) {
    let key = format!("{due_ms:013}-{}", uuid::Uuid::new_v4());
    let value = serde_json::to_vec(pending).expect("outbox records serialize");
    (OUTBOX.to_owned(), key, value)
}

impl Sns {
    /// The write (table, key, value) that publishes `message` to the topic
    /// `topic_arn` once committed; the topic must exist now.
    pub fn staged(
        &self,
        topic_arn: &str,
        message: &str,
        subject: Option<&str>,
    ) -> Result<(String, String, Vec<u8>), AwsError> {
        let topic = self.topic_name(topic_arn)?;
        self.topic(topic)?;
        Ok(record(
            now_ms(),
            &Pending::Publish {
                topic: topic.to_owned(),
                message: message.to_owned(),
                subject: subject.map(str::to_owned),
            },
        ))
    }

    /// Looks at the outbox now: staged messages were committed.
    pub fn wake_outbox(&self) {
        self.outbox.notify_one();
    }

    /// Hands a delivery to its queue or function; one that did not arrive is retried
    /// later or sent to the subscription's dead-letter queue.
    pub(crate) fn deliver(&self, delivery: Delivery) {
        let fifo = delivery
            .fifo
            .as_ref()
            .map(|(group, dedup)| (group.as_str(), dedup.as_str()));
        let delivered = if delivery.protocol == "lambda" {
            self.targets.invoke(
                &delivery.endpoint,
                &delivery.topic_arn,
                delivery.body.as_bytes(),
            )
        } else {
            self.targets.send_to_queue(
                &delivery.endpoint,
                &delivery.topic_arn,
                &delivery.body,
                &delivery.attributes,
                fifo,
            )
        };
        match delivered {
            Ok(()) => {}
            Err(Undelivered::Failed(reason)) if delivery.attempts < RETRIES => {
                tracing::info!(subscription = %delivery.subscription, %reason, attempts = delivery.attempts, "an SNS delivery failed; retrying");
                self.retry_later(delivery);
            }
            Err(undelivered) => self.dead_letter(&delivery, &undelivered.to_string()),
        }
    }

    fn retry_later(&self, mut delivery: Delivery) {
        let backoff = (Duration::from_secs(1) * 2u32.pow(delivery.attempts)).min(MAX_BACKOFF);
        delivery.attempts += 1;
        let (table, key, value) = record(
            now_ms() + backoff.as_millis() as i64,
            &Pending::Retry(delivery.clone()),
        );
        if let Err(err) =
            self.meta
                .commit(WriteBatch::new().put(&table, &key, value, Expect::Absent))
        {
            self.dead_letter(&delivery, &err.to_string());
        }
    }

    /// Sends an undeliverable message to its subscription's dead-letter queue, as
    /// the topic (the queue's policy must allow it), or drops it without one.
    fn dead_letter(&self, delivery: &Delivery, reason: &str) {
        let queue = self
            .subscription(&delivery.subscription)
            .ok()
            .and_then(|(subscription, _)| {
                let policy = subscription.attributes.get("RedrivePolicy")?;
                let policy: Value = serde_json::from_str(policy).ok()?;
                policy["deadLetterTargetArn"].as_str().map(str::to_owned)
            });
        let Some(queue) = queue else {
            tracing::warn!(subscription = %delivery.subscription, %reason, "an SNS delivery failed and the subscription has no dead-letter queue");
            return;
        };
        let fifo = delivery
            .fifo
            .as_ref()
            .map(|(group, dedup)| (group.as_str(), dedup.as_str()));
        let attributes = if delivery.dead_letter == delivery.body {
            &delivery.attributes
        } else {
            &Value::Null
        };
        match self.targets.send_to_queue(
            &queue,
            &delivery.topic_arn,
            &delivery.dead_letter,
            attributes,
            fifo,
        ) {
            Ok(()) => {
                tracing::info!(subscription = %delivery.subscription, %reason, %queue, "an undeliverable SNS message went to its dead-letter queue")
            }
            Err(err) => {
                tracing::warn!(subscription = %delivery.subscription, %reason, %queue, error = %err, "an undeliverable SNS message could not reach its dead-letter queue either")
            }
        }
    }

    /// Takes up the outbox on the one node that holds `lease`.
    pub fn start_outbox(self: &Arc<Self>, lease: nimbus_cluster::Lease) {
        let sns = self.clone();
        tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(POLL, sns.outbox.notified()).await;
                if !lease.held() {
                    continue;
                }
                let drained = sns.clone();
                match tokio::task::spawn_blocking(move || drained.drain()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err.message, "taking up the SNS outbox failed")
                    }
                    Err(err) => tracing::error!(error = %err, "the SNS outbox drain failed"),
                }
            }
        });
    }

    /// Publishes and delivers what is due, oldest first, removing each record once
    /// done. A message the topic refuses (it is gone, say) is dropped; one that
    /// failed on the server side stays for the next round.
    fn drain(self: &Arc<Self>) -> Result<(), AwsError> {
        let due = format!("{:013}~", now_ms());
        loop {
            let page = self.meta.scan(OUTBOX, "", None, PAGE).map_err(internal)?;
            let ready: Vec<_> = page.iter().take_while(|r| r.key < due).collect();
            for record in &ready {
                match serde_json::from_slice::<Pending>(&record.value) {
                    Ok(Pending::Publish {
                        topic,
                        message,
                        subject,
                    }) => {
                        let outgoing = Outgoing {
                            message,
                            subject,
                            ..Outgoing::default()
                        };
                        match self.publish(&topic, outgoing, &self.endpoint) {
                            Ok(_) => {}
                            Err(err) if err.status.is_server_error() => return Err(err),
                            Err(err) => {
                                tracing::warn!(%topic, error = %err.message, "dropping a staged message")
                            }
                        }
                    }
                    // A failure stages a record of its own; this one goes below.
                    Ok(Pending::Retry(delivery)) => self.deliver(delivery),
                    Err(err) => {
                        tracing::error!(key = %record.key, error = %err, "dropping an unreadable outbox record")
                    }
                }
                self.meta
                    .commit(WriteBatch::new().delete(
                        OUTBOX,
                        &record.key,
                        Expect::Version(record.version),
                    ))
                    .map_err(internal)?;
            }
            if ready.len() < PAGE {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use nimbus_storage::{MetadataStore, SqliteStore};

    use super::*;
    use crate::Targets;

    /// A queue that fails its first deliveries, then takes them.
    struct Flaky {
        failures: Mutex<u32>,
        taken: Mutex<Vec<String>>,
    }

    impl Targets for Flaky {
        fn send_to_queue(
            &self,
            _queue: &str,
            _topic: &str,
            body: &str,
            _attributes: &Value,
            _fifo: Option<(&str, &str)>,
        ) -> Result<(), Undelivered> {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(Undelivered::Failed("the store is down".into()));
            }
            self.taken.lock().unwrap().push(body.to_owned());
            Ok(())
        }

        fn invoke(&self, _: &str, _: &str, _: &[u8]) -> Result<(), Undelivered> {
            Err(Undelivered::Refused("no functions here".into()))
        }
    }

    #[tokio::test]
    async fn a_failed_delivery_waits_in_the_outbox_and_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap());
        let targets = Arc::new(Flaky {
            failures: Mutex::new(1),
            taken: Mutex::new(Vec::new()),
        });
        let sns = Sns::new(
            meta.clone(),
            "us-east-1",
            "000000000000",
            "http://127.0.0.1:1",
            targets.clone(),
            Arc::new(|_| false),
        );
        sns.create_topic("t", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        let queue = "arn:aws:sqs:us-east-1:000000000000:q";
        sns.subscribe("t", "sqs", queue, BTreeMap::new(), "http://127.0.0.1:1")
            .unwrap();
        let raw = BTreeMap::from([("RawMessageDelivery".to_owned(), "true".to_owned())]);
        sns.subscribe("t", "sqs", &format!("{queue}2"), raw, "http://127.0.0.1:1")
            .unwrap();
        sns.publish(
            "t",
            Outgoing {
                message: "hello".into(),
                ..Outgoing::default()
            },
            "http://127.0.0.1:1",
        )
        .unwrap();
        // One of the two deliveries failed: it waits, due in a second.
        assert_eq!(targets.taken.lock().unwrap().len(), 1);
        assert_eq!(meta.scan_all(OUTBOX, "").unwrap().len(), 1);
        sns.drain().unwrap();
        assert_eq!(targets.taken.lock().unwrap().len(), 1, "not due yet");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        sns.drain().unwrap();
        assert_eq!(targets.taken.lock().unwrap().len(), 2);
        assert!(meta.scan_all(OUTBOX, "").unwrap().is_empty());
    }
}
