//! Deliveries from one service to another, each made as the delivering service's
//! principal (`sns.amazonaws.com`, `events.amazonaws.com`, `s3.amazonaws.com`): the
//! target's own policy must allow it for the source, as on AWS (a queue policy
//! allowing SNS to send for the topic, a function permission for a rule to invoke).

use std::sync::Arc;

use nimbus_auth::authz::{Access, Authorizer, ServiceRoles};
use nimbus_lambda::AsyncQueue;
use nimbus_lambda::Functions;
use nimbus_lambda::names::FunctionRef;
use nimbus_sns::Undelivered;
use nimbus_sqs::Sqs;
use nimbus_sqs::messages::Outgoing;
use nimbus_storage::{Expect, MetadataStore, WriteBatch};
use serde_json::{Value, json};

/// Queues and functions as a service principal reaches them for a source (a topic,
/// a rule).
pub struct ServiceTargets {
    pub principal: &'static str,
    pub meta: Arc<dyn MetadataStore>,
    pub sqs: Arc<Sqs>,
    pub functions: Arc<Functions>,
    /// Set once Lambda's event queue, which itself publishes to topics, exists.
    pub queue: std::sync::OnceLock<Arc<AsyncQueue>>,
    pub authorizer: Arc<dyn Authorizer>,
}

impl ServiceTargets {
    fn allowed(&self, access: Access<'_>, source: &str) -> Result<(), Undelivered> {
        self.authorizer
            .authorize_service(
                self.principal,
                &access.for_source(source, &self.sqs.account),
            )
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

impl nimbus_sns::Targets for ServiceTargets {
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
            .send(&queue, outgoing, self.principal)
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

/// Where EventBridge delivers: queues and functions as `events.amazonaws.com`,
/// topics by publishing as it, the topic's policy allowing it for the rule, and ECS
/// clusters by running tasks as the target's role.
pub struct EventTargets {
    pub service: Arc<ServiceTargets>,
    pub sns: Arc<nimbus_sns::Sns>,
    pub roles: Arc<dyn ServiceRoles>,
    /// Set once ECS, which itself sends task events to buses, exists.
    pub ecs: std::sync::OnceLock<Arc<nimbus_ecs::Ecs>>,
}

/// EventBridge's network configuration (`awsvpcConfiguration` of `Subnets`, ...) as
/// RunTask takes it (`subnets`, ...).
fn run_task_network(configuration: &Value) -> Value {
    let vpc = &configuration["awsvpcConfiguration"];
    let Some(fields) = vpc.as_object() else {
        return Value::Null;
    };
    let camel: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(key, value)| {
            let mut chars = key.chars();
            let first = chars.next().map(|c| c.to_ascii_lowercase());
            (first.into_iter().chain(chars).collect(), value.clone())
        })
        .collect();
    json!({ "awsvpcConfiguration": camel })
}

impl nimbus_events::Targets for EventTargets {
    fn run_task(&self, target: &Value, rule_arn: &str, input: &str) -> Result<(), Undelivered> {
        let ecs = self
            .ecs
            .get()
            .ok_or_else(|| Undelivered::Failed("ECS is not started yet".into()))?;
        let role = target["RoleArn"].as_str().unwrap_or_default();
        let session = format!("events-{}", uuid::Uuid::new_v4().simple());
        let caller = self
            .roles
            .assume(role, "events.amazonaws.com", &session)
            .map_err(Undelivered::Refused)?;
        let parameters = &target["EcsParameters"];
        let rule = rule_arn.rsplit('/').next().unwrap_or_default();
        let mut run = json!({
            "cluster": target["Arn"],
            "taskDefinition": parameters["TaskDefinitionArn"],
            "count": parameters["TaskCount"].as_i64().unwrap_or(1),
            "launchType": parameters["LaunchType"],
            "networkConfiguration": run_task_network(&parameters["NetworkConfiguration"]),
            "startedBy": format!("events-rule/{rule}"),
        });
        if let Some(group) = parameters["Group"].as_str() {
            run["group"] = group.into();
        }
        // The target's input, when it is one, is the tasks' overrides.
        if let Ok(overrides) = serde_json::from_str::<Value>(input)
            && overrides.get("containerOverrides").is_some()
        {
            run["overrides"] = overrides;
        }
        // The role must be allowed to run the task definition and to hand its roles
        // to the tasks, as AWS requires of it.
        let definition = ecs
            .taskdef_arn(run["taskDefinition"].as_str().unwrap_or_default())
            .map_err(undelivered)?;
        let authorizer = &self.service.authorizer;
        authorizer
            .authorize(&caller, None, &Access::new("ecs:RunTask", &definition))
            .map_err(Undelivered::Refused)?;
        for passed in nimbus_ecs::credentials::passed_roles(ecs, "RunTask", &run) {
            authorizer
                .authorize(&caller, None, &Access::new("iam:PassRole", &passed))
                .map_err(Undelivered::Refused)?;
        }
        let started = ecs.run_task(&run).map_err(undelivered)?;
        match started["failures"].as_array().and_then(|f| f.first()) {
            Some(failure) => Err(Undelivered::Failed(format!(
                "RunTask failed: {}",
                failure["reason"].as_str().unwrap_or("unknown")
            ))),
            None => Ok(()),
        }
    }

    fn deliver(
        &self,
        target_arn: &str,
        rule_arn: &str,
        input: &str,
        attributes: &Value,
    ) -> Result<(), Undelivered> {
        use nimbus_sns::Targets as _;
        if target_arn.starts_with("arn:aws:sqs:") {
            return self
                .service
                .send_to_queue(target_arn, rule_arn, input, attributes, None);
        }
        if target_arn.starts_with("arn:aws:lambda:") {
            return self.service.invoke(target_arn, rule_arn, input.as_bytes());
        }
        let name = self.sns.topic_name(target_arn).map_err(undelivered)?;
        let (topic, _) = self.sns.topic(name).map_err(undelivered)?;
        let policy = topic.attributes.get("Policy").map(String::as_str);
        self.service.allowed(
            Access::new("sns:Publish", target_arn).with_policy(policy),
            rule_arn,
        )?;
        let message = nimbus_sns::Outgoing {
            message: input.to_owned(),
            ..Default::default()
        };
        self.sns
            .publish(name, message, &self.sns.endpoint)
            .map(drop)
            .map_err(undelivered)
    }
}

/// Tasks' state changes as EventBridge's `ECS Task State Change` events on the
/// default bus.
pub struct TaskStateEvents(pub Arc<nimbus_events::Events>);

impl nimbus_ecs::TaskEvents for TaskStateEvents {
    fn staged(&self, task: &Value) -> Vec<(String, String, Vec<u8>)> {
        let resources = vec![task["taskArn"].as_str().unwrap_or_default().to_owned()];
        self.0
            .staged("aws.ecs", "ECS Task State Change", resources, task.clone())
            .unwrap_or_else(|err| {
                tracing::warn!(error = %err.message, "a task state change event was not sent");
                Vec::new()
            })
    }

    fn wake(&self) {
        self.0.wake();
    }
}

/// Where bucket events go: functions (through Lambda's event queue), standard SQS
/// queues and SNS topics (through its outbox), each as `s3.amazonaws.com`, written in
/// the commit of the object change.
pub struct BucketTargets {
    pub functions: Arc<nimbus_lambda::bucket_events::BucketEvents>,
    pub sqs: Arc<Sqs>,
    pub sns: Arc<nimbus_sns::Sns>,
    pub events: Arc<nimbus_events::Events>,
    pub authorizer: Arc<dyn Authorizer>,
}

/// S3's event record as EventBridge carries it: `Object Created` or `Object
/// Deleted` from `aws.s3`, the object's facts in `detail`.
fn bucket_event(record: &[u8]) -> Result<(String, Value), String> {
    let records: Value = serde_json::from_slice(record).map_err(|err| err.to_string())?;
    let record = &records["Records"][0];
    let name = record["eventName"].as_str().unwrap_or_default();
    let (detail_type, reason) = match name.split_once(':') {
        Some(("ObjectCreated", "Put")) => ("Object Created", "PutObject"),
        Some(("ObjectCreated", "Copy")) => ("Object Created", "CopyObject"),
        Some(("ObjectCreated", "Post")) => ("Object Created", "PostObject"),
        Some(("ObjectCreated", _)) => ("Object Created", "CompleteMultipartUpload"),
        _ => ("Object Deleted", "DeleteObject"),
    };
    let s3 = &record["s3"];
    // S3's notification URL-encodes the key; EventBridge's event does not.
    let encoded = s3["object"]["key"].as_str().unwrap_or_default();
    let key = form_urlencoded::parse(format!("k={encoded}").as_bytes())
        .next()
        .map(|(_, key)| key.into_owned())
        .unwrap_or_default();
    let mut object = json!({ "key": key, "sequencer": s3["object"]["sequencer"] });
    if !s3["object"]["size"].is_null() {
        object["size"] = s3["object"]["size"].clone();
        object["etag"] = s3["object"]["eTag"].clone();
    }
    Ok((
        detail_type.to_owned(),
        json!({
            "version": "0",
            "bucket": { "name": s3["bucket"]["name"] },
            "object": object,
            "request-id": record["responseElements"]["x-amz-request-id"],
            "requester": s3["bucket"]["ownerIdentity"]["principalId"],
            "source-ip-address": record["requestParameters"]["sourceIPAddress"],
            "reason": reason,
        }),
    ))
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
        // S3 sends to its account's default bus with no policy to pass.
        if target == nimbus_s3::notifications::EVENTBRIDGE {
            return None;
        }
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
        } else if target == nimbus_s3::notifications::EVENTBRIDGE {
            let (detail_type, detail) = bucket_event(&event)?;
            let bucket = detail["bucket"]["name"].as_str().unwrap_or_default();
            let resources = vec![format!("arn:aws:s3:::{bucket}")];
            self.events
                .staged("aws.s3", &detail_type, resources, detail)
                .map_err(|err| err.message)?
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
        self.events.wake();
    }
}
