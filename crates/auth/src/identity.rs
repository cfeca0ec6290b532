//! Who is calling: the principals a credential can stand for.

use serde::{Deserialize, Serialize};

/// An authenticated identity inside one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub account_id: String,
    pub kind: PrincipalKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PrincipalKind {
    /// The account's root user: not subject to identity policies.
    Root,
    /// An IAM user, `id` being its unique `AIDA…` identifier.
    User {
        name: String,
        id: String,
        path: String,
    },
    /// A session of an assumed role, `role_id` being the role's `AROA…` identifier.
    AssumedRole {
        role_name: String,
        role_id: String,
        session_name: String,
    },
}

impl Principal {
    pub fn root(account_id: &str) -> Self {
        Principal {
            account_id: account_id.to_owned(),
            kind: PrincipalKind::Root,
        }
    }

    /// The ARN `GetCallerIdentity` reports.
    pub fn arn(&self) -> String {
        let account = &self.account_id;
        match &self.kind {
            PrincipalKind::Root => format!("arn:aws:iam::{account}:root"),
            PrincipalKind::User { name, path, .. } => {
                format!("arn:aws:iam::{account}:user{path}{name}")
            }
            PrincipalKind::AssumedRole {
                role_name,
                session_name,
                ..
            } => format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}"),
        }
    }

    /// The unique id `GetCallerIdentity` reports as `UserId`.
    pub fn user_id(&self) -> String {
        match &self.kind {
            PrincipalKind::Root => self.account_id.clone(),
            PrincipalKind::User { id, .. } => id.clone(),
            PrincipalKind::AssumedRole {
                role_id,
                session_name,
                ..
            } => format!("{role_id}:{session_name}"),
        }
    }

    pub fn is_root(&self) -> bool {
        matches!(self.kind, PrincipalKind::Root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_ids_follow_aws() {
        let root = Principal::root("123456789012");
        assert_eq!(root.arn(), "arn:aws:iam::123456789012:root");
        assert_eq!(root.user_id(), "123456789012");

        let user = Principal {
            account_id: "123456789012".into(),
            kind: PrincipalKind::User {
                name: "alice".into(),
                id: "AIDAEXAMPLE".into(),
                path: "/dev/".into(),
            },
        };
        assert_eq!(user.arn(), "arn:aws:iam::123456789012:user/dev/alice");
        assert_eq!(user.user_id(), "AIDAEXAMPLE");

        let session = Principal {
            account_id: "123456789012".into(),
            kind: PrincipalKind::AssumedRole {
                role_name: "worker".into(),
                role_id: "AROAEXAMPLE".into(),
                session_name: "job-1".into(),
            },
        };
        assert_eq!(
            session.arn(),
            "arn:aws:sts::123456789012:assumed-role/worker/job-1"
        );
        assert_eq!(session.user_id(), "AROAEXAMPLE:job-1");
    }
}
