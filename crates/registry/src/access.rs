//! Who is calling the registry: the tokens `GetAuthorizationToken` and the
//! `/v2/token` endpoint issue, and the credentials registry clients present (Basic
//! with user `AWS` and a token, Basic with an access key pair, Bearer). What a caller
//! may do is IAM's decision ([`crate::Registry::permits`]).

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use nimbus_auth::{CredentialStore, Principal};
use nimbus_storage::{Expect, MetadataStore, Record, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

/// How long an ECR authorization token (a `podman login` password) is good for.
pub const LOGIN_TOKEN_SECS: i64 = 12 * 3600;
/// How long a Bearer token from `/v2/token` is good for.
pub const BEARER_TOKEN_SECS: i64 = 3600;

#[derive(Serialize, Deserialize)]
struct Claims {
    /// The access key the token was issued to; empty for an anonymous token.
    k: String,
    /// Unix seconds after which the token is refused.
    e: i64,
}

/// Issues and checks registry tokens: claims signed with a key kept in the data dir,
/// so tokens survive restarts. A token names an access key, not a principal, so a
/// deleted, deactivated or expired key takes its tokens with it.
/// The table holding the key registry tokens are signed with.
const TOKEN_KEY: &str = "registry.token-key";

pub struct Tokens {
    key: [u8; 32],
    credentials: Arc<CredentialStore>,
}

/// A caller the registry knows: the access key it presented (directly or through a
/// token) and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub access_key_id: String,
    pub principal: Principal,
}

/// Why a presented credential was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub &'static str);

impl Tokens {
    /// Loads the signing key from the metadata store, so that every node of a
    /// deployment checks the tokens any node issued, making it on first use (from the
    /// key file an older nimbus kept at `legacy`, if any, so its tokens stay good).
    pub fn open(
        meta: &dyn MetadataStore,
        legacy: &Path,
        credentials: Arc<CredentialStore>,
    ) -> Result<Self, StoreError> {
        let stored = |record: Option<Record>| {
            record
                .and_then(|r| <[u8; 32]>::try_from(r.value.as_slice()).ok())
                .map(|key| Self {
                    key,
                    credentials: credentials.clone(),
                })
        };
        if let Some(tokens) = stored(meta.get(TOKEN_KEY, "key")?) {
            return Ok(tokens);
        }
        let key = match std::fs::read(legacy) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            _ => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|err| StoreError::Backend(err.to_string()))?;
                key
            }
        };
        match meta.commit(WriteBatch::new().put(TOKEN_KEY, "key", key, Expect::Absent)) {
            // Another node made it first: its key is the deployment's.
            Ok(()) | Err(StoreError::Conflict { .. }) => {}
            Err(err) => return Err(err),
        }
        stored(meta.get(TOKEN_KEY, "key")?)
            .ok_or_else(|| StoreError::Backend("the registry's token key is unreadable".into()))
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length")
    }

    /// A token for `access_key_id` (empty: anonymous) valid `secs` from `now`.
    pub fn issue(&self, access_key_id: &str, secs: i64, now: OffsetDateTime) -> (String, i64) {
        let expires = now.unix_timestamp() + secs;
        let claims = serde_json::to_vec(&Claims {
            k: access_key_id.to_owned(),
            e: expires,
        })
        .expect("claims serialize");
        let mut mac = self.mac();
        mac.update(&claims);
        let signature = mac.finalize().into_bytes();
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&claims),
            URL_SAFE_NO_PAD.encode(signature)
        );
        (token, expires)
    }

    /// The caller a token stands for: `Ok(None)` for an anonymous token.
    pub fn check(&self, token: &str, now: OffsetDateTime) -> Result<Option<Identity>, Refused> {
        let invalid = Refused("the authorization token is invalid");
        let (claims, signature) = token.split_once('.').ok_or(Refused("malformed token"))?;
        let claims = URL_SAFE_NO_PAD
            .decode(claims)
            .map_err(|_| Refused("malformed token"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Refused("malformed token"))?;
        let mut mac = self.mac();
        mac.update(&claims);
        mac.verify_slice(&signature)
            .map_err(|_| Refused("the authorization token is invalid"))?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| invalid)?;
        if now.unix_timestamp() >= claims.e {
            return Err(Refused("the authorization token has expired"));
        }
        if claims.k.is_empty() {
            return Ok(None);
        }
        // The key is looked up at each use, so deactivating or deleting it takes the
        // tokens issued to it with it.
        let credential = self
            .credentials
            .active(&claims.k)
            .map_err(|_| Refused("the credential store is unreachable: try again"))?
            .filter(|credential| !credential.is_expired(now))
            .ok_or(Refused(
                "the credentials the token was issued to are inactive or gone",
            ))?;
        Ok(Some(Identity {
            access_key_id: claims.k,
            principal: credential.principal.clone(),
        }))
    }

    /// The caller an `Authorization` header names: Basic `AWS:<token>` (what
    /// `podman login` sends with the ECR password), Basic `<access key id>:<secret>`,
    /// or Bearer `<token>`. `Ok(None)`: no credentials, or an anonymous token.
    pub fn caller(
        &self,
        authorization: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<Identity>, Refused> {
        let Some(header) = authorization else {
            return Ok(None);
        };
        if let Some(token) = strip_scheme(header, "Bearer") {
            return self.check(token.trim(), now);
        }
        let Some(encoded) = strip_scheme(header, "Basic") else {
            return Err(Refused("unsupported authorization scheme"));
        };
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(Refused("malformed basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or(Refused("malformed basic credentials"))?;
        if user == "AWS" {
            return self.check(password, now).and_then(|caller| {
                caller
                    .ok_or(Refused("the authorization token is invalid"))
                    .map(Some)
            });
        }
        self.key_pair(user, password, now).map(Some)
    }

    /// An access key pair used as a user name and password. Temporary credentials
    /// need their session token, which Basic auth cannot carry: they log in with a
    /// token instead.
    pub fn key_pair(
        &self,
        access_key_id: &str,
        secret: &str,
        now: OffsetDateTime,
    ) -> Result<Identity, Refused> {
        let refused = Refused("invalid username or password");
        let credential = self
            .credentials
            .active(access_key_id)
            .map_err(|_| Refused("the credential store is unreachable: try again"))?
            .ok_or(refused)?;
        let matches: bool = credential
            .secret_access_key
            .as_bytes()
            .ct_eq(secret.as_bytes())
            .into();
        if !matches || credential.session_token.is_some() || credential.is_expired(now) {
            return Err(Refused("invalid username or password"));
        }
        Ok(Identity {
            access_key_id: access_key_id.to_owned(),
            principal: credential.principal.clone(),
        })
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata store in a temporary directory, with its credential store.
    fn stores() -> (
        tempfile::TempDir,
        Arc<nimbus_storage::SqliteStore>,
        Arc<CredentialStore>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let meta =
            Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let credentials =
            Arc::new(CredentialStore::load(meta.clone(), OffsetDateTime::now_utc()).unwrap());
        (dir, meta, credentials)
    }

    #[test]
    fn tokens_round_trip_expire_and_resist_tampering() {
        let (dir, meta, credentials) = stores();
        let tokens = Tokens::open(meta.as_ref(), &dir.path().join("key"), credentials).unwrap();
        let now = OffsetDateTime::now_utc();
        let (anonymous, _) = tokens.issue("", 60, now);
        assert_eq!(tokens.check(&anonymous, now), Ok(None));
        assert!(
            tokens
                .check(&anonymous, now + time::Duration::seconds(61))
                .is_err()
        );
        let forged = anonymous.replace('.', ".x");
        assert!(tokens.check(&forged, now).is_err());
        // A token for a key the store does not know is refused.
        let (unknown, _) = tokens.issue("AKIDUNKNOWN", 60, now);
        assert!(tokens.check(&unknown, now).is_err());
    }

    #[test]
    fn every_node_signs_with_the_key_the_first_made_and_an_old_key_file_seeds_it() {
        let (dir, meta, credentials) = stores();
        let now = OffsetDateTime::now_utc();
        let legacy = dir.path().join("token-key");
        std::fs::write(&legacy, [7u8; 32]).unwrap();
        let first = Tokens::open(meta.as_ref(), &legacy, credentials.clone()).unwrap();
        assert_eq!(first.key, [7u8; 32]);
        let other = Tokens::open(meta.as_ref(), &dir.path().join("none"), credentials).unwrap();
        let (token, _) = first.issue("", 60, now);
        assert_eq!(other.check(&token, now), Ok(None));
    }

    #[test]
    fn an_inactive_key_is_refused_as_a_password_and_through_its_tokens() {
        let (dir, meta, credentials) = stores();
        let now = OffsetDateTime::now_utc();
        let tokens =
            Tokens::open(meta.as_ref(), &dir.path().join("key"), credentials.clone()).unwrap();
        let key = credentials
            .issue_access_key(Principal::root("000000000000"), now)
            .unwrap();
        let basic = |user: &str, password: &str| {
            format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
        };
        let pair = basic(&key.access_key_id, &key.secret_access_key);
        // Issued while the key is active, as `podman login` does before a push.
        let (token, _) = tokens.issue(&key.access_key_id, LOGIN_TOKEN_SECS, now);
        let login = basic("AWS", &token);
        let bearer = format!("Bearer {token}");
        for header in [&pair, &login, &bearer] {
            assert!(tokens.caller(Some(header), now).unwrap().is_some());
        }

        credentials.set_inactive(&key.access_key_id, true).unwrap();
        for header in [&pair, &login, &bearer] {
            assert!(tokens.caller(Some(header), now).is_err(), "{header}");
        }
        credentials.set_inactive(&key.access_key_id, false).unwrap();
        assert!(tokens.caller(Some(&login), now).unwrap().is_some());
    }
}
