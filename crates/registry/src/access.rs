//! Who may do what in the registry: the tokens `GetAuthorizationToken` and the
//! `/v2/token` endpoint issue, the credentials registry clients present (Basic with
//! user `AWS` and a token, Basic with an access key pair, Bearer), and the decision
//! for one action on one repository.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use nimbus_auth::{CredentialStore, Principal};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::store::RepoRecord;

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
/// deleted or expired key takes its tokens with it.
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
    /// Loads the signing key from `path`, creating it (atomically, mode 0600) on
    /// first use.
    pub fn open(path: &Path, credentials: Arc<CredentialStore>) -> std::io::Result<Self> {
        let key = match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            _ => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(|err| std::io::Error::other(err.to_string()))?;
                nimbus_storage::write_atomic(path, &key, 0o600)?;
                key
            }
        };
        Ok(Self {
            key: key.try_into().expect("32 bytes"),
            credentials,
        })
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
        let credential = self
            .credentials
            .get(&claims.k)
            .filter(|credential| !credential.is_expired(now))
            .ok_or(Refused("the credentials the token was issued to are gone"))?;
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
        let credential = self.credentials.get(access_key_id).ok_or(refused)?;
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

/// Whether `caller` (`None`: anonymous) may perform `action` (`ecr:BatchGetImage`)
/// on `repo`. The account root may do anything. Anyone else needs the repository's
/// policy to allow it and not deny it; identity policies arrive with IAM.
pub fn allowed(caller: Option<&Principal>, action: &str, repo: &RepoRecord) -> bool {
    if caller.is_some_and(Principal::is_root) {
        return true;
    }
    let Some(policy) = repo
        .policy
        .as_deref()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
    else {
        return false;
    };
    let mut allow = false;
    for statement in statements(&policy) {
        if !principal_matches(&statement["Principal"], caller)
            || !action_matches(&statement["Action"], action)
        {
            continue;
        }
        match statement["Effect"].as_str() {
            Some("Deny") => return false,
            Some("Allow") => allow = true,
            _ => {}
        }
    }
    allow
}

fn statements(policy: &serde_json::Value) -> Vec<&serde_json::Value> {
    match &policy["Statement"] {
        serde_json::Value::Array(list) => list.iter().collect(),
        single @ serde_json::Value::Object(_) => vec![single],
        _ => Vec::new(),
    }
}

fn strings(value: &serde_json::Value) -> Vec<&str> {
    match value {
        serde_json::Value::String(text) => vec![text.as_str()],
        serde_json::Value::Array(list) => list.iter().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    }
}

fn principal_matches(principal: &serde_json::Value, caller: Option<&Principal>) -> bool {
    let named = match principal {
        serde_json::Value::String(star) => return star == "*",
        serde_json::Value::Object(map) => map.get("AWS").map(strings).unwrap_or_default(),
        _ => return false,
    };
    named.iter().any(|name| {
        *name == "*"
            || caller.is_some_and(|caller| {
                *name == caller.arn()
                    || *name == caller.account_id
                    || *name == format!("arn:aws:iam::{}:root", caller.account_id)
            })
    })
}

fn action_matches(actions: &serde_json::Value, action: &str) -> bool {
    strings(actions)
        .iter()
        .any(|pattern| wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase()))
}

/// `*` for any run of characters and `?` for one, as IAM and ECR lifecycle rules use.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(policy: Option<&str>) -> RepoRecord {
        RepoRecord {
            name: "app".into(),
            created_at: 0.0,
            tag_mutability: "MUTABLE".into(),
            scan_on_push: false,
            policy: policy.map(str::to_owned),
            lifecycle: None,
            tags: Default::default(),
        }
    }

    #[test]
    fn a_public_pull_policy_lets_anyone_pull_and_nobody_push() {
        let public = repo(Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]}]}"#,
        ));
        assert!(allowed(None, "ecr:BatchGetImage", &public));
        assert!(!allowed(None, "ecr:PutImage", &public));
        assert!(!allowed(None, "ecr:BatchGetImage", &repo(None)));
        assert!(allowed(
            Some(&Principal::root("000000000000")),
            "ecr:PutImage",
            &repo(None)
        ));
    }

    #[test]
    fn deny_beats_allow_and_wildcards_match() {
        let policy = repo(Some(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"ecr:*"},{"Effect":"Deny","Principal":"*","Action":"ecr:Put*"}]}"#,
        ));
        assert!(allowed(None, "ecr:BatchGetImage", &policy));
        assert!(!allowed(None, "ecr:PutImage", &policy));
        assert!(wildcard_match("prod-*", "prod-1") && !wildcard_match("prod-*", "dev-1"));
        assert!(wildcard_match("a?c*", "abcdef") && wildcard_match("*", ""));
    }

    #[test]
    fn tokens_round_trip_expire_and_resist_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let meta =
            Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let credentials = Arc::new(CredentialStore::load(meta, OffsetDateTime::now_utc()).unwrap());
        let tokens = Tokens::open(&dir.path().join("key"), credentials).unwrap();
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
}
