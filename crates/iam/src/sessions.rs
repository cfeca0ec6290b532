//! Temporary credentials for roles: what AssumeRole hands a caller, and what a
//! service (Lambda, for a function's execution role) takes on a role's behalf.

use std::sync::Arc;

use nimbus_auth::authz::ServiceRoles;
use nimbus_auth::policy::{Decision, Policy, PolicyKind, PrincipalRef, Request};
use nimbus_auth::{Caller, Credential, CredentialStore, Principal, PrincipalKind};
use nimbus_edge::AwsError;
use time::{Duration, OffsetDateTime};

use crate::store::{IamStore, RoleRecord, internal};

pub struct RoleSessions {
    pub store: Arc<IamStore>,
    credentials: Arc<CredentialStore>,
}

impl RoleSessions {
    pub fn new(store: Arc<IamStore>, credentials: Arc<CredentialStore>) -> Self {
        Self { store, credentials }
    }

    /// How the role's trust policy answers `principal` (its ARNs and account, or a
    /// service) asking to assume it.
    pub fn trust(
        &self,
        role: &RoleRecord,
        principal: &PrincipalRef,
        context: &[(String, Vec<String>)],
    ) -> Decision {
        // Trust policies are validated when written; one that still fails to parse
        // (written by an older version) lets nobody in.
        let trust = match Policy::parse(&role.trust, PolicyKind::Trust) {
            Ok(trust) => trust,
            Err(err) => {
                tracing::error!(role = %role.name, error = %err, "trust policy cannot be parsed: assuming the role is denied");
                return Decision::ImplicitDeny;
            }
        };
        let arn = self.store.role_arn(role);
        trust.evaluate(&Request {
            action: "sts:AssumeRole",
            resource: &arn,
            principal,
            context,
        })
    }

    /// The role `arn` when `service` (`lambda.amazonaws.com`) may assume it; the
    /// reason it may not otherwise.
    pub fn check_service(&self, arn: &str, service: &str) -> Result<RoleRecord, String> {
        let (_, role) = self.store.role_by_arn(arn).map_err(|err| err.message)?;
        let principal = PrincipalRef {
            aws: &[],
            account: "",
            service: Some(service),
        };
        match self.trust(&role, &principal, &[]) {
            Decision::Allow => Ok(role),
            _ => Err(format!("The role {arn} cannot be assumed by {service}.")),
        }
    }

    /// The principal a session of `role` named `session_name` is.
    pub fn principal(&self, role: &RoleRecord, session_name: &str) -> Principal {
        Principal {
            account_id: self.store.account.clone(),
            kind: PrincipalKind::AssumedRole {
                role_name: role.name.clone(),
                role_id: role.id.clone(),
                session_name: session_name.to_owned(),
            },
        }
    }

    /// Issues a session of `role` named `session_name`, valid for `duration`.
    pub fn issue(
        &self,
        role: &RoleRecord,
        session_name: &str,
        duration: Duration,
    ) -> Result<Arc<Credential>, AwsError> {
        self.credentials
            .issue_session(
                self.principal(role, session_name),
                duration,
                OffsetDateTime::now_utc(),
            )
            .map_err(internal)
    }
}

impl ServiceRoles for RoleSessions {
    fn assume(&self, role_arn: &str, service: &str, session_name: &str) -> Result<Caller, String> {
        let role = self.check_service(role_arn, service)?;
        Ok(Caller {
            principal: self.principal(&role, session_name),
            access_key_id: String::new(),
            is_session: true,
        })
    }
}
