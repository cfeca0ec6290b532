//! AWS Signature Version 4: reading a request's signature (Authorization header or
//! presigned query string) and checking it against a secret.
//!
//! Everything here is pure: the caller supplies the request parts, the payload hash,
//! the secret and the current time.

use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime, PrimitiveDateTime, macros::format_description};

use crate::AuthError;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The header that carries the payload's hash (or its mode).
pub const CONTENT_SHA256: &str = "x-amz-content-sha256";
/// How far a header-signed request's time may be from ours.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(15);
/// The longest validity a presigned URL may ask for (seven days).
const MAX_PRESIGNED_EXPIRY_SECS: i64 = 604_800;

/// RFC 3986 unreserved characters stay; everything else is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const ENCODE_PATH: &AsciiSet = &ENCODE.remove(b'/');

/// How the canonical URI is derived from the path a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStyle {
    /// Every service but S3: dot segments and empty segments are removed and the
    /// (already encoded) path is encoded once more.
    Normalized,
    /// S3: the path is used as sent, encoded exactly once.
    AsSent,
}

/// The parts of an HTTP request that a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (percent-encoded), without the query.
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
}

/// `<date>/<region>/<service>/aws4_request`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    fn to_path(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// A signature read from a request, not yet verified.
#[derive(Debug, Clone)]
pub struct SignatureV4 {
    pub access_key_id: String,
    pub scope: Scope,
    pub signed_headers: Vec<String>,
    signature: [u8; 32],
    /// The request time exactly as the client wrote it (it is part of what was signed).
    amz_date: String,
    pub timestamp: OffsetDateTime,
    /// For presigned URLs: how long after `timestamp` the URL is valid.
    pub expires: Option<Duration>,
    pub security_token: Option<String>,
}

fn incomplete(message: impl Into<String>) -> AuthError {
    AuthError::Incomplete(message.into())
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| percent_decode_str(value).decode_utf8_lossy().into_owned())
    })
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn parse_amz_date(text: &str) -> Result<OffsetDateTime, AuthError> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(text, format)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| {
            incomplete(format!(
                "Invalid X-Amz-Date '{text}': expected YYYYMMDD'T'HHMMSS'Z'"
            ))
        })
}

/// The request time from `X-Amz-Date`, or from `Date` for clients that only send that.
fn header_date(headers: &HeaderMap) -> Result<(String, OffsetDateTime), AuthError> {
    if let Some(text) = header_str(headers, "x-amz-date") {
        return Ok((text.to_owned(), parse_amz_date(text)?));
    }
    let text = header_str(headers, "date").ok_or_else(|| {
        incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    let parsed = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822)
        .map_err(|_| incomplete(format!("Invalid Date header '{text}'")))?
        .to_offset(time::UtcOffset::UTC);
    let amz = parsed
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("formatting a parsed date");
    Ok((amz, parsed))
}

fn parse_credential(text: &str) -> Result<(String, Scope), AuthError> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"]
            if !key.is_empty() && date.len() == 8 && !region.is_empty() && !service.is_empty() =>
        {
            Ok((
                (*key).to_owned(),
                Scope {
                    date: (*date).to_owned(),
                    region: (*region).to_owned(),
                    service: (*service).to_owned(),
                },
            ))
        }
        _ => Err(incomplete(format!(
            "Credential should be of the form <access key>/<date>/<region>/<service>/aws4_request, got '{text}'"
        ))),
    }
}

fn parse_signature(text: &str) -> Result<[u8; 32], AuthError> {
    let mut signature = [0u8; 32];
    hex::decode_to_slice(text, &mut signature)
        .map_err(|_| incomplete("Signature must be 64 hexadecimal characters"))?;
    Ok(signature)
}

fn parse_signed_headers(text: &str) -> Result<Vec<String>, AuthError> {
    let names: Vec<String> = text.split(';').map(str::to_owned).collect();
    if names
        .iter()
        .any(|n| n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(incomplete(format!("Invalid SignedHeaders '{text}'")));
    }
    if !names.iter().any(|n| n == "host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ));
    }
    Ok(names)
}

/// The service of a request's credential scope, read leniently so that a request
/// whose signature is otherwise malformed can still be routed and answered.
pub fn scope_service(req: &RequestParts) -> Option<String> {
    let credential = match header_str(req.headers, "authorization") {
        Some(header) => header
            .split([' ', ','])
            .find_map(|field| field.strip_prefix("Credential="))
            .map(str::to_owned),
        None => query_param(req.query, "X-Amz-Credential"),
    }?;
    credential
        .split('/')
        .nth(3)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl SignatureV4 {
    /// Reads the signature of a request; `None` when it carries none at all.
    pub fn from_request(req: &RequestParts) -> Result<Option<Self>, AuthError> {
        let header = header_str(req.headers, "authorization");
        let presigned = query_param(req.query, "X-Amz-Algorithm");
        match (header, presigned) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(incomplete(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified",
            )),
            (Some(header), None) => Self::from_header(header, req.headers).map(Some),
            (None, Some(algorithm)) => Self::from_query(&algorithm, req.query).map(Some),
        }
    }

    fn from_header(header: &str, headers: &HeaderMap) -> Result<Self, AuthError> {
        let fields = header
            .strip_prefix(ALGORITHM)
            .filter(|rest| rest.starts_with(' '))
            .ok_or_else(|| {
                incomplete(format!(
                    "Unsupported Authorization type; expected {ALGORITHM}"
                ))
            })?;
        let (mut credential, mut signed_headers, mut signature) = (None, None, None);
        for field in fields.split(',') {
            let (name, value) = field.trim().split_once('=').ok_or_else(|| {
                incomplete(format!(
                    "Authorization header field '{}' is not of the form name=value",
                    field.trim()
                ))
            })?;
            match name {
                "Credential" => credential = Some(value),
                "SignedHeaders" => signed_headers = Some(value),
                "Signature" => signature = Some(value),
                _ => {}
            }
        }
        let missing =
            |name: &str| incomplete(format!("Authorization header requires '{name}' parameter."));
        let (access_key_id, scope) =
            parse_credential(credential.ok_or_else(|| missing("Credential"))?)?;
        let signed_headers =
            parse_signed_headers(signed_headers.ok_or_else(|| missing("SignedHeaders"))?)?;
        let signature = parse_signature(signature.ok_or_else(|| missing("Signature"))?)?;
        let (amz_date, timestamp) = header_date(headers)?;
        Ok(Self {
            access_key_id,
            scope,
            signed_headers,
            signature,
            amz_date,
            timestamp,
            expires: None,
            security_token: header_str(headers, "x-amz-security-token").map(str::to_owned),
        })
    }

    fn from_query(algorithm: &str, query: &str) -> Result<Self, AuthError> {
        if algorithm != ALGORITHM {
            return Err(incomplete(format!(
                "X-Amz-Algorithm only supports \"{ALGORITHM}\""
            )));
        }
        let required = |name: &str| {
            query_param(query, name).ok_or_else(|| {
                incomplete(format!(
                    "Query-string authentication requires the {name} parameter"
                ))
            })
        };
        let (access_key_id, scope) = parse_credential(&required("X-Amz-Credential")?)?;
        let signed_headers = parse_signed_headers(&required("X-Amz-SignedHeaders")?)?;
        let signature = parse_signature(&required("X-Amz-Signature")?)?;
        let amz_date = required("X-Amz-Date")?;
        let timestamp = parse_amz_date(&amz_date)?;
        let expires = required("X-Amz-Expires")?
            .parse::<i64>()
            .ok()
            .filter(|secs| (1..=MAX_PRESIGNED_EXPIRY_SECS).contains(secs))
            .ok_or_else(|| {
                incomplete(format!(
                    "X-Amz-Expires must be a number of seconds between 1 and {MAX_PRESIGNED_EXPIRY_SECS}"
                ))
            })?;
        Ok(Self {
            access_key_id,
            scope,
            signed_headers,
            signature,
            amz_date,
            timestamp,
            expires: Some(Duration::seconds(expires)),
            security_token: query_param(query, "X-Amz-Security-Token"),
        })
    }

    pub fn is_presigned(&self) -> bool {
        self.expires.is_some()
    }

    /// Rejects a request signed too far from `now`, or a presigned URL past its expiry.
    pub fn check_time(&self, now: OffsetDateTime) -> Result<(), AuthError> {
        if self.amz_date.get(..8) != Some(self.scope.date.as_str()) {
            return Err(AuthError::SignatureMismatch);
        }
        let skew = AuthError::TimeTooSkewed {
            request_time: self.amz_date.clone(),
        };
        match self.expires {
            None if (self.timestamp - now).abs() > MAX_CLOCK_SKEW => Err(skew),
            Some(_) if self.timestamp - now > MAX_CLOCK_SKEW => Err(skew),
            Some(expires) if now > self.timestamp + expires => Err(AuthError::PresignExpired),
            _ => Ok(()),
        }
    }

    /// Checks the signature with the key derived for its scope (see [`signing_key`]),
    /// `payload_hash` being the hex sha256 of the body or a literal such as
    /// `UNSIGNED-PAYLOAD`.
    pub fn verify(
        &self,
        key: &[u8; 32],
        req: &RequestParts,
        style: PathStyle,
        payload_hash: &str,
    ) -> Result<(), AuthError> {
        let canonical = canonical_request(
            req,
            style,
            &self.signed_headers,
            payload_hash,
            self.is_presigned(),
        )?;
        let expected = self.sign(key, &canonical);
        if bool::from(expected.ct_eq(&self.signature)) {
            Ok(())
        } else {
            Err(AuthError::SignatureMismatch)
        }
    }

    /// What the chunks of a streaming body chain their signatures from: this
    /// signature, the request time as written, and the scope.
    pub fn seed(&self) -> ([u8; 32], &str, &Scope) {
        (self.signature, &self.amz_date, &self.scope)
    }

    fn sign(&self, key: &[u8; 32], canonical_request: &str) -> [u8; 32] {
        let string_to_sign = string_to_sign(&self.amz_date, &self.scope, canonical_request);
        hmac(key, string_to_sign.as_bytes())
    }
}

/// Derived signing keys by secret and scope: a busy access key is derived once per
/// day, region and service instead of on every request.
#[derive(Default)]
pub struct SigningKeys {
    keys: std::sync::RwLock<std::collections::HashMap<(String, String), [u8; 32]>>,
}

/// Past this many cached keys the cache starts over (old dates pile up otherwise).
const MAX_CACHED_KEYS: usize = 4096;

impl SigningKeys {
    pub fn get(&self, secret: &str, scope: &Scope) -> [u8; 32] {
        let id = (secret.to_owned(), scope.to_path());
        if let Some(key) = self.keys.read().expect("signing keys").get(&id) {
            return *key;
        }
        let key = signing_key(secret, scope);
        let mut keys = self.keys.write().expect("signing keys");
        if keys.len() >= MAX_CACHED_KEYS {
            keys.clear();
        }
        keys.insert(id, key);
        key
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The key derived from a secret for one day, region and service.
pub fn signing_key(secret: &str, scope: &Scope) -> [u8; 32] {
    let date = hmac(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
    let region = hmac(&date, scope.region.as_bytes());
    let service = hmac(&region, scope.service.as_bytes());
    hmac(&service, b"aws4_request")
}

/// The keys a client signs with.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What one signature covers: the request's method, path (as sent), raw query and
/// the service and region it is addressed to, whose path style it signs with.
pub struct Target<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub style: PathStyle,
}

/// Signs a request as a client does: adds `x-amz-date`, `x-amz-content-sha256`,
/// the session token and `authorization` to `headers`, which already hold `host`
/// and every other header to sign. `payload_hash` is the body's SHA-256 in hex or
/// [`UNSIGNED_PAYLOAD`].
pub fn sign(
    keys: &Keys,
    target: &Target,
    headers: &mut HeaderMap,
    payload_hash: &str,
    now: OffsetDateTime,
) -> Result<(), http::header::InvalidHeaderValue> {
    use http::HeaderValue;
    let amz_date = now
        .to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("dates format");
    headers.insert("x-amz-date", HeaderValue::from_str(&amz_date)?);
    headers.insert(CONTENT_SHA256, HeaderValue::from_str(payload_hash)?);
    match &keys.session_token {
        Some(token) => headers.insert("x-amz-security-token", HeaderValue::from_str(token)?),
        None => headers.remove("x-amz-security-token"),
    };
    let scope = Scope {
        date: amz_date[..8].to_owned(),
        region: target.region.to_owned(),
        service: target.service.to_owned(),
    };
    let req = RequestParts {
        method: target.method,
        path: target.path,
        query: target.query,
        headers,
    };
    let value = authorization(keys, &scope, &amz_date, &req, target.style, payload_hash);
    headers.insert(http::header::AUTHORIZATION, HeaderValue::from_str(&value)?);
    Ok(())
}

/// The `Authorization` header's value for `req`, whose headers already hold `host`,
/// `x-amz-date` (`amz_date`) and every other header to sign.
fn authorization(
    keys: &Keys,
    scope: &Scope,
    amz_date: &str,
    req: &RequestParts,
    style: PathStyle,
    payload_hash: &str,
) -> String {
    let mut signed: Vec<String> = req
        .headers
        .keys()
        .map(|name| name.as_str().to_ascii_lowercase())
        .filter(|name| name == "host" || name.starts_with("x-amz-") || name == "content-type")
        .collect();
    signed.sort();
    signed.dedup();
    let canonical = canonical_request(req, style, &signed, payload_hash, false)
        .expect("every signed header is present");
    let signature = hmac(
        &signing_key(&keys.secret, scope),
        string_to_sign(amz_date, scope, &canonical).as_bytes(),
    );
    format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        keys.access_key_id,
        scope.to_path(),
        signed.join(";"),
        hex_lower(&signature)
    )
}

fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.to_path(),
        hex_lower(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The canonical request of SigV4's task 1. `presigned` leaves `X-Amz-Signature` out
/// of the canonical query.
fn canonical_request(
    req: &RequestParts,
    style: PathStyle,
    signed_headers: &[String],
    payload_hash: &str,
    presigned: bool,
) -> Result<String, AuthError> {
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path, style));
    out.push('\n');
    out.push_str(&canonical_query(req.query, presigned));
    out.push('\n');
    for name in signed_headers {
        let mut values = req.headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            return Err(AuthError::Incomplete(format!(
                "Header '{name}' is listed in SignedHeaders but missing from the request"
            )));
        }
        out.push_str(name);
        out.push(':');
        for (index, value) in values.enumerate() {
            if index > 0 {
                out.push(',');
            }
            match value.to_str() {
                Ok(text) => push_trimmed(&mut out, text),
                Err(_) => push_trimmed(&mut out, &String::from_utf8_lossy(value.as_bytes())),
            }
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// Appends a header value trimmed, with every run of spaces collapsed to one.
fn push_trimmed(out: &mut String, value: &str) {
    for (index, word) in value.split_ascii_whitespace().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
}

fn canonical_uri(path: &str, style: PathStyle) -> String {
    match style {
        PathStyle::Normalized => {
            let normalized = remove_dot_segments(path);
            percent_encode(normalized.as_bytes(), ENCODE_PATH).to_string()
        }
        PathStyle::AsSent => {
            let decoded: Vec<u8> = percent_decode_str(path).collect();
            let encoded = percent_encode(&decoded, ENCODE_PATH).to_string();
            if encoded.is_empty() {
                "/".to_owned()
            } else {
                encoded
            }
        }
    }
}

/// RFC 3986 dot-segment removal, also dropping empty segments as AWS services do.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let encode = |text: &str| {
                let decoded: Vec<u8> = percent_decode_str(text).collect();
                percent_encode(&decoded, ENCODE).to_string()
            };
            (encode(key), encode(value))
        })
        .filter(|(key, _)| !(presigned && key == "X-Amz-Signature"))
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Lowercase hex, by table: this runs several times per request.
fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 15) as usize] as char);
    }
    out
}

/// The hex sha256 of a payload, as signed in `x-amz-content-sha256`.
pub fn payload_sha256(body: &[u8]) -> String {
    hex_lower(&Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_client_signs_the_verifier_accepts() {
        let keys = Keys {
            access_key_id: "AKID".into(),
            secret: "secret".into(),
            session_token: Some("token".into()),
        };
        let now = OffsetDateTime::now_utc();
        for (service, path, style) in [
            ("lambda", "/2015-03-31/functions/", PathStyle::Normalized),
            ("s3", "/bucket/a%20b//c", PathStyle::AsSent),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert("host", "127.0.0.1:4566".parse().unwrap());
            headers.insert("content-type", "application/json".parse().unwrap());
            let target = Target {
                method: "GET",
                path,
                query: "MaxItems=5",
                service,
                region: "us-east-1",
                style,
            };
            let hash = payload_sha256(b"");
            sign(&keys, &target, &mut headers, &hash, now).unwrap();
            assert_eq!(headers["x-amz-security-token"], "token");
            let parts = RequestParts {
                method: "GET",
                path,
                query: "MaxItems=5",
                headers: &headers,
            };
            let signature = SignatureV4::from_request(&parts).unwrap().unwrap();
            assert_eq!(signature.access_key_id, "AKID");
            assert_eq!(signature.scope.service, service);
            let key = signing_key("secret", &signature.scope);
            assert!(signature.verify(&key, &parts, style, &hash).is_ok());
            let wrong = signing_key("other", &signature.scope);
            assert!(signature.verify(&wrong, &parts, style, &hash).is_err());
        }
    }

    #[test]
    fn dot_segments_and_empty_segments_are_removed() {
        for (input, expected) in [
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("/example/..", "/"),
            ("/example1/example2/../..", "/"),
            ("/./", "/"),
            ("/./example", "/example"),
            ("//example//", "/example/"),
            ("/a/b/../c/", "/a/c/"),
        ] {
            assert_eq!(remove_dot_segments(input), expected, "{input}");
        }
    }

    #[test]
    fn normalized_paths_are_encoded_twice_and_s3_paths_once() {
        let path = "/2015-03-31/functions/arn%3Aaws%3Alambda/invocations";
        assert_eq!(
            canonical_uri(path, PathStyle::Normalized),
            "/2015-03-31/functions/arn%253Aaws%253Alambda/invocations"
        );
        assert_eq!(
            canonical_uri("/bucket/a%20b//c", PathStyle::AsSent),
            "/bucket/a%20b//c"
        );
        assert_eq!(
            canonical_uri("/bucket/a(1)", PathStyle::AsSent),
            "/bucket/a%281%29"
        );
    }

    #[test]
    fn query_is_decoded_re_encoded_and_sorted() {
        assert_eq!(canonical_query("b=2&a=%7e&a=1&c", false), "a=1&a=~&b=2&c=");
        assert_eq!(canonical_query("x=a+b%20c", false), "x=a%2Bb%20c");
        assert_eq!(canonical_query("X-Amz-Signature=ab&Z=1", true), "Z=1");
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex_lower(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(
            payload_sha256(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        let mut out = String::new();
        push_trimmed(&mut out, "  \"a   b   c\" ");
        assert_eq!(out, "\"a b c\"");
    }

    #[test]
    fn malformed_authorization_headers_are_incomplete() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        for header in [
            "AWS AKID:sig",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKID/2015/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=zz",
        ] {
            headers.insert("authorization", header.parse().unwrap());
            let req = RequestParts {
                method: "GET",
                path: "/",
                query: "",
                headers: &headers,
            };
            assert!(
                matches!(
                    SignatureV4::from_request(&req),
                    Err(AuthError::Incomplete(_))
                ),
                "{header}"
            );
        }
    }

    #[test]
    fn presigned_expiry_is_bounded_and_enforced() {
        let headers = HeaderMap::new();
        let query = |expires: &str| {
            format!(
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20150830%2Fus-east-1%2Fservice%2Faws4_request&X-Amz-Date=20150830T123600Z&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
                "0".repeat(64)
            )
        };
        let parse = |q: &str| {
            SignatureV4::from_request(&RequestParts {
                method: "GET",
                path: "/",
                query: q,
                headers: &headers,
            })
        };
        assert!(parse(&query("0")).is_err());
        assert!(parse(&query("604801")).is_err());
        let signature = parse(&query("60")).unwrap().unwrap();
        let signed_at = signature.timestamp;
        assert!(
            signature
                .check_time(signed_at + Duration::seconds(59))
                .is_ok()
        );
        assert_eq!(
            signature.check_time(signed_at + Duration::seconds(61)),
            Err(AuthError::PresignExpired)
        );
        assert!(matches!(
            signature.check_time(signed_at - Duration::minutes(16)),
            Err(AuthError::TimeTooSkewed { .. })
        ));
    }
}
