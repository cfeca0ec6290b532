//! Messages other services publish as part of their own commits (a bucket event with
//! its object change): each is staged as a record of `sns.outbox/<unix ms, 13
//! digits>-<id>` in the same batch as the change that caused it, then published by
//! the node holding the `sns-outbox` lease and removed. So a message goes out at least
//! once if and only if its change happened, whatever crashes in between.

use std::sync::Arc;
use std::time::Duration;

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::{Outgoing, Sns, internal};

pub const OUTBOX: &str = "sns.outbox";
/// How often the lease holder looks at the outbox when no staging on its own node
/// woke it: messages staged through other nodes.
const POLL: Duration = Duration::from_millis(500);
const PAGE: usize = 100;

/// A message waiting to be published.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    topic: String,
    message: String,
    subject: Option<String>,
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
        let pending = Pending {
            topic: topic.to_owned(),
            message: message.to_owned(),
            subject: subject.map(str::to_owned),
        };
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let key = format!("{now_ms:013}-{}", uuid::Uuid::new_v4());
        let value = serde_json::to_vec(&pending).expect("messages serialize");
        Ok((OUTBOX.to_owned(), key, value))
    }

    /// Looks at the outbox now: staged messages were committed.
    pub fn wake_outbox(&self) {
        self.outbox.notify_one();
    }

    /// Publishes staged messages on the one node that holds `lease`.
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
                        tracing::warn!(error = %err.message, "publishing staged messages failed")
                    }
                    Err(err) => tracing::error!(error = %err, "the outbox drain failed"),
                }
            }
        });
    }

    /// Publishes every staged message, oldest first, removing each once published.
    /// One the topic refuses (gone, say) is dropped; one that failed on the server
    /// side stays for the next round.
    fn drain(self: &Arc<Self>) -> Result<(), AwsError> {
        loop {
            let page = self.meta.scan(OUTBOX, "", None, PAGE).map_err(internal)?;
            for record in &page {
                match serde_json::from_slice::<Pending>(&record.value) {
                    Ok(pending) => {
                        let outgoing = Outgoing {
                            message: pending.message,
                            subject: pending.subject,
                            ..Outgoing::default()
                        };
                        match self.publish(&pending.topic, outgoing, &self.endpoint) {
                            Ok(_) => {}
                            Err(err) if err.status.is_server_error() => return Err(err),
                            Err(err) => {
                                tracing::warn!(topic = %pending.topic, error = %err.message, "dropping a staged message")
                            }
                        }
                    }
                    Err(err) => {
                        tracing::error!(key = %record.key, error = %err, "dropping an unreadable staged message")
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
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }
}
