//! What a target receives of an event: all of it, `Input` (fixed JSON), `InputPath`
//! (one part of it) or `InputTransformer` (parts picked by `InputPathsMap` and put
//! into `InputTemplate`'s `<name>` placeholders), as EventBridge shapes it.

use serde_json::Value;

/// The value a JSONPath of the simple form EventBridge accepts (`$`, `$.detail.id`,
/// `$.resources[0]`) selects, if any.
pub fn select<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    let rest = path.strip_prefix('$')?;
    let mut value = event;
    for step in rest.split('.').skip(1) {
        let (name, index) = match step.split_once('[') {
            Some((name, index)) => (name, index.strip_suffix(']')?.parse::<usize>().ok()),
            None => (step, None),
        };
        if !name.is_empty() {
            value = value.get(name)?;
        }
        if let Some(index) = index {
            value = value.get(index)?;
        }
    }
    (rest.is_empty() || rest.starts_with('.')).then_some(value)
}

/// Whether a path is one `select` reads.
pub fn valid_path(path: &str) -> bool {
    path == "$" || (path.starts_with("$.") && !path.ends_with('.') && !path.contains(".."))
}

/// `template` with each `<name>` replaced by what `paths[name]` selects of `event`
/// (and `<aws.events.*>` by the event's own facts). Inside a JSON string a value goes
/// in as its text; elsewhere as JSON, so a template of JSON stays JSON. A path that
/// selects nothing gives `null` (an empty string inside quotes).
pub fn fill(
    template: &str,
    paths: &serde_json::Map<String, Value>,
    event: &Value,
    rule: &str,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
            && let Some(value) = placeholder(&rest[1..end], paths, event, rule)
        {
            match (&value, in_string) {
                (Value::String(text), true) => out.push_str(&escape(text)),
                (Value::Null, true) => {}
                (other, true) => out.push_str(&escape(&other.to_string())),
                (other, false) => out.push_str(&other.to_string()),
            }
            rest = &rest[end + 1..];
            continue;
        }
        if in_string && !escaped && c == '"' {
            in_string = false;
        } else if !in_string && c == '"' {
            in_string = true;
        }
        escaped = in_string && !escaped && c == '\\';
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The value of one placeholder, or `None` when it names nothing (left as written).
fn placeholder(
    name: &str,
    paths: &serde_json::Map<String, Value>,
    event: &Value,
    rule: &str,
) -> Option<Value> {
    match name {
        "aws.events.event" | "aws.events.event.json" => Some(event.clone()),
        "aws.events.rule-arn" => Some(Value::String(rule.to_owned())),
        "aws.events.rule-name" => Some(Value::String(rule.rsplit('/').next()?.to_owned())),
        "aws.events.event.ingestion-time" => Some(event["time"].clone()),
        _ => {
            let path = paths.get(name)?.as_str()?;
            Some(select(event, path).cloned().unwrap_or(Value::Null))
        }
    }
}

/// `text` escaped as the inside of a JSON string.
fn escape(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_select_parts_of_the_event() {
        let event = json!({"detail": {"id": 7, "tags": ["a", "b"]}, "resources": ["r0"]});
        assert_eq!(select(&event, "$"), Some(&event));
        assert_eq!(select(&event, "$.detail.id"), Some(&json!(7)));
        assert_eq!(select(&event, "$.detail.tags[1]"), Some(&json!("b")));
        assert_eq!(select(&event, "$.resources[0]"), Some(&json!("r0")));
        assert_eq!(select(&event, "$.detail.missing"), None);
        assert!(valid_path("$.detail.id") && !valid_path("detail") && !valid_path("$..x"));
    }

    #[test]
    fn templates_take_values_as_json_or_as_text_inside_strings() {
        let event = json!({"detail": {"id": 7, "name": "o\"k", "item": {"n": 1}}, "time": "T"});
        let paths = json!({"id": "$.detail.id", "name": "$.detail.name", "item": "$.detail.item",
                           "none": "$.detail.none"});
        let paths = paths.as_object().unwrap();
        let filled = fill(
            r#"{"id": <id>, "says": "order <id> for <name>", "item": <item>, "none": <none>, "rule": "<aws.events.rule-name>"}"#,
            paths,
            &event,
            "arn:aws:events:us-east-1:000000000000:rule/orders",
        );
        let parsed: Value = serde_json::from_str(&filled).unwrap();
        assert_eq!(
            parsed,
            json!({"id": 7, "says": "order 7 for o\"k", "item": {"n": 1}, "none": null, "rule": "orders"})
        );
        assert_eq!(
            fill("Order <id> shipped", paths, &event, "r"),
            "Order 7 shipped"
        );
        assert_eq!(
            fill("<unknown> stays", paths, &event, "r"),
            "<unknown> stays"
        );
    }
}
