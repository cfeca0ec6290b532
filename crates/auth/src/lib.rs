//! Authentication: who signed a request, checked with SigV4 against the credential
//! store. The edge calls [`Authenticator::authenticate`] once per request; nothing
//! here knows about HTTP servers or AWS protocols beyond the signature itself.

pub mod chunked;
pub mod credentials;
pub mod identity;
pub mod sigv4;

use std::sync::Arc;

use time::OffsetDateTime;

pub use chunked::{ChunkSigner, ChunkedDecoder};
pub use credentials::{Credential, CredentialError, CredentialStore, RootCredentials};
pub use identity::{Principal, PrincipalKind};
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
    /// Checks the signature over the whole request. An aws-chunked body (its
    /// `x-amz-content-sha256` names a streaming mode) is decoded, each chunk's
    /// signature checked; the decoded payload is returned to stand for the body.
    pub fn finish(
        self,
        parts: &RequestParts,
        body: &[u8],
        style: PathStyle,
    ) -> Result<(Caller, Option<Vec<u8>>), AuthError> {
        let claimed = parts
            .headers
            .get("x-amz-content-sha256")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let signer = self.key.map(|key| ChunkSigner::new(&self.signature, key));
        if let Some(decoder) = ChunkedDecoder::for_mode(claimed, signer) {
            if let Some(key) = &self.key {
                self.signature.verify(key, parts, style, claimed)?;
            }
            let mut decoder = decoder?;
            let mut payload = Vec::with_capacity(body.len());
            decoder.feed(body, &mut payload)?;
            let (length, _) = decoder.finish()?;
            let declared = parts
                .headers
                .get("x-amz-decoded-content-length")
                .and_then(|value| value.to_str().ok())
                .map(|value| value.parse::<u64>().ok());
            if let Some(declared) = declared
                && declared != Some(length)
            {
                return Err(AuthError::Incomplete(
                    "x-amz-decoded-content-length does not match the decoded body".into(),
                ));
            }
            return Ok((self.caller, Some(payload)));
        }
        let payload_hash = payload_hash(parts, body, style, &self.signature)?;
        if let Some(key) = &self.key {
            self.signature.verify(key, parts, style, &payload_hash)?;
        }
        Ok((self.caller, None))
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
        if signature.scope.region != self.region {
            return Err(AuthError::WrongRegion(signature.scope.region.clone()));
        }
        signature.check_time(now)?;
        let credential = self
            .credentials
            .get(&signature.access_key_id)
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

    fn permissive_caller(&self, signature: &SignatureV4) -> Caller {
        let key = &signature.access_key_id;
        match self.credentials.get(key) {
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

/// The payload hash that goes into the canonical request: the client's
/// `x-amz-content-sha256` once checked against the body, or the body's own hash.
fn payload_hash(
    parts: &RequestParts,
    body: &[u8],
    style: PathStyle,
    signature: &SignatureV4,
) -> Result<String, AuthError> {
    let claimed = parts
        .headers
        .get("x-amz-content-sha256")
        .map(|value| value.to_str().unwrap_or_default());
    match claimed {
        Some(sigv4::UNSIGNED_PAYLOAD) => Ok(sigv4::UNSIGNED_PAYLOAD.to_owned()),
        Some(streaming) if streaming.starts_with("STREAMING-") => {
            Err(AuthError::UnsupportedPayload(format!(
                "x-amz-content-sha256 '{streaming}' is not a supported streaming mode"
            )))
        }
        Some(claimed) => {
            let actual = sigv4::payload_sha256(body);
            if claimed.eq_ignore_ascii_case(&actual) {
                Ok(claimed.to_owned())
            } else {
                Err(AuthError::ContentSha256Mismatch)
            }
        }
        None if signature.is_presigned() && style == PathStyle::AsSent => {
            Ok(sigv4::UNSIGNED_PAYLOAD.to_owned())
        }
        None => Ok(sigv4::payload_sha256(body)),
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
