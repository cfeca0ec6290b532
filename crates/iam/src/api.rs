//! IAM over the query protocol: users and their access keys, roles and their trust
//! policies, inline and managed policies, attachments. Policy documents go out
//! URL-encoded, as AWS sends them (botocore decodes them).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use nimbus_auth::policy::PolicyKind;
use nimbus_auth::{Caller, CredentialStore, Principal, PrincipalKind};
use nimbus_edge::protocol::query::{self, QueryRequest};
use nimbus_edge::protocol::xml::XmlWriter;
use nimbus_edge::{
    Authorization, AwsError, Check, NamedOperation, Operation, OperationDoc, Protocol,
    RequestContext, Service, ServiceDescriptor, ServiceRequest, catalog, named,
};
use nimbus_storage::Expect;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::managed;
use crate::store::*;

/// The ARNs the operations act on, as AWS's authorization reference writes them.
const USER: &str = "arn:${Partition}:iam::${Account}:user/${UserNameWithPath}";
const ROLE: &str = "arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}";
const POLICY: &str = "arn:${Partition}:iam::${Account}:policy/${PolicyNameWithPath}";
const ANY: &str = "*";
/// Attaching or detaching a managed policy names it to policies.
const ATTACH_KEYS: &[&str] = &["iam:PolicyARN"];

const ACTIONS: &[NamedOperation] = &[
    named("CreateUser", Authorization::new("iam:CreateUser", USER)),
    named("GetUser", Authorization::new("iam:GetUser", USER)),
    named("ListUsers", Authorization::new("iam:ListUsers", ANY)),
    named("DeleteUser", Authorization::new("iam:DeleteUser", USER)),
    named(
        "CreateAccessKey",
        Authorization::new("iam:CreateAccessKey", USER),
    ),
    named(
        "ListAccessKeys",
        Authorization::new("iam:ListAccessKeys", USER),
    ),
    named(
        "UpdateAccessKey",
        Authorization::new("iam:UpdateAccessKey", USER),
    ),
    named(
        "DeleteAccessKey",
        Authorization::new("iam:DeleteAccessKey", USER),
    ),
    named("CreateRole", Authorization::new("iam:CreateRole", ROLE)),
    named("GetRole", Authorization::new("iam:GetRole", ROLE)),
    named("ListRoles", Authorization::new("iam:ListRoles", ANY)),
    named("UpdateRole", Authorization::new("iam:UpdateRole", ROLE)),
    named("DeleteRole", Authorization::new("iam:DeleteRole", ROLE)),
    named(
        "UpdateAssumeRolePolicy",
        Authorization::new("iam:UpdateAssumeRolePolicy", ROLE),
    ),
    named(
        "PutUserPolicy",
        Authorization::new("iam:PutUserPolicy", USER),
    ),
    named(
        "GetUserPolicy",
        Authorization::new("iam:GetUserPolicy", USER),
    ),
    named(
        "ListUserPolicies",
        Authorization::new("iam:ListUserPolicies", USER),
    ),
    named(
        "DeleteUserPolicy",
        Authorization::new("iam:DeleteUserPolicy", USER),
    ),
    named(
        "PutRolePolicy",
        Authorization::new("iam:PutRolePolicy", ROLE),
    ),
    named(
        "GetRolePolicy",
        Authorization::new("iam:GetRolePolicy", ROLE),
    ),
    named(
        "ListRolePolicies",
        Authorization::new("iam:ListRolePolicies", ROLE),
    ),
    named(
        "DeleteRolePolicy",
        Authorization::new("iam:DeleteRolePolicy", ROLE),
    ),
    named(
        "CreatePolicy",
        Authorization::new("iam:CreatePolicy", POLICY),
    ),
    named("GetPolicy", Authorization::new("iam:GetPolicy", POLICY)),
    named("ListPolicies", Authorization::new("iam:ListPolicies", ANY)),
    named(
        "DeletePolicy",
        Authorization::new("iam:DeletePolicy", POLICY),
    ),
    named(
        "CreatePolicyVersion",
        Authorization::new("iam:CreatePolicyVersion", POLICY),
    ),
    named(
        "GetPolicyVersion",
        Authorization::new("iam:GetPolicyVersion", POLICY),
    ),
    named(
        "ListPolicyVersions",
        Authorization::new("iam:ListPolicyVersions", POLICY),
    ),
    named(
        "DeletePolicyVersion",
        Authorization::new("iam:DeletePolicyVersion", POLICY),
    ),
    named(
        "SetDefaultPolicyVersion",
        Authorization::new("iam:SetDefaultPolicyVersion", POLICY),
    ),
    named(
        "AttachUserPolicy",
        Authorization::new("iam:AttachUserPolicy", USER).keys(ATTACH_KEYS),
    ),
    named(
        "DetachUserPolicy",
        Authorization::new("iam:DetachUserPolicy", USER).keys(ATTACH_KEYS),
    ),
    named(
        "ListAttachedUserPolicies",
        Authorization::new("iam:ListAttachedUserPolicies", USER),
    ),
    named(
        "AttachRolePolicy",
        Authorization::new("iam:AttachRolePolicy", ROLE).keys(ATTACH_KEYS),
    ),
    named(
        "DetachRolePolicy",
        Authorization::new("iam:DetachRolePolicy", ROLE).keys(ATTACH_KEYS),
    ),
    named(
        "ListAttachedRolePolicies",
        Authorization::new("iam:ListAttachedRolePolicies", ROLE),
    ),
];

/// A user's or role's name, inline policies and attached policy ARNs.
type Policies = (String, BTreeMap<String, String>, Vec<String>);

/// Access keys an IAM user may have at once, as on AWS.
const MAX_ACCESS_KEYS: usize = 2;

#[derive(Debug)]
pub struct IamOperation {
    entry: &'static NamedOperation,
    request: QueryRequest,
}

impl Operation for IamOperation {
    fn name(&self) -> &'static str {
        self.entry.name
    }

    fn authorization(&self) -> Authorization {
        self.entry.authorization
    }
}

/// The user, role or managed policy an operation names (a user operation without
/// `UserName` acts on the caller), with the policy attached or detached as
/// `iam:PolicyARN`.
fn checks(ctx: &RequestContext, operation: &IamOperation) -> Result<Vec<Check>, AwsError> {
    let q = &operation.request;
    let declared = operation.entry.authorization;
    let resource = match declared.resource {
        USER => match q.param("UserName") {
            Some(user) => format!("arn:aws:iam::{}:user/{user}", ctx.account_id),
            None => ctx.caller.principal.arn(),
        },
        ROLE => format!(
            "arn:aws:iam::{}:role/{}",
            ctx.account_id,
            required(q, "RoleName")?
        ),
        POLICY => match q.param("PolicyArn") {
            Some(arn) => arn.to_owned(),
            None => format!(
                "arn:aws:iam::{}:policy/{}",
                ctx.account_id,
                required(q, "PolicyName")?
            ),
        },
        _ => ANY.to_owned(),
    };
    let mut check = Check::on(resource);
    if !declared.condition_keys.is_empty() {
        check = check.with_context("iam:PolicyARN", vec![required(q, "PolicyArn")?.to_owned()]);
    }
    Ok(vec![check])
}

pub struct IamApi {
    store: Arc<IamStore>,
    credentials: Arc<CredentialStore>,
}

impl IamApi {
    pub fn new(store: Arc<IamStore>, credentials: Arc<CredentialStore>) -> Self {
        Self { store, credentials }
    }
}

fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "ValidationError", message)
}

fn required<'a>(q: &'a QueryRequest, name: &str) -> Result<&'a str, AwsError> {
    q.param(name).filter(|v| !v.is_empty()).ok_or_else(|| {
        let mut field = name.to_owned();
        field[..1].make_ascii_lowercase();
        validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn encoded(document: &str) -> String {
    utf8_percent_encode(document, NON_ALPHANUMERIC).to_string()
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Writes `items` after `Marker`, at most `MaxItems` of them, under `tag` as
/// `member`s, with `IsTruncated` and the next `Marker`.
fn paged<T>(
    xml: &mut XmlWriter,
    q: &QueryRequest,
    tag: &str,
    items: Vec<(String, T)>,
    mut write: impl FnMut(&mut XmlWriter, &T),
) -> Result<(), AwsError> {
    let max = match q.param("MaxItems") {
        None => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                validation(format!("MaxItems must be between 1 and 1000, not {text}"))
            })?,
    };
    let marker = q.param("Marker");
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(key, _)| marker.is_none_or(|m| key.as_str() > m))
        .collect();
    let truncated = rest.len() > max;
    rest.truncate(max);
    xml.open(tag);
    for (_, item) in &rest {
        xml.open("member");
        write(xml, item);
        xml.close("member");
    }
    xml.close(tag);
    xml.leaf("IsTruncated", if truncated { "true" } else { "false" });
    if truncated && let Some((key, _)) = rest.last() {
        xml.leaf("Marker", key);
    }
    Ok(())
}

impl IamApi {
    fn write_user(&self, xml: &mut XmlWriter, user: &UserRecord) {
        xml.leaf("Path", &user.path);
        xml.leaf("UserName", &user.name);
        xml.leaf("UserId", &user.id);
        xml.leaf("Arn", &self.store.user_arn(user));
        xml.leaf("CreateDate", &date(user.created));
    }

    fn write_role(&self, xml: &mut XmlWriter, role: &RoleRecord) {
        xml.leaf("Path", &role.path);
        xml.leaf("RoleName", &role.name);
        xml.leaf("RoleId", &role.id);
        xml.leaf("Arn", &self.store.role_arn(role));
        xml.leaf("CreateDate", &date(role.created));
        xml.leaf("AssumeRolePolicyDocument", &encoded(&role.trust));
        if let Some(description) = &role.description {
            xml.leaf("Description", description);
        }
        xml.leaf("MaxSessionDuration", &role.max_session_secs.to_string());
    }

    fn write_policy(&self, xml: &mut XmlWriter, policy: &PolicyRecord) -> Result<(), AwsError> {
        let (users, roles) = self.store.attachments(&policy.arn)?;
        xml.leaf("PolicyName", &policy.name);
        xml.leaf("PolicyId", &policy.id);
        xml.leaf("Arn", &policy.arn);
        xml.leaf("Path", &policy.path);
        xml.leaf("DefaultVersionId", &policy.default_version);
        xml.leaf("AttachmentCount", &(users.len() + roles.len()).to_string());
        xml.leaf("PermissionsBoundaryUsageCount", "0");
        xml.leaf("IsAttachable", "true");
        if let Some(description) = &policy.description {
            xml.leaf("Description", description);
        }
        xml.leaf("CreateDate", &date(policy.created));
        xml.leaf("UpdateDate", &date(policy.updated));
        Ok(())
    }

    fn write_version(
        xml: &mut XmlWriter,
        policy: &PolicyRecord,
        version: &PolicyVersion,
        document: bool,
    ) {
        if document {
            xml.leaf("Document", &encoded(&version.document));
        }
        xml.leaf("VersionId", &version.id);
        xml.leaf(
            "IsDefaultVersion",
            if version.id == policy.default_version {
                "true"
            } else {
                "false"
            },
        );
        xml.leaf("CreateDate", &date(version.created));
    }

    /// The user a request names, or the calling user when it names none.
    fn named_user(&self, q: &QueryRequest, caller: &Caller) -> Result<(u64, UserRecord), AwsError> {
        match (q.param("UserName"), &caller.principal.kind) {
            (Some(name), _) => self.store.user(name),
            (None, PrincipalKind::User { name, .. }) => self.store.user(name),
            (None, _) => Err(validation(
                "Must specify userName when calling with non-User credentials",
            )),
        }
    }

    fn user_principal(&self, user: &UserRecord) -> Principal {
        Principal {
            account_id: self.store.account.clone(),
            kind: PrincipalKind::User {
                name: user.name.clone(),
                id: user.id.clone(),
                path: user.path.clone(),
            },
        }
    }

    fn keys_of(&self, user: &UserRecord) -> Result<Vec<Arc<nimbus_auth::Credential>>, AwsError> {
        self.credentials
            .access_keys(
                |principal| matches!(&principal.kind, PrincipalKind::User { id, .. } if *id == user.id),
            )
            .map_err(internal)
    }

    /// Edits the inline policies or attachments of a user or a role.
    fn edit_inline(
        &self,
        q: &QueryRequest,
        role: bool,
        edit: impl FnOnce(&mut BTreeMap<String, String>, &mut Vec<String>) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        if role {
            let (version, mut record) = self.store.role(required(q, "RoleName")?)?;
            edit(&mut record.inline, &mut record.attached)?;
            self.store.put(
                ROLES,
                &record.name,
                &record,
                Expect::Version(version),
                "The role",
            )
        } else {
            let (version, mut record) = self.store.user(required(q, "UserName")?)?;
            edit(&mut record.inline, &mut record.attached)?;
            self.store.put(
                USERS,
                &record.name,
                &record,
                Expect::Version(version),
                "The user",
            )
        }
    }

    fn inline_of(&self, q: &QueryRequest, role: bool) -> Result<Policies, AwsError> {
        if role {
            let (_, record) = self.store.role(required(q, "RoleName")?)?;
            Ok((record.name, record.inline, record.attached))
        } else {
            let (_, record) = self.store.user(required(q, "UserName")?)?;
            Ok((record.name, record.inline, record.attached))
        }
    }

    /// Carries out one action, writing its result elements.
    fn call(
        &self,
        action: &str,
        q: &QueryRequest,
        caller: &Caller,
        xml: &mut XmlWriter,
    ) -> Result<(), AwsError> {
        let store = &self.store;
        let role_call = action.contains("Role");
        match action {
            "CreateUser" => {
                let name = required(q, "UserName")?;
                check_name("userName", name, 64)?;
                let path = q.param("Path").unwrap_or("/");
                check_path(path)?;
                let user = UserRecord {
                    name: name.to_owned(),
                    id: new_id("AIDA"),
                    path: path.to_owned(),
                    created: now(),
                    inline: BTreeMap::new(),
                    attached: Vec::new(),
                };
                store
                    .put(USERS, name, &user, Expect::Absent, "The user")
                    .map_err(|_| {
                        already_exists(format!("User with name {name} already exists."))
                    })?;
                xml.open("User");
                self.write_user(xml, &user);
                xml.close("User");
            }
            "GetUser" => {
                let (_, user) = self.named_user(q, caller)?;
                xml.open("User");
                self.write_user(xml, &user);
                xml.close("User");
            }
            "ListUsers" => {
                let prefix = q.param("PathPrefix").unwrap_or("/");
                let users: Vec<UserRecord> = store.list(USERS)?;
                let items = users
                    .into_iter()
                    .filter(|u| u.path.starts_with(prefix))
                    .map(|u| (u.name.clone(), u))
                    .collect();
                paged(xml, q, "Users", items, |xml, user| {
                    self.write_user(xml, user)
                })?;
            }
            "DeleteUser" => {
                let (version, user) = store.user(required(q, "UserName")?)?;
                if !self.keys_of(&user)?.is_empty() {
                    return Err(delete_conflict(
                        "Cannot delete entity, must delete access keys first.",
                    ));
                }
                if !user.inline.is_empty() || !user.attached.is_empty() {
                    return Err(delete_conflict(
                        "Cannot delete entity, must delete policies first.",
                    ));
                }
                store.delete(USERS, &user.name, version, "The user")?;
            }
            "CreateAccessKey" => {
                let (_, user) = self.named_user(q, caller)?;
                if self.keys_of(&user)?.len() >= MAX_ACCESS_KEYS {
                    return Err(limit_exceeded(format!(
                        "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS}"
                    )));
                }
                let key = self
                    .credentials
                    .issue_access_key(self.user_principal(&user), OffsetDateTime::now_utc())
                    .map_err(internal)?;
                xml.open("AccessKey");
                xml.leaf("UserName", &user.name);
                xml.leaf("AccessKeyId", &key.access_key_id);
                xml.leaf("Status", "Active");
                xml.leaf("SecretAccessKey", &key.secret_access_key);
                xml.leaf("CreateDate", &date(key.created_at));
                xml.close("AccessKey");
            }
            "ListAccessKeys" => {
                let (_, user) = self.named_user(q, caller)?;
                let items = self
                    .keys_of(&user)?
                    .into_iter()
                    .map(|k| (k.access_key_id.clone(), k))
                    .collect();
                paged(xml, q, "AccessKeyMetadata", items, |xml, key| {
                    xml.leaf("UserName", &user.name);
                    xml.leaf("AccessKeyId", &key.access_key_id);
                    xml.leaf("Status", if key.inactive { "Inactive" } else { "Active" });
                    xml.leaf("CreateDate", &date(key.created_at));
                })?;
                xml.leaf("UserName", &user.name);
            }
            "UpdateAccessKey" | "DeleteAccessKey" => {
                let (_, user) = self.named_user(q, caller)?;
                let id = required(q, "AccessKeyId")?;
                if !self.keys_of(&user)?.iter().any(|k| k.access_key_id == id) {
                    return Err(no_such_entity(format!(
                        "The Access Key with id {id} cannot be found"
                    )));
                }
                if action == "DeleteAccessKey" {
                    self.credentials.remove(id).map_err(internal)?;
                } else {
                    let inactive = match required(q, "Status")? {
                        "Active" => false,
                        "Inactive" => true,
                        other => {
                            return Err(validation(format!(
                                "Status must be Active or Inactive, not {other}"
                            )));
                        }
                    };
                    self.credentials
                        .set_inactive(id, inactive)
                        .map_err(internal)?;
                }
            }
            "CreateRole" => {
                let name = required(q, "RoleName")?;
                check_name("roleName", name, 64)?;
                let path = q.param("Path").unwrap_or("/");
                check_path(path)?;
                let trust = required(q, "AssumeRolePolicyDocument")?;
                check_document(trust, PolicyKind::Trust)?;
                let role = RoleRecord {
                    name: name.to_owned(),
                    id: new_id("AROA"),
                    path: path.to_owned(),
                    created: now(),
                    trust: trust.to_owned(),
                    description: q.param("Description").map(str::to_owned),
                    max_session_secs: max_session(q)?.unwrap_or(3600),
                    inline: BTreeMap::new(),
                    attached: Vec::new(),
                };
                store
                    .put(ROLES, name, &role, Expect::Absent, "The role")
                    .map_err(|_| {
                        already_exists(format!("Role with name {name} already exists."))
                    })?;
                xml.open("Role");
                self.write_role(xml, &role);
                xml.close("Role");
            }
            "GetRole" => {
                let (_, role) = store.role(required(q, "RoleName")?)?;
                xml.open("Role");
                self.write_role(xml, &role);
                xml.close("Role");
            }
            "ListRoles" => {
                let prefix = q.param("PathPrefix").unwrap_or("/");
                let roles: Vec<RoleRecord> = store.list(ROLES)?;
                let items = roles
                    .into_iter()
                    .filter(|r| r.path.starts_with(prefix))
                    .map(|r| (r.name.clone(), r))
                    .collect();
                paged(xml, q, "Roles", items, |xml, role| {
                    self.write_role(xml, role)
                })?;
            }
            "UpdateRole" | "UpdateAssumeRolePolicy" => {
                let (version, mut role) = store.role(required(q, "RoleName")?)?;
                if action == "UpdateRole" {
                    if let Some(description) = q.param("Description") {
                        role.description = Some(description.to_owned());
                    }
                    if let Some(secs) = max_session(q)? {
                        role.max_session_secs = secs;
                    }
                } else {
                    let trust = required(q, "PolicyDocument")?;
                    check_document(trust, PolicyKind::Trust)?;
                    role.trust = trust.to_owned();
                }
                store.put(
                    ROLES,
                    &role.name,
                    &role,
                    Expect::Version(version),
                    "The role",
                )?;
            }
            "DeleteRole" => {
                let (version, role) = store.role(required(q, "RoleName")?)?;
                if !role.inline.is_empty() || !role.attached.is_empty() {
                    return Err(delete_conflict(
                        "Cannot delete entity, must delete policies first.",
                    ));
                }
                store.delete(ROLES, &role.name, version, "The role")?;
            }
            "PutUserPolicy" | "PutRolePolicy" => {
                let name = required(q, "PolicyName")?.to_owned();
                check_name("policyName", &name, 128)?;
                let document = required(q, "PolicyDocument")?.to_owned();
                check_document(&document, PolicyKind::Identity)?;
                self.edit_inline(q, role_call, |inline, _| {
                    inline.insert(name, document);
                    Ok(())
                })?;
            }
            "GetUserPolicy" | "GetRolePolicy" => {
                let name = required(q, "PolicyName")?;
                let (owner, inline, _) = self.inline_of(q, role_call)?;
                let document = inline.get(name).ok_or_else(|| {
                    no_such_entity(format!(
                        "The {} policy with name {name} cannot be found.",
                        if role_call { "role" } else { "user" }
                    ))
                })?;
                xml.leaf(if role_call { "RoleName" } else { "UserName" }, &owner);
                xml.leaf("PolicyName", name);
                xml.leaf("PolicyDocument", &encoded(document));
            }
            "ListUserPolicies" | "ListRolePolicies" => {
                let (_, inline, _) = self.inline_of(q, role_call)?;
                let items = inline
                    .into_keys()
                    .map(|name| (name.clone(), name))
                    .collect();
                paged(xml, q, "PolicyNames", items, |xml, name| xml.text(name))?;
            }
            "DeleteUserPolicy" | "DeleteRolePolicy" => {
                let name = required(q, "PolicyName")?;
                self.edit_inline(q, role_call, |inline, _| {
                    inline.remove(name).map(|_| ()).ok_or_else(|| {
                        no_such_entity(format!("The policy with name {name} cannot be found."))
                    })
                })?;
            }
            "AttachUserPolicy" | "AttachRolePolicy" | "DetachUserPolicy" | "DetachRolePolicy" => {
                let arn = required(q, "PolicyArn")?.to_owned();
                store.policy(&arn)?;
                let attach = action.starts_with("Attach");
                self.edit_inline(q, role_call, |_, attached| {
                    let present = attached.contains(&arn);
                    match (attach, present) {
                        (true, false) => attached.push(arn),
                        (false, true) => attached.retain(|a| *a != arn),
                        (true, true) => {}
                        (false, false) => {
                            return Err(no_such_entity(format!("Policy {arn} was not found.")));
                        }
                    }
                    Ok(())
                })?;
            }
            "ListAttachedUserPolicies" | "ListAttachedRolePolicies" => {
                let (_, _, attached) = self.inline_of(q, role_call)?;
                let mut items = Vec::new();
                for arn in attached {
                    if let Ok((_, policy)) = store.policy(&arn) {
                        items.push((arn, policy));
                    }
                }
                paged(xml, q, "AttachedPolicies", items, |xml, policy| {
                    xml.leaf("PolicyName", &policy.name);
                    xml.leaf("PolicyArn", &policy.arn);
                })?;
            }
            "CreatePolicy" => {
                let policy = store.create_policy(
                    required(q, "PolicyName")?,
                    q.param("Path").unwrap_or("/"),
                    required(q, "PolicyDocument")?,
                    q.param("Description").map(str::to_owned),
                    now(),
                )?;
                xml.open("Policy");
                self.write_policy(xml, &policy)?;
                xml.close("Policy");
            }
            "GetPolicy" => {
                let (_, policy) = store.policy(required(q, "PolicyArn")?)?;
                xml.open("Policy");
                self.write_policy(xml, &policy)?;
                xml.close("Policy");
            }
            "ListPolicies" => {
                let scope = q.param("Scope").unwrap_or("All");
                let prefix = q.param("PathPrefix").unwrap_or("/");
                let only_attached = q.param("OnlyAttached") == Some("true");
                let mut policies: Vec<PolicyRecord> = Vec::new();
                if scope != "Local" {
                    policies.extend(managed::all());
                }
                if scope != "AWS" {
                    policies.extend(store.list::<PolicyRecord>(POLICIES)?);
                }
                let mut items = Vec::new();
                for policy in policies {
                    if !policy.path.starts_with(prefix) {
                        continue;
                    }
                    if only_attached {
                        let (users, roles) = store.attachments(&policy.arn)?;
                        if users.is_empty() && roles.is_empty() {
                            continue;
                        }
                    }
                    items.push((policy.arn.clone(), policy));
                }
                items.sort_by(|a, b| a.0.cmp(&b.0));
                let mut failed = None;
                paged(xml, q, "Policies", items, |xml, policy| {
                    if let Err(err) = self.write_policy(xml, policy) {
                        failed = Some(err);
                    }
                })?;
                if let Some(err) = failed {
                    return Err(err);
                }
            }
            "DeletePolicy" => store.delete_policy(required(q, "PolicyArn")?)?,
            "CreatePolicyVersion" => {
                let arn = required(q, "PolicyArn")?;
                let version = store.create_policy_version(
                    arn,
                    required(q, "PolicyDocument")?,
                    q.param("SetAsDefault") == Some("true"),
                    now(),
                )?;
                let (_, policy) = store.policy(arn)?;
                xml.open("PolicyVersion");
                Self::write_version(xml, &policy, &version, false);
                xml.close("PolicyVersion");
            }
            "GetPolicyVersion" => {
                let arn = required(q, "PolicyArn")?;
                let id = required(q, "VersionId")?;
                let (_, policy) = store.policy(arn)?;
                let version = policy.versions.iter().find(|v| v.id == id).ok_or_else(|| {
                    no_such_entity(format!("Policy {arn} version {id} does not exist."))
                })?;
                xml.open("PolicyVersion");
                Self::write_version(xml, &policy, version, true);
                xml.close("PolicyVersion");
            }
            "ListPolicyVersions" => {
                let (_, policy) = store.policy(required(q, "PolicyArn")?)?;
                let items = policy
                    .versions
                    .iter()
                    .rev()
                    .map(|v| (String::new(), v.clone()))
                    .collect();
                paged(xml, q, "Versions", items, |xml, version| {
                    Self::write_version(xml, &policy, version, false)
                })?;
            }
            "DeletePolicyVersion" => {
                store.delete_policy_version(required(q, "PolicyArn")?, required(q, "VersionId")?)?
            }
            "SetDefaultPolicyVersion" => {
                store.set_default_version(required(q, "PolicyArn")?, required(q, "VersionId")?)?
            }
            other => return Err(AwsError::unknown_operation(Protocol::Query, other)),
        }
        Ok(())
    }
}

fn max_session(q: &QueryRequest) -> Result<Option<i64>, AwsError> {
    match q.param("MaxSessionDuration") {
        None => Ok(None),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|secs| (3600..=43_200).contains(secs))
            .map(Some)
            .ok_or_else(|| {
                validation(format!(
                    "The requested MaxSessionDuration {text} is not between 3600 and 43200 seconds"
                ))
            }),
    }
}

impl Service for IamApi {
    type Operation = IamOperation;

    fn descriptor(&self) -> &'static ServiceDescriptor {
        &catalog::IAM
    }

    fn operations(&self) -> Vec<OperationDoc> {
        OperationDoc::named(ACTIONS)
    }

    fn parse(&self, req: &ServiceRequest) -> Result<IamOperation, AwsError> {
        let request = QueryRequest::parse(req)?;
        let entry = ACTIONS
            .iter()
            .find(|entry| entry.name == request.action)
            .ok_or_else(|| AwsError::unknown_operation(Protocol::Query, &request.action))?;
        Ok(IamOperation { entry, request })
    }

    async fn access(
        &self,
        ctx: &RequestContext,
        operation: &IamOperation,
    ) -> Result<Vec<Check>, AwsError> {
        checks(ctx, operation)
    }

    async fn handle(
        &self,
        ctx: &RequestContext,
        operation: IamOperation,
    ) -> Result<Response<Bytes>, AwsError> {
        let api = IamApi {
            store: self.store.clone(),
            credentials: self.credentials.clone(),
        };
        let caller = ctx.caller.clone();
        let name = operation.entry.name;
        let result = tokio::task::spawn_blocking(move || {
            let mut xml = XmlWriter::new();
            api.call(name, &operation.request, &caller, &mut xml)
                .map(|()| xml)
        })
        .await
        .map_err(internal)??;
        let namespace = catalog::IAM.xml_namespace.expect("iam has a namespace");
        Ok(query::response(name, namespace, &ctx.request_id, |xml| {
            xml.append(result)
        }))
    }
}
