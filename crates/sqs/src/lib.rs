//! SQS: durable queues, standard and FIFO, kept in the metadata store so that every
//! acknowledged send survives a crash and every node of a deployment serves every
//! queue. `queues` holds the queue model, `messages` sending, receiving and deleting,
//! `moves` the redrive of dead-letter queues, `api` both wire protocols.

pub mod api;
pub mod attributes;
pub mod error;
pub mod messages;
pub mod moves;
pub mod queues;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_edge::AwsError;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{deleted_recently, internal, invalid_parameter, no_queue, queue_exists};
use crate::queues::{DELETED, FIFO_SUFFIX, QUEUES, Queue, check_attribute, check_name};

pub use api::SqsApi;

/// How long a deleted queue's name stays taken.
const REUSE_AFTER_MS: i64 = 60_000;
/// How often a long poll looks at its queue when no send on this node woke it: sends
/// through other nodes, and delayed messages coming due.
const POLL: Duration = Duration::from_millis(250);
/// How often expired messages are looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(60);
/// The most messages a standard and a FIFO queue may have in flight.
const IN_FLIGHT_LIMITS: InFlightLimits = InFlightLimits {
    standard: 120_000,
    fifo: 20_000,
};

struct InFlightLimits {
    standard: usize,
    fifo: usize,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub struct Sqs {
    meta: Arc<dyn MetadataStore>,
    pub region: String,
    pub account: String,
    /// Long polls waiting on each queue, woken by sends through this node.
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    /// Each queue's messages in flight when last counted, and when.
    in_flight: Mutex<HashMap<String, (std::time::Instant, usize)>>,
    in_flight_limits: InFlightLimits,
}

impl Sqs {
    pub fn new(meta: Arc<dyn MetadataStore>, region: &str, account: &str) -> Arc<Self> {
        Arc::new(Self {
            meta,
            region: region.to_owned(),
            account: account.to_owned(),
            wakers: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            in_flight_limits: IN_FLIGHT_LIMITS,
        })
    }

    fn in_flight_limit(&self, queue: &Queue) -> usize {
        if queue.fifo() {
            self.in_flight_limits.fifo
        } else {
            self.in_flight_limits.standard
        }
    }

    /// Expires old messages and deduplication ids every minute, on the one node that
    /// holds `lease`.
    pub fn start_housekeeping(self: &Arc<Self>, lease: nimbus_cluster::Lease) {
        let sqs = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HOUSEKEEPING).await;
                if !lease.held() {
                    continue;
                }
                let sqs = sqs.clone();
                let swept = tokio::task::spawn_blocking(move || -> Result<usize, AwsError> {
                    let mut expired = 0;
                    for queue in sqs.all_queues()? {
                        expired += sqs.expire(&queue)?;
                    }
                    Ok(expired)
                })
                .await;
                match swept {
                    Ok(Ok(0)) => {}
                    Ok(Ok(expired)) => {
                        tracing::info!(expired, "dropped messages past their retention")
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err.message, "expiring messages failed")
                    }
                    Err(_) => {}
                }
            }
        });
    }

    pub fn arn(&self, name: &str) -> String {
        queues::arn(&self.region, &self.account, name)
    }

    fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .expect("wakers")
            .entry(queue.to_owned())
            .or_default()
            .clone()
    }

    /// Wakes every long poll: after writes another service committed.
    pub fn wake_all(&self) {
        for waker in self.wakers.lock().expect("wakers").values() {
            waker.notify_waiters();
        }
    }

    /// Wakes the long polls of a queue: after writes committed by another service.
    pub fn wake(&self, queue: &str) {
        if let Some(waker) = self.wakers.lock().expect("wakers").get(queue) {
            waker.notify_waiters();
        }
    }

    /// A queue by name, as stored with its version.
    pub fn queue(&self, name: &str) -> Result<(Queue, u64), AwsError> {
        let record = self
            .meta
            .get(QUEUES, name)
            .map_err(internal)?
            .ok_or_else(no_queue)?;
        let queue = serde_json::from_slice(&record.value).map_err(internal)?;
        Ok((queue, record.version))
    }

    /// A queue by ARN, if it is one of this account's.
    pub fn queue_by_arn(&self, arn: &str) -> Result<Queue, AwsError> {
        let name = queues::name_from_arn(arn, &self.region, &self.account).ok_or_else(no_queue)?;
        Ok(self.queue(name)?.0)
    }

    fn save(&self, queue: &Queue, expect: Expect) -> Result<(), StoreError> {
        self.meta.commit(WriteBatch::new().put(
            QUEUES,
            &queue.name,
            serde_json::to_vec(queue).expect("queues serialize"),
            expect,
        ))
    }

    /// Creates a queue, or finds the one of that name when its attributes are the
    /// same (as SQS does).
    pub fn create_queue(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<Queue, AwsError> {
        check_name(name)?;
        let fifo = name.ends_with(FIFO_SUFFIX);
        let mut attributes = attributes;
        match attributes.get("FifoQueue").map(String::as_str) {
            Some("true") if !fifo => {
                return Err(invalid_parameter(
                    "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.",
                ));
            }
            Some("false") if fifo => {
                return Err(invalid_parameter(
                    "Can only use the .fifo suffix for FIFO queues.",
                ));
            }
            None if fifo => {
                return Err(invalid_parameter(
                    "Can only use the .fifo suffix with the FifoQueue attribute set to true.",
                ));
            }
            Some("false") => {
                attributes.remove("FifoQueue");
            }
            _ => {}
        }
        for (attribute, value) in &attributes {
            check_attribute(attribute, value, fifo)?;
        }
        self.check_redrive(&attributes, fifo)?;
        let now = now_ms();
        let queue = Queue {
            name: name.to_owned(),
            created: now / 1000,
            modified: now / 1000,
            attributes,
            tags,
            purged_ms: 0,
        };
        if let Ok((existing, _)) = self.queue(name) {
            let differing = existing
                .settable()
                .chain(queue.settable())
                .map(|(attribute, _)| attribute)
                .find(|attribute| existing.attribute(attribute) != queue.attribute(attribute));
            return match differing {
                Some(attribute) => Err(queue_exists(attribute)),
                None => Ok(existing),
            };
        }
        if let Some(deleted) = self.meta.get(DELETED, name).map_err(internal)? {
            let at = std::str::from_utf8(&deleted.value)
                .ok()
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            if now - at < REUSE_AFTER_MS {
                return Err(deleted_recently());
            }
            self.forget_deleted(name)?;
        }
        match self.save(&queue, Expect::Absent) {
            Ok(()) => Ok(queue),
            // Created by another request meanwhile: judged as any existing queue.
            Err(StoreError::Conflict { .. }) => {
                self.create_queue(name, queue.attributes, queue.tags)
            }
            Err(err) => Err(internal(err)),
        }
    }

    /// A redrive policy must name an existing queue of the same kind.
    fn check_redrive(
        &self,
        attributes: &BTreeMap<String, String>,
        fifo: bool,
    ) -> Result<(), AwsError> {
        let Some(policy) = attributes.get("RedrivePolicy") else {
            return Ok(());
        };
        let (target, _) = queues::redrive(policy)?;
        let dlq = self.queue_by_arn(&target).map_err(|_| {
            error::invalid_attribute_value(format!(
                "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter target does not exist."
            ))
        })?;
        if dlq.fifo() != fifo {
            return Err(error::invalid_attribute_value(format!(
                "Value {policy} for parameter RedrivePolicy is invalid. Reason: Dead-letter queue must be of the same type as the source queue."
            )));
        }
        Ok(())
    }

    pub fn set_attributes(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        loop {
            let (mut queue, version) = self.queue(name)?;
            for (attribute, value) in &attributes {
                if attribute == "FifoQueue" {
                    return Err(invalid_parameter("FifoQueue cannot be changed."));
                }
                check_attribute(attribute, value, queue.fifo())?;
            }
            self.check_redrive(&attributes, queue.fifo())?;
            for (attribute, value) in &attributes {
                // An empty policy removes it, as on SQS.
                if value.is_empty()
                    && matches!(
                        attribute.as_str(),
                        "Policy" | "RedrivePolicy" | "RedriveAllowPolicy"
                    )
                {
                    queue.attributes.remove(attribute);
                } else {
                    queue.attributes.insert(attribute.clone(), value.clone());
                }
            }
            queue.modified = now_ms() / 1000;
            match self.save(&queue, Expect::Version(version)) {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// Changes a queue's record with `change`, retried on a concurrent change.
    pub fn update_queue(
        &self,
        name: &str,
        change: impl Fn(&mut Queue) -> Result<(), AwsError>,
    ) -> Result<Queue, AwsError> {
        loop {
            let (mut queue, version) = self.queue(name)?;
            change(&mut queue)?;
            match self.save(&queue, Expect::Version(version)) {
                Ok(()) => return Ok(queue),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// Queues whose names start with `prefix`, in name order, after `after`.
    pub fn list_queues(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Queue>, AwsError> {
        self.meta
            .scan(QUEUES, prefix, after, limit)
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    /// Every queue (for the queues that name a dead-letter queue).
    pub fn all_queues(&self) -> Result<Vec<Queue>, AwsError> {
        self.meta
            .scan_all(QUEUES, "")
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    /// Deletes a queue with its messages; its name is free again after a minute.
    /// Deletes a queue's messages, then the queue. A crash part-way leaves the queue,
    /// so the delete can be tried again; a message a racing send left behind is
    /// swept when the name is taken again (`forget_deleted`).
    pub fn delete_queue(&self, name: &str) -> Result<(), AwsError> {
        self.queue(name)?;
        self.forget_messages(name)?;
        self.meta
            .commit(
                WriteBatch::new()
                    .delete(QUEUES, name, Expect::Anything)
                    .put(
                        DELETED,
                        name,
                        now_ms().to_string().into_bytes(),
                        Expect::Anything,
                    ),
            )
            .map_err(internal)?;
        self.wake(name);
        Ok(())
    }

    fn forget_messages(&self, name: &str) -> Result<(), AwsError> {
        for table in [messages::MESSAGES, messages::VISIBILITY, messages::DEDUP] {
            self.remove_all(table, &format!("{name}/"))?;
        }
        Ok(())
    }

    /// Before a deleted queue's name is taken again: what its old queue left is
    /// removed, so no message of it shows up in the new one.
    fn forget_deleted(&self, name: &str) -> Result<(), AwsError> {
        self.forget_messages(name)?;
        self.meta
            .commit(WriteBatch::new().delete(DELETED, name, Expect::Anything))
            .map_err(internal)
    }

    /// Deletes every record of `table` under `prefix`, a page at a time.
    fn remove_all(&self, table: &str, prefix: &str) -> Result<usize, AwsError> {
        let mut removed = 0;
        loop {
            let page = self.meta.scan(table, prefix, None, 500).map_err(internal)?;
            if page.is_empty() {
                return Ok(removed);
            }
            removed += page.len();
            let batch = page.iter().fold(WriteBatch::new(), |batch, r| {
                batch.delete(table, &r.key, Expect::Anything)
            });
            self.meta.commit(batch).map_err(internal)?;
        }
    }

    /// The computed attributes of a queue, which count its messages.
    pub fn computed(&self, queue: &Queue) -> Result<Vec<(&'static str, String)>, AwsError> {
        let counts = self.counts(queue)?;
        Ok(vec![
            ("ApproximateNumberOfMessages", counts.visible.to_string()),
            (
                "ApproximateNumberOfMessagesNotVisible",
                counts.in_flight.to_string(),
            ),
            (
                "ApproximateNumberOfMessagesDelayed",
                counts.delayed.to_string(),
            ),
            ("CreatedTimestamp", queue.created.to_string()),
            ("LastModifiedTimestamp", queue.modified.to_string()),
            ("QueueArn", self.arn(&queue.name)),
        ])
    }

    /// Every attribute named (or all), as `GetQueueAttributes` returns them.
    pub fn attributes(
        &self,
        name: &str,
        wanted: &[String],
    ) -> Result<BTreeMap<String, String>, AwsError> {
        let (queue, _) = self.queue(name)?;
        let all = wanted.iter().any(|w| w == "All");
        for want in wanted {
            if want != "All" && !queues::known(want) {
                return Err(error::invalid_attribute_name(want));
            }
        }
        let wants = |attribute: &str| all || wanted.iter().any(|w| w == attribute);
        let mut out: BTreeMap<String, String> = queue
            .settable()
            .filter(|(attribute, _)| wants(attribute))
            .map(|(attribute, value)| (attribute.to_owned(), value))
            .collect();
        if queues::COMPUTED.iter().any(|c| wants(c)) {
            for (attribute, value) in self.computed(&queue)? {
                if wants(attribute) {
                    out.insert(attribute.to_owned(), value);
                }
            }
        }
        Ok(out)
    }

    /// The queues whose redrive policy names `name`'s queue as their dead-letter queue.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<Queue>, AwsError> {
        self.queue(name)?;
        let arn = self.arn(name);
        Ok(self
            .all_queues()?
            .into_iter()
            .filter(|q| q.redrive().is_some_and(|(target, _)| target == arn))
            .collect())
    }

    /// Adds (`Some`) or removes a labelled statement of the queue's policy, as
    /// `AddPermission` and `RemovePermission` do.
    pub fn permission(
        &self,
        name: &str,
        label: &str,
        grant: Option<(Vec<String>, Vec<String>)>,
    ) -> Result<(), AwsError> {
        let arn = self.arn(name);
        self.update_queue(name, |queue| {
            let mut policy: Value = queue
                .attributes
                .get("Policy")
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_else(|| serde_json::json!({"Version": "2012-10-17", "Statement": []}));
            let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
            let exists = statements.iter().any(|s| s["Sid"] == label);
            let mut statements: Vec<Value> = statements.into_iter().filter(|s| s["Sid"] != label).collect();
            match &grant {
                Some((accounts, actions)) => {
                    if exists {
                        return Err(invalid_parameter(format!(
                            "Value {label} for parameter Label is invalid. Reason: Already exists."
                        )));
                    }
                    statements.push(serde_json::json!({
                        "Sid": label,
                        "Effect": "Allow",
                        "Principal": {"AWS": accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect::<Vec<_>>()},
                        "Action": actions.iter().map(|a| format!("SQS:{a}")).collect::<Vec<_>>(),
                        "Resource": arn,
                    }));
                }
                None if !exists => {
                    return Err(invalid_parameter(format!(
                        "Value {label} for parameter Label is invalid. Reason: can't find label on existing policy."
                    )));
                }
                None => {}
            }
            if statements.is_empty() {
                queue.attributes.remove("Policy");
            } else {
                policy["Statement"] = Value::Array(statements);
                queue.attributes.insert("Policy".into(), policy.to_string());
            }
            Ok(())
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::Outgoing;
    use nimbus_storage::SqliteStore;

    fn sqs() -> (tempfile::TempDir, Arc<Sqs>) {
        let dir = tempfile::tempdir().unwrap();
        let meta: Arc<dyn MetadataStore> =
            Arc::new(SqliteStore::open(&dir.path().join("m.db")).unwrap());
        (dir, Sqs::new(meta, "us-east-1", "000000000000"))
    }

    fn message(body: &str, group: Option<&str>) -> Outgoing {
        Outgoing {
            body: body.into(),
            delay: None,
            attributes: Default::default(),
            system: Default::default(),
            group: group.map(str::to_owned),
            dedup: None,
        }
    }

    #[test]
    fn a_message_is_hidden_while_received_and_gone_once_deleted() {
        let (_dir, sqs) = sqs();
        let queue = sqs
            .create_queue("q", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        sqs.send(&queue, message("one", None), "me").unwrap();
        let [got] = <[_; 1]>::try_from(sqs.receive_now(&queue, 10, 30).unwrap()).unwrap();
        assert_eq!(got.message.body, "one");
        assert!(sqs.receive_now(&queue, 10, 30).unwrap().is_empty());
        let counts = sqs.counts(&queue).unwrap();
        assert_eq!(
            (counts.visible, counts.in_flight, counts.delayed),
            (0, 1, 0)
        );
        sqs.change_visibility(&queue, &got.handle, 0).unwrap();
        let [again] = <[_; 1]>::try_from(sqs.receive_now(&queue, 10, 30).unwrap()).unwrap();
        assert_eq!(again.message.receives, 2);
        // The first handle is stale: it deletes nothing.
        sqs.delete(&queue, &got.handle).unwrap();
        assert_eq!(sqs.counts(&queue).unwrap().in_flight, 1);
        sqs.delete(&queue, &again.handle).unwrap();
        assert_eq!(sqs.counts(&queue).unwrap().in_flight, 0);
    }

    #[test]
    fn a_queue_at_its_in_flight_limit_gives_no_more() {
        let (_dir, mut sqs) = sqs();
        Arc::get_mut(&mut sqs).unwrap().in_flight_limits = InFlightLimits {
            standard: 2,
            fifo: 1,
        };
        let queue = sqs
            .create_queue("q", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        for body in ["1", "2", "3"] {
            sqs.send(&queue, message(body, None), "me").unwrap();
        }
        assert_eq!(sqs.receive_now(&queue, 2, 30).unwrap().len(), 2);
        sqs.in_flight.lock().unwrap().clear();
        let refused = sqs.receive_now(&queue, 1, 30).unwrap_err();
        assert_eq!(
            (refused.status.as_u16(), &*refused.code),
            (403, "OverLimit")
        );

        let fifo = [
            ("FifoQueue".to_owned(), "true".to_owned()),
            ("ContentBasedDeduplication".to_owned(), "true".to_owned()),
        ];
        let queue = sqs
            .create_queue("f.fifo", fifo.into(), BTreeMap::new())
            .unwrap();
        sqs.send(&queue, message("a", Some("a")), "me").unwrap();
        sqs.send(&queue, message("b", Some("b")), "me").unwrap();
        assert_eq!(sqs.receive_now(&queue, 1, 30).unwrap().len(), 1);
        sqs.in_flight.lock().unwrap().clear();
        // A FIFO queue at its limit returns nothing rather than an error.
        assert!(sqs.receive_now(&queue, 1, 30).unwrap().is_empty());
    }

    #[test]
    fn fifo_groups_wait_for_their_head_and_duplicates_are_dropped() {
        let (_dir, sqs) = sqs();
        let attributes = [
            ("FifoQueue".to_owned(), "true".to_owned()),
            ("ContentBasedDeduplication".to_owned(), "true".to_owned()),
        ];
        let queue = sqs
            .create_queue("f.fifo", attributes.into(), BTreeMap::new())
            .unwrap();
        let first = sqs.send(&queue, message("a1", Some("a")), "me").unwrap();
        assert_eq!(
            sqs.send(&queue, message("a1", Some("a")), "me").unwrap().id,
            first.id
        );
        sqs.send(&queue, message("a2", Some("a")), "me").unwrap();
        sqs.send(&queue, message("b1", Some("b")), "me").unwrap();
        let head = sqs.receive_now(&queue, 1, 30).unwrap();
        assert_eq!(head[0].message.body, "a1");
        let rest = sqs.receive_now(&queue, 10, 30).unwrap();
        assert_eq!(
            rest.iter()
                .map(|r| r.message.body.as_str())
                .collect::<Vec<_>>(),
            ["b1"]
        );
        sqs.delete(&queue, &head[0].handle).unwrap();
        let next = sqs.receive_now(&queue, 10, 30).unwrap();
        assert_eq!(next[0].message.body, "a2");
        assert!(
            sqs.send(&queue, message("x", None), "me").is_err(),
            "a group is required"
        );
    }

    #[test]
    fn used_up_messages_go_to_the_dead_letter_queue() {
        let (_dir, sqs) = sqs();
        sqs.create_queue("dlq", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        let policy = format!(
            r#"{{"deadLetterTargetArn":"{}","maxReceiveCount":1}}"#,
            sqs.arn("dlq")
        );
        let queue = sqs
            .create_queue(
                "src",
                [("RedrivePolicy".to_owned(), policy)].into(),
                BTreeMap::new(),
            )
            .unwrap();
        sqs.send(&queue, message("poison", None), "me").unwrap();
        assert_eq!(sqs.receive_now(&queue, 1, 0).unwrap().len(), 1);
        assert!(sqs.receive_now(&queue, 1, 0).unwrap().is_empty());
        let (dlq, _) = sqs.queue("dlq").unwrap();
        let dead = sqs.receive_now(&dlq, 1, 0).unwrap();
        assert_eq!(
            dead[0].message.source.as_deref(),
            Some(sqs.arn("src").as_str())
        );
        assert_eq!(sqs.dead_letter_sources("dlq").unwrap().len(), 1);
    }

    #[test]
    fn a_queue_made_again_has_none_of_the_old_ones_messages() {
        let (_dir, sqs) = sqs();
        let queue = sqs
            .create_queue("q", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        sqs.delete_queue("q").unwrap();
        // A send racing the delete left a message behind; the minute has passed.
        let batch = sqs
            .staged(&queue, "stray", "me")
            .into_iter()
            .fold(WriteBatch::new(), |b, (t, k, v)| {
                b.put(&t, &k, v, Expect::Absent)
            })
            .put(DELETED, "q", b"0".to_vec(), Expect::Anything);
        sqs.meta.commit(batch).unwrap();
        let again = sqs
            .create_queue("q", BTreeMap::new(), BTreeMap::new())
            .unwrap();
        assert!(sqs.receive_now(&again, 10, 30).unwrap().is_empty());
        assert_eq!(sqs.counts(&again).unwrap().visible, 0);
    }

    #[test]
    fn a_queue_name_is_taken_again_only_with_the_same_attributes() {
        let (_dir, sqs) = sqs();
        let five = BTreeMap::from([("DelaySeconds".to_owned(), "5".to_owned())]);
        sqs.create_queue("q", five.clone(), BTreeMap::new())
            .unwrap();
        assert!(sqs.create_queue("q", five, BTreeMap::new()).is_ok());
        assert_eq!(
            sqs.create_queue("q", BTreeMap::new(), BTreeMap::new())
                .unwrap_err()
                .code,
            "QueueAlreadyExists"
        );
        sqs.delete_queue("q").unwrap();
        assert_eq!(
            sqs.create_queue("q", BTreeMap::new(), BTreeMap::new())
                .unwrap_err()
                .code,
            "AWS.SimpleQueueService.QueueDeletedRecently"
        );
    }
}
