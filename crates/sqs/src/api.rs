//! SQS's two wire protocols. Current SDKs send json-1.0 (`X-Amz-Target:
//! AmazonSQS.<Operation>`); older ones, and Debian's aws CLI, the query protocol
//! (`Action=<Operation>` forms). A query request is read into the JSON request's
//! shape (`Attribute.1.Name` into `Attributes`, `SendMessageBatchRequestEntry.1.*`
//! into `Entries`), so each operation is written once, against JSON; its JSON answer
//! is written back as the query protocol's XML when the request came that way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use nimbus_edge::protocol::query::{self, QueryRequest};
use nimbus_edge::protocol::xml::XmlWriter;
use nimbus_edge::{
    Authorization, AwsError, Check, NamedCall, NamedOperation, OperationDoc, Protocol,
    RequestContext, Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use serde_json::{Map, Value, json};

use crate::attributes;
use crate::error::{
    batch_too_long, empty_batch, ids_not_distinct, internal, invalid_entry_id, invalid_parameter,
    missing_parameter, no_queue, purge_in_progress, too_many_entries,
};
use crate::messages::{self, MAX_VISIBILITY, Outgoing};
use crate::queues::{self, MAX_MESSAGE_BYTES, Queue};
use crate::{Sqs, now_ms};

const QUEUE: &str = "arn:${Partition}:sqs:${Region}:${Account}:${QueueName}";

const fn sqs(action: &'static str) -> Authorization {
    Authorization::new(action, QUEUE)
}

static OPERATIONS: &[NamedOperation] = &[
    named("CreateQueue", sqs("sqs:CreateQueue")),
    named("GetQueueUrl", sqs("sqs:GetQueueUrl")),
    named("ListQueues", Authorization::new("sqs:ListQueues", "*")),
    named("DeleteQueue", sqs("sqs:DeleteQueue")),
    named("PurgeQueue", sqs("sqs:PurgeQueue")),
    named("GetQueueAttributes", sqs("sqs:GetQueueAttributes")),
    named("SetQueueAttributes", sqs("sqs:SetQueueAttributes")),
    named("TagQueue", sqs("sqs:TagQueue")),
    named("UntagQueue", sqs("sqs:UntagQueue")),
    named("ListQueueTags", sqs("sqs:ListQueueTags")),
    named("AddPermission", sqs("sqs:AddPermission")),
    named("RemovePermission", sqs("sqs:RemovePermission")),
    named(
        "ListDeadLetterSourceQueues",
        sqs("sqs:ListDeadLetterSourceQueues"),
    ),
    named("SendMessage", sqs("sqs:SendMessage")),
    named("SendMessageBatch", sqs("sqs:SendMessage")),
    named("ReceiveMessage", sqs("sqs:ReceiveMessage")),
    named("DeleteMessage", sqs("sqs:DeleteMessage")),
    named("DeleteMessageBatch", sqs("sqs:DeleteMessage")),
    named(
        "ChangeMessageVisibility",
        sqs("sqs:ChangeMessageVisibility"),
    ),
    named(
        "ChangeMessageVisibilityBatch",
        sqs("sqs:ChangeMessageVisibility"),
    ),
    named("StartMessageMoveTask", sqs("sqs:StartMessageMoveTask")),
    named("ListMessageMoveTasks", sqs("sqs:ListMessageMoveTasks")),
    named("CancelMessageMoveTask", sqs("sqs:CancelMessageMoveTask")),
];

pub struct SqsApi {
    sqs: Arc<Sqs>,
}

impl SqsApi {
    pub fn new(sqs: Arc<Sqs>) -> Self {
        Self { sqs }
    }
}

/// An integer parameter, which the query protocol sends as text.
pub fn integer(value: &Value, name: &str) -> Result<i64, AwsError> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid_parameter(format!("Value {value} for parameter {name} is invalid.")))
}

fn optional_integer(input: &Value, name: &str) -> Result<Option<i64>, AwsError> {
    match &input[name] {
        Value::Null => Ok(None),
        value => integer(value, name).map(Some),
    }
}

fn text<'a>(input: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    input[name].as_str().ok_or_else(|| missing_parameter(name))
}

fn strings(input: &Value, name: &str) -> Vec<String> {
    input[name]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn string_map(input: &Value, name: &str) -> BTreeMap<String, String> {
    input[name]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// The batch entries of a request, checked as SQS checks them: 1 to 10, ids
/// distinct and well-formed.
fn entries(input: &Value) -> Result<&Vec<Value>, AwsError> {
    let entries = input["Entries"]
        .as_array()
        .filter(|e| !e.is_empty())
        .ok_or_else(empty_batch)?;
    if entries.len() > 10 {
        return Err(too_many_entries(entries.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let id = entry["Id"].as_str().unwrap_or_default();
        if id.is_empty()
            || id.len() > 80
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid_entry_id(id));
        }
        if !seen.insert(id) {
            return Err(ids_not_distinct(id));
        }
    }
    Ok(entries)
}

fn failed(id: &Value, err: &AwsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": err.status.is_client_error(),
        "Code": err.code,
        "Message": err.message,
    })
}

impl SqsApi {
    /// The queue a request names by URL (or, on the query protocol, by the path it
    /// was sent to).
    fn queue_name<'a>(&self, input: &'a Value) -> Result<&'a str, AwsError> {
        let url = text(input, "QueueUrl")?;
        queues::name_from_url(url, &self.sqs.account).ok_or_else(no_queue)
    }

    /// The queue an operation acts on, for its authorization; `None` for ListQueues.
    fn target(&self, call: &NamedCall) -> Result<Option<String>, AwsError> {
        let input = &call.input;
        Ok(match call.name {
            "ListQueues" => None,
            "CreateQueue" | "GetQueueUrl" => Some(text(input, "QueueName")?.to_owned()),
            "StartMessageMoveTask" | "ListMessageMoveTasks" => {
                let arn = text(input, "SourceArn")?;
                Some(
                    queues::name_from_arn(arn, &self.sqs.region, &self.sqs.account)
                        .unwrap_or(arn)
                        .to_owned(),
                )
            }
            "CancelMessageMoveTask" => {
                // The handle names the task's source queue.
                let handle = text(input, "TaskHandle")?;
                let decoded =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, handle)
                        .unwrap_or_default();
                let value: Value = serde_json::from_slice(&decoded).unwrap_or_default();
                let arn = value["sourceArn"].as_str().unwrap_or_default();
                Some(
                    queues::name_from_arn(arn, &self.sqs.region, &self.sqs.account)
                        .unwrap_or("*")
                        .to_owned(),
                )
            }
            _ => Some(self.queue_name(input)?.to_owned()),
        })
    }

    fn call(&self, ctx: &RequestContext, name: &str, input: &Value) -> Result<Value, AwsError> {
        let sqs = &self.sqs;
        let url = |queue: &str| queues::url(&ctx.endpoint, &sqs.account, queue);
        let queue = || -> Result<Queue, AwsError> { Ok(sqs.queue(self.queue_name(input)?)?.0) };
        Ok(match name {
            "CreateQueue" => {
                let name = text(input, "QueueName")?;
                let mut tags = string_map(input, "tags");
                tags.extend(string_map(input, "Tags"));
                sqs.create_queue(name, string_map(input, "Attributes"), tags)?;
                json!({ "QueueUrl": url(name) })
            }
            "GetQueueUrl" => {
                let name = text(input, "QueueName")?;
                if input["QueueOwnerAWSAccountId"]
                    .as_str()
                    .is_some_and(|a| a != sqs.account)
                {
                    return Err(no_queue());
                }
                sqs.queue(name)?;
                json!({ "QueueUrl": url(name) })
            }
            "ListQueues" => {
                let prefix = input["QueueNamePrefix"].as_str().unwrap_or_default();
                let max = optional_integer(input, "MaxResults")?;
                if max.is_some_and(|m| !(1..=1000).contains(&m)) {
                    return Err(invalid_parameter(
                        "Value for parameter MaxResults is invalid. Reason: must be between 1 and 1000.",
                    ));
                }
                let after = input["NextToken"].as_str();
                let limit = max.unwrap_or(1000) as usize;
                let found = sqs.list_queues(prefix, after, limit)?;
                let mut out =
                    json!({ "QueueUrls": found.iter().map(|q| url(&q.name)).collect::<Vec<_>>() });
                if max.is_some()
                    && found.len() == limit
                    && let Some(last) = found.last()
                {
                    out["NextToken"] = last.name.clone().into();
                }
                out
            }
            "DeleteQueue" => {
                sqs.delete_queue(self.queue_name(input)?)?;
                json!({})
            }
            "PurgeQueue" => {
                let name = self.queue_name(input)?;
                let now = now_ms();
                let queue = sqs.update_queue(name, |queue| {
                    if now - queue.purged_ms < 60_000 {
                        return Err(purge_in_progress(&sqs.arn(name)));
                    }
                    queue.purged_ms = now;
                    Ok(())
                })?;
                sqs.purge(&queue)?;
                json!({})
            }
            "GetQueueAttributes" => {
                let wanted = strings(input, "AttributeNames");
                let attributes = sqs.attributes(self.queue_name(input)?, &wanted)?;
                if attributes.is_empty() {
                    json!({})
                } else {
                    json!({ "Attributes": attributes })
                }
            }
            "SetQueueAttributes" => {
                sqs.set_attributes(self.queue_name(input)?, string_map(input, "Attributes"))?;
                json!({})
            }
            "TagQueue" => {
                let tags = string_map(input, "Tags");
                sqs.update_queue(self.queue_name(input)?, |queue| {
                    queue.tags.extend(tags.clone());
                    if queue.tags.len() > 50 {
                        return Err(invalid_parameter(
                            "Too many tags added for queue: at most 50.",
                        ));
                    }
                    Ok(())
                })?;
                json!({})
            }
            "UntagQueue" => {
                let keys = strings(input, "TagKeys");
                sqs.update_queue(self.queue_name(input)?, |queue| {
                    queue.tags.retain(|k, _| !keys.contains(k));
                    Ok(())
                })?;
                json!({})
            }
            "ListQueueTags" => {
                let queue = queue()?;
                if queue.tags.is_empty() {
                    json!({})
                } else {
                    json!({ "Tags": queue.tags })
                }
            }
            "AddPermission" => {
                let accounts = strings(input, "AWSAccountIds");
                let actions = strings(input, "Actions");
                if accounts.is_empty() || actions.is_empty() {
                    return Err(missing_parameter(if accounts.is_empty() {
                        "AWSAccountIds"
                    } else {
                        "Actions"
                    }));
                }
                sqs.permission(
                    self.queue_name(input)?,
                    text(input, "Label")?,
                    Some((accounts, actions)),
                )?;
                json!({})
            }
            "RemovePermission" => {
                sqs.permission(self.queue_name(input)?, text(input, "Label")?, None)?;
                json!({})
            }
            "ListDeadLetterSourceQueues" => {
                let sources = sqs.dead_letter_sources(self.queue_name(input)?)?;
                json!({ "queueUrls": sources.iter().map(|q| url(&q.name)).collect::<Vec<_>>() })
            }
            "SendMessage" => {
                let queue = queue()?;
                let sent = sqs.send(
                    &queue,
                    Outgoing::parse(input)?,
                    &ctx.caller.principal.user_id(),
                )?;
                let mut out = json!({ "MessageId": sent.id, "MD5OfMessageBody": sent.md5_body });
                if let Some(md5) = sent.md5_attributes {
                    out["MD5OfMessageAttributes"] = md5.into();
                }
                if let Some(md5) = sent.md5_system {
                    out["MD5OfMessageSystemAttributes"] = md5.into();
                }
                if let Some(sequence) = sent.sequence {
                    out["SequenceNumber"] = sequence.into();
                }
                out
            }
            "SendMessageBatch" => {
                let queue = queue()?;
                let entries = entries(input)?;
                let total: usize = entries
                    .iter()
                    .map(|e| {
                        e["MessageBody"].as_str().map_or(0, str::len)
                            + attributes::parse(&e["MessageAttributes"])
                                .map_or(0, |a| attributes::size(&a))
                    })
                    .sum();
                if total > MAX_MESSAGE_BYTES as usize {
                    return Err(batch_too_long(total, MAX_MESSAGE_BYTES as usize));
                }
                let (mut successful, mut failures) = (Vec::new(), Vec::new());
                for entry in entries {
                    match Outgoing::parse(entry)
                        .and_then(|o| sqs.send(&queue, o, &ctx.caller.principal.user_id()))
                    {
                        Ok(sent) => {
                            let mut out = json!({ "Id": entry["Id"], "MessageId": sent.id, "MD5OfMessageBody": sent.md5_body });
                            if let Some(md5) = sent.md5_attributes {
                                out["MD5OfMessageAttributes"] = md5.into();
                            }
                            if let Some(md5) = sent.md5_system {
                                out["MD5OfMessageSystemAttributes"] = md5.into();
                            }
                            if let Some(sequence) = sent.sequence {
                                out["SequenceNumber"] = sequence.into();
                            }
                            successful.push(out);
                        }
                        Err(err) => failures.push(failed(&entry["Id"], &err)),
                    }
                }
                json!({ "Successful": successful, "Failed": failures })
            }
            "DeleteMessage" => {
                sqs.delete(&queue()?, text(input, "ReceiptHandle")?)?;
                json!({})
            }
            "DeleteMessageBatch" => {
                let queue = queue()?;
                let (mut successful, mut failures) = (Vec::new(), Vec::new());
                for entry in entries(input)? {
                    match text(entry, "ReceiptHandle").and_then(|h| sqs.delete(&queue, h)) {
                        Ok(()) => successful.push(json!({ "Id": entry["Id"] })),
                        Err(err) => failures.push(failed(&entry["Id"], &err)),
                    }
                }
                json!({ "Successful": successful, "Failed": failures })
            }
            "ChangeMessageVisibility" => {
                let timeout = integer(&input["VisibilityTimeout"], "VisibilityTimeout")?;
                sqs.change_visibility(&queue()?, text(input, "ReceiptHandle")?, timeout)?;
                json!({})
            }
            "ChangeMessageVisibilityBatch" => {
                let queue = queue()?;
                let (mut successful, mut failures) = (Vec::new(), Vec::new());
                for entry in entries(input)? {
                    let changed = text(entry, "ReceiptHandle").and_then(|h| {
                        let timeout = integer(&entry["VisibilityTimeout"], "VisibilityTimeout")?;
                        sqs.change_visibility(&queue, h, timeout)
                    });
                    match changed {
                        Ok(()) => successful.push(json!({ "Id": entry["Id"] })),
                        Err(err) => failures.push(failed(&entry["Id"], &err)),
                    }
                }
                json!({ "Successful": successful, "Failed": failures })
            }
            "ListMessageMoveTasks" => {
                let max = optional_integer(input, "MaxResults")?
                    .unwrap_or(1)
                    .clamp(1, 10) as usize;
                let tasks = sqs.list_moves(text(input, "SourceArn")?, max)?;
                json!({ "Results": tasks.iter().map(|t| t.to_json()).collect::<Vec<_>>() })
            }
            "CancelMessageMoveTask" => {
                json!({ "ApproximateNumberOfMessagesMoved": sqs.cancel_move(text(input, "TaskHandle")?)? })
            }
            other => return Err(AwsError::unknown_operation(ctx.protocol, other)),
        })
    }

    /// `ReceiveMessage`, which may wait: on the runtime, not a blocking thread.
    async fn receive(&self, input: &Value) -> Result<Value, AwsError> {
        let name = self.queue_name(input)?.to_owned();
        let sqs = self.sqs.clone();
        let queue = tokio::task::spawn_blocking(move || sqs.queue(&name))
            .await
            .map_err(internal)??
            .0;
        let max = optional_integer(input, "MaxNumberOfMessages")?.unwrap_or(1);
        if !(1..=10).contains(&max) {
            return Err(invalid_parameter(format!(
                "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
            )));
        }
        let visibility = optional_integer(input, "VisibilityTimeout")?
            .unwrap_or_else(|| queue.number("VisibilityTimeout"));
        if !(0..=MAX_VISIBILITY).contains(&visibility) {
            return Err(invalid_parameter(format!(
                "Value {visibility} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided."
            )));
        }
        let wait = optional_integer(input, "WaitTimeSeconds")?
            .unwrap_or_else(|| queue.number("ReceiveMessageWaitTimeSeconds"));
        if !(0..=20).contains(&wait) {
            return Err(invalid_parameter(format!(
                "Value {wait} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
            )));
        }
        let mut system = strings(input, "AttributeNames");
        system.extend(strings(input, "MessageSystemAttributeNames"));
        let wanted = strings(input, "MessageAttributeNames");
        let received = self
            .sqs
            .receive(
                queue,
                max as usize,
                visibility,
                Duration::from_secs(wait as u64),
            )
            .await?;
        if received.is_empty() {
            return Ok(json!({}));
        }
        let messages: Vec<Value> = received
            .iter()
            .map(|r| {
                let m = &r.message;
                let mut out = json!({
                    "MessageId": m.id,
                    "ReceiptHandle": r.handle,
                    "MD5OfBody": attributes::md5_hex(m.body.as_bytes()),
                    "Body": m.body,
                });
                let system = messages::system_view(m, &system);
                if !system.is_empty() {
                    out["Attributes"] = Value::Object(system);
                }
                let chosen = messages::attribute_view(m, &wanted);
                if let Some(md5) = attributes::md5_of(&chosen) {
                    out["MD5OfMessageAttributes"] = md5.into();
                    out["MessageAttributes"] = attributes::to_json(&chosen);
                }
                out
            })
            .collect();
        Ok(json!({ "Messages": messages }))
    }
}

/// A query request in the JSON request's shape.
fn query_input(request: &QueryRequest, path: &str) -> Value {
    let tree = match request.tree() {
        Value::Object(tree) => tree,
        _ => Map::new(),
    };
    let mut input = reshape(tree);
    // Older SDKs send queue operations to the queue's URL instead of naming it.
    if input.get("QueueUrl").is_none() && path.trim_matches('/').contains('/') {
        input["QueueUrl"] = path.into();
    }
    input
}

/// The members of an indexed group (`X.1`, `X.2`, ...), in index order.
fn indexed(group: Value) -> Vec<Value> {
    let mut items: Vec<(u32, Value)> = match group {
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
            .collect(),
        _ => Vec::new(),
    };
    items.sort_by_key(|(i, _)| *i);
    items.into_iter().map(|(_, v)| v).collect()
}

/// Names the query protocol's flattened lists and maps as the JSON shapes name them.
fn reshape(tree: Map<String, Value>) -> Value {
    const LISTS: &[(&str, &str)] = &[
        ("AttributeName", "AttributeNames"),
        ("MessageAttributeName", "MessageAttributeNames"),
        ("MessageSystemAttributeName", "MessageSystemAttributeNames"),
        ("TagKey", "TagKeys"),
        ("AWSAccountId", "AWSAccountIds"),
        ("ActionName", "Actions"),
    ];
    const ENTRIES: &[&str] = &[
        "SendMessageBatchRequestEntry",
        "DeleteMessageBatchRequestEntry",
        "ChangeMessageVisibilityBatchRequestEntry",
    ];
    // (query name, JSON name, key member, value member)
    const MAPS: &[(&str, &str, &str, &str)] = &[
        ("Attribute", "Attributes", "Name", "Value"),
        ("Tag", "tags", "Key", "Value"),
        ("Tags", "Tags", "Key", "Value"),
        ("MessageAttribute", "MessageAttributes", "Name", "Value"),
        (
            "MessageSystemAttribute",
            "MessageSystemAttributes",
            "Name",
            "Value",
        ),
    ];
    let mut out = Map::new();
    for (key, value) in tree {
        if let Some((_, name)) = LISTS.iter().find(|(q, _)| *q == key) {
            out.insert((*name).to_owned(), Value::Array(indexed(value)));
        } else if ENTRIES.contains(&key.as_str()) {
            let entries = indexed(value)
                .into_iter()
                .map(|e| match e {
                    Value::Object(map) => reshape(map),
                    other => other,
                })
                .collect();
            out.insert("Entries".into(), Value::Array(entries));
        } else if let Some((_, name, k, v)) = MAPS.iter().find(|(q, ..)| *q == key) {
            let mut map = Map::new();
            for item in indexed(value) {
                if let Some(member) = item[*k].as_str() {
                    map.insert(member.to_owned(), item[*v].clone());
                }
            }
            out.insert((*name).to_owned(), Value::Object(map));
        } else {
            out.insert(key, value);
        }
    }
    Value::Object(out)
}

/// Writes a JSON answer as the query protocol's XML elements.
fn write_xml(xml: &mut XmlWriter, operation: &str, output: &Map<String, Value>) {
    for (key, value) in output {
        match (key.as_str(), value) {
            ("Attributes" | "Tags", Value::Object(map)) => {
                let (element, name_tag) = if key == "Tags" {
                    ("Tag", "Key")
                } else {
                    ("Attribute", "Name")
                };
                for (name, value) in map {
                    xml.open(element);
                    xml.leaf(name_tag, name);
                    xml.leaf("Value", value.as_str().unwrap_or_default());
                    xml.close(element);
                }
            }
            ("MessageAttributes", Value::Object(map)) => {
                for (name, value) in map {
                    xml.open("MessageAttribute");
                    xml.leaf("Name", name);
                    xml.open("Value");
                    if let Value::Object(fields) = value {
                        write_xml(xml, operation, fields);
                    }
                    xml.close("Value");
                    xml.close("MessageAttribute");
                }
            }
            (_, Value::Array(items)) => {
                let element = match key.as_str() {
                    "QueueUrls" | "queueUrls" => "QueueUrl".to_owned(),
                    "Messages" => "Message".to_owned(),
                    "Failed" => "BatchResultErrorEntry".to_owned(),
                    "Results" => "ListMessageMoveTasksResultEntry".to_owned(),
                    _ => format!("{operation}ResultEntry"),
                };
                for item in items {
                    match item {
                        Value::Object(fields) => {
                            xml.open(&element);
                            write_xml(xml, operation, fields);
                            xml.close(&element);
                        }
                        other => xml.leaf(&element, other.as_str().unwrap_or_default()),
                    }
                }
            }
            (_, Value::String(text)) => xml.leaf(key, text),
            (_, Value::Null) => {}
            (_, other) => xml.leaf(key, &other.to_string()),
        }
    }
}

fn json_response(output: &Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(output.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

impl Service for SqsApi {
    type Operation = NamedCall;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::SQS
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(OPERATIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<NamedCall, AwsError> {
        let is_query = Protocol::guess(&req.parts) == Protocol::Query;
        let (name, input) = if is_query {
            let request = QueryRequest::parse(req)?;
            let input = query_input(&request, req.parts.uri.path());
            (request.action, input)
        } else {
            let name = nimbus_edge::protocol::json11::operation(req).to_owned();
            (name, nimbus_edge::protocol::json11::input(req)?)
        };
        let protocol = if is_query {
            Protocol::Query
        } else {
            Protocol::Json10
        };
        let entry = OPERATIONS
            .iter()
            .find(|entry| entry.name == name)
            .ok_or_else(|| AwsError::unknown_operation(protocol, &name))?;
        Ok(NamedCall {
            name: entry.name,
            authorization: entry.authorization,
            input,
        })
    }

    async fn access(&self, ctx: &RequestContext, call: &NamedCall) -> Result<Vec<Check>, AwsError> {
        let Some(name) = self.target(call)? else {
            return Ok(vec![Check::on("*")]);
        };
        let resource = ctx.arn("sqs", &name);
        let sqs = self.sqs.clone();
        let policy = tokio::task::spawn_blocking(move || {
            sqs.queue(&name)
                .ok()
                .and_then(|(q, _)| q.attributes.get("Policy").cloned())
        })
        .await
        .map_err(internal)?;
        Ok(vec![Check::on(resource).with_policy(policy)])
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        call: NamedCall,
    ) -> Result<Response<Bytes>, AwsError> {
        let output = match call.name {
            "ReceiveMessage" => self.receive(&call.input).await?,
            "StartMessageMoveTask" => {
                let destination = call.input["DestinationArn"].as_str().map(str::to_owned);
                let rate = optional_integer(&call.input, "MaxNumberOfMessagesPerSecond")?;
                let source = text(&call.input, "SourceArn")?.to_owned();
                let sqs = self.sqs.clone();
                let handle =
                    tokio::task::spawn_blocking(move || sqs.start_move(&source, destination, rate))
                        .await
                        .map_err(internal)??;
                json!({ "TaskHandle": handle })
            }
            _ => {
                let api = SqsApi {
                    sqs: self.sqs.clone(),
                };
                let ctx = ctx.clone();
                tokio::task::spawn_blocking(move || api.call(&ctx, call.name, &call.input))
                    .await
                    .map_err(internal)??
            }
        };
        if ctx.protocol != Protocol::Query {
            return Ok(json_response(&output));
        }
        let namespace = catalog::SQS.xml_namespace.unwrap_or_default();
        let fields = output.as_object().cloned().unwrap_or_default();
        Ok(query::response(
            call.name,
            namespace,
            &ctx.request_id,
            |xml| write_xml(xml, call.name, &fields),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> QueryRequest {
        let (parts, ()) = http::Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(())
            .unwrap()
            .into_parts();
        QueryRequest::parse(&ServiceRequest {
            parts,
            body: Bytes::from(body.to_owned()),
        })
        .unwrap()
    }

    #[test]
    fn query_requests_take_the_json_shape() {
        let input = query_input(
            &request(
                "Action=SendMessageBatch&QueueUrl=http%3A%2F%2Fh%2F0%2Fq\
                 &SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two\
                 &SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=one\
                 &SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k\
                 &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String\
                 &SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v",
            ),
            "/",
        );
        assert_eq!(input["QueueUrl"], "http://h/0/q");
        assert_eq!(input["Entries"][0]["Id"], "a");
        assert_eq!(input["Entries"][1]["MessageBody"], "two");
        assert_eq!(
            input["Entries"][0]["MessageAttributes"]["k"]["StringValue"],
            "v"
        );

        let input = query_input(
            &request(
                "Action=CreateQueue&QueueName=q&Attribute.1.Name=DelaySeconds&Attribute.1.Value=5&Tag.1.Key=team&Tag.1.Value=a&AttributeName.1=All",
            ),
            "/",
        );
        assert_eq!(input["Attributes"]["DelaySeconds"], "5");
        assert_eq!(input["tags"]["team"], "a");
        assert_eq!(input["AttributeNames"][0], "All");

        let sent_to_queue = query_input(&request("Action=PurgeQueue"), "/000000000000/q");
        assert_eq!(sent_to_queue["QueueUrl"], "/000000000000/q");
    }

    #[test]
    fn answers_take_the_query_shape() {
        let output = json!({
            "Messages": [{"MessageId": "m", "Body": "b", "Attributes": {"SentTimestamp": "1"},
                          "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}}],
        });
        let mut xml = XmlWriter::new();
        write_xml(&mut xml, "ReceiveMessage", output.as_object().unwrap());
        assert_eq!(
            xml.finish(),
            "<Message><Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute><Body>b</Body>\
             <MessageAttribute><Name>k</Name><Value><DataType>String</DataType><StringValue>v</StringValue>\
             </Value></MessageAttribute><MessageId>m</MessageId></Message>"
        );
        let mut xml = XmlWriter::new();
        write_xml(
            &mut xml,
            "DeleteMessageBatch",
            json!({"Successful": [{"Id": "a"}], "Failed": []})
                .as_object()
                .unwrap(),
        );
        assert_eq!(
            xml.finish(),
            "<DeleteMessageBatchResultEntry><Id>a</Id></DeleteMessageBatchResultEntry>"
        );
    }
}
