//! `GetFunction`'s `Code.Location`: a link to the function's zip that works without
//! signing, for ten minutes, like the presigned S3 URL AWS returns.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, KeyInit, Mac};
use http::{StatusCode, header};
use nimbus_storage::{BlobStore, Digest};
use sha2::Sha256;

const VALIDITY: Duration = Duration::from_secs(600);

/// Signs and checks code links with a key that lives as long as the process.
pub struct CodeLinks {
    key: [u8; 32],
    blobs: Arc<dyn BlobStore>,
}

#[derive(serde::Deserialize)]
struct LinkQuery {
    expires: u64,
    signature: String,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl CodeLinks {
    pub fn new(blobs: Arc<dyn BlobStore>) -> Arc<Self> {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Arc::new(Self { key, blobs })
    }

    fn mac(&self, digest: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(format!("{digest}:{expires}").as_bytes());
        mac
    }

    /// A link to the zip with `digest`, on the edge at `endpoint`.
    pub fn link(&self, endpoint: &str, digest: &str) -> String {
        let expires = unix_now() + VALIDITY.as_secs();
        let signature = hex::encode(self.mac(digest, expires).finalize().into_bytes());
        format!("{endpoint}/_nimbus/lambda/code/{digest}?expires={expires}&signature={signature}")
    }

    fn check(&self, digest: &str, query: &LinkQuery) -> bool {
        let Ok(signature) = hex::decode(&query.signature) else {
            return false;
        };
        query.expires >= unix_now()
            && self
                .mac(digest, query.expires)
                .verify_slice(&signature)
                .is_ok()
    }

    /// The route that serves the links.
    pub fn routes(self: Arc<Self>) -> Router {
        Router::new()
            .route("/_nimbus/lambda/code/{digest}", get(download))
            .with_state(self)
    }
}

async fn download(
    State(links): State<Arc<CodeLinks>>,
    Path(digest): Path<String>,
    Query(query): Query<LinkQuery>,
) -> Response {
    if !links.check(&digest, &query) {
        return (
            StatusCode::FORBIDDEN,
            "the link is invalid or has expired\n",
        )
            .into_response();
    }
    let Ok(parsed) = digest.parse::<Digest>() else {
        return (StatusCode::NOT_FOUND, "no such code\n").into_response();
    };
    let blobs = links.blobs.clone();
    let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
        let Some(mut blob) = blobs.open(&parsed).map_err(std::io::Error::other)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(blob.len as usize);
        std::io::Read::read_to_end(&mut blob.reader, &mut bytes)?;
        Ok(Some(bytes))
    })
    .await;
    match bytes {
        Ok(Ok(Some(bytes))) => ([(header::CONTENT_TYPE, "application/zip")], bytes).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such code\n").into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the code failed\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_only_for_their_digest_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let blobs: Arc<dyn BlobStore> =
            Arc::new(nimbus_storage::FsBlobStore::open(dir.path()).unwrap());
        let links = CodeLinks::new(blobs);
        let url = links.link("http://h", "abc");
        let query = url.split_once('?').unwrap().1;
        let expires: u64 = query
            .split('&')
            .next()
            .unwrap()
            .trim_start_matches("expires=")
            .parse()
            .unwrap();
        let signature = query.split("signature=").nth(1).unwrap().to_owned();
        let good = LinkQuery {
            expires,
            signature: signature.clone(),
        };
        assert!(links.check("abc", &good));
        assert!(!links.check("abd", &good));
        assert!(!links.check(
            "abc",
            &LinkQuery {
                expires: expires + 1,
                signature: signature.clone()
            }
        ));
        let past = LinkQuery {
            expires: 1,
            signature: hex::encode(links.mac("abc", 1).finalize().into_bytes()),
        };
        assert!(!links.check("abc", &past));
    }
}
