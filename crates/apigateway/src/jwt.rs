//! JWT authorizers: a route with `authorizationType: JWT` takes a request only with a
//! token signed (RS256) by a key of its issuer's JWKS, for one of the authorizer's
//! audiences, unexpired, and carrying one of the route's scopes when it names any.
//! The JWKS is found through the issuer's OpenID discovery document and fetched as
//! any connection nimbus makes on someone's behalf (the egress policy applies),
//! then kept for five minutes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const JWKS_TTL: Duration = Duration::from_secs(300);
/// The least time between fetches for a key the cached set lacks, so tokens naming
/// unknown keys cannot make nimbus fetch on every request.
const MIN_REFETCH: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest discovery document or JWKS read.
const MAX_DOCUMENT: usize = 1 << 20;

/// Why a request was refused: no valid credential (401), a credential not good for
/// the route (403), or an authorizer that could not decide (500).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unauthorized(String),
    Forbidden,
    Broken(String),
}

pub struct Verifier {
    permits: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>,
    keys: Mutex<HashMap<String, (Instant, Value)>>,
}

fn unauthorized(reason: impl Into<String>) -> Refusal {
    Refusal::Unauthorized(reason.into())
}

fn part(text: &str) -> Result<Vec<u8>, Refusal> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| unauthorized("the token is not base64url"))
}

impl Verifier {
    pub fn new(permits: Arc<dyn Fn(IpAddr) -> bool + Send + Sync>) -> Self {
        Self {
            permits,
            keys: Mutex::new(HashMap::new()),
        }
    }

    async fn fetch(&self, url: &str) -> Result<Value, String> {
        let (client, url) =
            nimbus_engine::pinned_client(url, self.permits.as_ref(), FETCH_TIMEOUT).await?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let bytes = crate::invoke::read_bounded(response, MAX_DOCUMENT).await?;
        serde_json::from_slice(&bytes).map_err(|err| err.to_string())
    }

    /// The issuer's JWKS, from the cache (unless `fresh`, after the issuer rotated
    /// its keys) or its discovery document.
    async fn jwks(&self, issuer: &str, fresh: bool) -> Result<Value, String> {
        let good_for = if fresh { MIN_REFETCH } else { JWKS_TTL };
        if let Some((at, keys)) = self.keys.lock().expect("jwks").get(issuer)
            && at.elapsed() < good_for
        {
            return Ok(keys.clone());
        }
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document = self.fetch(&discovery).await?;
        let uri = document["jwks_uri"]
            .as_str()
            .ok_or("the discovery document names no jwks_uri")?;
        let keys = self.fetch(uri).await?;
        self.keys
            .lock()
            .expect("jwks")
            .insert(issuer.to_owned(), (Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// The token's claims and scopes, checked against the authorizer's
    /// `jwtConfiguration` and the route's `scopes`.
    pub async fn verify(
        &self,
        token: &str,
        configuration: &Value,
        scopes: &[String],
    ) -> Result<Value, Refusal> {
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .unwrap_or(token);
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(unauthorized("the token is not a JWT"));
        };
        let header: Value = serde_json::from_slice(&part(head)?)
            .map_err(|_| unauthorized("the token's header is not JSON"))?;
        let claims: Value = serde_json::from_slice(&part(body)?)
            .map_err(|_| unauthorized("the token's claims are not JSON"))?;
        if header["alg"] != "RS256" {
            return Err(unauthorized("the token is not signed with RS256"));
        }
        let issuer = configuration["issuer"].as_str().unwrap_or_default();
        if claims["iss"] != issuer {
            return Err(unauthorized("the token's issuer is not the authorizer's"));
        }
        let find = |keys: &Value| {
            keys["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["kid"] == header["kid"] && k["kty"] == "RSA")
                .cloned()
        };
        let cached = self.jwks(issuer, false).await.map_err(unauthorized)?;
        // A key the cached set lacks may be newer than it.
        let key = match find(&cached) {
            Some(key) => key,
            None => find(&self.jwks(issuer, true).await.map_err(unauthorized)?)
                .ok_or_else(|| unauthorized("no key of the issuer signed the token"))?,
        };
        let signed = format!("{head}.{body}");
        if !rsa_verifies(&key, signed.as_bytes(), &part(signature)?) {
            return Err(unauthorized("the token's signature does not verify"));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if claims["exp"].as_i64().is_none_or(|exp| exp <= now) {
            return Err(unauthorized("the token has expired"));
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now) {
            return Err(unauthorized("the token is not valid yet"));
        }
        let audiences: Vec<&str> = configuration["audience"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let token_audiences: Vec<&str> = match &claims["aud"] {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => claims["client_id"].as_str().into_iter().collect(),
        };
        if !token_audiences.iter().any(|a| audiences.contains(a)) {
            return Err(unauthorized("the token is not for this API's audience"));
        }
        let granted: Vec<String> = match &claims["scp"] {
            Value::Array(many) => many
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
            _ => claims["scope"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        };
        if !scopes.is_empty() && !scopes.iter().any(|s| granted.contains(s)) {
            return Err(Refusal::Forbidden);
        }
        // The event carries claims as strings, as API Gateway gives them.
        let strings: serde_json::Map<String, Value> = claims
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map_or_else(|| v.to_string(), str::to_owned)
                        .into(),
                )
            })
            .collect();
        Ok(
            json!({ "jwt": { "claims": strings, "scopes": if granted.is_empty() { Value::Null } else { json!(granted) } } }),
        )
    }
}

/// Whether `signature` is `key`'s (a JWK of an RSA public key) RS256 signature of
/// `message`.
fn rsa_verifies(key: &Value, message: &[u8], signature: &[u8]) -> bool {
    let component = |name: &str| {
        key[name]
            .as_str()
            .and_then(|text| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok())
            .and_then(|bytes| openssl::bn::BigNum::from_slice(&bytes).ok())
    };
    let (Some(n), Some(e)) = (component("n"), component("e")) else {
        return false;
    };
    let Ok(public) =
        openssl::rsa::Rsa::from_public_components(n, e).and_then(openssl::pkey::PKey::from_rsa)
    else {
        return false;
    };
    openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public)
        .and_then(|mut verifier| {
            verifier.update(message)?;
            verifier.verify(signature)
        })
        .unwrap_or(false)
}
