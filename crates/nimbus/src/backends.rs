//! The storage backends a deployment names: `--metadata` (`sqlite` or a PostgreSQL
//! URL) and `--blobs` (`file` or an S3 URL), shared by the server and `migrate-store`.

use std::path::Path;
use std::sync::Arc;

use nimbus_storage::{
    BlobStore, FsBlobStore, MetadataStore, PgStore, S3BlobStore, S3Keys, S3Location, SqliteStore,
};

use crate::server::StartError;

/// The blob stores of one deployment, as namespaces of its blob backend: objects,
/// function code and layers in one; the registry's in another, since its garbage
/// collection deletes whatever no image names.
pub const BLOB_STORES: [&str; 2] = ["blobs", "registry/blobs"];

/// The metadata backend `url` names, with the SQLite file under `data_dir`.
pub fn metadata_store(
    url: &str,
    pool: usize,
    data_dir: &Path,
) -> Result<Arc<dyn MetadataStore>, StartError> {
    if url == "sqlite" {
        return Ok(Arc::new(SqliteStore::open(&data_dir.join("metadata.db"))?));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StartError::Backend(
            "--metadata must be sqlite or a postgres:// URL".into(),
        ));
    }
    let store = PgStore::connect(url, pool)?;
    tracing::info!(pool, "metadata in PostgreSQL");
    Ok(Arc::new(store))
}

/// The blob backend a `--blobs` value names.
pub enum BlobBackend {
    File,
    S3(S3Location, Option<S3Keys>),
}

impl BlobBackend {
    /// `file`, or an S3 URL with keys from `NIMBUS_BLOBS_ACCESS_KEY_ID` and
    /// `NIMBUS_BLOBS_SECRET_ACCESS_KEY` (without them, the standard AWS chain).
    pub fn parse(url: &str) -> Result<Self, StartError> {
        if url == "file" {
            return Ok(BlobBackend::File);
        }
        let location: S3Location = url
            .parse()
            .map_err(|err| StartError::Backend(format!("--blobs: {err}")))?;
        let id = std::env::var("NIMBUS_BLOBS_ACCESS_KEY_ID").ok();
        let secret = std::env::var("NIMBUS_BLOBS_SECRET_ACCESS_KEY").ok();
        let keys = match (id, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Some(S3Keys {
                access_key_id,
                secret_access_key,
            }),
            (None, None) => None,
            _ => {
                return Err(StartError::Backend(
                    "NIMBUS_BLOBS_ACCESS_KEY_ID and NIMBUS_BLOBS_SECRET_ACCESS_KEY must be set together"
                        .into(),
                ));
            }
        };
        Ok(BlobBackend::S3(location, keys))
    }

    /// The blob store `name` (one of [`BLOB_STORES`]); files go under `data_dir`.
    pub fn open(&self, data_dir: &Path, name: &str) -> Result<Arc<dyn BlobStore>, StartError> {
        Ok(match self {
            BlobBackend::File => Arc::new(FsBlobStore::open(&data_dir.join(name))?),
            BlobBackend::S3(location, keys) => {
                Arc::new(S3BlobStore::open(location, name, keys.as_ref())?)
            }
        })
    }
}
