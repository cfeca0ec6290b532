//! Scheduler's JSON shapes (botocore's `scheduler` 2021-06-30 model) and the checks
//! AWS makes on them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::validation;
use crate::expression::{Expression, time_zone};
use nimbus_edge::AwsError;

pub const DEFAULT_GROUP: &str = "default";
pub const DEFAULT_RETRY_ATTEMPTS: i64 = 185;
pub const DEFAULT_EVENT_AGE_SECONDS: i64 = 86_400;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    pub arn: String,
    pub role_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_policy: Option<RetryPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_config: Option<DeadLetterConfig>,
    /// Parameters for targets other than Lambda (ECS, SQS, Kinesis, ...), refused.
    #[serde(flatten, skip_serializing)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl Target {
    pub fn retry_attempts(&self) -> i64 {
        self.retry_policy
            .as_ref()
            .and_then(|p| p.maximum_retry_attempts)
            .unwrap_or(DEFAULT_RETRY_ATTEMPTS)
    }

    pub fn max_age_ms(&self) -> i64 {
        self.retry_policy
            .as_ref()
            .and_then(|p| p.maximum_event_age_in_seconds)
            .unwrap_or(DEFAULT_EVENT_AGE_SECONDS)
            * 1000
    }

    pub fn dead_letter(&self) -> Option<&str> {
        self.dead_letter_config.as_ref()?.arn.as_deref()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FlexibleTimeWindow {
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_window_in_minutes: Option<i64>,
}

/// What CreateSchedule and UpdateSchedule carry in their bodies; also what a stored
/// schedule keeps of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_after_completion: Option<String>,
    #[serde(default, skip_serializing)]
    pub client_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds since the epoch, as rest-json sends timestamps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_date: Option<f64>,
    pub flexible_time_window: FlexibleTimeWindow,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,
    pub schedule_expression: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_expression_timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    pub target: Target,
}

/// Where a schedule's target and dead-letter ARNs may point, as the deployment sees it.
pub trait ArnCheck {
    fn check_target(&self, arn: &str) -> Result<(), String>;
    fn check_dead_letter(&self, arn: &str) -> Result<(), String>;
}

pub fn check_name(field: &str, name: &str) -> Result<(), AwsError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(validation(format!(
            "{field} '{name}' must be 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn in_range(field: &str, value: Option<i64>, low: i64, high: i64) -> Result<(), AwsError> {
    match value {
        Some(v) if !(low..=high).contains(&v) => Err(validation(format!(
            "{field} must be between {low} and {high}, not {v}"
        ))),
        _ => Ok(()),
    }
}

fn is_role_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws:iam::") else {
        return false;
    };
    let Some((account, path)) = rest.split_once(":role/") else {
        return false;
    };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@/-".contains(&b))
}

impl ScheduleSpec {
    /// Checks the spec as AWS would and fills in AWS's defaults; `now` is in ms.
    pub fn validate(mut self, checks: &dyn ArnCheck, now: i64) -> Result<Self, AwsError> {
        if let Some(group) = &self.group_name {
            check_name("GroupName", group)?;
        }
        if self.description.as_ref().is_some_and(|d| d.len() > 512) {
            return Err(validation("Description must be at most 512 characters"));
        }
        if self.schedule_expression.len() > 256 {
            return Err(validation(
                "ScheduleExpression must be at most 256 characters",
            ));
        }
        Expression::parse(&self.schedule_expression).map_err(validation)?;
        time_zone(self.schedule_expression_timezone.as_deref()).map_err(validation)?;
        if let (Some(start), Some(end)) = (self.start_date, self.end_date)
            && start >= end
        {
            return Err(validation("The StartDate must come before the EndDate."));
        }
        if self.end_date.is_some_and(|end| end * 1000.0 < now as f64) {
            return Err(validation(
                "The EndDate you specify cannot be earlier than the current date.",
            ));
        }
        if self
            .start_date
            .is_some_and(|start| start * 1000.0 < (now - 5 * 60_000) as f64)
        {
            return Err(validation(
                "The StartDate you specify cannot be earlier than 5 minutes ago.",
            ));
        }
        let window = &self.flexible_time_window;
        match (window.mode.as_str(), window.maximum_window_in_minutes) {
            ("OFF", None) => {}
            ("OFF", Some(_)) => {
                return Err(validation(
                    "MaximumWindowInMinutes is only allowed when FlexibleTimeWindow.Mode is FLEXIBLE",
                ));
            }
            ("FLEXIBLE", Some(minutes)) => {
                in_range("MaximumWindowInMinutes", Some(minutes), 1, 1440)?;
            }
            ("FLEXIBLE", None) => {
                return Err(validation(
                    "MaximumWindowInMinutes is required when FlexibleTimeWindow.Mode is FLEXIBLE",
                ));
            }
            (mode, _) => {
                return Err(validation(format!(
                    "FlexibleTimeWindow.Mode must be OFF or FLEXIBLE, not {mode}"
                )));
            }
        }
        let state = self.state.get_or_insert_with(|| "ENABLED".to_owned());
        if !matches!(state.as_str(), "ENABLED" | "DISABLED") {
            return Err(validation(format!(
                "State must be ENABLED or DISABLED, not {state}"
            )));
        }
        let action = self
            .action_after_completion
            .get_or_insert_with(|| "NONE".to_owned());
        if !matches!(action.as_str(), "NONE" | "DELETE") {
            return Err(validation(format!(
                "ActionAfterCompletion must be NONE or DELETE, not {action}"
            )));
        }
        let target = &mut self.target;
        if let Some(name) = target.other.keys().next() {
            return Err(validation(format!(
                "Target.{name} is not supported: nimbus's Scheduler delivers to Lambda functions"
            )));
        }
        checks.check_target(&target.arn).map_err(validation)?;
        if !is_role_arn(&target.role_arn) {
            return Err(validation(format!(
                "Target.RoleArn '{}' is not an IAM role ARN",
                target.role_arn
            )));
        }
        if target.input.as_ref().is_some_and(String::is_empty) {
            return Err(validation("Target.Input must not be empty"));
        }
        let policy = target.retry_policy.get_or_insert(RetryPolicy {
            maximum_event_age_in_seconds: None,
            maximum_retry_attempts: None,
        });
        in_range(
            "RetryPolicy.MaximumRetryAttempts",
            policy.maximum_retry_attempts,
            0,
            185,
        )?;
        in_range(
            "RetryPolicy.MaximumEventAgeInSeconds",
            policy.maximum_event_age_in_seconds,
            60,
            86_400,
        )?;
        policy
            .maximum_retry_attempts
            .get_or_insert(DEFAULT_RETRY_ATTEMPTS);
        policy
            .maximum_event_age_in_seconds
            .get_or_insert(DEFAULT_EVENT_AGE_SECONDS);
        if let Some(arn) = target.dead_letter() {
            checks.check_dead_letter(arn).map_err(validation)?;
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGroupInput {
    #[serde(default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInput {
    pub tags: Vec<Tag>,
}

pub fn check_tags(tags: &[Tag]) -> Result<(), AwsError> {
    if tags.len() > 200 {
        return Err(validation("A resource can have at most 200 tags"));
    }
    for tag in tags {
        if !(1..=128).contains(&tag.key.len()) || tag.value.len() > 256 {
            return Err(validation(format!(
                "Tag '{}': keys are 1 to 128 characters, values at most 256",
                tag.key
            )));
        }
    }
    Ok(())
}
