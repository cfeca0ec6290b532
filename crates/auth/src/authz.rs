//! The question every service asks before it acts: may this caller perform this
//! action on this resource? The IAM service answers it (identity policies, the
//! resource's own policy, the request's context) with the one evaluator in
//! [`crate::policy`]; the edge hands each request the deployment's answerer. Services
//! never judge a policy themselves, not even for callers without credentials.

use std::net::IpAddr;

use crate::Caller;

/// One action on one resource, as a service describes it.
#[derive(Debug, Clone)]
pub struct Access<'a> {
    /// The IAM action, e.g. `lambda:InvokeFunction`.
    pub action: &'a str,
    /// The resource's ARN, or `*` for actions on no resource (ListFunctions).
    pub resource: &'a str,
    /// The resource's own policy (a function policy, a repository policy), if any.
    pub resource_policy: Option<&'a str>,
    /// Service-specific condition keys (`s3:prefix`, `iam:PassedToService`, ...).
    pub context: Vec<(String, Vec<String>)>,
}

impl<'a> Access<'a> {
    pub fn new(action: &'a str, resource: &'a str) -> Self {
        Self {
            action,
            resource,
            resource_policy: None,
            context: Vec::new(),
        }
    }

    pub fn with_policy(mut self, policy: Option<&'a str>) -> Self {
        self.resource_policy = policy;
        self
    }

    pub fn with_context(mut self, key: &str, values: Vec<String>) -> Self {
        self.context.push((key.to_owned(), values));
        self
    }

    /// What a service acting as its principal acts for (`aws:SourceArn`,
    /// `aws:SourceAccount`), which the statements granting it condition on.
    pub fn for_source(self, arn: &str, account: &str) -> Self {
        self.with_context("aws:SourceArn", vec![arn.to_owned()])
            .with_context("aws:SourceAccount", vec![account.to_owned()])
    }
}

pub trait Authorizer: Send + Sync {
    /// `Ok` when allowed; otherwise the message of the AccessDenied error, naming the
    /// caller, the action and the resource as AWS does.
    fn authorize(
        &self,
        caller: &Caller,
        source_ip: Option<IpAddr>,
        access: &Access,
    ) -> Result<(), String>;

    /// The same question for a caller that presented no credentials (a public image
    /// pull): only the resource's policy can allow it, through a statement whose
    /// `Principal` is `*` (or whose `NotPrincipal` leaves it in).
    /// Denies unless implemented: an authorizer that does not judge anonymous callers
    /// lets none in.
    fn authorize_anonymous(
        &self,
        _source_ip: Option<IpAddr>,
        access: &Access,
    ) -> Result<(), String> {
        Err(format!(
            "Anonymous callers are not authorized to perform: {} on resource: {}",
            access.action, access.resource
        ))
    }

    /// The same question for an AWS service acting on its own (S3 delivering a
    /// bucket's events to a function): only the resource's policy can allow it,
    /// through a statement naming the service (`{"Service": "s3.amazonaws.com"}`);
    /// `aws:SourceArn` and `aws:SourceAccount` come in the access's context.
    /// Denies unless implemented, as `authorize_anonymous` does.
    fn authorize_service(&self, service: &str, access: &Access) -> Result<(), String> {
        Err(format!(
            "{service} is not authorized to perform: {} on resource: {}",
            access.action, access.resource
        ))
    }
}

/// Allows every request: what a server without IAM (tests of other layers) uses.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Caller, _: Option<IpAddr>, _: &Access) -> Result<(), String> {
        Ok(())
    }

    fn authorize_anonymous(&self, _: Option<IpAddr>, _: &Access) -> Result<(), String> {
        Ok(())
    }

    fn authorize_service(&self, _: &str, _: &Access) -> Result<(), String> {
        Ok(())
    }
}

/// Services acting as a role, as AWS's do: Lambda writes a function's destinations as
/// its execution role, Scheduler fires a schedule as its role, ECS pulls a task's
/// images as its execution role. What they may do is then the role's policies'
/// answer, through the one [`Authorizer`].
pub trait ServiceRoles: Send + Sync {
    /// The session of `role_arn` named `session_name` that `service`
    /// (`scheduler.amazonaws.com`) acts as; why not when the role does not exist or
    /// its trust policy does not let `service` assume it.
    fn assume(&self, role_arn: &str, service: &str, session_name: &str) -> Result<Caller, String>;
}
