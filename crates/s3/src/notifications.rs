//! Bucket notifications: which object events go to which function, queue or topic,
//! and the S3 event records delivered to them. Delivery itself belongs to those
//! services, behind [`EventTarget`], which checks the target's resource policy and
//! stages each event as a durable entry committed with the object change.

use serde::{Deserialize, Serialize};

use nimbus_edge::protocol::xml::XmlWriter;

/// Where bucket events are delivered.
pub trait EventTarget: Send + Sync {
    /// Why `target` (a function, queue or topic ARN) may not receive `bucket`'s events, if it
    /// may not: it does not exist, or its policy does not let S3 deliver to it for
    /// this bucket.
    fn refuses(&self, target: &str, bucket: &str, account: &str) -> Option<String>;

    /// The writes that deliver one event to `target`, for S3 to commit together with
    /// the object change itself: an event is queued if and only if its change
    /// happened.
    fn stage(&self, target: &str, event: Vec<u8>) -> Result<Vec<Staged>, String>;

    /// Tells the queue that staged events were committed.
    fn wake(&self);
}

/// A write into another service's table, committed in S3's own batch.
#[derive(Debug, Clone)]
pub struct Staged {
    pub table: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// One `LambdaFunctionConfiguration`, `QueueConfiguration` or `TopicConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    /// The function's, queue's or topic's ARN.
    #[serde(alias = "function_arn")]
    pub target: String,
    pub events: Vec<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

/// The target of the rule `EventBridgeConfiguration` makes: the default event bus,
/// which gets every event.
pub const EVENTBRIDGE: &str = "eventbridge:default";

/// The event names S3 sends to functions, queues and topics.
const EVENTS: &[&str] = &[
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
];

impl Rule {
    /// Whether this rule wants `event` (`ObjectCreated:Put`) for `key`.
    pub fn wants(&self, event: &str, key: &str) -> bool {
        let category = event.split(':').next().unwrap_or_default();
        let named = self.events.iter().any(|wanted| {
            wanted == &format!("s3:{event}") || wanted == &format!("s3:{category}:*")
        });
        named
            && self
                .prefix
                .as_deref()
                .is_none_or(|prefix| key.starts_with(prefix))
            && self
                .suffix
                .as_deref()
                .is_none_or(|suffix| key.ends_with(suffix))
    }
}

fn eventbridge() -> Rule {
    Rule {
        id: "eventbridge".to_owned(),
        target: EVENTBRIDGE.to_owned(),
        events: vec!["s3:ObjectCreated:*".into(), "s3:ObjectRemoved:*".into()],
        prefix: None,
        suffix: None,
    }
}

/// Reads a `NotificationConfiguration` document; `Err` names what is wrong.
pub fn parse(document: &[u8]) -> Result<Vec<Rule>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(document);
    let mut path: Vec<String> = Vec::new();
    let mut rules = Vec::new();
    let mut rule: Option<Rule> = None;
    let mut filter_name = String::new();
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|err| err.to_string())? {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                match name.as_str() {
                    "CloudFunctionConfiguration"
                    | "LambdaFunctionConfiguration"
                    | "QueueConfiguration"
                    | "TopicConfiguration" => {
                        rule = Some(Rule {
                            id: String::new(),
                            target: String::new(),
                            events: Vec::new(),
                            prefix: None,
                            suffix: None,
                        });
                    }
                    "EventBridgeConfiguration" => rules.push(eventbridge()),
                    _ => {}
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(empty) => {
                let name = empty.local_name();
                if name.as_ref() == b"EventBridgeConfiguration" {
                    rules.push(eventbridge());
                }
            }
            Event::Text(content) => {
                text.push_str(&content.decode().map_err(|err| err.to_string())?)
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let value = std::mem::take(&mut text).trim().to_owned();
                match (name.as_str(), rule.as_mut()) {
                    (
                        "CloudFunctionConfiguration"
                        | "LambdaFunctionConfiguration"
                        | "QueueConfiguration"
                        | "TopicConfiguration",
                        Some(_),
                    ) => rules.extend(rule.take()),
                    ("Id", Some(rule)) => rule.id = value,
                    ("CloudFunction" | "Function" | "Queue" | "Topic", Some(rule)) => {
                        rule.target = value
                    }
                    ("Event", Some(rule)) => rule.events.push(value),
                    ("Name", Some(_)) => filter_name = value.to_ascii_lowercase(),
                    ("Value", Some(rule)) => match filter_name.as_str() {
                        "prefix" => rule.prefix = Some(value),
                        "suffix" => rule.suffix = Some(value),
                        other => {
                            return Err(format!(
                                "filter rule name {other} is not prefix or suffix"
                            ));
                        }
                    },
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    for (n, rule) in rules.iter_mut().enumerate() {
        if rule.target.is_empty() || rule.events.is_empty() {
            return Err(
                "each configuration needs a function, queue or topic ARN and at least one event"
                    .into(),
            );
        }
        if let Some(event) = rule
            .events
            .iter()
            .find(|event| !EVENTS.contains(&event.as_str()))
        {
            return Err(format!(
                "The event is not supported for notifications: {event}"
            ));
        }
        if rule.id.is_empty() {
            rule.id = format!("notification-{}", n + 1);
        }
    }
    Ok(rules)
}

/// A `NotificationConfiguration` document of `rules`.
pub fn render(rules: &[Rule], namespace: &str) -> XmlWriter {
    let mut xml = XmlWriter::new();
    xml.open_with_namespace("NotificationConfiguration", Some(namespace));
    for rule in rules {
        if rule.target == EVENTBRIDGE {
            xml.open("EventBridgeConfiguration");
            xml.close("EventBridgeConfiguration");
            continue;
        }
        let (element, target) = if rule.target.starts_with("arn:aws:sqs:") {
            ("QueueConfiguration", "Queue")
        } else if rule.target.starts_with("arn:aws:sns:") {
            ("TopicConfiguration", "Topic")
        } else {
            ("CloudFunctionConfiguration", "CloudFunction")
        };
        xml.open(element);
        xml.leaf("Id", &rule.id);
        xml.leaf(target, &rule.target);
        for event in &rule.events {
            xml.leaf("Event", event);
        }
        if rule.prefix.is_some() || rule.suffix.is_some() {
            xml.open("Filter");
            xml.open("S3Key");
            for (name, value) in [("prefix", &rule.prefix), ("suffix", &rule.suffix)] {
                if let Some(value) = value {
                    xml.open("FilterRule");
                    xml.leaf("Name", name);
                    xml.leaf("Value", value);
                    xml.close("FilterRule");
                }
            }
            xml.close("S3Key");
            xml.close("Filter");
        }
        xml.close(element);
    }
    xml.close("NotificationConfiguration");
    xml
}

/// What happened to an object, for its event record.
pub struct Change<'a> {
    /// `ObjectCreated:Put`, `ObjectRemoved:Delete`, ...
    pub event: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    /// Size and ETag of a created object.
    pub created: Option<(u64, &'a str)>,
    pub region: &'a str,
    pub account: &'a str,
    pub request_id: &'a str,
    pub principal: &'a str,
}

/// S3's event record for `change` under `rule`, as its notification JSON shapes it.
pub fn record(change: &Change, rule: &Rule, at: time::OffsetDateTime) -> Vec<u8> {
    // URL-encoded as a form value is, each path segment apart: `/` stays.
    let key = change
        .key
        .split('/')
        .map(|segment| form_urlencoded::byte_serialize(segment.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/");
    let mut object = serde_json::json!({
        "key": key,
        "sequencer": format!("{:016X}", at.unix_timestamp_nanos() as u64),
    });
    if let Some((size, etag)) = change.created {
        object["size"] = size.into();
        object["eTag"] = etag.into();
    }
    let event_time = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({ "Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": change.region,
        "eventTime": format!("{}.{:03}Z", &event_time[..19], at.millisecond()),
        "eventName": change.event,
        "userIdentity": { "principalId": change.principal },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": { "x-amz-request-id": change.request_id, "x-amz-id-2": change.request_id },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": rule.id,
            "bucket": {
                "name": change.bucket,
                "ownerIdentity": { "principalId": change.account },
                "arn": format!("arn:aws:s3:::{}", change.bucket),
            },
            "object": object,
        },
    }]}))
    .expect("events serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_parse_and_filter_by_event_prefix_and_suffix() {
        let rules = parse(
            br#"<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
                <CloudFunctionConfiguration><Id>thumbs</Id>
                  <CloudFunction>arn:aws:lambda:us-east-1:000000000000:function:thumbs</CloudFunction>
                  <Event>s3:ObjectCreated:*</Event>
                  <Filter><S3Key><FilterRule><Name>Prefix</Name><Value>in/</Value></FilterRule>
                  <FilterRule><Name>Suffix</Name><Value>.jpg</Value></FilterRule></S3Key></Filter>
                </CloudFunctionConfiguration></NotificationConfiguration>"#,
        )
        .unwrap();
        let [rule] = rules.as_slice() else {
            panic!("{rules:?}")
        };
        assert!(rule.wants("ObjectCreated:Put", "in/cat.jpg"));
        assert!(!rule.wants("ObjectCreated:Put", "in/cat.png"));
        assert!(!rule.wants("ObjectRemoved:Delete", "in/cat.jpg"));
        assert_eq!(
            parse(b"<NotificationConfiguration><EventBridgeConfiguration/></NotificationConfiguration>")
                .unwrap(),
            vec![eventbridge()]
        );
        assert_eq!(parse(b"<NotificationConfiguration/>").unwrap(), vec![]);
    }

    #[test]
    fn records_url_encode_keys_as_s3_does() {
        let rule = Rule {
            id: "r".into(),
            target: "f".into(),
            events: vec![],
            prefix: None,
            suffix: None,
        };
        let change = Change {
            event: "ObjectCreated:Put",
            bucket: "in",
            key: "a b/c+d.txt",
            created: Some((3, "abc")),
            region: "us-east-1",
            account: "000000000000",
            request_id: "req",
            principal: "AWS:root",
        };
        let record: serde_json::Value = serde_json::from_slice(&super::record(
            &change,
            &rule,
            time::OffsetDateTime::now_utc(),
        ))
        .unwrap();
        let object = &record["Records"][0]["s3"]["object"];
        assert_eq!(object["key"], "a+b/c%2Bd.txt");
        assert_eq!(object["size"], 3);
        assert_eq!(record["Records"][0]["eventName"], "ObjectCreated:Put");
    }
}
