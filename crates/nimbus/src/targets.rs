//! Deliveries from one service to another, each made as the delivering service's
//! principal (`sns.amazonaws.com`): the target's own policy must allow it for the
//! source, as on AWS (a queue policy allowing SNS to send for the topic, a function
//! permission for it to invoke).

use std::sync::Arc;

use nimbus_auth::authz::{Access, Authorizer};
use nimbus_lambda::AsyncQueue;
use nimbus_lambda::Functions;
use nimbus_lambda::names::FunctionRef;
use nimbus_sns::Undelivered;
use nimbus_sqs::Sqs;
use nimbus_sqs::messages::Outgoing;
use nimbus_storage::{Expect, MetadataStore, WriteBatch};
use serde_json::Value;

const SNS: &str = "sns.amazonaws.com";

pub struct SnsTargets {
    pub meta: Arc<dyn MetadataStore>,
    pub sqs: Arc<Sqs>,
    pub functions: Arc<Functions>,
    /// Set once Lambda's event queue, which itself publishes to topics, exists.
    pub queue: std::sync::OnceLock<Arc<AsyncQueue>>,
    pub authorizer: Arc<dyn Authorizer>,
}

impl SnsTargets {
    fn allowed(&self, access: Access<'_>, source: &str) -> Result<(), Undelivered> {
        self.authorizer
            .authorize_service(SNS, &access.for_source(source, &self.sqs.account))
            .map_err(Undelivered::Refused)
    }
}

/// A target's own error: a client error refuses the delivery, a server error fails it.
fn undelivered(err: nimbus_edge::AwsError) -> Undelivered {
    if err.status.is_server_error() {
        Undelivered::Failed(err.message)
    } else {
        Undelivered::Refused(err.message)
    }
}

impl nimbus_sns::Targets for SnsTargets {
    fn send_to_queue(
        &self,
        queue_arn: &str,
        topic_arn: &str,
        body: &str,
        attributes: &Value,
        fifo: Option<(&str, &str)>,
    ) -> Result<(), Undelivered> {
        let queue = self.sqs.queue_by_arn(queue_arn).map_err(undelivered)?;
        let policy = queue.attributes.get("Policy").cloned();
        self.allowed(
            Access::new("sqs:SendMessage", queue_arn).with_policy(policy.as_deref()),
            topic_arn,
        )?;
        let outgoing = Outgoing {
            body: body.to_owned(),
            delay: None,
            attributes: nimbus_sqs::attributes::parse(attributes).map_err(undelivered)?,
            system: Default::default(),
            group: fifo.map(|(group, _)| group.to_owned()),
            dedup: fifo.map(|(_, dedup)| dedup.to_owned()),
        };
        self.sqs
            .send(&queue, outgoing, SNS)
            .map(drop)
            .map_err(undelivered)
    }

    fn invoke(&self, function_arn: &str, topic_arn: &str, event: &[u8]) -> Result<(), Undelivered> {
        let function = FunctionRef::parse(function_arn, &self.sqs.region, &self.sqs.account)
            .map_err(undelivered)?;
        self.functions.resolve(&function).map_err(undelivered)?;
        let arn = self
            .functions
            .arn(&function.name, function.qualifier.as_deref());
        let policy = self.functions.policy_document(&function.name);
        self.allowed(
            Access::new("lambda:InvokeFunction", &arn).with_policy(policy.as_deref()),
            topic_arn,
        )?;
        let queue = self
            .queue
            .get()
            .ok_or_else(|| Undelivered::Failed("Lambda is not started yet".into()))?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let (table, key, value) = queue.stage(function, &request_id, event);
        self.meta
            .commit(WriteBatch::new().put(&table, &key, value, Expect::Absent))
            .map_err(|err| Undelivered::Failed(err.to_string()))?;
        queue.wake();
        Ok(())
    }
}

/// Where bucket events go: functions (through Lambda's event queue), standard SQS
/// queues and SNS topics (through its outbox), each as `s3.amazonaws.com`, written in
/// the commit of the object change.
pub struct BucketTargets {
    pub functions: Arc<nimbus_lambda::bucket_events::BucketEvents>,
    pub sqs: Arc<Sqs>,
    pub sns: Arc<nimbus_sns::Sns>,
    pub authorizer: Arc<dyn Authorizer>,
}

impl BucketTargets {
    fn topic(&self, arn: &str) -> Result<nimbus_sns::Topic, String> {
        let name = self.sns.topic_name(arn).map_err(|err| err.message)?;
        Ok(self.sns.topic(name).map_err(|err| err.message)?.0)
    }

    fn queue(&self, arn: &str) -> Result<nimbus_sqs::queues::Queue, String> {
        let queue = self.sqs.queue_by_arn(arn).map_err(|err| err.message)?;
        if queue.fifo() {
            return Err("FIFO queues cannot receive bucket events".into());
        }
        Ok(queue)
    }
}

impl nimbus_s3::EventTarget for BucketTargets {
    fn refuses(&self, target: &str, bucket: &str, account: &str) -> Option<String> {
        let (action, policy) = if target.starts_with("arn:aws:sqs:") {
            match self.queue(target) {
                Ok(queue) => ("sqs:SendMessage", queue.attributes.get("Policy").cloned()),
                Err(reason) => return Some(reason),
            }
        } else if target.starts_with("arn:aws:sns:") {
            match self.topic(target) {
                Ok(topic) => ("sns:Publish", topic.attributes.get("Policy").cloned()),
                Err(reason) => return Some(reason),
            }
        } else {
            return self.functions.refuses(target, bucket, account);
        };
        let access = Access::new(action, target)
            .with_policy(policy.as_deref())
            .for_source(&format!("arn:aws:s3:::{bucket}"), account);
        self.authorizer
            .authorize_service("s3.amazonaws.com", &access)
            .err()
    }

    fn stage(
        &self,
        target: &str,
        event: Vec<u8>,
    ) -> Result<Vec<nimbus_s3::notifications::Staged>, String> {
        let staged = if target.starts_with("arn:aws:sqs:") {
            let queue = self.queue(target)?;
            let body = String::from_utf8(event).map_err(|err| err.to_string())?;
            self.sqs.staged(&queue, &body, "s3.amazonaws.com")
        } else if target.starts_with("arn:aws:sns:") {
            let body = String::from_utf8(event).map_err(|err| err.to_string())?;
            vec![
                self.sns
                    .staged(target, &body, Some("Amazon S3 Notification"))
                    .map_err(|err| err.message)?,
            ]
        } else {
            return self.functions.stage(target, event);
        };
        Ok(staged
            .into_iter()
            .map(|(table, key, value)| nimbus_s3::notifications::Staged { table, key, value })
            .collect())
    }

    fn wake(&self) {
        self.functions.wake();
        self.sqs.wake_all();
        self.sns.wake_outbox();
    }
}
