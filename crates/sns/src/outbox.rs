//! Messages on their way later, in a [`nimbus_cluster::outbox::Outbox`]
//! (`sns.outbox`): those other services publish as part of their own commits (a
//! bucket event with its object change), and deliveries to queues and functions that
//! failed on the way and wait for a retry. The holder of the `sns-outbox` lease takes
//! each up when due.
//!
//! A delivery a queue or function refuses (it is gone, or its policy does not let
//! the topic deliver), or that still fails after its retries, goes to the
//! subscription's dead-letter queue (`RedrivePolicy`), or else is dropped.

use std::sync::Arc;
use std::time::Duration;

use nimbus_cluster::outbox::{Handled, now_ms};
use nimbus_edge::AwsError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Outgoing, Sns, Undelivered};

pub const OUTBOX: &str = "sns.outbox";
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
    /// A message to publish to a topic, and how often that failed on the way.
    Publish {
        topic: String,
        message: String,
        subject: Option<String>,
        #[serde(default)]
        attempts: u32,
    },
    /// A delivery to retry.
    Retry(Delivery),
}

/// The wait before retry `attempts + 1`: a second, doubling up to `MAX_BACKOFF`.
fn backoff(attempts: u32) -> Duration {
    (Duration::from_secs(1) * 2u32.saturating_pow(attempts)).min(MAX_BACKOFF)
}

fn encode(pending: &Pending) -> Vec<u8> {
    serde_json::to_vec(pending).expect("outbox records serialize")
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
        Ok(self.outbox.record(
            now_ms(),
            encode(&Pending::Publish {
                topic: topic.to_owned(),
                message: message.to_owned(),
                subject: subject.map(str::to_owned),
                attempts: 0,
            }),
        ))
    }

    /// Looks at the outbox now: staged messages were committed.
    pub fn wake_outbox(&self) {
        self.outbox.wake();
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
        let due = now_ms() + backoff(delivery.attempts).as_millis() as i64;
        delivery.attempts += 1;
        if let Err(err) = self
            .outbox
            .put(due, encode(&Pending::Retry(delivery.clone())))
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
        self.outbox.start(lease, move |value| sns.take_up(value));
    }

    /// Publishes or retries one outbox record. A message the topic refuses (it is
    /// gone, say) is dropped; one that failed on the server side stays.
    fn take_up(self: &Arc<Self>, value: &[u8]) -> Handled {
        match serde_json::from_slice::<Pending>(value) {
            Ok(Pending::Publish {
                topic,
                message,
                subject,
                attempts,
            }) => {
                let outgoing = Outgoing {
                    message: message.clone(),
                    subject: subject.clone(),
                    ..Outgoing::default()
                };
                match self.publish(&topic, outgoing, &self.endpoint) {
                    Ok(_) => {}
                    // Tried again later, by a record of its own, so it holds up nothing
                    // behind it; given up after the deliveries' retries.
                    Err(err) if err.status.is_server_error() && attempts < RETRIES => {
                        let due = now_ms() + backoff(attempts).as_millis() as i64;
                        let again = Pending::Publish {
                            topic,
                            message,
                            subject,
                            attempts: attempts + 1,
                        };
                        if let Err(err) = self.outbox.put(due, encode(&again)) {
                            return Handled::Again(err.to_string());
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%topic, error = %err.message, "dropping a staged message")
                    }
                }
            }
            // A failure stages a record of its own; this one goes.
            Ok(Pending::Retry(delivery)) => self.deliver(delivery),
            Err(err) => tracing::error!(error = %err, "dropping an unreadable outbox record"),
        }
        Handled::Done
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
        let drain = || {
            sns.outbox
                .drain(&|value| sns.take_up(value), &|| true)
                .unwrap()
        };
        drain();
        assert_eq!(targets.taken.lock().unwrap().len(), 1, "not due yet");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        drain();
        assert_eq!(targets.taken.lock().unwrap().len(), 2);
        assert!(meta.scan_all(OUTBOX, "").unwrap().is_empty());
    }
}
