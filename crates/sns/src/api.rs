//! SNS's query protocol. Requests are read into the JSON shape of their members
//! (`Attributes.entry.1.key` into `Attributes`, `Tags.member.1.Key` into `Tags`), and
//! answers written as SNS's XML. The routes under `/_nimbus/sns/` need no signature:
//! the signing certificate, and the confirm and unsubscribe links sent to HTTP
//! endpoints, which carry the subscription's secret token.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::routing::get;
use bytes::Bytes;
use http::{Response, StatusCode};
use nimbus_edge::protocol::query::{self, QueryRequest};
use nimbus_edge::protocol::xml::XmlWriter;
use nimbus_edge::{
    Authorization, AwsError, Check, NamedCall, NamedOperation, OperationDoc, Protocol,
    RequestContext, Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use serde_json::{Map, Value};

use crate::{Outgoing, Sns, invalid, not_found};

const TOPIC: &str = "arn:${Partition}:sns:${Region}:${Account}:${TopicName}";

const fn sns(action: &'static str) -> Authorization {
    Authorization::new(action, TOPIC)
}

static OPERATIONS: &[NamedOperation] = &[
    named("CreateTopic", sns("sns:CreateTopic")),
    named("DeleteTopic", sns("sns:DeleteTopic")),
    named("ListTopics", Authorization::new("sns:ListTopics", "*")),
    named("GetTopicAttributes", sns("sns:GetTopicAttributes")),
    named("SetTopicAttributes", sns("sns:SetTopicAttributes")),
    named("Subscribe", sns("sns:Subscribe")),
    named("ConfirmSubscription", sns("sns:ConfirmSubscription")),
    named("Unsubscribe", sns("sns:Unsubscribe")),
    named(
        "ListSubscriptions",
        Authorization::new("sns:ListSubscriptions", "*"),
    ),
    named(
        "ListSubscriptionsByTopic",
        sns("sns:ListSubscriptionsByTopic"),
    ),
    named(
        "GetSubscriptionAttributes",
        sns("sns:GetSubscriptionAttributes"),
    ),
    named(
        "SetSubscriptionAttributes",
        sns("sns:SetSubscriptionAttributes"),
    ),
    named("Publish", sns("sns:Publish")),
    named("PublishBatch", sns("sns:Publish")),
    named("TagResource", sns("sns:TagResource")),
    named("UntagResource", sns("sns:UntagResource")),
    named("ListTagsForResource", sns("sns:ListTagsForResource")),
];

pub struct SnsApi {
    sns: Arc<Sns>,
}

impl SnsApi {
    pub fn new(sns: Arc<Sns>) -> Self {
        Self { sns }
    }
}

/// Query parameters as the JSON shape: `X.member.N` lists, `X.entry.N` maps.
fn input(request: &QueryRequest) -> Value {
    reshape(request.tree())
}

fn indexed(group: &Map<String, Value>) -> Vec<Value> {
    let mut items: Vec<(u32, Value)> = group
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, reshape(v.clone()))))
        .collect();
    items.sort_by_key(|(i, _)| *i);
    items.into_iter().map(|(_, v)| v).collect()
}

fn reshape(value: Value) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    if map.len() == 1 {
        if let Some(Value::Object(members)) = map.get("member") {
            return Value::Array(indexed(members));
        }
        if let Some(Value::Object(entries)) = map.get("entry") {
            let mut out = Map::new();
            for entry in indexed(entries) {
                let key = entry
                    .get("key")
                    .or_else(|| entry.get("Name"))
                    .and_then(Value::as_str);
                let value = entry.get("value").or_else(|| entry.get("Value")).cloned();
                if let (Some(key), Some(value)) = (key, value) {
                    out.insert(key.to_owned(), value);
                }
            }
            return Value::Object(out);
        }
    }
    Value::Object(map.into_iter().map(|(k, v)| (k, reshape(v))).collect())
}

fn text<'a>(input: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    input[name].as_str().ok_or_else(|| {
        invalid(format!(
            "Invalid parameter: {name} Reason: the parameter is required"
        ))
    })
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// `Tags.member.N.Key/Value` as a map.
fn tags(value: &Value) -> BTreeMap<String, String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some((
                t["Key"].as_str()?.to_owned(),
                t["Value"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn outgoing(input: &Value) -> Result<Outgoing, AwsError> {
    Ok(Outgoing {
        message: text(input, "Message")?.to_owned(),
        subject: input["Subject"].as_str().map(str::to_owned),
        attributes: input["MessageAttributes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        structure_json: input["MessageStructure"] == "json",
        group: input["MessageGroupId"].as_str().map(str::to_owned),
        dedup: input["MessageDeduplicationId"].as_str().map(str::to_owned),
    })
}

fn entries(
    xml: &mut XmlWriter,
    element: &str,
    map: &BTreeMap<String, String>,
    key: &str,
    value: &str,
) {
    xml.open(element);
    for (k, v) in map {
        xml.open("entry");
        xml.leaf(key, k);
        xml.leaf(value, v);
        xml.close("entry");
    }
    xml.close(element);
}

impl SnsApi {
    /// The topic an operation acts on, for its authorization; `None` for listings.
    fn target(&self, call: &NamedCall) -> Result<Option<String>, AwsError> {
        let input = &call.input;
        Ok(match call.name {
            "ListTopics" | "ListSubscriptions" => None,
            "CreateTopic" => Some(self.sns.topic_arn(text(input, "Name")?)),
            "Unsubscribe" | "GetSubscriptionAttributes" | "SetSubscriptionAttributes" => {
                let arn = text(input, "SubscriptionArn")?;
                Some(arn.rsplit_once(':').map_or(arn, |(topic, _)| topic).to_owned())
            }
            "TagResource" | "UntagResource" | "ListTagsForResource" => Some(text(input, "ResourceArn")?.to_owned()),
            "Publish" => Some(
                input["TopicArn"]
                    .as_str()
                    .or_else(|| input["TargetArn"].as_str())
                    .ok_or_else(|| invalid("Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter"))?
                    .to_owned(),
            ),
            _ => Some(text(input, "TopicArn")?.to_owned()),
        })
    }

    fn call(
        &self,
        ctx: &RequestContext,
        name: &str,
        input: &Value,
        xml: &mut XmlWriter,
    ) -> Result<(), AwsError> {
        let sns = &self.sns;
        let topic = || -> Result<&str, AwsError> {
            let arn = input["TopicArn"]
                .as_str()
                .or_else(|| input["TargetArn"].as_str())
                .unwrap_or_default();
            sns.topic_name(arn)
        };
        match name {
            "CreateTopic" => {
                let arn = sns.create_topic(
                    text(input, "Name")?,
                    string_map(&input["Attributes"]),
                    tags(&input["Tags"]),
                )?;
                xml.leaf("TopicArn", &arn);
            }
            "DeleteTopic" => sns.delete_topic(topic()?)?,
            "ListTopics" => {
                xml.open("Topics");
                for topic in sns.topics()? {
                    xml.open("member");
                    xml.leaf("TopicArn", &sns.topic_arn(&topic.name));
                    xml.close("member");
                }
                xml.close("Topics");
            }
            "GetTopicAttributes" => {
                entries(
                    xml,
                    "Attributes",
                    &sns.topic_attributes(topic()?)?,
                    "key",
                    "value",
                );
            }
            "SetTopicAttributes" => {
                let (attribute, value) = (
                    text(input, "AttributeName")?,
                    input["AttributeValue"].as_str().unwrap_or_default(),
                );
                let name = topic()?;
                crate::check_topic_attribute(attribute, value, name.ends_with(crate::FIFO_SUFFIX))?;
                sns.update_topic(name, |t| {
                    t.attributes.insert(attribute.to_owned(), value.to_owned());
                    Ok(())
                })?;
            }
            "Subscribe" => {
                let subscription = sns.subscribe(
                    topic()?,
                    text(input, "Protocol")?,
                    text(input, "Endpoint")?,
                    string_map(&input["Attributes"]),
                    &ctx.endpoint,
                )?;
                let arn = if subscription.confirmed || input["ReturnSubscriptionArn"] == "true" {
                    sns.subscription_arn(&subscription)
                } else {
                    "pending confirmation".to_owned()
                };
                xml.leaf("SubscriptionArn", &arn);
            }
            "ConfirmSubscription" => {
                let subscription = sns.confirm(topic()?, text(input, "Token")?)?;
                xml.leaf("SubscriptionArn", &sns.subscription_arn(&subscription));
            }
            "Unsubscribe" => sns.unsubscribe(text(input, "SubscriptionArn")?)?,
            "ListSubscriptions" | "ListSubscriptionsByTopic" => {
                let subscriptions = if name == "ListSubscriptions" {
                    sns.all_subscriptions()?
                } else {
                    let name = topic()?;
                    sns.topic(name)?;
                    sns.subscriptions_of(name)?
                };
                xml.open("Subscriptions");
                for subscription in subscriptions {
                    xml.open("member");
                    let arn = if subscription.confirmed {
                        sns.subscription_arn(&subscription)
                    } else {
                        "PendingConfirmation".into()
                    };
                    xml.leaf("SubscriptionArn", &arn);
                    xml.leaf("Owner", &sns.account);
                    xml.leaf("Protocol", &subscription.protocol);
                    xml.leaf("Endpoint", &subscription.endpoint);
                    xml.leaf("TopicArn", &sns.topic_arn(&subscription.topic));
                    xml.close("member");
                }
                xml.close("Subscriptions");
            }
            "GetSubscriptionAttributes" => {
                let arn = text(input, "SubscriptionArn")?;
                let (subscription, _) = sns.subscription(arn)?;
                let mut attributes = subscription.attributes.clone();
                attributes.insert("SubscriptionArn".into(), arn.to_owned());
                attributes.insert("TopicArn".into(), sns.topic_arn(&subscription.topic));
                attributes.insert("Protocol".into(), subscription.protocol.clone());
                attributes.insert("Endpoint".into(), subscription.endpoint.clone());
                attributes.insert("Owner".into(), sns.account.clone());
                attributes.insert(
                    "PendingConfirmation".into(),
                    (!subscription.confirmed).to_string(),
                );
                attributes.insert(
                    "ConfirmationWasAuthenticated".into(),
                    subscription.confirmed.to_string(),
                );
                attributes
                    .entry("RawMessageDelivery".into())
                    .or_insert_with(|| "false".into());
                entries(xml, "Attributes", &attributes, "key", "value");
            }
            "SetSubscriptionAttributes" => sns.set_subscription_attribute(
                text(input, "SubscriptionArn")?,
                text(input, "AttributeName")?,
                input["AttributeValue"].as_str().unwrap_or_default(),
            )?,
            "Publish" => {
                let (id, sequence) = sns.publish(topic()?, outgoing(input)?, &ctx.endpoint)?;
                xml.leaf("MessageId", &id);
                if let Some(sequence) = sequence {
                    xml.leaf("SequenceNumber", &sequence);
                }
            }
            "PublishBatch" => {
                let batch = input["PublishBatchRequestEntries"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if batch.is_empty() {
                    return Err(AwsError::new(
                        StatusCode::BAD_REQUEST,
                        "EmptyBatchRequest",
                        "The batch request doesn't contain any entries",
                    ));
                }
                if batch.len() > 10 {
                    return Err(AwsError::new(
                        StatusCode::BAD_REQUEST,
                        "TooManyEntriesInBatchRequest",
                        "The batch request contains more entries than permissible",
                    ));
                }
                let name = topic()?;
                let (mut successful, mut failed) = (XmlWriter::new(), XmlWriter::new());
                for entry in &batch {
                    let id = entry["Id"].as_str().unwrap_or_default();
                    match outgoing(entry).and_then(|o| sns.publish(name, o, &ctx.endpoint)) {
                        Ok((message_id, sequence)) => {
                            successful.open("member");
                            successful.leaf("Id", id);
                            successful.leaf("MessageId", &message_id);
                            if let Some(sequence) = sequence {
                                successful.leaf("SequenceNumber", &sequence);
                            }
                            successful.close("member");
                        }
                        Err(err) => {
                            failed.open("member");
                            failed.leaf("Id", id);
                            failed.leaf("Code", &err.code);
                            failed.leaf("Message", &err.message);
                            failed.leaf(
                                "SenderFault",
                                if err.status.is_client_error() {
                                    "true"
                                } else {
                                    "false"
                                },
                            );
                            failed.close("member");
                        }
                    }
                }
                xml.open("Successful");
                xml.append(successful);
                xml.close("Successful");
                xml.open("Failed");
                xml.append(failed);
                xml.close("Failed");
            }
            "TagResource" => {
                let added = tags(&input["Tags"]);
                sns.update_topic(sns.topic_name(text(input, "ResourceArn")?)?, |topic| {
                    topic.tags.extend(added.clone());
                    Ok(())
                })?;
            }
            "UntagResource" => {
                let keys: Vec<String> = input["TagKeys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect();
                sns.update_topic(sns.topic_name(text(input, "ResourceArn")?)?, |topic| {
                    topic.tags.retain(|k, _| !keys.contains(k));
                    Ok(())
                })?;
            }
            "ListTagsForResource" => {
                let (topic, _) = sns.topic(sns.topic_name(text(input, "ResourceArn")?)?)?;
                xml.open("Tags");
                for (key, value) in &topic.tags {
                    xml.open("member");
                    xml.leaf("Key", key);
                    xml.leaf("Value", value);
                    xml.close("member");
                }
                xml.close("Tags");
            }
            other => return Err(AwsError::unknown_operation(Protocol::Query, other)),
        }
        Ok(())
    }
}

impl Service for SnsApi {
    type Operation = NamedCall;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::SNS
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(OPERATIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<NamedCall, AwsError> {
        let request = QueryRequest::parse(req)?;
        let entry = OPERATIONS
            .iter()
            .find(|entry| entry.name == request.action)
            .ok_or_else(|| AwsError::unknown_operation(Protocol::Query, &request.action))?;
        Ok(NamedCall {
            name: entry.name,
            authorization: entry.authorization,
            input: input(&request),
        })
    }

    async fn access(
        &self,
        _ctx: &RequestContext,
        call: &NamedCall,
    ) -> Result<Vec<Check>, AwsError> {
        let Some(arn) = self.target(call)? else {
            return Ok(vec![Check::on("*")]);
        };
        let sns = self.sns.clone();
        let lookup = arn.clone();
        let policy = tokio::task::spawn_blocking(move || {
            let name = sns.topic_name(&lookup).ok()?;
            sns.topic(name).ok()?.0.attributes.get("Policy").cloned()
        })
        .await
        .unwrap_or(None);
        Ok(vec![Check::on(arn).with_policy(policy)])
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        call: NamedCall,
    ) -> Result<Response<Bytes>, AwsError> {
        let api = SnsApi {
            sns: self.sns.clone(),
        };
        let owned = ctx.clone();
        let name = call.name;
        let written = tokio::task::spawn_blocking(move || {
            let mut xml = XmlWriter::new();
            api.call(&owned, name, &call.input, &mut xml).map(|()| xml)
        })
        .await
        .map_err(|_| AwsError::internal(Protocol::Query))??;
        let namespace = catalog::SNS.xml_namespace.unwrap_or_default();
        Ok(query::response(name, namespace, &ctx.request_id, |xml| {
            xml.append(written)
        }))
    }
}

#[derive(serde::Deserialize)]
struct Link {
    #[serde(rename = "TopicArn")]
    topic_arn: Option<String>,
    #[serde(rename = "SubscriptionArn")]
    subscription_arn: Option<String>,
    #[serde(rename = "Token")]
    token: String,
}

/// The routes HTTP subscribers follow without signing: the signing certificate,
/// and the confirm and unsubscribe links (their token is the credential).
pub fn routes(sns: Arc<Sns>) -> Router {
    Router::new()
        .route("/_nimbus/sns/confirm", get(confirm))
        .route("/_nimbus/sns/unsubscribe", get(unsubscribe))
        .route("/_nimbus/sns/{file}", get(certificate))
        .with_state(sns)
}

async fn certificate(State(sns): State<Arc<Sns>>, Path(file): Path<String>) -> AxumResponse {
    match tokio::task::spawn_blocking(move || sns.certificate(&file))
        .await
        .ok()
        .flatten()
    {
        Some(pem) => (
            [(http::header::CONTENT_TYPE, "application/x-pem-file")],
            pem,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such certificate\n").into_response(),
    }
}

async fn confirm(State(sns): State<Arc<Sns>>, Query(link): Query<Link>) -> AxumResponse {
    let confirmed = tokio::task::spawn_blocking(move || {
        let topic = sns
            .topic_name(link.topic_arn.as_deref().unwrap_or_default())?
            .to_owned();
        let subscription = sns.confirm(&topic, &link.token)?;
        Ok::<_, AwsError>(sns.subscription_arn(&subscription))
    })
    .await;
    match confirmed {
        Ok(Ok(arn)) => {
            let namespace = catalog::SNS.xml_namespace.unwrap_or_default();
            query::response("ConfirmSubscription", namespace, "confirm", |xml| {
                xml.leaf("SubscriptionArn", &arn)
            })
            .map(axum::body::Body::from)
        }
        _ => (StatusCode::FORBIDDEN, "the link is not valid\n").into_response(),
    }
}

async fn unsubscribe(State(sns): State<Arc<Sns>>, Query(link): Query<Link>) -> AxumResponse {
    let done = tokio::task::spawn_blocking(move || {
        let arn = link.subscription_arn.unwrap_or_default();
        let (subscription, _) = sns.subscription(&arn)?;
        if !subscription.token_is(&link.token) {
            return Err(not_found("Subscription does not exist"));
        }
        sns.unsubscribe(&arn)
    })
    .await;
    match done {
        Ok(Ok(())) => (StatusCode::OK, "unsubscribed\n").into_response(),
        _ => (StatusCode::FORBIDDEN, "the link is not valid\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_members_and_entries_take_the_json_shape() {
        let (parts, ()) = http::Request::builder()
            .method("POST")
            .uri("/")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(())
            .unwrap()
            .into_parts();
        let body = "Action=Publish&TopicArn=t&Message=m\
            &MessageAttributes.entry.1.Name=colour&MessageAttributes.entry.1.Value.DataType=String\
            &MessageAttributes.entry.1.Value.StringValue=red\
            &Tags.member.2.Key=b&Tags.member.2.Value=2&Tags.member.1.Key=a&Tags.member.1.Value=1\
            &Attributes.entry.1.key=RawMessageDelivery&Attributes.entry.1.value=true";
        let request = QueryRequest::parse(&ServiceRequest {
            parts,
            body: Bytes::from(body),
        })
        .unwrap();
        let input = input(&request);
        assert_eq!(input["MessageAttributes"]["colour"]["StringValue"], "red");
        assert_eq!(input["Tags"][0]["Key"], "a");
        assert_eq!(tags(&input["Tags"]).len(), 2);
        assert_eq!(input["Attributes"]["RawMessageDelivery"], "true");
    }
}
