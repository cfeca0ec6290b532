//! Task placement: ECS's cluster query language (`memberOf` constraints and the
//! `filter` of ListContainerInstances) evaluated over container instances, and the
//! checks on placement strategies and constraints.

use serde_json::Value;

/// A parsed cluster query expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
    Not(Box<Query>),
    /// `subject op value`, `subject in [values]`, `subject exists`.
    Compare {
        subject: String,
        op: String,
        values: Vec<String>,
    },
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<String>| {
        if !current.is_empty() {
            out.push(std::mem::take(current));
        }
    };
    for c in text.chars() {
        match c {
            '(' | ')' | '[' | ']' | ',' => {
                flush(&mut current, &mut out);
                out.push(c.to_string());
            }
            c if c.is_whitespace() => flush(&mut current, &mut out),
            c => current.push(c),
        }
    }
    flush(&mut current, &mut out);
    out
}

struct Parser {
    tokens: Vec<String>,
    at: usize,
}

const OPERATORS: &[&str] = &["==", "!=", ">", ">=", "<", "<=", "=~", "!~", "in", "not_in"];

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Result<String, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or("the expression ends too early")?;
        self.at += 1;
        Ok(token)
    }

    fn expect(&mut self, wanted: &str) -> Result<(), String> {
        let token = self.next()?;
        if token == wanted {
            Ok(())
        } else {
            Err(format!("expected {wanted}, found {token}"))
        }
    }

    fn or(&mut self) -> Result<Query, String> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.at += 1;
            left = Query::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, String> {
        let mut left = self.factor()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.at += 1;
            left = Query::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Query, String> {
        match self.peek() {
            Some("not" | "!") => {
                self.at += 1;
                Ok(Query::Not(Box::new(self.factor()?)))
            }
            Some("(") => {
                self.at += 1;
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            _ => self.comparison(),
        }
    }

    fn comparison(&mut self) -> Result<Query, String> {
        let subject = self.next()?;
        let op = self.next()?;
        if op == "exists" || op == "!exists" {
            return Ok(Query::Compare {
                subject,
                op,
                values: Vec::new(),
            });
        }
        if !OPERATORS.contains(&op.as_str()) {
            return Err(format!("unknown operator {op}"));
        }
        let values = if op == "in" || op == "not_in" {
            self.expect("[")?;
            let mut values = Vec::new();
            loop {
                let value = self.next()?;
                if value == "]" {
                    break;
                }
                if value != "," {
                    values.push(value);
                }
            }
            values
        } else {
            vec![self.next()?]
        };
        Ok(Query::Compare {
            subject,
            op,
            values,
        })
    }
}

impl Query {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser {
            tokens: tokens(text),
            at: 0,
        };
        let query = parser.or()?;
        match parser.peek() {
            None => Ok(query),
            Some(extra) => Err(format!("unexpected {extra}")),
        }
    }

    /// Whether a container instance (as DescribeContainerInstances shows it) matches.
    pub fn matches(&self, instance: &Value) -> bool {
        match self {
            Query::And(a, b) => a.matches(instance) && b.matches(instance),
            Query::Or(a, b) => a.matches(instance) || b.matches(instance),
            Query::Not(inner) => !inner.matches(instance),
            Query::Compare {
                subject,
                op,
                values,
            } => {
                let actual = subject_value(subject, instance);
                compare(actual.as_deref(), op, values)
            }
        }
    }
}

/// What a subject names on an instance: an attribute (present without a value as
/// ""), or one of its fields.
fn subject_value(subject: &str, instance: &Value) -> Option<String> {
    if let Some(name) = subject.strip_prefix("attribute:") {
        return instance["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["value"].as_str().unwrap_or_default().to_owned());
    }
    match &instance[subject] {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn compare(actual: Option<&str>, op: &str, values: &[String]) -> bool {
    let Some(actual) = actual else {
        return op == "!exists" || op == "!=" || op == "not_in" || op == "!~";
    };
    let wanted = values.first().map(String::as_str).unwrap_or_default();
    let ordered = || match (actual.parse::<f64>(), wanted.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(actual.cmp(wanted)),
    };
    let regex =
        || regex::Regex::new(&format!("^(?:{wanted})$")).is_ok_and(|re| re.is_match(actual));
    match op {
        "exists" => true,
        "!exists" => false,
        "==" => actual == wanted,
        "!=" => actual != wanted,
        ">" => ordered() == Some(std::cmp::Ordering::Greater),
        ">=" => ordered().is_some_and(|o| o != std::cmp::Ordering::Less),
        "<" => ordered() == Some(std::cmp::Ordering::Less),
        "<=" => ordered().is_some_and(|o| o != std::cmp::Ordering::Greater),
        "=~" => regex(),
        "!~" => !regex(),
        "in" => values.iter().any(|v| v == actual),
        "not_in" => values.iter().all(|v| v != actual),
        _ => false,
    }
}

/// How one RunTask (or a service's) places its tasks.
#[derive(Debug, Default)]
pub struct Placement {
    /// `memberOf` constraints every instance must match.
    pub queries: Vec<Query>,
    /// `distinctInstance`: no two tasks of the group on one instance.
    pub distinct: bool,
    /// The instance of each of the group's live tasks, oldest first (an instance as
    /// often as it runs one).
    pub taken: Vec<String>,
    /// The first strategy decides the order: `binpack` fills the instance with the
    /// least of its field left, `spread` the one running fewest tasks, `random` any.
    pub strategy: Option<(String, String)>,
}

impl Placement {
    pub fn of(constraints: &Value, strategies: &Value) -> Result<Self, String> {
        let (queries, distinct) = check(constraints, strategies)?;
        let strategy = strategies.as_array().and_then(|s| s.first()).map(|s| {
            (
                s["type"].as_str().unwrap_or_default().to_owned(),
                s["field"].as_str().unwrap_or_default().to_ascii_lowercase(),
            )
        });
        Ok(Self {
            queries,
            distinct,
            taken: Default::default(),
            strategy,
        })
    }
}

/// Checks `placementConstraints` and `placementStrategy` as ECS does; the parsed
/// `memberOf` expressions and whether `distinctInstance` is asked for.
fn check(constraints: &Value, strategies: &Value) -> Result<(Vec<Query>, bool), String> {
    let constraints = constraints.as_array().cloned().unwrap_or_default();
    if constraints.len() > 10 {
        return Err("At most 10 placement constraints are allowed.".to_owned());
    }
    let (mut queries, mut distinct) = (Vec::new(), false);
    for constraint in &constraints {
        match (
            constraint["type"].as_str(),
            constraint["expression"].as_str(),
        ) {
            (Some("distinctInstance"), None) => distinct = true,
            (Some("distinctInstance"), Some(_)) => {
                return Err("distinctInstance constraints take no expression.".to_owned());
            }
            (Some("memberOf"), Some(expression)) => queries.push(
                Query::parse(expression)
                    .map_err(|err| format!("Invalid memberOf expression {expression}: {err}"))?,
            ),
            (Some("memberOf"), None) => {
                return Err("memberOf constraints need an expression.".to_owned());
            }
            (kind, _) => return Err(format!("Invalid placement constraint type {kind:?}.")),
        }
    }
    let strategies = strategies.as_array().cloned().unwrap_or_default();
    if strategies.len() > 5 {
        return Err("At most 5 placement strategies are allowed.".to_owned());
    }
    for strategy in &strategies {
        let field = strategy["field"].as_str();
        match (strategy["type"].as_str(), field) {
            (Some("random"), None) => {}
            (Some("binpack"), Some(f))
                if f.eq_ignore_ascii_case("cpu") || f.eq_ignore_ascii_case("memory") => {}
            (Some("spread"), Some(f)) if !f.is_empty() => {}
            (kind, field) => {
                return Err(format!(
                    "Invalid placement strategy {} with field {}.",
                    kind.unwrap_or("(none)"),
                    field.unwrap_or("(none)")
                ));
            }
        }
    }
    Ok((queries, distinct))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> Value {
        json!({
            "ec2InstanceId": "nimbus-node-1",
            "runningTasksCount": 2,
            "agentConnected": true,
            "attributes": [
                {"name": "ecs.os-type", "value": "linux"},
                {"name": "ecs.availability-zone", "value": "us-east-1a"},
                {"name": "ecs.capability.task-iam-role"},
            ],
        })
    }

    #[test]
    fn cluster_queries_match_attributes_and_fields() {
        let cases = [
            ("attribute:ecs.os-type == linux", true),
            ("attribute:ecs.os-type != linux", false),
            (
                "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
                true,
            ),
            ("attribute:ecs.availability-zone not_in [us-east-1a]", false),
            ("attribute:ecs.os-type =~ lin.*", true),
            ("attribute:ecs.capability.task-iam-role exists", true),
            ("attribute:gpu exists", false),
            ("attribute:gpu !exists", true),
            ("runningTasksCount > 1 and agentConnected == true", true),
            (
                "runningTasksCount >= 3 or ec2InstanceId == nimbus-node-1",
                true,
            ),
            ("not(attribute:ecs.os-type == windows)", true),
            (
                "(runningTasksCount < 2 || attribute:gpu exists) && agentConnected == true",
                false,
            ),
        ];
        for (text, expected) in cases {
            let query = Query::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(query.matches(&instance()), expected, "{text}");
        }
        for bad in ["attribute:x", "a ?? b", "a == b c", "(a == b", "a in [b"] {
            assert!(Query::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn placement_settings_are_checked() {
        let (queries, distinct) = check(
            &json!([{"type": "distinctInstance"}, {"type": "memberOf", "expression": "attribute:a == b"}]),
            &json!([{"type": "spread", "field": "attribute:ecs.availability-zone"}, {"type": "binpack", "field": "memory"}, {"type": "random"}]),
        )
        .unwrap();
        assert!(distinct && queries.len() == 1);
        assert!(check(&json!([{"type": "memberOf"}]), &json!([])).is_err());
        assert!(check(&json!([]), &json!([{"type": "binpack", "field": "disk"}])).is_err());
        assert!(check(&json!([]), &json!([{"type": "spread"}])).is_err());
        assert!(check(&json!([{"type": "sometimes"}]), &json!([])).is_err());
    }
}
