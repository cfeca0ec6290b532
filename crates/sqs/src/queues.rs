//! Queues: names, URLs and ARNs, their attributes with SQS's defaults and ranges, and
//! the records that hold them (`sqs.queues/<name>`).

use std::collections::BTreeMap;

use nimbus_edge::AwsError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{invalid_attribute_name, invalid_attribute_value, invalid_parameter};

pub const QUEUES: &str = "sqs.queues";
/// Names deleted in the last minute, which cannot be created again yet.
pub const DELETED: &str = "sqs.deleted";
pub const FIFO_SUFFIX: &str = ".fifo";
/// The largest message, and the default `MaximumMessageSize`.
pub const MAX_MESSAGE_BYTES: i64 = 262_144;

/// A queue as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub modified: i64,
    /// The attributes set on it, by name; the rest have their defaults.
    pub attributes: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// When it was last purged, unix ms.
    #[serde(default)]
    pub purged_ms: i64,
}

/// The attributes a queue may be given, with their defaults (`None`: unset unless
/// given). FIFO-only attributes come last.
const SETTABLE: &[(&str, Option<&str>)] = &[
    ("DelaySeconds", Some("0")),
    ("MaximumMessageSize", Some("262144")),
    ("MessageRetentionPeriod", Some("345600")),
    ("ReceiveMessageWaitTimeSeconds", Some("0")),
    ("VisibilityTimeout", Some("30")),
    ("Policy", None),
    ("RedrivePolicy", None),
    ("RedriveAllowPolicy", None),
    ("KmsMasterKeyId", None),
    ("KmsDataKeyReusePeriodSeconds", None),
    ("SqsManagedSseEnabled", Some("true")),
    ("FifoQueue", None),
    ("ContentBasedDeduplication", None),
    ("DeduplicationScope", None),
    ("FifoThroughputLimit", None),
];

/// Attributes only FIFO queues have.
const FIFO_ONLY: &[&str] = &[
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Attributes SQS computes.
pub const COMPUTED: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// Whether `GetQueueAttributes` knows an attribute of this name.
pub fn known(name: &str) -> bool {
    COMPUTED.contains(&name) || SETTABLE.iter().any(|(n, _)| *n == name)
}

/// A queue name as SQS allows it: 1 to 80 letters, digits, hyphens and underscores,
/// `.fifo` at the end of a FIFO queue's (within the 80).
pub fn check_name(name: &str) -> Result<(), AwsError> {
    let stem = name.strip_suffix(FIFO_SUFFIX).unwrap_or(name);
    if name.is_empty()
        || name.len() > 80
        || stem.is_empty()
        || !stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid_parameter(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    Ok(())
}

/// The queue a queue URL (`<endpoint>/<account>/<name>`) names, checked against this
/// account: `None` when it is not one of this account's queues.
pub fn name_from_url<'a>(url: &'a str, account: &str) -> Option<&'a str> {
    let path = url.split_once("://").map_or(url, |(_, rest)| {
        rest.find('/').map_or("", |slash| &rest[slash..])
    });
    let mut segments = path.trim_matches('/').rsplit('/');
    let name = segments.next().filter(|n| !n.is_empty())?;
    match segments.next() {
        Some(owner) if owner != account => None,
        _ => Some(name),
    }
}

pub fn url(endpoint: &str, account: &str, name: &str) -> String {
    format!("{endpoint}/{account}/{name}")
}

pub fn arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

/// The queue name of a queue ARN in this account and region.
pub fn name_from_arn<'a>(arn: &'a str, region: &str, account: &str) -> Option<&'a str> {
    let rest = arn.strip_prefix("arn:aws:sqs:")?;
    let mut parts = rest.splitn(3, ':');
    let (r, a, name) = (parts.next()?, parts.next()?, parts.next()?);
    (r == region && a == account && !name.is_empty()).then_some(name)
}

fn integer_in(
    name: &str,
    value: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<(), AwsError> {
    match value.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(()),
        _ => Err(invalid_attribute_value(format!(
            "Invalid value for the parameter {name}. Reason: must be an integer from {} to {}.",
            range.start(),
            range.end()
        ))),
    }
}

fn boolean(name: &str, value: &str) -> Result<(), AwsError> {
    match value {
        "true" | "false" => Ok(()),
        _ => Err(invalid_attribute_value(format!(
            "Invalid value for the parameter {name}. Reason: must be true or false."
        ))),
    }
}

/// The redrive policy's target ARN and receive count.
pub fn redrive(policy: &str) -> Result<(String, i64), AwsError> {
    let bad = |why: &str| {
        invalid_attribute_value(format!(
            "Value {policy} for parameter RedrivePolicy is invalid. Reason: {why}"
        ))
    };
    let value: Value = serde_json::from_str(policy).map_err(|_| bad("Invalid JSON."))?;
    let target = value["deadLetterTargetArn"].as_str().ok_or_else(|| {
        bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
    })?;
    let count = match &value["maxReceiveCount"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("Redrive policy does not contain mandatory attribute: maxReceiveCount."))?;
    if !(1..=1000).contains(&count) {
        return Err(bad(
            "Invalid value for maxReceiveCount: must be from 1 to 1000.",
        ));
    }
    Ok((target.to_owned(), count))
}

/// Checks one attribute's value as `CreateQueue` and `SetQueueAttributes` take it.
pub fn check_attribute(name: &str, value: &str, fifo: bool) -> Result<(), AwsError> {
    if !SETTABLE.iter().any(|(n, _)| *n == name) {
        return Err(invalid_attribute_name(name));
    }
    if FIFO_ONLY.contains(&name) && !fifo {
        return Err(invalid_attribute_name(name));
    }
    match name {
        "DelaySeconds" => integer_in(name, value, 0..=900),
        "MaximumMessageSize" => integer_in(name, value, 1024..=MAX_MESSAGE_BYTES),
        "MessageRetentionPeriod" => integer_in(name, value, 60..=1_209_600),
        "ReceiveMessageWaitTimeSeconds" => integer_in(name, value, 0..=20),
        "VisibilityTimeout" => integer_in(name, value, 0..=43_200),
        "KmsDataKeyReusePeriodSeconds" => integer_in(name, value, 60..=86_400),
        "SqsManagedSseEnabled" | "FifoQueue" | "ContentBasedDeduplication" => boolean(name, value),
        "DeduplicationScope" => match value {
            "messageGroup" | "queue" => Ok(()),
            _ => Err(invalid_attribute_value(format!(
                "Invalid value for the parameter DeduplicationScope: {value}"
            ))),
        },
        "FifoThroughputLimit" => match value {
            "perQueue" | "perMessageGroupId" => Ok(()),
            _ => Err(invalid_attribute_value(format!(
                "Invalid value for the parameter FifoThroughputLimit: {value}"
            ))),
        },
        "RedrivePolicy" => redrive(value).map(|_| ()),
        "Policy" | "RedriveAllowPolicy" => serde_json::from_str::<Value>(value)
            .map(|_| ())
            .map_err(|_| {
                invalid_attribute_value(format!(
                    "Invalid value for the parameter {name}: not JSON."
                ))
            }),
        _ => Ok(()),
    }
}

impl Queue {
    pub fn fifo(&self) -> bool {
        self.name.ends_with(FIFO_SUFFIX)
    }

    /// An attribute's value, its default when unset.
    pub fn attribute(&self, name: &str) -> Option<String> {
        self.attributes.get(name).cloned().or_else(|| {
            SETTABLE
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, default)| default.map(str::to_owned))
                .or_else(|| match name {
                    "FifoQueue" if self.fifo() => Some("true".into()),
                    "ContentBasedDeduplication" if self.fifo() => Some("false".into()),
                    "DeduplicationScope" if self.fifo() => Some("queue".into()),
                    "FifoThroughputLimit" if self.fifo() => Some("perQueue".into()),
                    _ => None,
                })
        })
    }

    pub fn number(&self, name: &str) -> i64 {
        self.attribute(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    }

    pub fn flag(&self, name: &str) -> bool {
        self.attribute(name).as_deref() == Some("true")
    }

    /// The dead-letter queue and the receives that send a message there.
    pub fn redrive(&self) -> Option<(String, i64)> {
        redrive(&self.attributes.get("RedrivePolicy")?.clone()).ok()
    }

    /// Every attribute with a value: the set ones and the defaults.
    pub fn settable(&self) -> impl Iterator<Item = (&'static str, String)> + '_ {
        SETTABLE
            .iter()
            .filter(|(name, _)| self.fifo() || !FIFO_ONLY.contains(name))
            .filter_map(|(name, _)| Some((*name, self.attribute(name)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_sqs_rules() {
        assert!(check_name("orders").is_ok());
        assert!(check_name("orders-1_a.fifo").is_ok());
        assert!(check_name(&"a".repeat(80)).is_ok());
        for bad in ["", "a b", ".fifo", "x.y", &"a".repeat(81)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_name_this_accounts_queues() {
        let account = "000000000000";
        assert_eq!(
            name_from_url("http://localhost:4566/000000000000/q1", account),
            Some("q1")
        );
        assert_eq!(name_from_url("/000000000000/q1", account), Some("q1"));
        assert_eq!(
            name_from_url(
                "https://sqs.us-east-1.amazonaws.com/111111111111/q1",
                account
            ),
            None
        );
        assert_eq!(name_from_url("http://h:1/", account), None);
        assert_eq!(
            name_from_arn(
                "arn:aws:sqs:us-east-1:000000000000:dlq",
                "us-east-1",
                account
            ),
            Some("dlq")
        );
        assert_eq!(
            name_from_arn(
                "arn:aws:sqs:eu-west-1:000000000000:dlq",
                "us-east-1",
                account
            ),
            None
        );
    }

    #[test]
    fn attributes_are_checked_and_defaulted() {
        assert!(check_attribute("VisibilityTimeout", "43200", false).is_ok());
        assert!(check_attribute("VisibilityTimeout", "43201", false).is_err());
        assert!(check_attribute("FifoQueue", "true", false).is_err());
        assert_eq!(
            check_attribute("Colour", "1", false).unwrap_err().code,
            "InvalidAttributeName"
        );
        assert!(
            check_attribute(
                "RedrivePolicy",
                r#"{"deadLetterTargetArn":"a","maxReceiveCount":"3"}"#,
                false
            )
            .is_ok()
        );
        assert!(
            check_attribute(
                "RedrivePolicy",
                r#"{"deadLetterTargetArn":"a","maxReceiveCount":0}"#,
                false
            )
            .is_err()
        );
        let queue = Queue {
            name: "q.fifo".into(),
            created: 0,
            modified: 0,
            attributes: [("VisibilityTimeout".to_owned(), "5".to_owned())].into(),
            tags: BTreeMap::new(),
            purged_ms: 0,
        };
        assert_eq!(queue.number("VisibilityTimeout"), 5);
        assert_eq!(queue.number("MaximumMessageSize"), 262_144);
        assert!(queue.flag("FifoQueue"));
        assert!(
            queue
                .settable()
                .any(|(n, _)| n == "ContentBasedDeduplication")
        );
    }
}
