//! Schedules' way into Lambda, SQS and SNS: a firing becomes an asynchronous invoke
//! (durable, retried by the function's own event-invoke config), a message of a
//! standard queue or a message staged for a topic, committed with the firing; a
//! firing no target takes can end as a dead letter in a queue, a bucket or another
//! function. Each is written as the schedule's role, which must be allowed
//! `lambda:InvokeFunction` on the function, `sqs:SendMessage` on the queue,
//! `sns:Publish` on the topic (with their policies) or `s3:PutObject` on the bucket.

use std::sync::Arc;

use nimbus_auth::Caller;
use nimbus_scheduler::{ArnCheck, Failure, Targets};
use nimbus_storage::{Expect, WriteBatch};

use crate::async_queue::AsyncQueue;
use crate::functions::Functions;
use crate::names::FunctionRef;
use nimbus_sns::Sns;
use nimbus_sqs::Sqs;

pub struct ScheduleTargets {
    functions: Arc<Functions>,
    queue: Arc<AsyncQueue>,
    sqs: Arc<Sqs>,
    sns: Arc<Sns>,
}

fn refused(message: String) -> Failure {
    Failure {
        code: "AccessDeniedException".to_owned(),
        message,
    }
}

impl ScheduleTargets {
    pub fn new(
        functions: Arc<Functions>,
        queue: Arc<AsyncQueue>,
        sqs: Arc<Sqs>,
        sns: Arc<Sns>,
    ) -> Self {
        Self {
            functions,
            queue,
            sqs,
            sns,
        }
    }

    /// The write that publishes `payload` to a topic as `role`, once committed.
    fn to_topic(&self, role: &Caller, arn: &str, payload: &[u8]) -> Result<WriteBatch, Failure> {
        let name = self
            .sns
            .topic_name(arn)
            .map_err(|err| refused(err.message))?;
        let (topic, _) = self.sns.topic(name).map_err(|err| refused(err.message))?;
        let policy = topic.attributes.get("Policy").map(String::as_str);
        self.functions
            .authorize_as(role, "sns:Publish", arn, policy)
            .map_err(|err| refused(err.message))?;
        let (table, key, value) = self
            .sns
            .staged(arn, &String::from_utf8_lossy(payload), None)
            .map_err(|err| refused(err.message))?;
        Ok(WriteBatch::new().put(&table, &key, value, Expect::Absent))
    }

    /// The writes that send `payload` to a standard queue as `role`.
    fn to_queue(&self, role: &Caller, arn: &str, payload: &[u8]) -> Result<WriteBatch, Failure> {
        let queue = self
            .sqs
            .queue_by_arn(arn)
            .map_err(|err| refused(err.message))?;
        if queue.fifo() {
            return Err(refused(format!(
                "{arn} is a FIFO queue: schedules send to standard queues"
            )));
        }
        self.functions
            .authorize_as(
                role,
                "sqs:SendMessage",
                arn,
                queue.attributes.get("Policy").map(String::as_str),
            )
            .map_err(|err| refused(err.message))?;
        let body = String::from_utf8_lossy(payload);
        Ok(self
            .sqs
            .staged(&queue, &body, &role.principal.user_id())
            .into_iter()
            .fold(WriteBatch::new(), |batch, (table, key, value)| {
                batch.put(&table, &key, value, Expect::Absent)
            }))
    }

    fn function(&self, arn: &str) -> Result<FunctionRef, String> {
        if !arn.starts_with("arn:aws:lambda:") {
            return Err(format!(
                "{arn} is not a Lambda function, SQS queue or SNS topic ARN: nimbus's Scheduler delivers to those"
            ));
        }
        FunctionRef::parse(arn, &self.functions.region, &self.functions.account)
            .map_err(|err| err.message)
    }
}

impl ArnCheck for ScheduleTargets {
    fn check_target(&self, arn: &str) -> Result<(), String> {
        if arn.starts_with("arn:aws:sqs:") || arn.starts_with("arn:aws:sns:") {
            return Ok(());
        }
        self.function(arn).map(|_| ())
    }

    fn check_dead_letter(&self, arn: &str) -> Result<(), String> {
        if arn.starts_with("arn:aws:sqs:") {
            return Ok(());
        }
        match arn.strip_prefix("arn:aws:s3:::") {
            Some(bucket) if !bucket.is_empty() && !bucket.contains('/') => Ok(()),
            Some(_) => Err(format!("DeadLetterConfig.Arn {arn} names no bucket")),
            None => self.function(arn).map(|_| ()),
        }
    }
}

impl Targets for ScheduleTargets {
    fn stage(&self, role: &Caller, arn: &str, payload: &[u8]) -> Result<WriteBatch, Failure> {
        if arn.starts_with("arn:aws:sqs:") {
            return self.to_queue(role, arn, payload);
        }
        if arn.starts_with("arn:aws:sns:") {
            return self.to_topic(role, arn, payload);
        }
        let function = self.function(arn).map_err(|message| Failure {
            code: "ValidationException".to_owned(),
            message,
        })?;
        let refused = |err: nimbus_edge::AwsError| Failure {
            code: err.code.into_owned(),
            message: err.message,
        };
        self.functions
            .authorize_invoke(role, &function)
            .map_err(refused)?;
        self.functions.resolve(&function).map_err(refused)?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let (table, key, value) = self.queue.stage(function, &request_id, payload);
        Ok(WriteBatch::new().put(&table, &key, value, Expect::Absent))
    }

    fn dead_letter(
        &self,
        role: &Caller,
        arn: &str,
        name: &str,
        message: &[u8],
    ) -> Result<WriteBatch, String> {
        match arn.strip_prefix("arn:aws:s3:::") {
            Some(bucket) => {
                let key = format!("aws/scheduler/dead-letter/{name}");
                self.functions
                    .objects()
                    .put_object_as(role, bucket, &key, message, "application/json")
                    .map(|()| WriteBatch::new())
                    .map_err(|err| err.detail())
            }
            None => self
                .stage(role, arn, message)
                .map_err(|failure| failure.message),
        }
    }

    fn wake(&self) {
        self.queue.wake();
        self.sqs.wake_all();
        self.sns.wake_outbox();
    }
}
