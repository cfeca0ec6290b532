//! Message attributes: their rules, their size, and the MD5 digests SQS returns and
//! SDKs check (`MD5OfMessageBody`, `MD5OfMessageAttributes`).

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest, Md5};
use nimbus_edge::AwsError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::invalid_parameter;

/// A message attribute's value as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeValue {
    pub data_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// Binary values, base64 as the wire carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

pub type Attributes = BTreeMap<String, AttributeValue>;

const MAX_ATTRIBUTES: usize = 10;

fn check_name(name: &str) -> Result<(), AwsError> {
    let lower = name.to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if valid {
        Ok(())
    } else {
        Err(invalid_parameter(format!(
            "Message attribute name '{name}' is invalid: up to 256 letters, digits, hyphens, underscores and periods, not starting with AWS. or Amazon."
        )))
    }
}

/// The attributes of a request (`{name: {DataType, StringValue | BinaryValue}}`),
/// checked as SQS checks them.
pub fn parse(input: &Value) -> Result<Attributes, AwsError> {
    let Some(map) = input.as_object() else {
        return Ok(Attributes::new());
    };
    if map.len() > MAX_ATTRIBUTES {
        return Err(invalid_parameter(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
            map.len()
        )));
    }
    let mut attributes = Attributes::new();
    for (name, value) in map {
        check_name(name)?;
        let data_type = value["DataType"].as_str().unwrap_or_default();
        let base = data_type.split('.').next().unwrap_or_default();
        let missing = || {
            invalid_parameter(format!(
                "The message attribute '{name}' must contain a non-empty message attribute value for message attribute type '{data_type}'."
            ))
        };
        let parsed = match base {
            "String" | "Number" => {
                let string = value["StringValue"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(missing)?;
                if base == "Number" && string.trim().parse::<f64>().is_err() {
                    return Err(invalid_parameter(format!(
                        "Can't cast the value of message (user) attribute '{name}' to a number."
                    )));
                }
                AttributeValue {
                    data_type: data_type.to_owned(),
                    string: Some(string.to_owned()),
                    binary: None,
                }
            }
            "Binary" => {
                let binary = value["BinaryValue"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(missing)?;
                base64::engine::general_purpose::STANDARD
                    .decode(binary)
                    .map_err(|_| {
                        invalid_parameter(format!(
                            "The binary value of message attribute '{name}' is not base64."
                        ))
                    })?;
                AttributeValue {
                    data_type: data_type.to_owned(),
                    string: None,
                    binary: Some(binary.to_owned()),
                }
            }
            _ => {
                return Err(invalid_parameter(format!(
                    "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
                )));
            }
        };
        attributes.insert(name.clone(), parsed);
    }
    Ok(attributes)
}

fn decoded(value: &AttributeValue) -> Vec<u8> {
    match (&value.string, &value.binary) {
        (Some(string), _) => string.as_bytes().to_vec(),
        (None, Some(binary)) => base64::engine::general_purpose::STANDARD
            .decode(binary)
            .unwrap_or_default(),
        (None, None) => Vec::new(),
    }
}

/// The bytes attributes add to a message's size: names, types and values.
pub fn size(attributes: &Attributes) -> usize {
    attributes
        .iter()
        .map(|(name, value)| name.len() + value.data_type.len() + decoded(value).len())
        .sum()
}

pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SQS's digest of message attributes: for each name in order, its length-prefixed
/// name, data type, a transport byte (1 string, 2 binary) and length-prefixed value.
pub fn md5_of(attributes: &Attributes) -> Option<String> {
    fn prefixed(digest: &mut Md5, bytes: &[u8]) {
        digest.update((bytes.len() as u32).to_be_bytes());
        digest.update(bytes);
    }
    if attributes.is_empty() {
        return None;
    }
    let mut digest = Md5::new();
    for (name, value) in attributes {
        prefixed(&mut digest, name.as_bytes());
        prefixed(&mut digest, value.data_type.as_bytes());
        digest.update([if value.string.is_some() { 1u8 } else { 2 }]);
        prefixed(&mut digest, &decoded(value));
    }
    Some(hex(&digest.finalize()))
}

/// Attributes as the JSON protocol writes them.
pub fn to_json(attributes: &Attributes) -> Value {
    let mut map = serde_json::Map::new();
    for (name, value) in attributes {
        let mut out = json!({ "DataType": value.data_type });
        if let Some(string) = &value.string {
            out["StringValue"] = string.as_str().into();
        }
        if let Some(binary) = &value.binary {
            out["BinaryValue"] = binary.as_str().into();
        }
        map.insert(name.clone(), out);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_what_sdks_compute() {
        // botocore's own test vector for its MD5 check of message attributes.
        let attributes = parse(&json!({
            "test": {"DataType": "String", "StringValue": "test"},
            "number": {"DataType": "Number", "StringValue": "1"},
            "binary": {"DataType": "Binary", "BinaryValue": "Ynl0ZXM="},
        }))
        .unwrap();
        let mut expected = Vec::new();
        for (name, ty, transport, value) in [
            ("binary", "Binary", 2u8, b"bytes".as_slice()),
            ("number", "Number", 1, b"1"),
            ("test", "String", 1, b"test"),
        ] {
            for part in [name.as_bytes(), ty.as_bytes()] {
                expected.extend((part.len() as u32).to_be_bytes());
                expected.extend(part);
            }
            expected.push(transport);
            expected.extend((value.len() as u32).to_be_bytes());
            expected.extend(value);
        }
        assert_eq!(md5_of(&attributes).unwrap(), md5_hex(&expected));
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(md5_of(&Attributes::new()), None);
    }

    #[test]
    fn attributes_are_checked() {
        for bad in [
            json!({"AWS.x": {"DataType": "String", "StringValue": "v"}}),
            json!({"a": {"DataType": "String"}}),
            json!({"a": {"DataType": "Number", "StringValue": "one"}}),
            json!({"a": {"DataType": "Date", "StringValue": "x"}}),
            json!({"a..b": {"DataType": "String", "StringValue": "x"}}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        let many: serde_json::Map<String, Value> = (0..11)
            .map(|i| {
                (
                    format!("a{i}"),
                    json!({"DataType": "String", "StringValue": "v"}),
                )
            })
            .collect();
        assert!(parse(&Value::Object(many)).is_err());
        let custom = parse(&json!({"a": {"DataType": "Number.int", "StringValue": "2"}})).unwrap();
        assert_eq!(size(&custom), 1 + 10 + 1);
    }
}
