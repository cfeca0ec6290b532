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
    policies: Result<Arc<Vec<Policy>>, Unreadable>,
}

/// Why the policies a request is judged by could not all be read: one that does not
/// parse, or a store that failed. The request is then denied, never judged without
/// the missing policy (its Deny statements would be lost).
#[derive(Debug, Clone)]
struct Unreadable(Arc<str>);

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
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
    fn identity_policies(&self, principal: &Principal) -> Result<Arc<Vec<Policy>>, Unreadable> {
        let (key, entity) = match &principal.kind {
            PrincipalKind::Root => return Ok(Arc::new(Vec::new())),
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
        let policies = self.load_identity_policies(principal, entity, &key);
        self.cache.lock().expect("policy cache").insert(
            key,
            Cached {
                generation,
                policies: policies.clone(),
            },
        );
        policies
    }

    fn load_identity_policies(
        &self,
        principal: &Principal,
        entity: &str,
        key: &str,
    ) -> Result<Arc<Vec<Policy>>, Unreadable> {
        let unreadable = |err: &dyn std::fmt::Display| {
            Unreadable(format!("the identity policies of {key} cannot be read: {err}").into())
        };
        let owner = match &principal.kind {
            PrincipalKind::User { id, .. } => match self.store.user(entity) {
                Ok((_, user)) if user.id == *id => Some((user.inline, user.attached)),
                Ok(_) => None,
                Err(err) if err.code == "NoSuchEntity" => None,
                Err(err) => return Err(unreadable(&err.message)),
            },
            _ => match self.store.role(entity) {
                Ok((_, role)) => Some((role.inline, role.attached)),
                Err(err) if err.code == "NoSuchEntity" => None,
                Err(err) => return Err(unreadable(&err.message)),
            },
        };
        let Some((inline, attached)) = owner else {
            return Ok(Arc::new(Vec::new()));
        };
        let documents = self
            .store
            .documents(&inline, &attached)
            .map_err(|err| unreadable(&err.message))?;
        let policies = documents
            .iter()
            .map(|document| Policy::parse(document, PolicyKind::Identity))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| unreadable(&err))?;
        Ok(Arc::new(policies))
    }
}

/// The condition keys of every request, whoever makes it.
fn global_context(source_ip: Option<IpAddr>) -> Vec<(String, Vec<String>)> {
    let now = OffsetDateTime::now_utc();
    let mut context = vec![
        (
            "aws:CurrentTime".to_owned(),
            vec![now.format(&Rfc3339).unwrap_or_default()],
        ),
        (
            "aws:EpochTime".to_owned(),
            vec![now.unix_timestamp().to_string()],
        ),
    ];
    if let Some(ip) = source_ip {
        context.push(("aws:SourceIp".to_owned(), vec![ip.to_string()]));
    }
    context
}

/// The condition keys of a request by `principal`.
fn context(principal: &Principal, source_ip: Option<IpAddr>) -> Vec<(String, Vec<String>)> {
    // For a role session, `aws:PrincipalArn` is the role's ARN.
    let principal_arn = principal_arns(principal).pop().unwrap_or_default();
    let mut context = global_context(source_ip);
    context.extend([
        ("aws:PrincipalArn".to_owned(), vec![principal_arn]),
        (
            "aws:PrincipalAccount".to_owned(),
            vec![principal.account_id.clone()],
        ),
        ("aws:userid".to_owned(), vec![principal.user_id()]),
    ]);
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
    context
}

/// Judges `access` by `who` with the one evaluator. `caller` names the caller in the
/// AccessDenied message (`User: <arn>`, `Anonymous caller`), and `allowing` the kind
/// of policy that could have allowed it.
fn decide(
    caller: &str,
    allowing: &str,
    identity: Result<Arc<Vec<Policy>>, Unreadable>,
    who: &PrincipalRef,
    mut context: Vec<(String, Vec<String>)>,
    access: &Access,
) -> Result<(), String> {
    let denied = |why: &str| {
        format!(
            "{caller} is not authorized to perform: {} on resource: {} {why}",
            access.action, access.resource
        )
    };
    let resource = access
        .resource_policy
        .map(|document| Policy::parse(document, PolicyKind::Resource))
        .transpose()
        .map_err(|err| {
            Unreadable(
                format!(
                    "the resource policy of {} cannot be read: {err}",
                    access.resource
                )
                .into(),
            )
        });
    let (identity, resource) = match (identity, resource) {
        (Ok(identity), Ok(resource)) => (identity, resource),
        (Err(unreadable), _) | (_, Err(unreadable)) => {
            tracing::error!(%unreadable, action = access.action, "request denied: a policy cannot be parsed");
            return Err(denied("because a policy that applies cannot be parsed"));
        }
    };
    context.extend(access.context.iter().cloned());
    // The edge says when a request came over TLS.
    if !context.iter().any(|(key, _)| key == "aws:SecureTransport") {
        context.push(("aws:SecureTransport".to_owned(), vec!["false".to_owned()]));
    }
    let request = Request {
        action: access.action,
        resource: access.resource,
        principal: who,
        context: &context,
    };
    let identity: Vec<&Policy> = identity.iter().collect();
    match policy::evaluate(&identity, resource.as_ref(), &request) {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny => Err(denied("with an explicit deny")),
        Decision::ImplicitDeny => Err(denied(&format!(
            "because no {allowing} policy allows the {} action",
            access.action
        ))),
    }
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
        let arns = principal_arns(principal);
        let who = PrincipalRef {
            aws: &arns,
            account: &principal.account_id,
            service: None,
        };
        decide(
            &format!("User: {}", principal.arn()),
            "identity-based",
            self.identity_policies(principal),
            &who,
            context(principal, source_ip),
            access,
        )
    }

    fn authorize_anonymous(
        &self,
        source_ip: Option<IpAddr>,
        access: &Access,
    ) -> Result<(), String> {
        // No ARN and no account: only `*` (or a NotPrincipal) names an anonymous caller.
        let who = PrincipalRef {
            aws: &[],
            account: "",
            service: None,
        };
        decide(
            "Anonymous caller",
            "resource-based",
            Ok(Arc::new(Vec::new())),
            &who,
            global_context(source_ip),
            access,
        )
    }

    fn authorize_service(&self, service: &str, access: &Access) -> Result<(), String> {
        let who = PrincipalRef {
            aws: &[],
            account: "",
            service: Some(service),
        };
        decide(
            &format!("Service: {service}"),
            "resource-based",
            Ok(Arc::new(Vec::new())),
            &who,
            global_context(None),
            access,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nimbus_storage::{Expect, SqliteStore};

    use super::*;
    use crate::store::{USERS, UserRecord};

    const ACCOUNT: &str = "000000000000";
    const BUCKET_OBJECT: &str = "arn:aws:s3:::b/k";
    const ALLOW_ALL: &str =
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#;

    /// A store holding user alice with `inline` policies as given, unvalidated: what
    /// an older version (or a hand-edited data dir) may have left behind.
    fn with_alice(inline: &[&str]) -> (tempfile::TempDir, IamAuthorizer, Caller) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let store = Arc::new(IamStore::new(meta, ACCOUNT));
        let user = UserRecord {
            name: "alice".into(),
            id: "AIDAALICE".into(),
            path: "/".into(),
            created: 0,
            inline: inline
                .iter()
                .enumerate()
                .map(|(i, document)| (format!("p{i}"), (*document).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            attached: Vec::new(),
        };
        store
            .put(USERS, "alice", &user, Expect::Absent, "user")
            .unwrap();
        let caller = Caller {
            principal: Principal {
                account_id: ACCOUNT.into(),
                kind: PrincipalKind::User {
                    name: "alice".into(),
                    id: "AIDAALICE".into(),
                    path: "/".into(),
                },
            },
            access_key_id: "AKIAALICE".into(),
            is_session: false,
        };
        (dir, IamAuthorizer::new(store), caller)
    }

    #[test]
    fn an_identity_policy_that_does_not_parse_denies() {
        let (_dir, authorizer, alice) = with_alice(&[ALLOW_ALL]);
        let get = Access::new("s3:GetObject", BUCKET_OBJECT);
        assert!(authorizer.authorize(&alice, None, &get).is_ok());

        let (_dir, authorizer, alice) = with_alice(&[ALLOW_ALL, "{not json"]);
        let denied = authorizer.authorize(&alice, None, &get).unwrap_err();
        assert!(denied.contains("cannot be parsed"), "{denied}");
    }

    #[test]
    fn a_deny_beside_garbage_in_one_document_still_denies() {
        // The Deny's document also holds a statement IAM refuses; were the document
        // skipped, the bucket policy's Allow would let alice in.
        let deny = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Deny","Action":"s3:GetObject","Resource":"*"},
            {"Effect":"Allow","Action":"s3:GetObject","Resource":"bucket"}]}"#;
        let bucket_policy = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:user/alice"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
        let get = Access::new("s3:GetObject", BUCKET_OBJECT).with_policy(Some(bucket_policy));
        let (_dir, authorizer, alice) = with_alice(&[]);
        assert!(authorizer.authorize(&alice, None, &get).is_ok());
        let (_dir, authorizer, alice) = with_alice(&[deny]);
        assert!(authorizer.authorize(&alice, None, &get).is_err());
    }

    #[test]
    fn a_resource_policy_that_does_not_parse_denies() {
        let (_dir, authorizer, alice) = with_alice(&[ALLOW_ALL]);
        let garbage =
            r#"{"Statement":{"Effect":"Deny","Principal":"*","Action":"s3:*","Bogus":1}}"#;
        let get = Access::new("s3:GetObject", BUCKET_OBJECT).with_policy(Some(garbage));
        assert!(authorizer.authorize(&alice, None, &get).is_err());
        assert!(authorizer.authorize_anonymous(None, &get).is_err());
    }

    #[test]
    fn anonymous_callers_are_judged_by_the_resource_policy_alone() {
        let (_dir, authorizer, _) = with_alice(&[]);
        let repo = "arn:aws:ecr:us-east-1:000000000000:repository/app";
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Principal":"*","Action":"ecr:BatchGetImage",
             "Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}},
            {"Effect":"Allow","Principal":{"AWS":"000000000000"},"Action":"ecr:PutImage"},
            {"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::000000000000:user/alice"},
             "Action":"ecr:BatchGetImage","Resource":"arn:aws:ecr:us-east-1:000000000000:repository/secret"}]}"#;
        let pull = |resource: &str, ip: &str| {
            let access = Access::new("ecr:BatchGetImage", resource).with_policy(Some(policy));
            authorizer.authorize_anonymous(ip.parse().ok(), &access)
        };
        assert!(pull(repo, "10.1.2.3").is_ok());
        assert!(pull(repo, "192.168.1.1").is_err(), "outside the Condition");
        assert!(pull(repo, "").is_err(), "no source address, no match");
        // NotPrincipal: everyone but alice is denied the secret repository.
        let secret = "arn:aws:ecr:us-east-1:000000000000:repository/secret";
        assert!(pull(secret, "10.1.2.3").is_err());
        // A statement naming the account never matches an anonymous caller.
        let push = Access::new("ecr:PutImage", repo).with_policy(Some(policy));
        assert!(authorizer.authorize_anonymous(None, &push).is_err());
        // Nothing allows without a policy.
        let bare = Access::new("ecr:BatchGetImage", repo);
        assert!(authorizer.authorize_anonymous(None, &bare).is_err());
    }

    #[test]
    fn services_are_judged_by_the_resource_policy_and_their_source() {
        let (_dir, authorizer, _) = with_alice(&[]);
        let function = "arn:aws:lambda:us-east-1:000000000000:function:f";
        // What AddPermission writes for `--principal s3.amazonaws.com --source-arn ...`.
        let policy = r#"{"Version":"2012-10-17","Id":"default","Statement":[{"Sid":"s3","Effect":"Allow",
            "Principal":{"Service":"s3.amazonaws.com"},"Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:000000000000:function:f",
            "Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:s3:::in-*"},"StringEquals":{"AWS:SourceAccount":"000000000000"}}}]}"#;
        let deliver = |service: &str, bucket: &str, account: &str| {
            let access = Access::new("lambda:InvokeFunction", function)
                .with_policy(Some(policy))
                .with_context("aws:SourceArn", vec![format!("arn:aws:s3:::{bucket}")])
                .with_context("aws:SourceAccount", vec![account.to_owned()]);
            authorizer.authorize_service(service, &access)
        };
        assert!(deliver("s3.amazonaws.com", "in-photos", ACCOUNT).is_ok());
        assert!(deliver("s3.amazonaws.com", "out", ACCOUNT).is_err());
        assert!(deliver("s3.amazonaws.com", "in-photos", "111111111111").is_err());
        assert!(deliver("sns.amazonaws.com", "in-photos", ACCOUNT).is_err());
    }
}
