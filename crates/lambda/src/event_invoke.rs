//! Per-function settings of asynchronous invocation (Put/Get/Update/Delete/List
//! FunctionEventInvokeConfig): retries, maximum event age, and the destinations that
//! receive an invocation record on success or failure.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{invalid_parameter, not_found, validation};
use crate::functions::Functions;
use crate::names::FunctionRef;
use nimbus_edge::AwsError;

/// Lambda's defaults when a function has no configuration.
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_MAX_AGE_SECS: i64 = 6 * 3600;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Destination {
    pub destination: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Destination>,
}

/// A request body, and what is stored per qualifier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_config: Option<DestinationConfig>,
    #[serde(default)]
    pub last_modified: f64,
}

impl EventInvokeConfig {
    pub fn retries(&self) -> u32 {
        self.maximum_retry_attempts
            .map_or(DEFAULT_RETRIES, |n| n as u32)
    }

    pub fn max_age_ms(&self) -> i64 {
        self.maximum_event_age_in_seconds
            .unwrap_or(DEFAULT_MAX_AGE_SECS)
            * 1000
    }

    /// The destination for an outcome, if one is configured.
    pub fn destination(&self, success: bool) -> Option<&str> {
        let config = self.destination_config.as_ref()?;
        let destination = if success {
            &config.on_success
        } else {
            &config.on_failure
        };
        destination.as_ref()?.destination.as_deref()
    }
}

fn check(config: &EventInvokeConfig) -> Result<(), AwsError> {
    if let Some(retries) = config.maximum_retry_attempts
        && !(0..=2).contains(&retries)
    {
        return Err(validation(
            "maximumRetryAttempts",
            &retries.to_string(),
            "Member must have value less than or equal to 2 and greater than or equal to 0",
        ));
    }
    if let Some(age) = config.maximum_event_age_in_seconds
        && !(60..=21600).contains(&age)
    {
        return Err(validation(
            "maximumEventAgeInSeconds",
            &age.to_string(),
            "Member must have value less than or equal to 21600 and greater than or equal to 60",
        ));
    }
    for success in [true, false] {
        if let Some(arn) = config.destination(success)
            && ![
                "arn:aws:lambda:",
                "arn:aws:s3:::",
                "arn:aws:sqs:",
                "arn:aws:sns:",
            ]
            .iter()
            .any(|kind| arn.starts_with(kind))
        {
            return Err(invalid_parameter(format!(
                "The destination ARN {arn} is not a function, a bucket, a queue or a topic: this nimbus delivers invocation records to those"
            )));
        }
    }
    Ok(())
}

impl Functions {
    fn config_key(function: &FunctionRef) -> String {
        function
            .qualifier
            .clone()
            .unwrap_or_else(|| "$LATEST".to_owned())
    }

    fn config_json(&self, function: &FunctionRef, config: &EventInvokeConfig) -> Value {
        let mut value = serde_json::to_value(config).expect("configs serialize");
        value["FunctionArn"] = json!(self.arn(&function.name, Some(&Self::config_key(function))));
        value
    }

    /// Put replaces the configuration; update (`merge`) changes only what is given.
    pub fn put_event_invoke(
        &self,
        function: FunctionRef,
        config: EventInvokeConfig,
        merge: bool,
    ) -> Result<Value, AwsError> {
        check(&config)?;
        let key = Self::config_key(&function);
        let stored = self.update_record(&function.name, |record| {
            let mut stored = if merge {
                record.event_invoke.get(&key).cloned().unwrap_or_default()
            } else {
                EventInvokeConfig::default()
            };
            if !merge || config.maximum_retry_attempts.is_some() {
                stored.maximum_retry_attempts = config.maximum_retry_attempts;
            }
            if !merge || config.maximum_event_age_in_seconds.is_some() {
                stored.maximum_event_age_in_seconds = config.maximum_event_age_in_seconds;
            }
            if !merge || config.destination_config.is_some() {
                stored.destination_config = config.destination_config;
            }
            stored.last_modified = crate::now_ms() as f64 / 1000.0;
            record.event_invoke.insert(key.clone(), stored.clone());
            Ok(stored)
        })?;
        Ok(self.config_json(&function, &stored))
    }

    pub fn get_event_invoke(&self, function: FunctionRef) -> Result<Value, AwsError> {
        let record = self.load(&function.name)?.value;
        let config = record
            .event_invoke
            .get(&Self::config_key(&function))
            .ok_or_else(|| self.no_event_invoke(&function))?;
        Ok(self.config_json(&function, config))
    }

    pub fn delete_event_invoke(&self, function: FunctionRef) -> Result<(), AwsError> {
        self.update_record(&function.name, |record| {
            match record.event_invoke.remove(&Self::config_key(&function)) {
                Some(_) => Ok(()),
                None => Err(self.no_event_invoke(&function)),
            }
        })
    }

    fn no_event_invoke(&self, function: &FunctionRef) -> AwsError {
        not_found(format!(
            "The function {} doesn't have an EventInvokeConfig",
            self.arn(&function.name, Some(&Self::config_key(function)))
        ))
    }

    pub fn list_event_invoke(&self, function: FunctionRef) -> Result<Value, AwsError> {
        let function = function.require_unqualified()?;
        let record = self.load(&function.name)?.value;
        let configs: Vec<Value> = record
            .event_invoke
            .iter()
            .map(|(qualifier, config)| {
                let qualified = FunctionRef {
                    name: function.name.clone(),
                    qualifier: Some(qualifier.clone()),
                };
                self.config_json(&qualified, config)
            })
            .collect();
        Ok(json!({ "FunctionEventInvokeConfigs": configs }))
    }

    /// The asynchronous-invocation settings an event of `function` runs with.
    pub fn event_invoke(&self, function: &FunctionRef) -> EventInvokeConfig {
        self.load(&function.name)
            .ok()
            .and_then(|record| {
                record
                    .value
                    .event_invoke
                    .get(&Self::config_key(function))
                    .cloned()
            })
            .unwrap_or_default()
    }
}
