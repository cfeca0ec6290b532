//! EventBridge's API (json-1.1, `AWSEvents.*`): buses and their policies, rules,
//! targets, `PutEvents`, `TestEventPattern`, archives and replays.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use nimbus_edge::protocol::json11;
use nimbus_edge::{
    Authorization, AwsError, Check, NamedCall, NamedOperation, OperationDoc, RequestContext,
    Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use serde_json::{Value, json};

use crate::archives::{Archive, Replay};
use crate::{DEFAULT_BUS, Events, Rule, bus_name, check_pattern, internal, invalid};

/// The ARNs the operations act on, as AWS's authorization reference writes them.
const BUS: &str = "arn:${Partition}:events:${Region}:${Account}:event-bus/${EventBusName}";
const RULE: &str =
    "arn:${Partition}:events:${Region}:${Account}:rule/[${EventBusName}/]${RuleName}";
const ARCHIVE: &str = "arn:${Partition}:events:${Region}:${Account}:archive/${ArchiveName}";
const REPLAY: &str = "arn:${Partition}:events:${Region}:${Account}:replay/${ReplayName}";
const ANY: &str = "*";

const OPERATIONS: &[NamedOperation] = &[
    named(
        "CreateEventBus",
        Authorization::new("events:CreateEventBus", BUS),
    ),
    named(
        "DeleteEventBus",
        Authorization::new("events:DeleteEventBus", BUS),
    ),
    named(
        "DescribeEventBus",
        Authorization::new("events:DescribeEventBus", BUS),
    ),
    named(
        "ListEventBuses",
        Authorization::new("events:ListEventBuses", ANY),
    ),
    named(
        "PutPermission",
        Authorization::new("events:PutPermission", BUS),
    ),
    named(
        "RemovePermission",
        Authorization::new("events:RemovePermission", BUS),
    ),
    named("PutRule", Authorization::new("events:PutRule", RULE)),
    named(
        "DescribeRule",
        Authorization::new("events:DescribeRule", RULE),
    ),
    named("ListRules", Authorization::new("events:ListRules", ANY)),
    named("DeleteRule", Authorization::new("events:DeleteRule", RULE)),
    named("EnableRule", Authorization::new("events:EnableRule", RULE)),
    named(
        "DisableRule",
        Authorization::new("events:DisableRule", RULE),
    ),
    named("PutTargets", Authorization::new("events:PutTargets", RULE)),
    named(
        "RemoveTargets",
        Authorization::new("events:RemoveTargets", RULE),
    ),
    named(
        "ListTargetsByRule",
        Authorization::new("events:ListTargetsByRule", RULE),
    ),
    named("PutEvents", Authorization::new("events:PutEvents", BUS)),
    named(
        "TestEventPattern",
        Authorization::new("events:TestEventPattern", ANY),
    ),
    named(
        "CreateArchive",
        Authorization::new("events:CreateArchive", ARCHIVE),
    ),
    named(
        "DescribeArchive",
        Authorization::new("events:DescribeArchive", ARCHIVE),
    ),
    named(
        "UpdateArchive",
        Authorization::new("events:UpdateArchive", ARCHIVE),
    ),
    named(
        "DeleteArchive",
        Authorization::new("events:DeleteArchive", ARCHIVE),
    ),
    named(
        "ListArchives",
        Authorization::new("events:ListArchives", ANY),
    ),
    named(
        "StartReplay",
        Authorization::new("events:StartReplay", REPLAY),
    ),
    named(
        "DescribeReplay",
        Authorization::new("events:DescribeReplay", REPLAY),
    ),
    named(
        "CancelReplay",
        Authorization::new("events:CancelReplay", REPLAY),
    ),
    named("ListReplays", Authorization::new("events:ListReplays", ANY)),
];

/// Entries per `PutEvents`, and their total size.
const MAX_ENTRIES: usize = 10;
const MAX_ENTRIES_BYTES: usize = 256 * 1024;

pub struct EventsApi {
    events: Arc<Events>,
}

impl EventsApi {
    pub fn new(events: Arc<Events>) -> Self {
        Self { events }
    }
}

fn text<'a>(input: &'a Value, name: &str) -> Option<&'a str> {
    input[name].as_str()
}

fn required<'a>(input: &'a Value, name: &str) -> Result<&'a str, AwsError> {
    text(input, name).ok_or_else(|| {
        invalid(format!(
            "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
            name[..1].to_ascii_lowercase() + &name[1..]
        ))
    })
}

/// The bus a request names (`EventBusName`, a name or ARN), `default` unless named.
fn bus_of(input: &Value) -> &str {
    bus_name(text(input, "EventBusName").unwrap_or(DEFAULT_BUS))
}

/// The rule a request names: `Name` for the rule's own operations, `Rule` for its
/// targets'.
fn rule_of(input: &Value) -> Result<&str, AwsError> {
    text(input, "Name")
        .or_else(|| text(input, "Rule"))
        .map_or_else(|| required(input, "Name"), Ok)
}

fn rule_json(events: &Events, rule: &Rule) -> Value {
    let mut out = json!({
        "Name": rule.name,
        "Arn": events.rule_arn(&rule.bus, &rule.name),
        "State": rule.state,
        "EventBusName": rule.bus,
    });
    for (field, value) in [
        ("EventPattern", &rule.pattern),
        ("Description", &rule.description),
        ("RoleArn", &rule.role_arn),
    ] {
        if let Some(value) = value {
            out[field] = value.as_str().into();
        }
    }
    out
}

/// What `PutPermission` asks: a whole policy, or one statement letting an account
/// (or anyone, `*`) put events on the bus, perhaps on a condition.
enum Permission {
    Whole(Vec<Value>),
    Statement(Value),
}

fn permission(events: &Events, bus: &str, input: &Value) -> Result<Permission, AwsError> {
    if let Some(policy) = text(input, "Policy") {
        let statements = serde_json::from_str::<Value>(policy)
            .ok()
            .and_then(|p| p["Statement"].as_array().cloned())
            .ok_or_else(|| invalid("Policy is not a valid policy document."))?;
        return Ok(Permission::Whole(statements));
    }
    let id = required(input, "StatementId")?;
    if id.is_empty() || id.len() > 64 {
        return Err(invalid("StatementId must be 1 to 64 characters."));
    }
    if text(input, "Action").unwrap_or("events:PutEvents") != "events:PutEvents" {
        return Err(invalid(
            "Provided value in parameter 'action' is not supported.",
        ));
    }
    let principal = match required(input, "Principal")? {
        "*" => json!("*"),
        account if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()) => {
            json!({ "AWS": format!("arn:aws:iam::{account}:root") })
        }
        other => {
            return Err(invalid(format!(
                "Principal {other} is not an account id or *."
            )));
        }
    };
    let mut statement = json!({
        "Sid": id, "Effect": "Allow", "Principal": principal, "Action": "events:PutEvents",
        "Resource": events.bus_arn(bus),
    });
    let condition = &input["Condition"];
    if let (Some(kind), Some(key), Some(value)) = (
        condition["Type"].as_str(),
        condition["Key"].as_str(),
        condition["Value"].as_str(),
    ) {
        statement["Condition"] = json!({ kind: { key: value } });
    }
    Ok(Permission::Statement(statement))
}

fn set_state(events: &Events, input: &Value, state: &str) -> Result<Value, AwsError> {
    events.update_rule(bus_of(input), rule_of(input)?, |rule| {
        rule.state = state.to_owned();
        Ok(())
    })?;
    Ok(json!({}))
}

impl EventsApi {
    fn call(&self, ctx: &RequestContext, name: &str, input: &Value) -> Result<Value, AwsError> {
        let events = &self.events;
        Ok(match name {
            "CreateEventBus" => {
                let bus =
                    events.create_bus(required(input, "Name")?, text(input, "Description"))?;
                json!({ "EventBusArn": events.bus_arn(&bus.name) })
            }
            "DeleteEventBus" => {
                events.delete_bus(required(input, "Name")?)?;
                json!({})
            }
            "DescribeEventBus" => {
                let bus = events.bus(bus_name(text(input, "Name").unwrap_or(DEFAULT_BUS)))?;
                let mut out = json!({ "Name": bus.name, "Arn": events.bus_arn(&bus.name) });
                if let Some(description) = &bus.description {
                    out["Description"] = description.as_str().into();
                }
                if bus.created > 0.0 {
                    out["CreationTime"] = bus.created.into();
                }
                if let Some(policy) = &bus.policy {
                    out["Policy"] = policy.as_str().into();
                }
                out
            }
            "PutPermission" => {
                let bus = bus_of(input);
                let statement = permission(events, bus, input)?;
                events.change_policy(bus, |statements| {
                    match &statement {
                        Permission::Whole(policy) => *statements = policy.clone(),
                        Permission::Statement(statement) => {
                            statements.retain(|s| s["Sid"] != statement["Sid"]);
                            statements.push(statement.clone());
                        }
                    }
                    Ok(())
                })?;
                json!({})
            }
            "RemovePermission" => {
                let all = input["RemoveAllPermissions"].as_bool().unwrap_or(false);
                let id = text(input, "StatementId");
                events.change_policy(bus_of(input), |statements| {
                    if all {
                        statements.clear();
                        return Ok(());
                    }
                    let before = statements.len();
                    statements.retain(|s| s["Sid"].as_str() != id);
                    if statements.len() == before {
                        return Err(crate::not_found(
                            "Statement with the provided id does not exist.",
                        ));
                    }
                    Ok(())
                })?;
                json!({})
            }
            "ListEventBuses" => {
                let prefix = text(input, "NamePrefix").unwrap_or_default();
                let buses: Vec<Value> = events
                    .buses()?
                    .into_iter()
                    .filter(|bus| bus.name.starts_with(prefix))
                    .map(|bus| json!({ "Name": bus.name, "Arn": events.bus_arn(&bus.name) }))
                    .collect();
                json!({ "EventBuses": buses })
            }
            "PutRule" => {
                let arn = events.put_rule(Rule {
                    name: required(input, "Name")?.to_owned(),
                    bus: bus_of(input).to_owned(),
                    pattern: text(input, "EventPattern").map(str::to_owned),
                    schedule: text(input, "ScheduleExpression").map(str::to_owned),
                    state: text(input, "State").unwrap_or("ENABLED").to_owned(),
                    description: text(input, "Description").map(str::to_owned),
                    role_arn: text(input, "RoleArn").map(str::to_owned),
                    targets: Vec::new(),
                })?;
                json!({ "RuleArn": arn })
            }
            "DescribeRule" => {
                let (rule, _) = events.rule(bus_of(input), rule_of(input)?)?;
                let mut out = rule_json(events, &rule);
                out["CreatedBy"] = ctx.account_id.as_ref().into();
                out
            }
            "ListRules" => {
                let prefix = text(input, "NamePrefix").unwrap_or_default();
                let rules: Vec<Value> = events
                    .rules(bus_of(input))?
                    .iter()
                    .filter(|rule| rule.name.starts_with(prefix))
                    .map(|rule| rule_json(events, rule))
                    .collect();
                json!({ "Rules": rules })
            }
            "DeleteRule" => {
                let force = input["Force"].as_bool().unwrap_or(false);
                events.delete_rule(bus_of(input), rule_of(input)?, force)?;
                json!({})
            }
            "EnableRule" => set_state(events, input, "ENABLED")?,
            "DisableRule" => set_state(events, input, "DISABLED")?,
            "PutTargets" => {
                let targets = input["Targets"].as_array().cloned().unwrap_or_default();
                if targets.is_empty() || targets.len() > 10 {
                    return Err(invalid(
                        "1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length between 1 and 10",
                    ));
                }
                let failed = events.put_targets(bus_of(input), rule_of(input)?, &targets)?;
                json!({ "FailedEntryCount": failed.len(), "FailedEntries": failed })
            }
            "RemoveTargets" => {
                let ids: Vec<&str> = input["Ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                events.remove_targets(bus_of(input), rule_of(input)?, &ids)?;
                json!({ "FailedEntryCount": 0, "FailedEntries": [] })
            }
            "ListTargetsByRule" => {
                let (rule, _) = events.rule(bus_of(input), rule_of(input)?)?;
                json!({ "Targets": rule.targets })
            }
            "PutEvents" => {
                let entries = input["Entries"].as_array().cloned().unwrap_or_default();
                if entries.is_empty() || entries.len() > MAX_ENTRIES {
                    return Err(invalid(format!(
                        "1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and {MAX_ENTRIES}"
                    )));
                }
                let size: usize = entries.iter().map(entry_size).sum();
                if size > MAX_ENTRIES_BYTES {
                    return Err(invalid(
                        "Total size of the entries in the request is over the limit.",
                    ));
                }
                let results = events.put_events(&entries)?;
                let failed = results
                    .iter()
                    .filter(|r| r["ErrorCode"].is_string())
                    .count();
                json!({ "FailedEntryCount": failed, "Entries": results })
            }
            "TestEventPattern" => {
                let pattern = required(input, "EventPattern")?;
                check_pattern(pattern)?;
                let event: Value = serde_json::from_str(required(input, "Event")?)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| invalid("Parameter Event is not valid."))?;
                let pattern: Value = serde_json::from_str(pattern).map_err(internal)?;
                json!({ "Result": nimbus_patterns::matches(&pattern, &event) })
            }
            "CreateArchive" => {
                let archive = events.create_archive(Archive {
                    name: required(input, "ArchiveName")?.to_owned(),
                    bus: bus_name(required(input, "EventSourceArn")?).to_owned(),
                    description: text(input, "Description").map(str::to_owned),
                    pattern: text(input, "EventPattern").map(str::to_owned),
                    retention_days: input["RetentionDays"].as_i64().unwrap_or(0),
                    created: crate::now_seconds(),
                })?;
                json!({
                    "ArchiveArn": events.archive_arn(&archive.name), "State": "ENABLED",
                    "CreationTime": archive.created,
                })
            }
            "DescribeArchive" => {
                events.archive_json(&events.archive(required(input, "ArchiveName")?)?.0)?
            }
            "UpdateArchive" => {
                let archive =
                    events.update_archive(required(input, "ArchiveName")?, |archive| {
                        if let Some(description) = text(input, "Description") {
                            archive.description = Some(description.to_owned());
                        }
                        if let Some(pattern) = text(input, "EventPattern") {
                            archive.pattern = Some(pattern.to_owned());
                        }
                        if let Some(days) = input["RetentionDays"].as_i64() {
                            archive.retention_days = days;
                        }
                        Ok(())
                    })?;
                json!({
                    "ArchiveArn": events.archive_arn(&archive.name), "State": "ENABLED",
                    "CreationTime": archive.created,
                })
            }
            "DeleteArchive" => {
                events.delete_archive(required(input, "ArchiveName")?)?;
                json!({})
            }
            "ListArchives" => {
                let prefix = text(input, "NamePrefix").unwrap_or_default();
                let source = text(input, "EventSourceArn").map(bus_name);
                let mut archives = Vec::new();
                for archive in events.archives()? {
                    if archive.name.starts_with(prefix)
                        && source.is_none_or(|bus| bus == archive.bus)
                    {
                        archives.push(events.archive_json(&archive)?);
                    }
                }
                json!({ "Archives": archives })
            }
            "StartReplay" => {
                let source = required(input, "EventSourceArn")?;
                let archive = source
                    .rsplit_once(":archive/")
                    .map_or(source, |(_, name)| name);
                let time = |name: &str| -> Result<i64, AwsError> {
                    input[name]
                        .as_f64()
                        .map(|seconds| (seconds * 1000.0) as i64)
                        .ok_or_else(|| invalid(format!("Parameter {name} is not valid.")))
                };
                let replay = events.start_replay(Replay {
                    name: required(input, "ReplayName")?.to_owned(),
                    archive: archive.to_owned(),
                    description: text(input, "Description").map(str::to_owned),
                    start_ms: time("EventStartTime")?,
                    end_ms: time("EventEndTime")?,
                    destination: input["Destination"].clone(),
                    state: "STARTING".to_owned(),
                    reason: None,
                    started: crate::now_seconds(),
                    ended: None,
                    after: None,
                    last_ms: None,
                })?;
                json!({
                    "ReplayArn": events.replay_arn(&replay.name), "State": replay.state,
                    "ReplayStartTime": replay.started,
                })
            }
            "DescribeReplay" => {
                events.replay_json(&events.replay(required(input, "ReplayName")?)?.0)
            }
            "CancelReplay" => {
                let replay = events.cancel_replay(required(input, "ReplayName")?)?;
                json!({ "ReplayArn": events.replay_arn(&replay.name), "State": replay.state })
            }
            "ListReplays" => {
                let prefix = text(input, "NamePrefix").unwrap_or_default();
                let state = text(input, "State");
                let replays: Vec<Value> = events
                    .replays()?
                    .iter()
                    .filter(|r| r.name.starts_with(prefix) && state.is_none_or(|s| s == r.state))
                    .map(|r| events.replay_json(r))
                    .collect();
                json!({ "Replays": replays })
            }
            other => {
                return Err(AwsError::unknown_operation(
                    nimbus_edge::Protocol::Json11,
                    other,
                ));
            }
        })
    }
}

/// An entry's size as EventBridge counts it: its strings' bytes.
fn entry_size(entry: &Value) -> usize {
    ["Source", "DetailType", "Detail"]
        .iter()
        .filter_map(|field| entry[*field].as_str())
        .map(str::len)
        .sum::<usize>()
        + entry["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::len)
            .sum::<usize>()
        + if entry["Time"].is_null() { 0 } else { 14 }
}

/// The buses or rule a call acts on, as ARNs (`PutEvents` on each entry's bus).
fn resources(ctx: &RequestContext, call: &NamedCall) -> Result<Vec<String>, AwsError> {
    let input = &call.input;
    Ok(match call.authorization.resource {
        ANY => vec![ANY.to_owned()],
        BUS if call.name == "PutEvents" => {
            let mut buses: Vec<String> = input["Entries"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|entry| bus_of(entry).to_owned())
                .collect();
            buses.sort();
            buses.dedup();
            buses
                .iter()
                .map(|bus| ctx.arn("events", &format!("event-bus/{bus}")))
                .collect()
        }
        BUS => {
            let named = text(input, "Name").or_else(|| text(input, "EventBusName"));
            let bus = bus_name(named.unwrap_or(DEFAULT_BUS));
            vec![ctx.arn("events", &format!("event-bus/{bus}"))]
        }
        ARCHIVE => vec![ctx.arn(
            "events",
            &format!("archive/{}", required(input, "ArchiveName")?),
        )],
        REPLAY => vec![ctx.arn(
            "events",
            &format!("replay/{}", required(input, "ReplayName")?),
        )],
        _ => {
            let (bus, rule) = (bus_of(input), rule_of(input)?);
            let path = if bus == DEFAULT_BUS {
                rule.to_owned()
            } else {
                format!("{bus}/{rule}")
            };
            vec![ctx.arn("events", &format!("rule/{path}"))]
        }
    })
}

impl Service for EventsApi {
    type Operation = NamedCall;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::EVENTS
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(OPERATIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<NamedCall, AwsError> {
        let (entry, input) = json11::call(req, OPERATIONS)?;
        Ok(NamedCall {
            name: entry.name,
            authorization: entry.authorization,
            input,
        })
    }

    async fn access(&self, ctx: &RequestContext, call: &NamedCall) -> Result<Vec<Check>, AwsError> {
        let resources = resources(ctx, call)?;
        if call.name != "PutEvents" {
            return Ok(resources.into_iter().map(Check::on).collect());
        }
        // Putting events is also what a bus's own policy may allow, or deny.
        let events = self.events.clone();
        // A policy that cannot be read is not skipped: its Deny would be lost.
        tokio::task::spawn_blocking(move || {
            resources
                .into_iter()
                .map(|arn| {
                    let policy = match events.bus(bus_name(&arn)) {
                        Ok(bus) => bus.policy,
                        Err(err) if err.code == "ResourceNotFoundException" => None,
                        Err(err) => return Err(err),
                    };
                    Ok(Check::on(arn).with_policy(policy))
                })
                .collect()
        })
        .await
        .map_err(internal)?
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        call: NamedCall,
    ) -> Result<Response<Bytes>, AwsError> {
        let api = EventsApi {
            events: self.events.clone(),
        };
        let ctx = ctx.clone();
        let output = tokio::task::spawn_blocking(move || api.call(&ctx, call.name, &call.input))
            .await
            .map_err(|_| {
                AwsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalException",
                    "An internal error occurred.",
                )
            })??;
        Ok(json11::response(&output))
    }
}
