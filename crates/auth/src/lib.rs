//! Authentication: who signed a request, checked with SigV4 against the credential
//! store. The edge calls [`Authenticator::authenticate`] once per request; nothing
//! here knows about HTTP servers or AWS protocols beyond the signature itself.

pub mod authz;
pub mod chunked;
pub mod credentials;
pub mod identity;
pub mod policy;
pub mod sigv2;
pub mod sigv4;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use chunked::{ChunkSigner, ChunkedDecoder};
pub use credentials::{Credential, CredentialError, CredentialStore, RootCredentials};
pub use identity::{Principal, PrincipalKind};
use sigv4::CONTENT_SHA256;
pub use sigv4::{PathStyle, RequestParts, SignatureV4};

/// Why a request was not authenticated. Each protocol maps these to its own codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Request is missing Authentication Token")]
    Missing,
    /// The Authorization header or presigned query is malformed.
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    #[error(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureMismatch,
    #[error("Credential should be scoped to a valid region, not '{0}'.")]
    WrongRegion(String),
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    #[error(
        "Signature expired: the request time {request_time} is more than 15 minutes away from the server time."
    )]
    TimeTooSkewed { request_time: String },
    #[error("Request has expired")]
    PresignExpired,
    #[error("The security token included in the request is invalid.")]
    InvalidToken,
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    #[error("{0}")]
    UnsupportedPayload(String),
    /// The credential store cannot be asked about the key: retryable.
    #[error("The credential store is unreachable. Please try again.")]
    Unavailable,
}

/// How strictly signatures are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every signature is verified against the credential store.
    Strict,
    /// Any well-formed signature is accepted without checking its secret; an unknown
    /// key stands for the root of the account its 12-digit id names, or of the
    /// default account. For setups moving over from emulators that ignore auth.
    Permissive,
}

/// The caller of an authenticated request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub access_key_id: String,
    /// True when the request was signed with temporary credentials.
    pub is_session: bool,
}

/// A request whose headers passed [`Authenticator::check_headers`]; [`finish`]
/// checks the signature over the whole request once the body is read.
///
/// [`finish`]: HeadersChecked::finish
pub struct HeadersChecked {
    signature: SignatureV4,
    /// The derived signing key; `None` in permissive mode, where the signature
    /// itself is not checked.
    key: Option<[u8; 32]>,
    caller: Caller,
}

impl HeadersChecked {
    /// Checks the signature over the whole request, its body read. An aws-chunked
    /// body is decoded, each chunk's signature checked, and the decoded payload
    /// returned to stand for the body.
    pub fn finish(
        self,
        parts: &RequestParts,
        body: &[u8],
        style: PathStyle,
    ) -> Result<(Caller, Option<Vec<u8>>), AuthError> {
        if parts.headers.contains_key(CONTENT_SHA256) {
            let (caller, mut check) = self.stream(parts, style)?;
            let mut payload = Vec::new();
            check.feed(body, &mut payload)?;
            let chunked = matches!(check, PayloadCheck::Chunked { .. });
            check.finish()?;
            return Ok((caller, chunked.then_some(payload)));
        }
        let payload_hash = payload_hash(body, style, &self.signature);
        if let Some(key) = &self.key {
            self.signature.verify(key, parts, style, &payload_hash)?;
        }
        Ok((self.caller, None))
    }

    /// Checks what can be checked before the body is read, for requests whose body
    /// is streamed rather than buffered: the signature over the headers and the
    /// declared `x-amz-content-sha256` (or, for presigned URLs, an unsigned
    /// payload). The returned [`PayloadCheck`] checks the body as it passes; nothing
    /// may be committed before its `finish` succeeds.
    pub fn stream(
        self,
        parts: &RequestParts,
        style: PathStyle,
    ) -> Result<(Caller, PayloadCheck), AuthError> {
        let claimed = parts
            .headers
            .get(CONTENT_SHA256)
            .map(|value| value.to_str().unwrap_or_default().to_owned());
        let (signed_hash, check) = match claimed.as_deref() {
            None if self.signature.is_presigned() => {
                (sigv4::UNSIGNED_PAYLOAD.to_owned(), PayloadCheck::Unchecked)
            }
            None => {
                return Err(AuthError::Incomplete(
                    "Missing required header for this request: x-amz-content-sha256".into(),
                ));
            }
            Some(sigv4::UNSIGNED_PAYLOAD) => {
                (sigv4::UNSIGNED_PAYLOAD.to_owned(), PayloadCheck::Unchecked)
            }
            Some(mode) => {
                let signer = self.key.map(|key| ChunkSigner::new(&self.signature, key));
                match ChunkedDecoder::for_mode(mode, signer) {
                    Some(decoder) => (
                        mode.to_owned(),
                        PayloadCheck::Chunked {
                            decoder: Box::new(decoder?),
                            declared: declared_length(parts)?,
                        },
                    ),
                    None => {
                        let mut expected = [0u8; 32];
                        hex::decode_to_slice(mode, &mut expected).map_err(|_| {
                            AuthError::UnsupportedPayload(format!(
                                "x-amz-content-sha256 '{mode}' is neither a sha256 nor a supported streaming mode"
                            ))
                        })?;
                        (
                            mode.to_ascii_lowercase(),
                            PayloadCheck::Sha256 {
                                expected,
                                hasher: Sha256::new(),
                            },
                        )
                    }
                }
            }
        };
        if let Some(key) = &self.key {
            self.signature.verify(key, parts, style, &signed_hash)?;
        }
        Ok((self.caller, check))
    }
}

fn declared_length(parts: &RequestParts) -> Result<Option<u64>, AuthError> {
    parts
        .headers
        .get("x-amz-decoded-content-length")
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| AuthError::Incomplete("invalid x-amz-decoded-content-length".into()))
        })
        .transpose()
}

/// Checks a streamed body against what its signature promised.
pub enum PayloadCheck {
    /// The body must hash to the signed `x-amz-content-sha256`.
    Sha256 { expected: [u8; 32], hasher: Sha256 },
    /// An aws-chunked body, decoded and checked chunk by chunk.
    Chunked {
        decoder: Box<ChunkedDecoder>,
        declared: Option<u64>,
    },
    /// `UNSIGNED-PAYLOAD`: nothing to check.
    Unchecked,
}

impl PayloadCheck {
    /// Passes body bytes through, appending the payload they carry to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        match self {
            PayloadCheck::Sha256 { hasher, .. } => {
                hasher.update(bytes);
                out.extend_from_slice(bytes);
            }
            PayloadCheck::Chunked { decoder, .. } => decoder.feed(bytes, out)?,
            PayloadCheck::Unchecked => out.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Ends the body; returns the trailers an aws-chunked body carried.
    pub fn finish(self) -> Result<Vec<(String, String)>, AuthError> {
        match self {
            PayloadCheck::Sha256 { expected, hasher } => {
                let actual: [u8; 32] = hasher.finalize().into();
                if bool::from(subtle::ConstantTimeEq::ct_eq(&actual[..], &expected[..])) {
                    Ok(Vec::new())
                } else {
                    Err(AuthError::ContentSha256Mismatch)
                }
            }
            PayloadCheck::Chunked { decoder, declared } => {
                let (length, trailers) = decoder.finish()?;
                if declared.is_some_and(|declared| declared != length) {
                    return Err(AuthError::Incomplete(
                        "x-amz-decoded-content-length does not match the decoded body".into(),
                    ));
                }
                Ok(trailers)
            }
            PayloadCheck::Unchecked => Ok(Vec::new()),
        }
    }
}

pub struct Authenticator {
    credentials: Arc<CredentialStore>,
    signing_keys: sigv4::SigningKeys,
    mode: AuthMode,
    region: String,
    default_account: String,
}

impl Authenticator {
    pub fn new(
        credentials: Arc<CredentialStore>,
        mode: AuthMode,
        region: &str,
        default_account: &str,
    ) -> Self {
        Self {
            credentials,
            signing_keys: sigv4::SigningKeys::default(),
            mode,
            region: region.to_owned(),
            default_account: default_account.to_owned(),
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Everything about a request's signature that its headers alone decide: the
    /// form of the signature, the scope's region, the time, the access key and the
    /// session token. Run before the body is read, so an unknown or expired caller
    /// never gets a body buffered.
    pub fn check_headers(
        &self,
        parts: &RequestParts,
        now: OffsetDateTime,
    ) -> Result<HeadersChecked, AuthError> {
        let signature = SignatureV4::from_request(parts)?.ok_or(AuthError::Missing)?;
        if self.mode == AuthMode::Permissive {
            let caller = self.permissive_caller(&signature);
            return Ok(HeadersChecked {
                signature,
                key: None,
                caller,
            });
        }
        // IAM is global: SDKs sign its requests for us-east-1 whatever the region.
        let global = signature.scope.service == "iam" && signature.scope.region == "us-east-1";
        if signature.scope.region != self.region && !global {
            return Err(AuthError::WrongRegion(signature.scope.region.clone()));
        }
        signature.check_time(now)?;
        let credential = self
            .credentials
            .active(&signature.access_key_id)
            .map_err(|_| AuthError::Unavailable)?
            .ok_or(AuthError::UnknownAccessKey)?;
        check_session_token(&credential, signature.security_token.as_deref(), now)?;
        let key = self
            .signing_keys
            .get(&credential.secret_access_key, &signature.scope);
        Ok(HeadersChecked {
            signature,
            key: Some(key),
            caller: Caller {
                principal: credential.principal.clone(),
                access_key_id: credential.access_key_id.clone(),
                is_session: credential.session_token.is_some(),
            },
        })
    }

    /// A version 2 presigned S3 URL, when the request is one: its caller once the
    /// signature and expiry check out. Its body is unsigned.
    pub fn check_presigned_v2(
        &self,
        parts: &RequestParts,
        now: OffsetDateTime,
    ) -> Option<Result<Caller, AuthError>> {
        let presigned = match sigv2::PresignedV2::from_request(parts)? {
            Ok(presigned) => presigned,
            Err(err) => return Some(Err(err)),
        };
        Some((|| {
            let credential = self
                .credentials
                .active(&presigned.access_key_id)
                .map_err(|_| AuthError::Unavailable)?
                .ok_or(AuthError::UnknownAccessKey)?;
            // Version 2 URLs cannot carry a session token.
            if credential.session_token.is_some() {
                return Err(AuthError::InvalidToken);
            }
            if self.mode == AuthMode::Strict {
                presigned.verify(&credential.secret_access_key, parts, now)?;
            }
            Ok(Caller {
                principal: credential.principal.clone(),
                access_key_id: credential.access_key_id.clone(),
                is_session: false,
            })
        })())
    }

    fn permissive_caller(&self, signature: &SignatureV4) -> Caller {
        let key = &signature.access_key_id;
        // Permissive: a key nobody can look up is taken as any unknown one.
        match self.credentials.active(key).ok().flatten() {
            Some(credential) => Caller {
                principal: credential.principal.clone(),
                access_key_id: key.clone(),
                is_session: credential.session_token.is_some(),
            },
            None => {
                let account = if key.len() == 12 && key.bytes().all(|b| b.is_ascii_digit()) {
                    key.as_str()
                } else {
                    self.default_account.as_str()
                };
                Caller {
                    principal: Principal::root(account),
                    access_key_id: key.clone(),
                    is_session: false,
                }
            }
        }
    }
}

/// The payload hash of a request without `x-amz-content-sha256`: the body's own
/// hash, or an unsigned payload for a presigned S3 URL.
fn payload_hash(body: &[u8], style: PathStyle, signature: &SignatureV4) -> String {
    if signature.is_presigned() && style == PathStyle::AsSent {
        sigv4::UNSIGNED_PAYLOAD.to_owned()
    } else {
        sigv4::payload_sha256(body)
    }
}

fn check_session_token(
    credential: &Credential,
    presented: Option<&str>,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    use subtle::ConstantTimeEq;
    match (&credential.session_token, presented) {
        (None, None) => Ok(()),
        (Some(expected), Some(presented))
            if bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) =>
        {
            if credential.is_expired(now) {
                Err(AuthError::ExpiredToken)
            } else {
                Ok(())
            }
        }
        _ => Err(AuthError::InvalidToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_are_checked_and_expire() {
        let now = OffsetDateTime::now_utc();
        let session = Credential {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret".into(),
            principal: Principal::root("000000000000"),
            session_token: Some("token".into()),
            expires_at: Some((now + time::Duration::minutes(15)).unix_timestamp()),
            inactive: false,
            created_at: now.unix_timestamp(),
        };
        assert!(check_session_token(&session, Some("token"), now).is_ok());
        assert!(matches!(
            check_session_token(&session, Some("other"), now),
            Err(AuthError::InvalidToken)
        ));
        assert!(matches!(
            check_session_token(&session, None, now),
            Err(AuthError::InvalidToken)
        ));
        assert!(matches!(
            check_session_token(&session, Some("token"), now + time::Duration::minutes(16)),
            Err(AuthError::ExpiredToken)
        ));
    }

    /// A URL from botocore 1.x: `generate_presigned_url("get_caller_identity",
    /// HttpMethod="GET")`. botocore's `SigV4QueryAuth` signs the empty payload's
    /// sha256 for every service but S3 (whose `S3SigV4QueryAuth` signs
    /// `UNSIGNED-PAYLOAD`), as the Go SDK behind EKS tokens does.
    #[test]
    fn presigned_sts_urls_verify_as_botocore_signs_them() {
        let query = "Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20261207T042055Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=a8e7fcbc4a1bfbde4e8cd4d46132daaa97d3561f1e959575c76e8ab33ecee5e2";
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1:4566".parse().unwrap());
        let check = |method: &str| {
            let parts = RequestParts {
                method,
                path: "/",
                query,
                headers: &headers,
            };
            let signature = SignatureV4::from_request(&parts).unwrap().unwrap();
            let key =
                sigv4::signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &signature.scope);
            let checked = HeadersChecked {
                signature,
                key: Some(key),
                caller: Caller {
                    principal: Principal::root("000000000000"),
                    access_key_id: "AKIDEXAMPLE".into(),
                    is_session: false,
                },
            };
            checked
                .finish(&parts, b"", PathStyle::Normalized)
                .map(|(caller, _)| caller.access_key_id)
        };
        assert_eq!(check("GET").unwrap(), "AKIDEXAMPLE");
        // The method is signed: a URL presigned for GET is refused as a POST.
        assert_eq!(check("POST").unwrap_err(), AuthError::SignatureMismatch);
    }
}
