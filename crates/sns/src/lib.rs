//! SNS: topics and their subscriptions, and the fan-out of each published message to
//! the subscriptions whose filter policy wants it: SQS queues and Lambda functions
//! (reached as the SNS service principal, so the queue's or function's policy must
//! allow `sns.amazonaws.com` for the topic; a failed delivery is retried, then goes
//! to the subscription's dead-letter queue), and HTTP/HTTPS endpoints (which confirm
//! their subscription first, and get signed messages with delivery retries).
//!
//! Records: `sns.topics/<name>` and `sns.subscriptions/<topic>/<id>`, the
//! subscription's ARN being the topic's with `:<id>`. `api.rs` is the query protocol;
//! `signing.rs` the deployment's signing key and certificate; `outbox.rs` messages
//! other services publish in their own commits and deliveries waiting for a retry.

pub mod api;
pub mod outbox;
pub mod signing;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::outbox::Delivery;

pub use api::SnsApi;

pub const TOPICS: &str = "sns.topics";
pub const SUBSCRIPTIONS: &str = "sns.subscriptions";
const FIFO_SUFFIX: &str = ".fifo";
const MAX_MESSAGE_BYTES: usize = 262_144;
/// Attempts at an HTTP delivery, and the first pause between them (doubling).
const HTTP_ATTEMPTS: u32 = 4;
const HTTP_BACK_OFF: Duration = Duration::from_secs(1);

/// Where SNS delivers besides HTTP: nimbus's own queues and functions, as the SNS
/// service principal on behalf of `topic_arn`.
pub trait Targets: Send + Sync {
    /// Sends a message to a queue: its body, SQS message attributes (JSON shape) and,
    /// for a FIFO queue, its group and deduplication ids.
    fn send_to_queue(
        &self,
        queue_arn: &str,
        topic_arn: &str,
        body: &str,
        attributes: &Value,
        fifo: Option<(&str, &str)>,
    ) -> Result<(), Undelivered>;

    /// Queues an asynchronous invoke of a function with `event`.
    fn invoke(&self, function_arn: &str, topic_arn: &str, event: &[u8]) -> Result<(), Undelivered>;
}

/// Why a queue or a function did not take a delivery.
#[derive(Debug)]
pub enum Undelivered {
    /// The target is gone or its policy does not let the topic deliver: no retry
    /// helps, so the message goes to the subscription's dead-letter queue at once.
    Refused(String),
    /// Something failed on the way (the store): the delivery is retried.
    Failed(String),
}

impl std::fmt::Display for Undelivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Undelivered::Refused(reason) | Undelivered::Failed(reason) => f.write_str(reason),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Topic {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub topic: String,
    pub protocol: String,
    pub endpoint: String,
    pub attributes: BTreeMap<String, String>,
    pub confirmed: bool,
    /// What confirms it (HTTP endpoints) and unsubscribes it without signing.
    pub token: String,
}

impl Subscription {
    /// Whether `token` is this subscription's secret, compared in constant time: it
    /// is the only credential of the confirm and unsubscribe links.
    pub fn token_is(&self, token: &str) -> bool {
        self.token.len() == token.len()
            && openssl::memcmp::eq(self.token.as_bytes(), token.as_bytes())
    }
}

/// A message to publish, as `Publish` or a batch entry gives it.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub message: String,
    pub subject: Option<String>,
    /// `{name: {DataType, StringValue | BinaryValue}}`.
    pub attributes: BTreeMap<String, Value>,
    pub structure_json: bool,
    pub group: Option<String>,
    pub dedup: Option<String>,
}

pub fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

pub fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::NOT_FOUND, "NotFound", message)
}

fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "sns failed");
    if nimbus_storage::backends_degraded() {
        return AwsError::unavailable();
    }
    AwsError::internal(nimbus_edge::Protocol::Query)
}

fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

pub struct Sns {
    meta: Arc<dyn MetadataStore>,
    pub region: String,
    pub account: String,
    /// This node's edge, for the URLs in messages another service publishes (those
    /// published through the API name the endpoint the client called).
    pub endpoint: String,
    targets: Arc<dyn Targets>,
    /// Whether HTTP deliveries may connect to an address (the egress policy).
    permits: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
    key: std::sync::OnceLock<signing::SigningKey>,
    /// Messages and deliveries waiting for later.
    outbox: Arc<nimbus_cluster::outbox::Outbox>,
}

impl Sns {
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        region: &str,
        account: &str,
        endpoint: &str,
        targets: Arc<dyn Targets>,
        permits: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
    ) -> Arc<Self> {
        Arc::new(Self {
            meta: meta.clone(),
            region: region.to_owned(),
            account: account.to_owned(),
            endpoint: endpoint.to_owned(),
            targets,
            permits,
            key: std::sync::OnceLock::new(),
            outbox: nimbus_cluster::outbox::Outbox::new(meta.clone(), outbox::OUTBOX),
        })
    }

    pub fn topic_arn(&self, name: &str) -> String {
        format!("arn:aws:sns:{}:{}:{name}", self.region, self.account)
    }

    /// The topic an ARN names, if it is this account's.
    pub fn topic_name<'a>(&self, arn: &'a str) -> Result<&'a str, AwsError> {
        arn.strip_prefix(&format!("arn:aws:sns:{}:{}:", self.region, self.account))
            .filter(|name| !name.is_empty() && !name.contains(':'))
            .ok_or_else(|| {
                invalid(format!(
                    "Invalid parameter: TopicArn Reason: {arn} is not a topic of this account"
                ))
            })
    }

    pub fn topic(&self, name: &str) -> Result<(Topic, u64), AwsError> {
        let record = self
            .meta
            .get(TOPICS, name)
            .map_err(internal)?
            .ok_or_else(|| not_found("Topic does not exist"))?;
        Ok((
            serde_json::from_slice(&record.value).map_err(internal)?,
            record.version,
        ))
    }

    fn save_topic(&self, topic: &Topic, expect: Expect) -> Result<(), StoreError> {
        self.meta.commit(WriteBatch::new().put(
            TOPICS,
            &topic.name,
            serde_json::to_vec(topic).expect("topics serialize"),
            expect,
        ))
    }

    pub fn create_topic(
        &self,
        name: &str,
        attributes: BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        let stem = name.strip_suffix(FIFO_SUFFIX).unwrap_or(name);
        if stem.is_empty()
            || name.len() > 256
            || !stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid("Invalid parameter: Topic Name"));
        }
        let fifo = attributes.get("FifoTopic").is_some_and(|v| v == "true");
        if fifo != name.ends_with(FIFO_SUFFIX) {
            return Err(invalid(
                "Invalid parameter: Fifo Topic names must end with .fifo and Standard Topic cannot end with .fifo",
            ));
        }
        for (attribute, value) in &attributes {
            check_topic_attribute(attribute, value, fifo)?;
        }
        if let Ok((existing, _)) = self.topic(name) {
            // Created again with the same name: the same topic, unless attributes differ.
            if attributes
                .iter()
                .any(|(k, v)| existing.attributes.get(k) != Some(v))
            {
                return Err(invalid(
                    "Invalid parameter: Attributes Reason: Topic already exists with different attributes",
                ));
            }
            return Ok(self.topic_arn(name));
        }
        let topic = Topic {
            name: name.to_owned(),
            attributes,
            tags,
        };
        match self.save_topic(&topic, Expect::Absent) {
            Ok(()) | Err(StoreError::Conflict { .. }) => Ok(self.topic_arn(name)),
            Err(err) => Err(internal(err)),
        }
    }

    pub fn delete_topic(&self, name: &str) -> Result<(), AwsError> {
        let mut batch = WriteBatch::new().delete(TOPICS, name, Expect::Anything);
        for record in self
            .meta
            .scan_all(SUBSCRIPTIONS, &format!("{name}/"))
            .map_err(internal)?
        {
            batch = batch.delete(SUBSCRIPTIONS, &record.key, Expect::Anything);
        }
        self.meta.commit(batch).map_err(internal)
    }

    pub fn topics(&self) -> Result<Vec<Topic>, AwsError> {
        self.meta
            .scan_all(TOPICS, "")
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    pub fn update_topic(
        &self,
        name: &str,
        change: impl Fn(&mut Topic) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        loop {
            let (mut topic, version) = self.topic(name)?;
            change(&mut topic)?;
            match self.save_topic(&topic, Expect::Version(version)) {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(internal(err)),
            }
        }
    }

    /// A topic's attributes as `GetTopicAttributes` lists them.
    pub fn topic_attributes(&self, name: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let (topic, _) = self.topic(name)?;
        let subscriptions = self.subscriptions_of(name)?;
        let arn = self.topic_arn(name);
        let mut out = topic.attributes.clone();
        out.insert("TopicArn".into(), arn.clone());
        out.insert("Owner".into(), self.account.clone());
        out.entry("DisplayName".into()).or_default();
        out.entry("Policy".into())
            .or_insert_with(|| default_policy(&arn, &self.account));
        out.insert(
            "SubscriptionsConfirmed".into(),
            subscriptions
                .iter()
                .filter(|s| s.confirmed)
                .count()
                .to_string(),
        );
        out.insert(
            "SubscriptionsPending".into(),
            subscriptions
                .iter()
                .filter(|s| !s.confirmed)
                .count()
                .to_string(),
        );
        out.insert("SubscriptionsDeleted".into(), "0".into());
        out.entry("EffectiveDeliveryPolicy".into()).or_insert_with(|| {
            r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":1,"maxDelayTarget":8,"numRetries":3,"numMaxDelayRetries":0,"numNoDelayRetries":0,"numMinDelayRetries":0,"backoffFunction":"exponential"},"disableSubscriptionOverrides":false}}"#.into()
        });
        if name.ends_with(FIFO_SUFFIX) {
            out.entry("ContentBasedDeduplication".into())
                .or_insert_with(|| "false".into());
        }
        Ok(out)
    }

    // --- Subscriptions --------------------------------------------------------------

    pub fn subscriptions_of(&self, topic: &str) -> Result<Vec<Subscription>, AwsError> {
        self.meta
            .scan_all(SUBSCRIPTIONS, &format!("{topic}/"))
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    pub fn all_subscriptions(&self) -> Result<Vec<Subscription>, AwsError> {
        self.meta
            .scan_all(SUBSCRIPTIONS, "")
            .map_err(internal)?
            .iter()
            .map(|r| serde_json::from_slice(&r.value).map_err(internal))
            .collect()
    }

    pub fn subscription_arn(&self, subscription: &Subscription) -> String {
        format!(
            "{}:{}",
            self.topic_arn(&subscription.topic),
            subscription.id
        )
    }

    /// The subscription an ARN names, with its version.
    pub fn subscription(&self, arn: &str) -> Result<(Subscription, u64), AwsError> {
        let (topic_arn, id) = arn
            .rsplit_once(':')
            .ok_or_else(|| invalid("Invalid parameter: SubscriptionArn"))?;
        let topic = self.topic_name(topic_arn)?;
        let record = self
            .meta
            .get(SUBSCRIPTIONS, &format!("{topic}/{id}"))
            .map_err(internal)?
            .ok_or_else(|| not_found("Subscription does not exist"))?;
        Ok((
            serde_json::from_slice(&record.value).map_err(internal)?,
            record.version,
        ))
    }

    fn save_subscription(
        &self,
        subscription: &Subscription,
        expect: Expect,
    ) -> Result<(), AwsError> {
        self.meta
            .commit(WriteBatch::new().put(
                SUBSCRIPTIONS,
                &format!("{}/{}", subscription.topic, subscription.id),
                serde_json::to_vec(subscription).expect("subscriptions serialize"),
                expect,
            ))
            .map_err(internal)
    }

    /// Subscribes an endpoint: queues and functions at once, HTTP endpoints once they
    /// confirm (a confirmation request is sent now). `endpoint` is how this node is
    /// reached, for the links in what is sent.
    pub fn subscribe(
        self: &Arc<Self>,
        topic: &str,
        protocol: &str,
        target: &str,
        attributes: BTreeMap<String, String>,
        endpoint: &str,
    ) -> Result<Subscription, AwsError> {
        self.topic(topic)?;
        let valid = match protocol {
            "sqs" => target.starts_with("arn:aws:sqs:"),
            "lambda" => target.starts_with("arn:aws:lambda:"),
            "http" => target.starts_with("http://"),
            "https" => target.starts_with("https://"),
            _ => {
                return Err(invalid(format!(
                    "Invalid parameter: Amazon SNS does not support this protocol string: {protocol}"
                )));
            }
        };
        if !valid {
            return Err(invalid(format!(
                "Invalid parameter: Endpoint Reason: {target} is not a {protocol} endpoint"
            )));
        }
        for (attribute, value) in &attributes {
            check_subscription_attribute(attribute, value)?;
        }
        // The same endpoint again is the same subscription.
        if let Some(existing) = self
            .subscriptions_of(topic)?
            .into_iter()
            .find(|s| s.protocol == protocol && s.endpoint == target)
        {
            return Ok(existing);
        }
        let subscription = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            topic: topic.to_owned(),
            protocol: protocol.to_owned(),
            endpoint: target.to_owned(),
            attributes,
            confirmed: matches!(protocol, "sqs" | "lambda"),
            token: uuid::Uuid::new_v4().simple().to_string()
                + &uuid::Uuid::new_v4().simple().to_string(),
        };
        self.save_subscription(&subscription, Expect::Absent)?;
        if !subscription.confirmed {
            let topic_arn = self.topic_arn(topic);
            let subscribe_url = format!(
                "{endpoint}/_nimbus/sns/confirm?TopicArn={topic_arn}&Token={}",
                subscription.token
            );
            let mut message = json!({
                "Type": "SubscriptionConfirmation",
                "MessageId": uuid::Uuid::new_v4().to_string(),
                "Token": subscription.token,
                "TopicArn": topic_arn,
                "Message": format!("You have chosen to subscribe to the topic {topic_arn}.\nTo confirm the subscription, visit the SubscribeURL included in this message."),
                "SubscribeURL": subscribe_url,
                "Timestamp": timestamp(),
            });
            self.sign(&mut message, endpoint, "1")?;
            let sns = self.clone();
            let target = target.to_owned();
            tokio::spawn(async move { sns.post(&target, &message).await });
        }
        Ok(subscription)
    }

    /// Confirms an HTTP subscription by its token.
    pub fn confirm(&self, topic: &str, token: &str) -> Result<Subscription, AwsError> {
        let mut found = self
            .subscriptions_of(topic)?
            .into_iter()
            .find(|s| s.token_is(token))
            .ok_or_else(|| invalid("Invalid token"))?;
        if !found.confirmed {
            found.confirmed = true;
            self.save_subscription(&found, Expect::Anything)?;
        }
        Ok(found)
    }

    pub fn unsubscribe(&self, arn: &str) -> Result<(), AwsError> {
        let (subscription, _) = self.subscription(arn)?;
        self.meta
            .commit(WriteBatch::new().delete(
                SUBSCRIPTIONS,
                &format!("{}/{}", subscription.topic, subscription.id),
                Expect::Anything,
            ))
            .map_err(internal)
    }

    pub fn set_subscription_attribute(
        &self,
        arn: &str,
        name: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        check_subscription_attribute(name, value)?;
        let (mut subscription, version) = self.subscription(arn)?;
        if value.is_empty() {
            subscription.attributes.remove(name);
        } else {
            subscription
                .attributes
                .insert(name.to_owned(), value.to_owned());
        }
        self.save_subscription(&subscription, Expect::Version(version))
    }

    // --- Publishing -------------------------------------------------------------------

    /// Publishes to every subscription whose filter policy wants the message: queues
    /// and functions before this returns, HTTP endpoints in the background.
    pub fn publish(
        self: &Arc<Self>,
        topic: &str,
        outgoing: Outgoing,
        endpoint: &str,
    ) -> Result<(String, Option<String>), AwsError> {
        let (record, _) = self.topic(topic)?;
        let fifo = topic.ends_with(FIFO_SUFFIX);
        if outgoing.message.is_empty() {
            return Err(invalid("Invalid parameter: Empty message"));
        }
        let size = outgoing.message.len()
            + outgoing
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.to_string().len())
                .sum::<usize>();
        if size > MAX_MESSAGE_BYTES {
            return Err(invalid("Invalid parameter: Message too long"));
        }
        if let Some(subject) = &outgoing.subject
            && (subject.is_empty() || subject.len() > 100 || subject.contains('\n'))
        {
            return Err(invalid("Invalid parameter: Subject"));
        }
        let structured: Option<Value> = if outgoing.structure_json {
            let parsed: Value = serde_json::from_str(&outgoing.message).map_err(|_| {
                invalid("Invalid parameter: Message Structure - JSON message body failed to parse")
            })?;
            if parsed["default"].as_str().is_none() {
                return Err(invalid(
                    "Invalid parameter: Message Structure - No default entry in JSON message body",
                ));
            }
            Some(parsed)
        } else {
            None
        };
        let (group, dedup) = if fifo {
            let group = outgoing.group.clone().ok_or_else(|| {
                invalid(
                    "Invalid parameter: The MessageGroupId parameter is required for FIFO topics",
                )
            })?;
            let dedup = match &outgoing.dedup {
                Some(dedup) => dedup.clone(),
                None if record
                    .attributes
                    .get("ContentBasedDeduplication")
                    .is_some_and(|v| v == "true") =>
                {
                    use sha2::Digest;
                    sha2::Sha256::digest(outgoing.message.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect()
                }
                None => {
                    return Err(invalid(
                        "Invalid parameter: The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ));
                }
            };
            (Some(group), Some(dedup))
        } else {
            (None, None)
        };
        let message_id = uuid::Uuid::new_v4().to_string();
        let sequence = fifo.then(|| {
            let micros = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000;
            format!("{micros:020}")
        });
        let topic_arn = self.topic_arn(topic);
        let at = timestamp();
        for subscription in self
            .subscriptions_of(topic)?
            .into_iter()
            .filter(|s| s.confirmed)
        {
            if !wants(&subscription, &outgoing) {
                continue;
            }
            let message = match &structured {
                Some(parsed) => parsed[subscription.protocol.as_str()]
                    .as_str()
                    .or_else(|| parsed["default"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
                None => outgoing.message.clone(),
            };
            let mut envelope = json!({
                "Type": "Notification",
                "MessageId": message_id,
                "TopicArn": topic_arn,
                "Message": message,
                "Timestamp": at,
                "UnsubscribeURL": format!("{endpoint}/_nimbus/sns/unsubscribe?SubscriptionArn={}&Token={}", self.subscription_arn(&subscription), subscription.token),
            });
            if let Some(subject) = &outgoing.subject {
                envelope["Subject"] = subject.as_str().into();
            }
            if let Some(sequence) = &sequence {
                envelope["SequenceNumber"] = sequence.as_str().into();
            }
            if !outgoing.attributes.is_empty() {
                envelope["MessageAttributes"] = outgoing
                    .attributes
                    .iter()
                    .map(|(name, value)| {
                        let text = value["StringValue"]
                            .as_str()
                            .or_else(|| value["BinaryValue"].as_str())
                            .unwrap_or_default();
                        (
                            name.clone(),
                            json!({ "Type": value["DataType"], "Value": text }),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
            let version = record
                .attributes
                .get("SignatureVersion")
                .map_or("1", String::as_str);
            self.sign(&mut envelope, endpoint, version)?;
            let raw = subscription
                .attributes
                .get("RawMessageDelivery")
                .is_some_and(|v| v == "true");
            let (body, attributes) = if raw {
                (message.clone(), json!(outgoing.attributes))
            } else {
                (envelope.to_string(), json!({}))
            };
            let mut delivery = Delivery {
                subscription: self.subscription_arn(&subscription),
                protocol: subscription.protocol.clone(),
                endpoint: subscription.endpoint.clone(),
                topic_arn: topic_arn.clone(),
                body: body.clone(),
                dead_letter: body,
                attributes,
                fifo: group.clone().zip(dedup.clone()),
                attempts: 0,
            };
            match subscription.protocol.as_str() {
                "sqs" => self.deliver(delivery),
                "lambda" => {
                    let mut sns = envelope.clone();
                    // The Lambda event spells these two differently.
                    if let Some(object) = sns.as_object_mut() {
                        if let Some(url) = object.remove("SigningCertURL") {
                            object.insert("SigningCertUrl".into(), url);
                        }
                        if let Some(url) = object.remove("UnsubscribeURL") {
                            object.insert("UnsubscribeUrl".into(), url);
                        }
                        object.entry("Subject").or_insert(Value::Null);
                        object
                            .entry("MessageAttributes")
                            .or_insert_with(|| json!({}));
                    }
                    let event = json!({ "Records": [{
                        "EventSource": "aws:sns",
                        "EventVersion": "1.0",
                        "EventSubscriptionArn": self.subscription_arn(&subscription),
                        "Sns": sns,
                    }]});
                    delivery.body = event.to_string();
                    self.deliver(delivery);
                }
                _ => {
                    let sns = self.clone();
                    let body = if raw {
                        Value::String(message.clone())
                    } else {
                        envelope
                    };
                    let target = subscription.endpoint.clone();
                    tokio::spawn(async move { sns.post(&target, &body).await });
                }
            }
        }
        Ok((message_id, sequence))
    }

    /// POSTs a message to an HTTP endpoint with SNS's headers, retried with backoff.
    /// The endpoint's addresses must be allowed by the egress policy.
    async fn post(&self, target: &str, message: &Value) {
        let timeout = Duration::from_secs(15);
        let (client, url) =
            match nimbus_engine::pinned_client(target, self.permits.as_ref(), timeout).await {
                Ok(pinned) => pinned,
                Err(reason) => {
                    tracing::warn!(%target, %reason, "an SNS delivery's endpoint is not reachable");
                    return;
                }
            };
        let kind = message["Type"].as_str().unwrap_or("Notification");
        let body = match message {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        };
        let mut pause = HTTP_BACK_OFF;
        for attempt in 1..=HTTP_ATTEMPTS {
            let sent = client
                .post(url.clone())
                .header("content-type", "text/plain; charset=UTF-8")
                .header("x-amz-sns-message-type", kind)
                .header(
                    "x-amz-sns-message-id",
                    message["MessageId"].as_str().unwrap_or_default(),
                )
                .header(
                    "x-amz-sns-topic-arn",
                    message["TopicArn"].as_str().unwrap_or_default(),
                )
                .header("user-agent", "Amazon Simple Notification Service Agent")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::info!(%target, status = %response.status(), attempt, "an SNS delivery was refused")
                }
                Err(err) => {
                    tracing::info!(%target, error = %err, attempt, "an SNS delivery failed")
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        tracing::warn!(%target, "an SNS delivery gave up after its retries");
    }
}

/// Whether a subscription's filter policy wants a message: on its attributes
/// (`FilterPolicyScope` MessageAttributes, the default) or on its JSON body.
fn wants(subscription: &Subscription, outgoing: &Outgoing) -> bool {
    let Some(policy) = subscription.attributes.get("FilterPolicy") else {
        return true;
    };
    let Ok(policy) = serde_json::from_str::<Value>(policy) else {
        return false;
    };
    let event = if subscription
        .attributes
        .get("FilterPolicyScope")
        .is_some_and(|s| s == "MessageBody")
    {
        match serde_json::from_str::<Value>(&outgoing.message) {
            Ok(body) if body.is_object() => body,
            _ => return false,
        }
    } else {
        let attributes: serde_json::Map<String, Value> = outgoing
            .attributes
            .iter()
            .filter_map(|(name, value)| {
                let text = value["StringValue"].as_str()?;
                let data_type = value["DataType"].as_str().unwrap_or("String");
                let parsed = if data_type.starts_with("Number") {
                    text.parse::<f64>().ok().map(Value::from)?
                } else if data_type == "String.Array" {
                    serde_json::from_str(text).ok()?
                } else {
                    Value::String(text.to_owned())
                };
                Some((name.clone(), parsed))
            })
            .collect();
        Value::Object(attributes)
    };
    nimbus_patterns::matches(&policy, &event)
}

fn default_policy(arn: &str, account: &str) -> String {
    json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission",
                       "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"],
            "Resource": arn,
            "Condition": {"StringEquals": {"AWS:SourceOwner": account}},
        }],
    })
    .to_string()
}

pub fn check_topic_attribute(name: &str, value: &str, fifo: bool) -> Result<(), AwsError> {
    match name {
        "DisplayName"
        | "DeliveryPolicy"
        | "KmsMasterKeyId"
        | "TracingConfig"
        | "DataProtectionPolicy" => Ok(()),
        "Policy" => serde_json::from_str::<Value>(value)
            .map(|_| ())
            .map_err(|_| invalid("Invalid parameter: Policy Error: null")),
        "SignatureVersion" if matches!(value, "1" | "2") => Ok(()),
        "FifoTopic" if value == "true" || value == "false" => Ok(()),
        "ContentBasedDeduplication" if fifo && (value == "true" || value == "false") => Ok(()),
        "FifoThroughputScope" if fifo => Ok(()),
        _ => Err(invalid(format!("Invalid parameter: AttributeName {name}"))),
    }
}

fn check_subscription_attribute(name: &str, value: &str) -> Result<(), AwsError> {
    match name {
        "RawMessageDelivery" if value == "true" || value == "false" => Ok(()),
        "FilterPolicyScope" if value == "MessageAttributes" || value == "MessageBody" => Ok(()),
        "FilterPolicy" => {
            let policy: Value = serde_json::from_str(value).unwrap_or(Value::Null);
            if value.is_empty() || nimbus_patterns::valid(&policy) {
                Ok(())
            } else {
                Err(invalid(format!("Invalid parameter: FilterPolicy: {value}")))
            }
        }
        "RedrivePolicy" => {
            let policy: Value = serde_json::from_str(value).unwrap_or(Value::Null);
            match policy["deadLetterTargetArn"].as_str() {
                Some(arn) if arn.starts_with("arn:aws:sqs:") => Ok(()),
                _ if value.is_empty() => Ok(()),
                _ => Err(invalid(format!(
                    "Invalid parameter: RedrivePolicy: deadLetterTargetArn is not an SQS queue ARN in {value}"
                ))),
            }
        }
        "DeliveryPolicy" | "SubscriptionRoleArn" => Ok(()),
        _ => Err(invalid(format!(
            "Invalid parameter: Attributes Reason: Invalid attribute name: {name}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(policy: &str, scope: Option<&str>) -> Subscription {
        let mut attributes = BTreeMap::from([("FilterPolicy".to_owned(), policy.to_owned())]);
        if let Some(scope) = scope {
            attributes.insert("FilterPolicyScope".into(), scope.into());
        }
        Subscription {
            id: "s".into(),
            topic: "t".into(),
            protocol: "sqs".into(),
            endpoint: "arn:aws:sqs:us-east-1:000000000000:q".into(),
            attributes,
            confirmed: true,
            token: "x".into(),
        }
    }

    #[test]
    fn filter_policies_read_attributes_or_the_body() {
        let message = Outgoing {
            message: r#"{"kind": "order", "total": 30}"#.into(),
            attributes: BTreeMap::from([
                (
                    "colour".to_owned(),
                    json!({"DataType": "String", "StringValue": "red"}),
                ),
                (
                    "size".to_owned(),
                    json!({"DataType": "Number", "StringValue": "12"}),
                ),
                (
                    "tags".to_owned(),
                    json!({"DataType": "String.Array", "StringValue": "[\"a\",\"b\"]"}),
                ),
            ]),
            ..Outgoing::default()
        };
        assert!(wants(
            &subscription(r#"{"colour": ["red", "blue"]}"#, None),
            &message
        ));
        assert!(!wants(
            &subscription(r#"{"colour": ["blue"]}"#, None),
            &message
        ));
        assert!(wants(
            &subscription(r#"{"size": [{"numeric": [">", 10]}]}"#, None),
            &message
        ));
        assert!(wants(&subscription(r#"{"tags": ["b"]}"#, None), &message));
        assert!(!wants(
            &subscription(r#"{"missing": ["x"]}"#, None),
            &message
        ));
        assert!(wants(
            &subscription(r#"{"kind": ["order"]}"#, Some("MessageBody")),
            &message
        ));
        assert!(!wants(
            &subscription(
                r#"{"total": [{"numeric": ["<", 10]}]}"#,
                Some("MessageBody")
            ),
            &message
        ));
    }

    #[test]
    fn attributes_are_checked() {
        assert!(check_topic_attribute("DisplayName", "x", false).is_ok());
        assert!(check_topic_attribute("ContentBasedDeduplication", "true", false).is_err());
        assert!(check_topic_attribute("Colour", "x", false).is_err());
        assert!(check_subscription_attribute("FilterPolicy", r#"{"a": ["b"]}"#).is_ok());
        assert!(check_subscription_attribute("FilterPolicy", r#"{"a": "b"}"#).is_err());
        assert!(check_subscription_attribute("RawMessageDelivery", "yes").is_err());
    }
}
