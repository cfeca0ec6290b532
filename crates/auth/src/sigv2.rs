//! S3's legacy presigned URLs (signature version 2: `AWSAccessKeyId`, `Expires`,
//! `Signature` in the query), which the aws CLI v1's `s3 presign` and boto3's
//! default S3 presigner still produce.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::percent_decode_str;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::AuthError;
use crate::sigv4::RequestParts;

/// Query parameters that are part of the signed resource, in the order S3 sorts.
const SUBRESOURCES: &[&str] = &[
    "acl",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// A version 2 presigned request, not yet verified.
pub struct PresignedV2 {
    pub access_key_id: String,
    expires: i64,
    signature: Vec<u8>,
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
            (decode(key), decode(value))
        })
        .collect()
}

impl PresignedV2 {
    /// `None` when the request carries no version 2 query signature.
    pub fn from_request(parts: &RequestParts) -> Option<Result<Self, AuthError>> {
        let pairs = query_pairs(parts.query);
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let access_key_id = get("AWSAccessKeyId")?;
        Some((|| {
            let expires = get("Expires").and_then(|e| e.parse().ok()).ok_or_else(|| {
                AuthError::Incomplete("Expires is missing or not a number".into())
            })?;
            let signature = get("Signature")
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| AuthError::Incomplete("Signature is missing or malformed".into()))?;
            Ok(PresignedV2 {
                access_key_id,
                expires,
                signature,
            })
        })())
    }

    /// Checks the signature with `secret`, and that the URL has not expired.
    pub fn verify(
        &self,
        secret: &str,
        parts: &RequestParts,
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let mut amz: Vec<(String, String)> = parts
            .headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-amz-"))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().trim().to_owned(),
                )
            })
            .collect();
        amz.sort();
        let mut resource = parts.path.to_owned();
        let mut subresources: Vec<(String, String)> = query_pairs(parts.query)
            .into_iter()
            .filter(|(key, _)| SUBRESOURCES.contains(&key.as_str()))
            .collect();
        subresources.sort();
        for (n, (key, value)) in subresources.iter().enumerate() {
            resource.push(if n == 0 { '?' } else { '&' });
            resource.push_str(key);
            if !value.is_empty() {
                resource.push('=');
                resource.push_str(value);
            }
        }
        let mut string_to_sign = format!(
            "{}\n{}\n{}\n{}\n",
            parts.method,
            header("content-md5"),
            header("content-type"),
            self.expires
        );
        for (name, value) in amz {
            string_to_sign.push_str(&format!("{name}:{value}\n"));
        }
        string_to_sign.push_str(&resource);
        let mut mac =
            <Hmac<Sha1> as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(string_to_sign.as_bytes());
        let expected = mac.finalize().into_bytes();
        if !bool::from(expected.as_slice().ct_eq(&self.signature)) {
            return Err(AuthError::SignatureMismatch);
        }
        if now.unix_timestamp() > self.expires {
            return Err(AuthError::PresignExpired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    /// The example from S3's original documentation of query string authentication.
    #[test]
    fn the_documented_presigned_url_verifies_until_it_expires() {
        let headers = HeaderMap::new();
        let parts = RequestParts {
            method: "GET",
            path: "/quotes/nelson",
            query: "AWSAccessKeyId=44CF9590006BF252F707&Expires=1141889120&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D",
            headers: &headers,
        };
        let presigned = PresignedV2::from_request(&parts).unwrap().unwrap();
        let secret = "OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV";
        let before = OffsetDateTime::from_unix_timestamp(1_141_889_000).unwrap();
        presigned.verify(secret, &parts, before).unwrap();
        let after = OffsetDateTime::from_unix_timestamp(1_141_889_121).unwrap();
        assert_eq!(
            presigned.verify(secret, &parts, after),
            Err(AuthError::PresignExpired)
        );
        assert_eq!(
            presigned.verify("wrong", &parts, before),
            Err(AuthError::SignatureMismatch)
        );
    }
}
