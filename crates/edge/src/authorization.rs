//! The authorization model: every routed operation declares, in the table it is
//! routed with, what IAM must allow before it runs (its action, the resource its ARN
//! names, the condition keys it supplies, the actions it depends on). The edge
//! enforces the declaration between a service's `parse` and `handle`, and `nimbus
//! docs` renders it as the service's authorization reference.

use serde::Serialize;

/// What an operation needs IAM to allow, as AWS's Service Authorization Reference
/// lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Authorization {
    /// The IAM action (`lambda:GetFunction`); `None` for the few operations IAM does
    /// not guard, `resource` then saying what does.
    pub action: Option<&'static str>,
    /// The ARN template of the resource (`arn:${Partition}:lambda:${Region}:${Account}:function:${FunctionName}`),
    /// `*` for actions on no resource.
    pub resource: &'static str,
    /// Service condition keys the operation supplies to policies.
    pub condition_keys: &'static [&'static str],
    /// Further actions the caller must be allowed (`iam:PassRole` on a role handed over).
    pub dependent_actions: &'static [&'static str],
    /// Checked by the operation itself as it runs, always as `action`, rather than
    /// once before: on each item it acts on (a listing shows only what the caller
    /// may see), or together with a policy of its own (a role's trust policy).
    pub checked_in_operation: bool,
}

impl Authorization {
    /// `action` on the resource `resource` names.
    pub const fn new(action: &'static str, resource: &'static str) -> Self {
        Self {
            action: Some(action),
            resource,
            condition_keys: &[],
            dependent_actions: &[],
            checked_in_operation: false,
        }
    }

    /// An operation IAM does not guard; `reason` says what does instead.
    pub const fn none(reason: &'static str) -> Self {
        Self {
            action: None,
            resource: reason,
            condition_keys: &[],
            dependent_actions: &[],
            checked_in_operation: false,
        }
    }

    /// Marks the operation as checking its action itself (the field of this name).
    pub const fn checked_in_operation(mut self) -> Self {
        self.checked_in_operation = true;
        self
    }

    pub const fn keys(mut self, keys: &'static [&'static str]) -> Self {
        self.condition_keys = keys;
        self
    }

    pub const fn dependent(mut self, actions: &'static [&'static str]) -> Self {
        self.dependent_actions = actions;
        self
    }
}

/// One concrete check of a parsed operation: its declared action (or one of its
/// declared dependent actions) on a resource filled from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `None`: the operation's own action.
    pub dependent: Option<&'static str>,
    pub resource: String,
    /// The resource's own policy (a function or repository policy), if any.
    pub resource_policy: Option<String>,
    /// Values of the declared condition keys.
    pub context: Vec<(String, Vec<String>)>,
}

impl Check {
    /// The operation's own action on `resource`.
    pub fn on(resource: impl Into<String>) -> Self {
        Self {
            dependent: None,
            resource: resource.into(),
            resource_policy: None,
            context: Vec::new(),
        }
    }

    /// A dependent action (one the table declares) on `resource`.
    pub fn dependent(action: &'static str, resource: impl Into<String>) -> Self {
        Self {
            dependent: Some(action),
            ..Self::on(resource)
        }
    }

    pub fn with_policy(mut self, policy: Option<String>) -> Self {
        self.resource_policy = policy;
        self
    }

    pub fn with_context(mut self, key: &str, values: Vec<String>) -> Self {
        self.context.push((key.to_owned(), values));
        self
    }
}

/// Whether `checks` may stand for `declared`: each names the declared action or a
/// declared dependent action, and the declared action is checked at least once, so a
/// table entry and its enforcement cannot drift apart.
pub(crate) fn conforms(declared: &Authorization, checks: &[Check]) -> Result<(), String> {
    let Some(action) = declared.action else {
        return match checks.is_empty() {
            true => Ok(()),
            false => Err("an operation declared unguarded returned checks".to_owned()),
        };
    };
    if let Some(stray) = checks
        .iter()
        .filter_map(|c| c.dependent)
        .find(|d| !declared.dependent_actions.contains(d))
    {
        return Err(format!(
            "{action} checks undeclared dependent action {stray}"
        ));
    }
    if !checks.iter().any(|c| c.dependent.is_none()) {
        return Err(format!("{action} was never checked"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: Authorization =
        Authorization::new("lambda:CreateFunction", "arn:${Partition}:lambda:x")
            .dependent(&["iam:PassRole"]);

    #[test]
    fn checks_conform_to_their_declaration() {
        assert!(
            conforms(
                &PASS,
                &[Check::on("a"), Check::dependent("iam:PassRole", "r")]
            )
            .is_ok()
        );
        assert!(conforms(&PASS, &[Check::dependent("iam:PassRole", "r")]).is_err());
        assert!(
            conforms(
                &PASS,
                &[Check::on("a"), Check::dependent("s3:GetObject", "o")]
            )
            .is_err()
        );
        assert!(conforms(&PASS, &[]).is_err());
        let none = Authorization::none("the role's trust policy");
        assert!(conforms(&none, &[]).is_ok());
        assert!(conforms(&none, &[Check::on("a")]).is_err());
    }
}
