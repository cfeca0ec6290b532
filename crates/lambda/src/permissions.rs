//! Function resource policies (AddPermission, RemovePermission, GetPolicy): which
//! services and accounts may invoke a function, as S3 asks before it delivers a
//! bucket's events.

use serde_json::{Value, json};

use crate::error::{conflict, invalid_parameter, not_found};
use crate::functions::Functions;
use crate::names::FunctionRef;
use nimbus_auth::policy::{Policy, PolicyKind};
use nimbus_edge::AwsError;

/// An AddPermission request body, as botocore's `lambda` model shapes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddPermissionRequest {
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub source_arn: Option<String>,
    pub source_account: Option<String>,
}

fn valid_statement_id(id: &str) -> bool {
    (1..=100).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A function's statements as the policy document GetPolicy answers and IAM reads.
fn policy_document(statements: &[Value]) -> String {
    json!({ "Version": "2012-10-17", "Id": "default", "Statement": statements }).to_string()
}

impl Functions {
    pub fn add_permission(
        &self,
        function: FunctionRef,
        request: AddPermissionRequest,
    ) -> Result<Value, AwsError> {
        let function = function.require_unqualified()?;
        if !valid_statement_id(&request.statement_id) {
            return Err(invalid_parameter(
                "StatementId must be 1-100 letters, digits, hyphens and underscores",
            ));
        }
        if !(request.action.starts_with("lambda:") && request.action.len() > 7) {
            return Err(invalid_parameter(format!(
                "Action {} is not a lambda action",
                request.action
            )));
        }
        let statement = self.update_record(&function.name, |record| {
        if record
            .policy
            .iter()
            .any(|statement| statement["Sid"] == request.statement_id.as_str())
        {
            return Err(conflict(format!(
                "The statement id ({}) provided already exists. Please provide a new statement id, or remove the existing statement.",
                request.statement_id
            )));
        }
        let principal = if request.principal.ends_with(".amazonaws.com") {
            json!({ "Service": request.principal })
        } else if request.principal.bytes().all(|b| b.is_ascii_digit()) {
            json!({ "AWS": format!("arn:aws:iam::{}:root", request.principal) })
        } else {
            json!({ "AWS": request.principal })
        };
        let mut statement = json!({
            "Sid": request.statement_id,
            "Effect": "Allow",
            "Principal": principal,
            "Action": request.action,
            "Resource": record.config.function_arn,
        });
        let mut condition = serde_json::Map::new();
        if let Some(arn) = &request.source_arn {
            condition.insert("ArnLike".into(), json!({ "AWS:SourceArn": arn }));
        }
        if let Some(account) = &request.source_account {
            condition.insert(
                "StringEquals".into(),
                json!({ "AWS:SourceAccount": account }),
            );
        }
        if !condition.is_empty() {
            statement["Condition"] = Value::Object(condition);
        }
        record.policy.push(statement.clone());
        // Checked as the whole document the evaluator will read: one that did not
        // parse would deny every request on the function.
        Policy::parse(&policy_document(&record.policy), PolicyKind::Resource)
            .map_err(|err| invalid_parameter(format!("The policy is invalid: {err}")))?;
        Ok(statement)
        })?;
        Ok(json!({ "Statement": statement.to_string() }))
    }

    pub fn remove_permission(
        &self,
        function: FunctionRef,
        statement_id: &str,
    ) -> Result<(), AwsError> {
        let function = function.require_unqualified()?;
        self.update_record(&function.name, |record| {
            let before = record.policy.len();
            record
                .policy
                .retain(|statement| statement["Sid"] != statement_id);
            if record.policy.len() == before {
                return Err(not_found(format!(
                    "Statement {statement_id} is not found in resource policy."
                )));
            }
            Ok(())
        })
    }

    pub fn get_policy(&self, function: FunctionRef) -> Result<Value, AwsError> {
        let function = function.require_unqualified()?;
        let record = self.load(&function.name)?.value;
        let policy = self
            .policy_document(&function.name)
            .ok_or_else(|| not_found("The resource you requested does not exist."))?;
        Ok(json!({ "Policy": policy, "RevisionId": record.config.revision_id }))
    }

    /// The function's resource policy as a document, if it has statements.
    pub fn policy_document(&self, name: &str) -> Option<String> {
        let record = self.load(name).ok()?.value;
        (!record.policy.is_empty()).then(|| policy_document(&record.policy))
    }
}
