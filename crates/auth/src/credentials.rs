//! Access keys and the principals they stand for, kept in the metadata store and
//! served from memory on the request path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::identity::Principal;

const TABLE: &str = "credentials";
const ACCOUNT_TABLE: &str = "account";
const ROOT_RECORD: &str = "root";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt credential record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("this data dir belongs to account {stored}, not {configured}")]
    AccountMismatch { stored: String, configured: String },
    #[error("invalid root access key id {0:?}: expected 16 to 128 letters and digits")]
    InvalidRootKeyId(String),
    #[error("the root secret access key must not be empty")]
    EmptyRootSecret,
    #[error("no randomness available: {0}")]
    Random(String),
}

/// An access key pair and who it belongs to; temporary credentials also carry a
/// session token and an expiry.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal: Principal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Unix seconds after which a temporary credential is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// An IAM user's key set `Inactive`: kept, but refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inactive: bool,
    /// Unix seconds; 0 for keys made before this was recorded.
    #[serde(default)]
    pub created_at: i64,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("principal", &self.principal)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| now.unix_timestamp() >= at)
    }
}

#[derive(Serialize, Deserialize)]
struct RootRecord {
    account_id: String,
    access_key_id: String,
}

/// The root key pair and whether this start created it.
pub struct RootCredentials {
    pub credential: Arc<Credential>,
    pub created: bool,
}

/// Every known access key. Reads come from memory; writes go to the metadata store
/// first, so what a caller was handed is durable before it can be used.
pub struct CredentialStore {
    meta: Arc<dyn MetadataStore>,
    cache: RwLock<HashMap<String, Arc<Credential>>>,
    /// Bumped when another node wrote keys, so a read that raced the news is not kept.
    generation: std::sync::atomic::AtomicU64,
}

/// The table credentials live in, for nodes that watch it.
pub const CREDENTIALS_TABLE: &str = TABLE;

fn random_bytes<const N: usize>() -> Result<[u8; N], CredentialError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| CredentialError::Random(err.to_string()))?;
    Ok(bytes)
}

/// A key id like AWS's: a four-letter prefix and 16 characters of base32.
fn new_access_key_id(prefix: &str) -> Result<String, CredentialError> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let random = random_bytes::<16>()?;
    let tail: String = random
        .iter()
        .map(|b| ALPHABET[(*b & 31) as usize] as char)
        .collect();
    Ok(format!("{prefix}{tail}"))
}

fn new_secret(bytes: usize) -> Result<String, CredentialError> {
    let random = random_bytes::<96>()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(&random[..bytes]))
}

fn decode(key: &str, value: &[u8]) -> Result<Credential, CredentialError> {
    serde_json::from_slice(value).map_err(|err| CredentialError::Corrupt {
        key: key.to_owned(),
        reason: err.to_string(),
    })
}

fn encode(credential: &Credential) -> Vec<u8> {
    serde_json::to_vec(credential).expect("credentials serialize")
}

impl CredentialStore {
    /// Loads every credential, dropping temporary ones that have expired.
    pub fn load(
        meta: Arc<dyn MetadataStore>,
        now: OffsetDateTime,
    ) -> Result<Self, CredentialError> {
        let mut cache = HashMap::new();
        let mut expired = WriteBatch::new();
        for record in meta.scan_all(TABLE, "")? {
            let credential = decode(&record.key, &record.value)?;
            if credential.is_expired(now) {
                expired = expired.delete(TABLE, &record.key, Expect::Version(record.version));
            } else {
                cache.insert(record.key, Arc::new(credential));
            }
        }
        if !expired.is_empty() {
            meta.commit(expired)?;
        }
        Ok(Self {
            meta,
            cache: RwLock::new(cache),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Forgets what is cached: another node created, changed or removed keys. Keys
    /// are read again from the store as requests name them.
    pub fn invalidate(&self) {
        let mut cache = self.cache.write().expect("credential cache poisoned");
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        cache.clear();
    }

    /// Forgets temporary credentials that have expired, in memory and on disk.
    pub fn sweep(&self, now: OffsetDateTime) -> Result<usize, CredentialError> {
        // From the store, which also holds the sessions other nodes issued.
        let mut expired = Vec::new();
        for record in self.meta.scan_all(TABLE, "")? {
            if decode(&record.key, &record.value)?.is_expired(now) {
                expired.push(record.key);
            }
        }
        if expired.is_empty() {
            return Ok(0);
        }
        let batch = expired.iter().fold(WriteBatch::new(), |batch, key| {
            batch.delete(TABLE, key, Expect::Anything)
        });
        self.meta.commit(batch)?;
        let mut cache = self.cache.write().expect("credential cache poisoned");
        for key in &expired {
            cache.remove(key);
        }
        Ok(expired.len())
    }

    /// A key that may sign requests: known, and not set inactive.
    /// A key that may sign requests: known, and not set inactive. An error when the
    /// store, asked about a key this node has not cached, cannot answer.
    pub fn active(&self, access_key_id: &str) -> Result<Option<Arc<Credential>>, CredentialError> {
        Ok(self.get(access_key_id)?.filter(|c| !c.inactive))
    }

    fn get(&self, access_key_id: &str) -> Result<Option<Arc<Credential>>, CredentialError> {
        let generation = {
            let cache = self.cache.read().expect("credential cache poisoned");
            if let Some(found) = cache.get(access_key_id) {
                return Ok(Some(found.clone()));
            }
            self.generation.load(std::sync::atomic::Ordering::Acquire)
        };
        // Not here: issued by another node, or not at all. Only keys that exist are
        // kept, so unknown ids cannot grow the cache.
        let Some(record) = self.meta.get(TABLE, access_key_id)? else {
            return Ok(None);
        };
        let credential = Arc::new(decode(&record.key, &record.value)?);
        let mut cache = self.cache.write().expect("credential cache poisoned");
        if self.generation.load(std::sync::atomic::Ordering::Acquire) == generation {
            cache.insert(access_key_id.to_owned(), credential.clone());
        }
        Ok(Some(credential))
    }

    fn insert(
        &self,
        credential: Credential,
        extra: WriteBatch,
    ) -> Result<Arc<Credential>, CredentialError> {
        let key = credential.access_key_id.clone();
        self.meta
            .commit(extra.put(TABLE, &key, encode(&credential), Expect::Absent))?;
        let credential = Arc::new(credential);
        self.cache
            .write()
            .expect("credential cache poisoned")
            .insert(key, credential.clone());
        Ok(credential)
    }

    /// Returns the account's root keys, creating them on the first start from
    /// `provided` or from fresh random keys.
    pub fn bootstrap_root(
        &self,
        account_id: &str,
        provided: Option<(String, String)>,
    ) -> Result<RootCredentials, CredentialError> {
        if let Some(record) = self.meta.get(ACCOUNT_TABLE, ROOT_RECORD)? {
            let root: RootRecord =
                serde_json::from_slice(&record.value).map_err(|err| CredentialError::Corrupt {
                    key: ROOT_RECORD.to_owned(),
                    reason: err.to_string(),
                })?;
            if root.account_id != account_id {
                return Err(CredentialError::AccountMismatch {
                    stored: root.account_id,
                    configured: account_id.to_owned(),
                });
            }
            let credential =
                self.get(&root.access_key_id)?
                    .ok_or_else(|| CredentialError::Corrupt {
                        key: root.access_key_id.clone(),
                        reason: "the root access key record is missing".to_owned(),
                    })?;
            return Ok(RootCredentials {
                credential,
                created: false,
            });
        }
        let (access_key_id, secret_access_key) = match provided {
            Some((id, secret)) => {
                if !(16..=128).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(CredentialError::InvalidRootKeyId(id));
                }
                if secret.is_empty() {
                    return Err(CredentialError::EmptyRootSecret);
                }
                (id, secret)
            }
            None => (new_access_key_id("AKIA")?, new_secret(30)?),
        };
        let root = RootRecord {
            account_id: account_id.to_owned(),
            access_key_id: access_key_id.clone(),
        };
        let credential = self.insert(
            Credential {
                access_key_id,
                secret_access_key,
                principal: Principal::root(account_id),
                session_token: None,
                expires_at: None,
                inactive: false,
                created_at: OffsetDateTime::now_utc().unix_timestamp(),
            },
            WriteBatch::new().put(
                ACCOUNT_TABLE,
                ROOT_RECORD,
                serde_json::to_vec(&root).expect("root record serializes"),
                Expect::Absent,
            ),
        )?;
        Ok(RootCredentials {
            credential,
            created: true,
        })
    }

    /// Issues temporary credentials for `principal`, valid for `duration`.
    pub fn issue_session(
        &self,
        principal: Principal,
        duration: Duration,
        now: OffsetDateTime,
    ) -> Result<Arc<Credential>, CredentialError> {
        self.insert(
            Credential {
                access_key_id: new_access_key_id("ASIA")?,
                secret_access_key: new_secret(30)?,
                principal,
                session_token: Some(new_secret(96)?),
                expires_at: Some((now + duration).unix_timestamp()),
                inactive: false,
                created_at: now.unix_timestamp(),
            },
            WriteBatch::new(),
        )
    }

    /// Issues a long-term access key pair for an IAM user.
    pub fn issue_access_key(
        &self,
        principal: Principal,
        now: OffsetDateTime,
    ) -> Result<Arc<Credential>, CredentialError> {
        self.insert(
            Credential {
                access_key_id: new_access_key_id("AKIA")?,
                secret_access_key: new_secret(30)?,
                principal,
                session_token: None,
                expires_at: None,
                inactive: false,
                created_at: now.unix_timestamp(),
            },
            WriteBatch::new(),
        )
    }

    /// The long-term keys whose principal `owns` accepts, oldest first.
    pub fn access_keys(
        &self,
        owns: impl Fn(&Principal) -> bool,
    ) -> Result<Vec<Arc<Credential>>, CredentialError> {
        // From the store: the cache holds only the keys this node has seen in use.
        let mut keys = Vec::new();
        for record in self.meta.scan_all(TABLE, "")? {
            let credential = decode(&record.key, &record.value)?;
            if credential.session_token.is_none() && owns(&credential.principal) {
                keys.push(Arc::new(credential));
            }
        }
        keys.sort_by(|a, b| {
            (a.created_at, &a.access_key_id).cmp(&(b.created_at, &b.access_key_id))
        });
        Ok(keys)
    }

    /// Marks a key active or inactive; false when there is no such key.
    pub fn set_inactive(
        &self,
        access_key_id: &str,
        inactive: bool,
    ) -> Result<bool, CredentialError> {
        let Some(current) = self.get(access_key_id)? else {
            return Ok(false);
        };
        let mut updated = (*current).clone();
        updated.inactive = inactive;
        self.meta.commit(WriteBatch::new().put(
            TABLE,
            access_key_id,
            encode(&updated),
            Expect::Anything,
        ))?;
        self.cache
            .write()
            .expect("credential cache")
            .insert(access_key_id.to_owned(), Arc::new(updated));
        Ok(true)
    }

    /// Forgets a key; false when there was no such key.
    pub fn remove(&self, access_key_id: &str) -> Result<bool, CredentialError> {
        if self.get(access_key_id)?.is_none() {
            return Ok(false);
        }
        self.meta
            .commit(WriteBatch::new().delete(TABLE, access_key_id, Expect::Anything))?;
        self.cache
            .write()
            .expect("credential cache")
            .remove(access_key_id);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_storage::SqliteStore;

    fn meta() -> (tempfile::TempDir, Arc<dyn MetadataStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
        (dir, Arc::new(store))
    }

    #[test]
    fn root_is_created_once_and_kept() {
        let (_dir, meta) = meta();
        let now = OffsetDateTime::now_utc();
        let store = CredentialStore::load(meta.clone(), now).unwrap();
        let first = store.bootstrap_root("000000000000", None).unwrap();
        assert!(first.created);
        assert!(first.credential.access_key_id.starts_with("AKIA"));
        assert_eq!(first.credential.access_key_id.len(), 20);
        assert_eq!(first.credential.secret_access_key.len(), 40);

        let reloaded = CredentialStore::load(meta, now).unwrap();
        let provided = Some(("AKIAIGNOREDIGNORED00".to_owned(), "x".to_owned()));
        let again = reloaded.bootstrap_root("000000000000", provided).unwrap();
        assert!(!again.created);
        assert_eq!(again.credential, first.credential);
        assert!(matches!(
            reloaded.bootstrap_root("111111111111", None),
            Err(CredentialError::AccountMismatch { .. })
        ));
    }

    #[test]
    fn provided_root_keys_are_validated() {
        let (_dir, meta) = meta();
        let store = CredentialStore::load(meta, OffsetDateTime::now_utc()).unwrap();
        let bad = Some(("short".to_owned(), "secret".to_owned()));
        assert!(matches!(
            store.bootstrap_root("000000000000", bad),
            Err(CredentialError::InvalidRootKeyId(_))
        ));
        let good = Some(("AKIDEXAMPLE000000000".to_owned(), "secret".to_owned()));
        let root = store.bootstrap_root("000000000000", good).unwrap();
        assert_eq!(root.credential.secret_access_key, "secret");
        assert!(
            store
                .get("AKIDEXAMPLE000000000")
                .unwrap()
                .unwrap()
                .principal
                .is_root()
        );
    }

    #[test]
    fn sessions_are_durable_and_expired_ones_are_dropped_on_load() {
        let (_dir, meta) = meta();
        let now = OffsetDateTime::now_utc();
        let store = CredentialStore::load(meta.clone(), now).unwrap();
        let session = store
            .issue_session(Principal::root("000000000000"), Duration::hours(1), now)
            .unwrap();
        assert!(session.access_key_id.starts_with("ASIA"));
        assert!(session.session_token.as_ref().unwrap().len() >= 100);

        let reloaded = CredentialStore::load(meta.clone(), now).unwrap();
        assert_eq!(
            reloaded.get(&session.access_key_id).unwrap().as_deref(),
            Some(&*session)
        );
        assert!(!session.is_expired(now));
        assert!(session.is_expired(now + Duration::hours(1)));

        assert_eq!(reloaded.sweep(now).unwrap(), 0);
        assert_eq!(reloaded.sweep(now + Duration::hours(2)).unwrap(), 1);
        assert!(reloaded.get(&session.access_key_id).unwrap().is_none());
        assert!(meta.get(TABLE, &session.access_key_id).unwrap().is_none());

        let second = store
            .issue_session(Principal::root("000000000000"), Duration::hours(1), now)
            .unwrap();
        let later = CredentialStore::load(meta.clone(), now + Duration::hours(2)).unwrap();
        assert!(later.get(&second.access_key_id).unwrap().is_none());
        assert!(meta.get(TABLE, &second.access_key_id).unwrap().is_none());
    }
}
