//! The one evaluator every service's requests go through: the caller's identity
//! policies (a user's, or an assumed role's, inline and attached) and the resource's
//! own policy, over the request's context keys. The root user is not subject to it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use nimbus_auth::authz::{Access, Authorizer};
use nimbus_auth::policy::{self, Decision, Policy, PolicyKind, PrincipalRef, Request};
use nimbus_auth::{Caller, Principal, PrincipalKind};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::store::IamStore;

/// A principal's parsed identity policies, as of an IAM store generation.
struct Cached {
    generation: u64,
    policies: Arc<Vec<Policy>>,
}

pub struct IamAuthorizer {
    store: Arc<IamStore>,
    cache: Mutex<HashMap<String, Cached>>,
}

/// The ARNs a principal is matched by in policies' `Principal` elements.
pub fn principal_arns(principal: &Principal) -> Vec<String> {
    let mut arns = vec![principal.arn()];
    if let PrincipalKind::AssumedRole { role_name, .. } = &principal.kind {
        arns.push(format!(
            "arn:aws:iam::{}:role/{role_name}",
            principal.account_id
        ));
    }
    arns
}

impl IamAuthorizer {
    pub fn new(store: Arc<IamStore>) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The identity policies of a principal; none for one that no longer exists.
    pub fn identity_policies(&self, principal: &Principal) -> Arc<Vec<Policy>> {
        let (key, entity) = match &principal.kind {
            PrincipalKind::Root => return Arc::new(Vec::new()),
            PrincipalKind::User { name, .. } => (format!("user/{name}"), name),
            PrincipalKind::AssumedRole { role_name, .. } => {
                (format!("role/{role_name}"), role_name)
            }
        };
        let generation = self.store.generation();
        if let Some(cached) = self.cache.lock().expect("policy cache").get(&key)
            && cached.generation == generation
        {
            return cached.policies.clone();
        }
        let documents = match &principal.kind {
            PrincipalKind::User { id, .. } => self
                .store
                .user(entity)
                .ok()
                .filter(|(_, user)| user.id == *id)
                .and_then(|(_, user)| self.store.documents(&user.inline, &user.attached).ok()),
            _ => self
                .store
                .role(entity)
                .ok()
                .and_then(|(_, role)| self.store.documents(&role.inline, &role.attached).ok()),
        }
        .unwrap_or_default();
        let policies: Arc<Vec<Policy>> = Arc::new(
            documents
                .iter()
                .filter_map(|document| Policy::parse(document, PolicyKind::Identity).ok())
                .collect(),
        );
        self.cache.lock().expect("policy cache").insert(
            key,
            Cached {
                generation,
                policies: policies.clone(),
            },
        );
        policies
    }
}

/// The global condition keys of a request by `principal`.
fn context(principal: &Principal, source_ip: Option<IpAddr>) -> Vec<(String, Vec<String>)> {
    let now = OffsetDateTime::now_utc();
    // For a role session, `aws:PrincipalArn` is the role's ARN.
    let principal_arn = principal_arns(principal).pop().unwrap_or_default();
    let mut context = vec![
        ("aws:PrincipalArn".to_owned(), vec![principal_arn]),
        (
            "aws:PrincipalAccount".to_owned(),
            vec![principal.account_id.clone()],
        ),
        ("aws:userid".to_owned(), vec![principal.user_id()]),
        (
            "aws:CurrentTime".to_owned(),
            vec![now.format(&Rfc3339).unwrap_or_default()],
        ),
        (
            "aws:EpochTime".to_owned(),
            vec![now.unix_timestamp().to_string()],
        ),
        ("aws:SecureTransport".to_owned(), vec!["false".to_owned()]),
    ];
    match &principal.kind {
        PrincipalKind::User { name, .. } => {
            context.push(("aws:username".to_owned(), vec![name.clone()]));
            context.push(("aws:PrincipalType".to_owned(), vec!["User".to_owned()]));
        }
        PrincipalKind::AssumedRole { .. } => {
            context.push((
                "aws:PrincipalType".to_owned(),
                vec!["AssumedRole".to_owned()],
            ));
        }
        PrincipalKind::Root => {
            context.push(("aws:PrincipalType".to_owned(), vec!["Account".to_owned()]));
        }
    }
    if let Some(ip) = source_ip {
        context.push(("aws:SourceIp".to_owned(), vec![ip.to_string()]));
    }
    context
}

impl Authorizer for IamAuthorizer {
    fn authorize(
        &self,
        caller: &Caller,
        source_ip: Option<IpAddr>,
        access: &Access,
    ) -> Result<(), String> {
        let principal = &caller.principal;
        if principal.is_root() {
            return Ok(());
        }
        let identity = self.identity_policies(principal);
        let resource = access
            .resource_policy
            .and_then(|document| Policy::parse(document, PolicyKind::Resource).ok());
        let arns = principal_arns(principal);
        let mut keys = context(principal, source_ip);
        keys.extend(access.context.iter().cloned());
        let who = PrincipalRef {
            aws: &arns,
            account: &principal.account_id,
            service: None,
        };
        let request = Request {
            action: access.action,
            resource: access.resource,
            principal: &who,
            context: &keys,
        };
        let identity: Vec<&Policy> = identity.iter().collect();
        match policy::evaluate(&identity, resource.as_ref(), &request) {
            Decision::Allow => Ok(()),
            Decision::ExplicitDeny => Err(format!(
                "User: {} is not authorized to perform: {} on resource: {} with an explicit deny",
                principal.arn(),
                access.action,
                access.resource
            )),
            Decision::ImplicitDeny => Err(format!(
                "User: {} is not authorized to perform: {} on resource: {} because no identity-based policy allows the {} action",
                principal.arn(),
                access.action,
                access.resource,
                access.action
            )),
        }
    }
}
