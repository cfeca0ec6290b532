//! IAM's entities in the metadata store: users, roles, their inline policies and
//! attachments, and customer managed policies with their versions. AWS managed
//! policies are built in (`managed.rs`).
//!
//! Tables: `iam.users/<name>`, `iam.roles/<name>`, `iam.policies/<name>`. Access keys
//! live in the credential store with every other key.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;
use nimbus_auth::policy::{Policy, PolicyKind};
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, MetadataStore, Record, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::managed;

pub(crate) const USERS: &str = "iam.users";
pub(crate) const ROLES: &str = "iam.roles";
pub(crate) const POLICIES: &str = "iam.policies";
/// The tables whose records the authorizer and the role cache keep.
pub const TABLES: &[&str] = &[USERS, ROLES, POLICIES];

/// Versions a managed policy keeps at most, as on AWS.
const MAX_VERSIONS: usize = 5;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    pub id: String,
    pub path: String,
    /// Unix seconds.
    pub created: i64,
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleRecord {
    pub name: String,
    pub id: String,
    pub path: String,
    pub created: i64,
    /// The trust policy document.
    pub trust: String,
    #[serde(default)]
    pub description: Option<String>,
    pub max_session_secs: i64,
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
    #[serde(default)]
    pub attached: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub id: String,
    pub document: String,
    pub created: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: String,
    pub id: String,
    pub path: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created: i64,
    pub updated: i64,
    pub default_version: String,
    pub versions: Vec<PolicyVersion>,
    /// The number the next version gets (`v<n>`): numbers are never reused.
    pub next_version: u32,
}

impl PolicyRecord {
    pub fn default_document(&self) -> Option<&str> {
        self.versions
            .iter()
            .find(|v| v.id == self.default_version)
            .map(|v| v.document.as_str())
    }
}

pub fn no_such_entity(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::NOT_FOUND, "NoSuchEntity", message)
}

pub fn already_exists(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::CONFLICT, "EntityAlreadyExists", message)
}

pub fn delete_conflict(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::CONFLICT, "DeleteConflict", message)
}

pub fn limit_exceeded(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::CONFLICT, "LimitExceeded", message)
}

pub fn invalid_input(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "InvalidInput", message)
}

pub fn malformed(message: impl std::fmt::Display) -> AwsError {
    AwsError::new(
        StatusCode::BAD_REQUEST,
        "MalformedPolicyDocument",
        message.to_string(),
    )
}

pub fn internal(err: impl std::fmt::Display) -> AwsError {
    tracing::error!(error = %err, "iam store failure");
    AwsError::internal(nimbus_edge::Protocol::Query)
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("iam records serialize")
}

fn decode<T: for<'de> Deserialize<'de>>(record: &Record) -> Result<T, AwsError> {
    serde_json::from_slice(&record.value).map_err(internal)
}

/// An id like AWS's: a four-letter prefix and 17 characters of base32.
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (first, second) = (
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    );
    let tail: String = first
        .iter()
        .chain(&second)
        .take(17)
        .map(|b| ALPHABET[(*b & 31) as usize] as char)
        .collect();
    format!("{prefix}{tail}")
}

pub fn check_name(field: &str, name: &str, max: usize) -> Result<(), AwsError> {
    let valid = (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!(
                "1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length at most {max}"
            ),
        ))
    }
}

pub fn check_path(path: &str) -> Result<(), AwsError> {
    if path.starts_with('/') && path.ends_with('/') && path.len() <= 512 {
        Ok(())
    } else {
        Err(AwsError::new(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            format!("The specified value for path is invalid: {path}"),
        ))
    }
}

/// Parses a document as the kind of policy it is meant to be, with IAM's error.
pub fn check_document(document: &str, kind: PolicyKind) -> Result<Policy, AwsError> {
    Policy::parse(document, kind).map_err(malformed)
}

/// The IAM store. Every write bumps `generation`, which is what cached evaluations
/// of identity policies, and the roles read here, are checked against.
pub struct IamStore {
    meta: Arc<dyn MetadataStore>,
    pub account: String,
    generation: AtomicU64,
    /// Roles as read at a generation: every warm invoke asks about its function's
    /// execution role, which must not cost a metadata read (a network round trip on
    /// PostgreSQL).
    roles: Mutex<HashMap<String, (u64, u64, RoleRecord)>>,
}

impl IamStore {
    pub fn new(meta: Arc<dyn MetadataStore>, account: &str) -> Self {
        Self {
            meta,
            account: account.to_owned(),
            generation: AtomicU64::new(0),
            roles: Mutex::new(HashMap::new()),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Forgets every cached evaluation and role: another node wrote to IAM.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn commit(&self, batch: WriteBatch, what: &str) -> Result<(), AwsError> {
        let result = self.meta.commit(batch);
        self.generation.fetch_add(1, Ordering::AcqRel);
        result.map_err(|err| match err {
            StoreError::Conflict { .. } => AwsError::new(
                StatusCode::CONFLICT,
                "ConcurrentModification",
                format!("{what} was changed at the same time; try again."),
            ),
            err => internal(err),
        })
    }

    pub(crate) fn load<T: for<'de> Deserialize<'de>>(
        &self,
        table: &str,
        key: &str,
    ) -> Result<Option<(u64, T)>, AwsError> {
        match self.meta.get(table, key).map_err(internal)? {
            Some(record) => Ok(Some((record.version, decode(&record)?))),
            None => Ok(None),
        }
    }

    pub(crate) fn list<T: for<'de> Deserialize<'de>>(
        &self,
        table: &str,
    ) -> Result<Vec<T>, AwsError> {
        self.meta
            .scan_all(table, "")
            .map_err(internal)?
            .iter()
            .map(decode)
            .collect()
    }

    pub(crate) fn put(
        &self,
        table: &str,
        key: &str,
        value: &impl Serialize,
        expect: Expect,
        what: &str,
    ) -> Result<(), AwsError> {
        self.commit(
            WriteBatch::new().put(table, key, encode(value), expect),
            what,
        )
    }

    pub(crate) fn delete(
        &self,
        table: &str,
        key: &str,
        version: u64,
        what: &str,
    ) -> Result<(), AwsError> {
        self.commit(
            WriteBatch::new().delete(table, key, Expect::Version(version)),
            what,
        )
    }

    pub fn user(&self, name: &str) -> Result<(u64, UserRecord), AwsError> {
        self.load(USERS, name)?
            .ok_or_else(|| no_such_entity(format!("The user with name {name} cannot be found.")))
    }

    pub fn role(&self, name: &str) -> Result<(u64, RoleRecord), AwsError> {
        // Read before the load: a write meanwhile makes what is loaded stale at once.
        let generation = self.generation();
        if let Some((at, version, role)) = self.roles.lock().expect("role cache").get(name)
            && *at == generation
        {
            return Ok((*version, role.clone()));
        }
        let (version, role): (u64, RoleRecord) = self
            .load(ROLES, name)?
            .ok_or_else(|| no_such_entity(format!("The role with name {name} cannot be found.")))?;
        let mut cache = self.roles.lock().expect("role cache");
        // Only roles that exist are kept, and only as of the latest generation, so
        // the cache holds at most the roles in use.
        cache.retain(|_, (at, _, _)| *at == generation);
        cache.insert(name.to_owned(), (generation, version, role.clone()));
        Ok((version, role))
    }

    pub fn user_arn(&self, user: &UserRecord) -> String {
        format!(
            "arn:aws:iam::{}:user{}{}",
            self.account, user.path, user.name
        )
    }

    pub fn role_arn(&self, role: &RoleRecord) -> String {
        format!(
            "arn:aws:iam::{}:role{}{}",
            self.account, role.path, role.name
        )
    }

    /// The role an ARN (`arn:aws:iam::<account>:role/<path>/<name>`) names.
    pub fn role_by_arn(&self, arn: &str) -> Result<(u64, RoleRecord), AwsError> {
        let name = arn
            .strip_prefix(&format!("arn:aws:iam::{}:role/", self.account))
            .and_then(|rest| rest.rsplit('/').next())
            .ok_or_else(|| invalid_input(format!("{arn} is not a role of this account")))?;
        let (version, role) = self.role(name)?;
        if self.role_arn(&role) != arn {
            return Err(no_such_entity(format!(
                "The role with name {name} cannot be found."
            )));
        }
        Ok((version, role))
    }

    /// A managed policy by ARN: a customer one from the store, or a built-in AWS one.
    pub fn policy(&self, arn: &str) -> Result<(Option<u64>, PolicyRecord), AwsError> {
        if let Some(policy) = managed::by_arn(arn) {
            return Ok((None, policy));
        }
        let missing =
            || no_such_entity(format!("Policy {arn} does not exist or is not attachable."));
        let name = arn
            .strip_prefix(&format!("arn:aws:iam::{}:policy/", self.account))
            .and_then(|rest| rest.rsplit('/').next())
            .ok_or_else(missing)?;
        let (version, policy): (u64, PolicyRecord) =
            self.load(POLICIES, name)?.ok_or_else(missing)?;
        if policy.arn != arn {
            return Err(missing());
        }
        Ok((Some(version), policy))
    }

    /// The documents that apply to a user or role: inline ones, then the default
    /// versions of attached managed policies.
    pub fn documents(
        &self,
        inline: &BTreeMap<String, String>,
        attached: &[String],
    ) -> Result<Vec<String>, AwsError> {
        let mut documents: Vec<String> = inline.values().cloned().collect();
        for arn in attached {
            match self.policy(arn) {
                Ok((_, policy)) => documents.extend(policy.default_document().map(str::to_owned)),
                Err(err) if err.code == "NoSuchEntity" => {}
                Err(err) => return Err(err),
            }
        }
        Ok(documents)
    }

    /// Creates a customer managed policy.
    pub fn create_policy(
        &self,
        name: &str,
        path: &str,
        document: &str,
        description: Option<String>,
        now: i64,
    ) -> Result<PolicyRecord, AwsError> {
        check_name("policyName", name, 128)?;
        check_path(path)?;
        check_document(document, PolicyKind::Identity)?;
        let policy = PolicyRecord {
            name: name.to_owned(),
            id: new_id("ANPA"),
            path: path.to_owned(),
            arn: format!("arn:aws:iam::{}:policy{path}{name}", self.account),
            description,
            created: now,
            updated: now,
            default_version: "v1".to_owned(),
            versions: vec![PolicyVersion {
                id: "v1".to_owned(),
                document: document.to_owned(),
                created: now,
            }],
            next_version: 2,
        };
        self.put(POLICIES, name, &policy, Expect::Absent, "The policy")
            .map_err(|err| {
                if err.code == "ConcurrentModification" {
                    already_exists(format!(
                        "A policy called {name} already exists. Duplicate names are not allowed."
                    ))
                } else {
                    err
                }
            })?;
        Ok(policy)
    }

    /// A customer policy for an edit: AWS's own cannot be changed.
    pub fn customer_policy(&self, arn: &str) -> Result<(u64, PolicyRecord), AwsError> {
        match self.policy(arn)? {
            (Some(version), policy) => Ok((version, policy)),
            (None, _) => Err(AwsError::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                format!("{arn} is an AWS managed policy and cannot be changed"),
            )),
        }
    }

    pub fn create_policy_version(
        &self,
        arn: &str,
        document: &str,
        set_default: bool,
        now: i64,
    ) -> Result<PolicyVersion, AwsError> {
        check_document(document, PolicyKind::Identity)?;
        let (version, mut policy) = self.customer_policy(arn)?;
        if policy.versions.len() >= MAX_VERSIONS {
            return Err(limit_exceeded(format!(
                "A managed policy can have up to {MAX_VERSIONS} versions. Before you create a new version, you must delete an existing version."
            )));
        }
        let created = PolicyVersion {
            id: format!("v{}", policy.next_version),
            document: document.to_owned(),
            created: now,
        };
        policy.next_version += 1;
        policy.updated = now;
        if set_default {
            policy.default_version = created.id.clone();
        }
        policy.versions.push(created.clone());
        self.put(
            POLICIES,
            &policy.name,
            &policy,
            Expect::Version(version),
            "The policy",
        )?;
        Ok(created)
    }

    pub fn delete_policy_version(&self, arn: &str, id: &str) -> Result<(), AwsError> {
        let (version, mut policy) = self.customer_policy(arn)?;
        if policy.default_version == id {
            return Err(delete_conflict(
                "Cannot delete the default version of a policy.",
            ));
        }
        let before = policy.versions.len();
        policy.versions.retain(|v| v.id != id);
        if policy.versions.len() == before {
            return Err(no_such_entity(format!(
                "Policy {arn} version {id} does not exist."
            )));
        }
        self.put(
            POLICIES,
            &policy.name,
            &policy,
            Expect::Version(version),
            "The policy",
        )
    }

    pub fn set_default_version(&self, arn: &str, id: &str) -> Result<(), AwsError> {
        let (version, mut policy) = self.customer_policy(arn)?;
        if !policy.versions.iter().any(|v| v.id == id) {
            return Err(no_such_entity(format!(
                "Policy {arn} version {id} does not exist."
            )));
        }
        policy.default_version = id.to_owned();
        self.put(
            POLICIES,
            &policy.name,
            &policy,
            Expect::Version(version),
            "The policy",
        )
    }

    /// Users and roles a managed policy is attached to.
    pub fn attachments(&self, arn: &str) -> Result<(Vec<String>, Vec<String>), AwsError> {
        let users: Vec<UserRecord> = self.list(USERS)?;
        let roles: Vec<RoleRecord> = self.list(ROLES)?;
        Ok((
            users
                .into_iter()
                .filter(|u| u.attached.iter().any(|a| a == arn))
                .map(|u| u.name)
                .collect(),
            roles
                .into_iter()
                .filter(|r| r.attached.iter().any(|a| a == arn))
                .map(|r| r.name)
                .collect(),
        ))
    }

    pub fn delete_policy(&self, arn: &str) -> Result<(), AwsError> {
        let (version, policy) = self.customer_policy(arn)?;
        let (users, roles) = self.attachments(arn)?;
        if !users.is_empty() || !roles.is_empty() {
            return Err(delete_conflict(
                "Cannot delete a policy attached to entities.",
            ));
        }
        if policy.versions.len() > 1 {
            return Err(delete_conflict(
                "Cannot delete a policy with non-default versions: delete them first.",
            ));
        }
        self.delete(POLICIES, &policy.name, version, "The policy")
    }
}
