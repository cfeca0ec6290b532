//! The CloudWatch Logs API (json-1.1): groups, streams, PutLogEvents with AWS's batch
//! rules, GetLogEvents with forward and backward tokens, FilterLogEvents across
//! streams with filter patterns, retention, tags.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Response, StatusCode};
use nimbus_edge::protocol::json11;
use nimbus_edge::{
    Authorization, AwsError, Check, NamedOperation, Operation, OperationDoc, Protocol,
    RequestContext, Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use serde_json::{Value, json};

use crate::filter::Filter;
use crate::{LogEvent, LogStore, StoredEvent, StreamRecord, now_ms};

/// The ARNs the operations act on, as AWS's authorization reference writes them
/// (a group's actions are judged on `log-group:<name>:*`, as on AWS).
const GROUP: &str = "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:*";
const STREAM: &str = "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:log-stream:${LogStreamName}";
const ANY: &str = "*";

const OPERATIONS: &[NamedOperation] = &[
    named(
        "CreateLogGroup",
        Authorization::new("logs:CreateLogGroup", GROUP),
    ),
    named(
        "DeleteLogGroup",
        Authorization::new("logs:DeleteLogGroup", GROUP),
    ),
    named(
        "DescribeLogGroups",
        Authorization::new("logs:DescribeLogGroups", ANY),
    ),
    named(
        "CreateLogStream",
        Authorization::new("logs:CreateLogStream", STREAM),
    ),
    named(
        "DeleteLogStream",
        Authorization::new("logs:DeleteLogStream", STREAM),
    ),
    named(
        "DescribeLogStreams",
        Authorization::new("logs:DescribeLogStreams", GROUP),
    ),
    named(
        "PutLogEvents",
        Authorization::new("logs:PutLogEvents", STREAM),
    ),
    named(
        "GetLogEvents",
        Authorization::new("logs:GetLogEvents", STREAM),
    ),
    named(
        "FilterLogEvents",
        Authorization::new("logs:FilterLogEvents", GROUP),
    ),
    named(
        "PutRetentionPolicy",
        Authorization::new("logs:PutRetentionPolicy", GROUP),
    ),
    named(
        "DeleteRetentionPolicy",
        Authorization::new("logs:DeleteRetentionPolicy", GROUP),
    ),
    named("TagLogGroup", Authorization::new("logs:TagLogGroup", GROUP)),
    named(
        "UntagLogGroup",
        Authorization::new("logs:UntagLogGroup", GROUP),
    ),
    named(
        "ListTagsLogGroup",
        Authorization::new("logs:ListTagsLogGroup", GROUP),
    ),
    named("TagResource", Authorization::new("logs:TagResource", GROUP)),
    named(
        "UntagResource",
        Authorization::new("logs:UntagResource", GROUP),
    ),
    named(
        "ListTagsForResource",
        Authorization::new("logs:ListTagsForResource", GROUP),
    ),
];

/// The retention periods CloudWatch Logs accepts, in days.
const RETENTION_DAYS: &[i64] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
/// PutLogEvents' limits: a batch's bytes (each event counts 26 more), its events,
/// one event, the span of a batch, and how far from now an event may be.
const MAX_BATCH_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
const MAX_BATCH_EVENTS: usize = 10_000;
const MAX_EVENT_BYTES: usize = 262_144;
const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;
const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;
/// Events FilterLogEvents reads in one call before it answers with a token.
const MAX_SCANNED: usize = 2_000_000;

#[derive(Debug)]
pub struct LogsCall {
    name: &'static str,
    authorization: Authorization,
    input: Value,
}

impl Operation for LogsCall {
    fn name(&self) -> &'static str {
        self.name
    }

    fn authorization(&self) -> Authorization {
        self.authorization
    }
}

/// The group or stream a call names, as its declaration's template asks.
fn resource(ctx: &RequestContext, call: &LogsCall) -> Result<String, AwsError> {
    let template = call.authorization.resource;
    if template == ANY {
        return Ok(ANY.to_owned());
    }
    let group = match text(&call.input, "resourceArn") {
        Some(arn) => group_of_arn(arn)?,
        None => group_name(&call.input)?,
    };
    Ok(if template == STREAM {
        let stream = required(&call.input, "logStreamName")?;
        ctx.arn("logs", &format!("log-group:{group}:log-stream:{stream}"))
    } else {
        ctx.arn("logs", &format!("log-group:{group}:*"))
    })
}

pub struct LogsApi {
    store: Arc<LogStore>,
}

impl LogsApi {
    pub fn new(store: Arc<LogStore>) -> Self {
        Self { store }
    }
}

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "InvalidParameterException",
        message,
    )
}

fn not_found(message: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ResourceNotFoundException",
        message,
    )
}

fn already_exists(message: impl Into<String>) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "ResourceAlreadyExistsException",
        message,
    )
}

fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "log store failure");
    AwsError::internal(Protocol::Json11)
}

fn text<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input[name].as_str()
}

fn required<'a>(input: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    text(input, name).ok_or_else(|| {
        invalid(format!(
            "1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn limit(input: &Value, max: usize, default: usize) -> Result<usize, AwsError> {
    match input["limit"].as_i64() {
        None => Ok(default),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(n) => Err(invalid(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

fn check_group_name(name: &str) -> Result<(), AwsError> {
    let valid = (1..=512).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+"
        )))
    }
}

fn check_stream_name(name: &str) -> Result<(), AwsError> {
    if (1..=512).contains(&name.len()) && !name.contains([':', '*', '\n']) {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*"
        )))
    }
}

/// The group a request names, by `logGroupName` or `logGroupIdentifier` (a name or ARN).
fn group_name(input: &Value) -> Result<String, AwsError> {
    let name = match text(input, "logGroupIdentifier") {
        Some(identifier) => identifier
            .split(":log-group:")
            .nth(1)
            .map(|rest| rest.trim_end_matches(":*"))
            .unwrap_or(identifier),
        None => required(input, "logGroupName")?,
    };
    check_group_name(name)?;
    Ok(name.to_owned())
}

fn tags(value: &Value) -> Result<BTreeMap<String, String>, AwsError> {
    let Some(object) = value.as_object() else {
        return Ok(BTreeMap::new());
    };
    object
        .iter()
        .map(|(k, v)| match v.as_str() {
            Some(v) if (1..=128).contains(&k.len()) && v.len() <= 256 => {
                Ok((k.clone(), v.to_owned()))
            }
            _ => Err(invalid(format!("Invalid tag {k}"))),
        })
        .collect()
}

/// The group an ARN (`arn:aws:logs:<region>:<account>:log-group:<name>[:*]`) names.
fn group_of_arn(arn: &str) -> Result<String, AwsError> {
    arn.split(":log-group:")
        .nth(1)
        .map(|rest| rest.trim_end_matches(":*").to_owned())
        .ok_or_else(|| invalid(format!("Invalid resource ARN: {arn}")))
}

fn event_json(event: &StoredEvent) -> Value {
    json!({ "timestamp": event.timestamp, "message": event.message, "ingestionTime": event.ingestion })
}

fn event_id(event: &StoredEvent) -> &str {
    event.key.rsplit('\n').next().unwrap_or_default()
}

fn stream_json(ctx: &RequestContext, group: &str, name: &str, stream: &StreamRecord) -> Value {
    let mut out = json!({
        "logStreamName": name,
        "creationTime": stream.created,
        "arn": ctx.arn("logs", &format!("log-group:{group}:log-stream:{name}")),
        "storedBytes": stream.stored_bytes,
        "uploadSequenceToken": "1",
    });
    if let Some(first) = stream.first_event {
        out["firstEventTimestamp"] = first.into();
    }
    if let Some(last) = stream.last_event {
        out["lastEventTimestamp"] = last.into();
    }
    if let Some(ingested) = stream.last_ingestion {
        out["lastIngestionTime"] = ingested.into();
    }
    out
}

/// One stream's events in time order, read a page at a time, for a merge.
struct Cursor {
    stream: String,
    buffered: std::collections::VecDeque<StoredEvent>,
    after: Option<String>,
    done: bool,
}

impl LogsApi {
    fn existing_group(&self, group: &str) -> Result<crate::GroupRecord, AwsError> {
        self.store
            .group(group)
            .map_err(internal)?
            .map(|(_, record)| record)
            .ok_or_else(|| not_found("The specified log group does not exist."))
    }

    fn existing_stream(&self, group: &str, stream: &str) -> Result<(), AwsError> {
        match self.store.stream(group, stream).map_err(internal)? {
            Some(_) => Ok(()),
            None => Err(not_found("The specified log stream does not exist.")),
        }
    }

    /// The oldest timestamp a group's retention still keeps.
    fn retained_from(&self, group: &str) -> Result<i64, AwsError> {
        Ok(self
            .existing_group(group)?
            .retention_days
            .map_or(0, |days| now_ms() - days * 86_400_000))
    }

    fn call(&self, ctx: &RequestContext, name: &str, input: &Value) -> Result<Value, AwsError> {
        let store = &self.store;
        Ok(match name {
            "CreateLogGroup" => {
                let group = group_name(input)?;
                if !store
                    .create_group(&group, tags(&input["tags"])?)
                    .map_err(internal)?
                {
                    return Err(already_exists("The specified log group already exists"));
                }
                json!({})
            }
            "DeleteLogGroup" => {
                let group = group_name(input)?;
                self.existing_group(&group)?;
                store.delete_group(&group).map_err(internal)?;
                json!({})
            }
            "DescribeLogGroups" => {
                let prefix = text(input, "logGroupNamePrefix").unwrap_or_default();
                let max = limit(input, 50, 50)?;
                let token = text(input, "nextToken");
                let mut groups = Vec::new();
                let mut next = None;
                for (group, record) in store.groups(prefix).map_err(internal)? {
                    if token.is_some_and(|t| group.as_str() <= t) {
                        continue;
                    }
                    if groups.len() == max {
                        next = groups
                            .last()
                            .and_then(|g: &Value| g["logGroupName"].as_str().map(str::to_owned));
                        break;
                    }
                    let stored: u64 = store
                        .streams(&group, "")
                        .map_err(internal)?
                        .iter()
                        .map(|(_, s)| s.stored_bytes)
                        .sum();
                    let arn = ctx.arn("logs", &format!("log-group:{group}"));
                    let mut out = json!({
                        "logGroupName": group,
                        "creationTime": record.created,
                        "metricFilterCount": 0,
                        "arn": format!("{arn}:*"),
                        "logGroupArn": arn,
                        "storedBytes": stored,
                        "logGroupClass": "STANDARD",
                    });
                    if let Some(days) = record.retention_days {
                        out["retentionInDays"] = days.into();
                    }
                    groups.push(out);
                }
                let mut out = json!({ "logGroups": groups });
                if let Some(next) = next {
                    out["nextToken"] = next.into();
                }
                out
            }
            "CreateLogStream" => {
                let group = group_name(input)?;
                let stream = required(input, "logStreamName")?;
                check_stream_name(stream)?;
                self.existing_group(&group)?;
                if !store.create_stream(&group, stream).map_err(internal)? {
                    return Err(already_exists("The specified log stream already exists"));
                }
                json!({})
            }
            "DeleteLogStream" => {
                let group = group_name(input)?;
                let stream = required(input, "logStreamName")?;
                self.existing_group(&group)?;
                if store.stream(&group, stream).map_err(internal)?.is_none() {
                    return Err(not_found("The specified log stream does not exist."));
                }
                store.delete_stream(&group, stream).map_err(internal)?;
                json!({})
            }
            "DescribeLogStreams" => {
                let group = group_name(input)?;
                self.existing_group(&group)?;
                let prefix = text(input, "logStreamNamePrefix").unwrap_or_default();
                let by_time = match text(input, "orderBy").unwrap_or("LogStreamName") {
                    "LogStreamName" => false,
                    "LastEventTime" if prefix.is_empty() => true,
                    "LastEventTime" => {
                        return Err(invalid(
                            "Cannot order by LastEventTime with a logStreamNamePrefix.",
                        ));
                    }
                    other => return Err(invalid(format!("Invalid orderBy: {other}"))),
                };
                let mut streams = store.streams(&group, prefix).map_err(internal)?;
                if by_time {
                    // Streams without events sort first, as the oldest.
                    streams.sort_by_key(|(_, s)| s.last_event.unwrap_or(i64::MIN));
                }
                if input["descending"].as_bool() == Some(true) {
                    streams.reverse();
                }
                let offset: usize = text(input, "nextToken")
                    .map(|t| {
                        t.parse()
                            .map_err(|_| invalid("The specified nextToken is invalid."))
                    })
                    .transpose()?
                    .unwrap_or(0);
                let max = limit(input, 50, 50)?;
                let page: Vec<Value> = streams
                    .iter()
                    .skip(offset)
                    .take(max)
                    .map(|(name, record)| stream_json(ctx, &group, name, record))
                    .collect();
                let mut out = json!({ "logStreams": page });
                if offset + max < streams.len() {
                    out["nextToken"] = (offset + max).to_string().into();
                }
                out
            }
            "PutLogEvents" => self.put_events(input)?,
            "GetLogEvents" => self.get_events(input)?,
            "FilterLogEvents" => self.filter_events(input)?,
            "PutRetentionPolicy" | "DeleteRetentionPolicy" => {
                let group = group_name(input)?;
                let days = if name == "PutRetentionPolicy" {
                    let days = input["retentionInDays"].as_i64().unwrap_or(0);
                    if !RETENTION_DAYS.contains(&days) {
                        return Err(invalid(format!(
                            "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: {RETENTION_DAYS:?}"
                        )));
                    }
                    Some(days)
                } else {
                    None
                };
                let (version, mut record) = store
                    .group(&group)
                    .map_err(internal)?
                    .ok_or_else(|| not_found("The specified log group does not exist."))?;
                record.retention_days = days;
                store
                    .put_group(&group, version, &record)
                    .map_err(internal)?;
                json!({})
            }
            "TagLogGroup" | "UntagLogGroup" | "TagResource" | "UntagResource" => {
                let group = match text(input, "resourceArn") {
                    Some(arn) => group_of_arn(arn)?,
                    None => group_name(input)?,
                };
                let (version, mut record) = store
                    .group(&group)
                    .map_err(internal)?
                    .ok_or_else(|| not_found("The specified log group does not exist."))?;
                if name.starts_with("Tag") {
                    record.tags.extend(tags(&input["tags"])?);
                    if record.tags.len() > 50 {
                        return Err(invalid("A log group can have at most 50 tags"));
                    }
                } else {
                    let keys = input["tags"].as_array().or(input["tagKeys"].as_array());
                    for key in keys.into_iter().flatten().filter_map(Value::as_str) {
                        record.tags.remove(key);
                    }
                }
                store
                    .put_group(&group, version, &record)
                    .map_err(internal)?;
                json!({})
            }
            "ListTagsLogGroup" | "ListTagsForResource" => {
                let group = match text(input, "resourceArn") {
                    Some(arn) => group_of_arn(arn)?,
                    None => group_name(input)?,
                };
                json!({ "tags": self.existing_group(&group)?.tags })
            }
            other => return Err(AwsError::unknown_operation(Protocol::Json11, other)),
        })
    }

    fn put_events(&self, input: &Value) -> Result<Value, AwsError> {
        let group = group_name(input)?;
        let stream = required(input, "logStreamName")?;
        let events = input["logEvents"]
            .as_array()
            .filter(|events| !events.is_empty())
            .ok_or_else(|| invalid("logEvents must hold at least one event"))?;
        if events.len() > MAX_BATCH_EVENTS {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length less than or equal to {MAX_BATCH_EVENTS}"
            )));
        }
        let mut parsed = Vec::with_capacity(events.len());
        let mut bytes = 0;
        for event in events {
            let (Some(timestamp), Some(message)) =
                (event["timestamp"].as_i64(), event["message"].as_str())
            else {
                return Err(invalid("Each log event needs a timestamp and a message"));
            };
            if message.is_empty() {
                return Err(invalid("A log event's message must not be empty"));
            }
            if message.len() + EVENT_OVERHEAD > MAX_EVENT_BYTES {
                return Err(invalid(format!(
                    "Log event too large: {} bytes exceeds the maximum of {MAX_EVENT_BYTES}",
                    message.len() + EVENT_OVERHEAD
                )));
            }
            bytes += message.len() + EVENT_OVERHEAD;
            if let Some(LogEvent {
                timestamp: before, ..
            }) = parsed.last()
                && timestamp < *before
            {
                return Err(invalid(
                    "Log events in a single PutLogEvents request must be in chronological order.",
                ));
            }
            parsed.push(LogEvent {
                timestamp,
                message: message.to_owned(),
            });
        }
        if bytes > MAX_BATCH_BYTES {
            return Err(invalid(format!(
                "Upload too large: {bytes} bytes exceeds {MAX_BATCH_BYTES} bytes"
            )));
        }
        let span = parsed.last().map_or(0, |e| e.timestamp) - parsed[0].timestamp;
        if span > MAX_SPAN_MS {
            return Err(invalid(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
        let retained_from = self.retained_from(&group)?;
        self.existing_stream(&group, stream)?;
        let now = now_ms();
        let too_old = parsed.iter().rposition(|e| e.timestamp < now - MAX_AGE_MS);
        let expired = parsed.iter().rposition(|e| e.timestamp < retained_from);
        let too_new = parsed.iter().position(|e| e.timestamp > now + MAX_AHEAD_MS);
        let first = too_old.max(expired).map_or(0, |i| i + 1);
        let last = too_new.unwrap_or(parsed.len());
        let accepted: Vec<LogEvent> = parsed
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i >= first && *i < last)
            .map(|(_, e)| e)
            .collect();
        self.store
            .append(&group, stream, accepted)
            .map_err(internal)?;
        let mut out = json!({ "nextSequenceToken": "1" });
        let mut rejected = serde_json::Map::new();
        if let Some(i) = too_old {
            rejected.insert("tooOldLogEventEndIndex".into(), (i + 1).into());
        }
        if let Some(i) = expired {
            rejected.insert("expiredLogEventEndIndex".into(), (i + 1).into());
        }
        if let Some(i) = too_new {
            rejected.insert("tooNewLogEventStartIndex".into(), i.into());
        }
        if !rejected.is_empty() {
            out["rejectedLogEventsInfo"] = Value::Object(rejected);
        }
        Ok(out)
    }

    fn get_events(&self, input: &Value) -> Result<Value, AwsError> {
        let group = group_name(input)?;
        let stream = required(input, "logStreamName")?;
        let retained_from = self.retained_from(&group)?;
        self.existing_stream(&group, stream)?;
        let max = limit(input, 10_000, 10_000)?;
        let start = input["startTime"].as_i64().unwrap_or(0).max(retained_from);
        let end = input["endTime"].as_i64().unwrap_or(i64::MAX / 2);
        let token = text(input, "nextToken");
        let prefix = crate::stream_key(&group, stream);
        let key_of = |token: &str, marker: &str| -> Result<String, AwsError> {
            token
                .strip_prefix(marker)
                .map(|key| format!("{prefix}\n{key}"))
                .ok_or_else(|| invalid("The specified nextToken is invalid."))
        };
        let forward = token.map_or(input["startFromHead"].as_bool() == Some(true), |t| {
            t.starts_with("f/")
        });
        let mut events = if forward {
            let after = token.map(|t| key_of(t, "f/")).transpose()?;
            self.store
                .events_after(&group, stream, after.as_deref(), start, max)
                .map_err(internal)?
        } else {
            let before = token.map(|t| key_of(t, "b/")).transpose()?;
            let mut events = self
                .store
                .events_before(&group, stream, before.as_deref(), end, max)
                .map_err(internal)?;
            events.reverse();
            events
        };
        events.retain(|e| e.timestamp >= start && e.timestamp < end);
        let id = |event: &StoredEvent| event_id(event).to_owned();
        let forward_token = match events.last() {
            Some(last) => format!("f/{}", id(last)),
            None => token.filter(|t| t.starts_with("f/")).map_or_else(
                || "f/".to_owned() + &format!("{:013}", start.max(0)),
                str::to_owned,
            ),
        };
        let backward_token = match events.first() {
            Some(first) => format!("b/{}", id(first)),
            None => token.filter(|t| t.starts_with("b/")).map_or_else(
                || "b/".to_owned() + &format!("{:013}", start.max(0)),
                str::to_owned,
            ),
        };
        Ok(json!({
            "events": events.iter().map(event_json).collect::<Vec<_>>(),
            "nextForwardToken": forward_token,
            "nextBackwardToken": backward_token,
        }))
    }

    fn filter_events(&self, input: &Value) -> Result<Value, AwsError> {
        let group = group_name(input)?;
        let retained_from = self.retained_from(&group)?;
        let filter =
            Filter::parse(text(input, "filterPattern").unwrap_or_default()).map_err(invalid)?;
        let max = limit(input, 10_000, 10_000)?;
        let start = input["startTime"].as_i64().unwrap_or(0).max(retained_from);
        let end = input["endTime"].as_i64().unwrap_or(i64::MAX / 2);
        let names: Option<Vec<&str>> = input["logStreamNames"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect());
        let prefix = text(input, "logStreamNamePrefix").unwrap_or_default();
        if names.is_some() && !prefix.is_empty() {
            return Err(invalid(
                "logStreamNames and logStreamNamePrefix cannot both be specified",
            ));
        }
        // The token holds, per stream, the key of the last event read.
        let mut resume: BTreeMap<String, String> = match text(input, "nextToken") {
            Some(token) => URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .ok_or_else(|| invalid("The specified nextToken is invalid."))?,
            None => BTreeMap::new(),
        };
        let streams: Vec<String> = self
            .store
            .streams(&group, prefix)
            .map_err(internal)?
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| {
                names
                    .as_ref()
                    .is_none_or(|names| names.contains(&name.as_str()))
            })
            .collect();
        let mut cursors: Vec<Cursor> = streams
            .iter()
            .map(|stream| Cursor {
                stream: stream.clone(),
                buffered: Default::default(),
                after: resume.remove(stream),
                done: false,
            })
            .collect();
        let mut heap = BinaryHeap::new();
        for (i, cursor) in cursors.iter_mut().enumerate() {
            self.refill(&group, cursor, start)?;
            if let Some(event) = cursor.buffered.front() {
                heap.push(Reverse((event.timestamp, i)));
            }
        }
        let mut found = Vec::new();
        let mut scanned = 0;
        let mut more = false;
        while let Some(Reverse((timestamp, i))) = heap.pop() {
            if timestamp > end {
                continue;
            }
            if found.len() == max || scanned == MAX_SCANNED {
                more = true;
                break;
            }
            let cursor = &mut cursors[i];
            let event = cursor.buffered.pop_front().expect("a buffered event");
            scanned += 1;
            cursor.after = Some(event.key.clone());
            if filter.matches(&event.message) {
                found.push(json!({
                    "logStreamName": cursor.stream,
                    "timestamp": event.timestamp,
                    "message": event.message,
                    "ingestionTime": event.ingestion,
                    "eventId": event_id(&event),
                }));
            }
            if cursor.buffered.is_empty() {
                self.refill(&group, cursor, start)?;
            }
            if let Some(next) = cursor.buffered.front() {
                heap.push(Reverse((next.timestamp, i)));
            }
        }
        let mut out = json!({
            "events": found,
            "searchedLogStreams": streams.iter().map(|s| json!({ "logStreamName": s, "searchedCompletely": !more })).collect::<Vec<_>>(),
        });
        if more {
            let positions: BTreeMap<&str, &str> = cursors
                .iter()
                .filter_map(|c| c.after.as_deref().map(|after| (c.stream.as_str(), after)))
                .collect();
            out["nextToken"] = URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&positions).expect("positions serialize"))
                .into();
        }
        Ok(out)
    }

    /// Reads a cursor's next page of events.
    fn refill(&self, group: &str, cursor: &mut Cursor, start: i64) -> Result<(), AwsError> {
        if cursor.done {
            return Ok(());
        }
        let page = self
            .store
            .events_after(group, &cursor.stream, cursor.after.as_deref(), start, 1000)
            .map_err(internal)?;
        cursor.done = page.len() < 1000;
        if let Some(last) = page.last() {
            cursor.after = Some(last.key.clone());
        }
        cursor.buffered.extend(page);
        Ok(())
    }
}

impl Service for LogsApi {
    type Operation = LogsCall;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::LOGS
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(OPERATIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<LogsCall, AwsError> {
        let (entry, input) = json11::call(req, OPERATIONS)?;
        Ok(LogsCall {
            name: entry.name,
            authorization: entry.authorization,
            input,
        })
    }

    async fn access(&self, ctx: &RequestContext, call: &LogsCall) -> Result<Vec<Check>, AwsError> {
        Ok(vec![Check::on(resource(ctx, call)?)])
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        call: LogsCall,
    ) -> Result<Response<Bytes>, AwsError> {
        let api = LogsApi {
            store: self.store.clone(),
        };
        let ctx_owned = ctx.clone();
        let output =
            tokio::task::spawn_blocking(move || api.call(&ctx_owned, call.name, &call.input))
                .await
                .map_err(internal)??;
        Ok(json11::response(&output))
    }
}
