//! Event patterns, as event source mappings' `FilterCriteria`, SNS filter policies and
//! EventBridge rules write them: an object whose keys name fields of the event and whose values are
//! either nested patterns or lists of matchers, any of which may match: literals,
//! `prefix`, `suffix`, `anything-but`, `numeric`, `exists`, `equals-ignore-case` and
//! `wildcard`. A `$or` key holds a list of patterns, any of which may match at its
//! level.

use serde_json::Value;

/// Whether a pattern is well-formed: an object of nested objects and matcher lists.
pub fn valid(pattern: &Value) -> bool {
    pattern.as_object().is_some_and(|fields| {
        fields.iter().all(|(key, value)| match value {
            Value::Array(alternatives) if key == "$or" => {
                !alternatives.is_empty() && alternatives.iter().all(valid)
            }
            Value::Object(_) => valid(value),
            Value::Array(matchers) => !matchers.is_empty() && matchers.iter().all(valid_matcher),
            _ => false,
        })
    })
}

fn valid_matcher(matcher: &Value) -> bool {
    let Value::Object(rule) = matcher else {
        return true;
    };
    rule.len() == 1
        && rule.iter().all(|(kind, operand)| match kind.as_str() {
            "prefix" | "suffix" | "equals-ignore-case" | "wildcard" => operand.is_string(),
            "exists" => operand.is_boolean(),
            "anything-but" => true,
            "numeric" => operand.as_array().is_some_and(|terms| {
                terms.len() % 2 == 0
                    && terms.chunks(2).all(|pair| {
                        matches!(pair[0].as_str(), Some("<" | "<=" | "=" | ">" | ">="))
                            && pair[1].is_number()
                    })
            }),
            _ => false,
        })
}

/// Whether `event` matches `pattern`.
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, wanted)| {
        if key == "$or" {
            return wanted
                .as_array()
                .is_some_and(|alternatives| alternatives.iter().any(|p| matches(p, event)));
        }
        let found = event.get(key);
        match wanted {
            Value::Object(_) => found.is_some_and(|value| matches(wanted, value)),
            Value::Array(matchers) => matchers.iter().any(|m| matcher(m, found)),
            _ => false,
        }
    })
}

fn matcher(matcher: &Value, found: Option<&Value>) -> bool {
    if let Some(exists) = matcher.get("exists").and_then(Value::as_bool) {
        return exists == found.is_some_and(|v| !v.is_null());
    }
    match found {
        None => false,
        Some(Value::Array(items)) => items.iter().any(|item| single(matcher, item)),
        Some(value) => single(matcher, value),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn single(matcher: &Value, value: &Value) -> bool {
    let Value::Object(rule) = matcher else {
        return equal(matcher, value);
    };
    let text = value.as_str();
    rule.iter().all(|(kind, operand)| match kind.as_str() {
        "prefix" => text
            .zip(operand.as_str())
            .is_some_and(|(t, p)| t.starts_with(p)),
        "suffix" => text
            .zip(operand.as_str())
            .is_some_and(|(t, s)| t.ends_with(s)),
        "equals-ignore-case" => text
            .zip(operand.as_str())
            .is_some_and(|(t, o)| t.eq_ignore_ascii_case(o)),
        "wildcard" => text
            .zip(operand.as_str())
            .is_some_and(|(t, w)| wildcard(w, t)),
        "anything-but" => match operand {
            Value::Array(values) => !values.iter().any(|v| equal(v, value)),
            Value::Object(_) => !single(operand, value),
            other => !equal(other, value),
        },
        "numeric" => value.as_f64().is_some_and(|n| {
            operand.as_array().is_some_and(|terms| {
                terms.chunks(2).all(|pair| {
                    let bound = pair.get(1).and_then(Value::as_f64).unwrap_or(f64::NAN);
                    match pair[0].as_str() {
                        Some("<") => n < bound,
                        Some("<=") => n <= bound,
                        Some("=") => n == bound,
                        Some(">") => n > bound,
                        Some(">=") => n >= bound,
                        _ => false,
                    }
                })
            })
        }),
        _ => false,
    })
}

/// `*` matches any run of characters.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_as_eventbridge_documents() {
        let event = json!({
            "body": {"kind": "order", "total": 120, "tags": ["a", "b"], "region": "eu-west-1"},
            "attributes": {"ApproximateReceiveCount": "1"},
        });
        for (pattern, expected) in [
            (json!({"body": {"kind": ["order"]}}), true),
            (json!({"body": {"kind": ["refund"]}}), false),
            (
                json!({"body": {"total": [{"numeric": [">", 100, "<=", 200]}]}}),
                true,
            ),
            (json!({"body": {"total": [{"numeric": ["<", 100]}]}}), false),
            (json!({"body": {"tags": ["b"]}}), true),
            (json!({"body": {"region": [{"prefix": "eu-"}]}}), true),
            (json!({"body": {"region": [{"suffix": "-1"}]}}), true),
            (
                json!({"body": {"kind": [{"anything-but": ["order", "x"]}]}}),
                false,
            ),
            (
                json!({"body": {"kind": [{"anything-but": {"prefix": "ref"}}]}}),
                true,
            ),
            (json!({"body": {"missing": [{"exists": false}]}}), true),
            (json!({"body": {"kind": [{"exists": true}]}}), true),
            (
                json!({"body": {"kind": [{"equals-ignore-case": "ORDER"}]}}),
                true,
            ),
            (json!({"body": {"region": [{"wildcard": "eu-*-1"}]}}), true),
            (
                json!({"attributes": {"ApproximateReceiveCount": ["1"]}}),
                true,
            ),
            (
                json!({"body": {"$or": [{"kind": ["refund"]}, {"total": [{"numeric": [">", 100]}]}]}}),
                true,
            ),
            (
                json!({"body": {"$or": [{"kind": ["refund"]}, {"total": [{"numeric": ["<", 100]}]}]}}),
                false,
            ),
        ] {
            assert!(valid(&pattern), "{pattern}");
            assert_eq!(matches(&pattern, &event), expected, "{pattern}");
        }
        assert!(!valid(&json!({"body": "order"})));
        assert!(!valid(&json!({"body": {"total": [{"numeric": [">"]}]}})));
        assert!(!valid(&json!(["x"])));
        assert!(!valid(&json!({"$or": []})));
    }
}
