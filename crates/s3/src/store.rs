//! Buckets and objects as records in the metadata store, object bytes in the blob
//! store. An object record is written only after its bytes are whole and durable,
//! in one commit, so a reader sees the old object or the new one, never a part.
//!
//! Tables: `s3.buckets/<bucket>` and `s3.objects/<bucket>/<key>`; keys compare as
//! bytes, which is S3's (UTF-8) listing order.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_storage::{
    Blob, BlobStore, BlobWriter, Digest, Expect, MetadataStore, Record, StoreError, WriteBatch,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const BUCKETS: &str = "s3.buckets";
const OBJECTS: &str = "s3.objects";

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("The specified bucket does not exist")]
    NoSuchBucket(String),
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou(String),
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty(String),
    #[error("The specified key does not exist.")]
    NoSuchKey(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for S3Error {
    fn from(err: StoreError) -> Self {
        S3Error::Internal(err.to_string())
    }
}

impl From<nimbus_storage::BlobError> for S3Error {
    fn from(err: nimbus_storage::BlobError) -> Self {
        S3Error::Internal(err.to_string())
    }
}

pub type Result<T> = std::result::Result<T, S3Error>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created_at: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub key: String,
    /// The sha256 (hex) of the bytes in the blob store.
    pub blob: String,
    pub size: u64,
    /// The MD5 of the bytes, hex: S3's ETag for a single-part object.
    pub etag: String,
    pub last_modified: f64,
    pub content_type: Option<String>,
    /// `x-amz-meta-*` headers, names lower-cased and without the prefix.
    pub metadata: BTreeMap<String, String>,
    /// Checksums the client asked for, by algorithm (`CRC32`), base64.
    pub checksums: BTreeMap<String, String>,
}

fn decode<T: DeserializeOwned>(record: &Record) -> Result<T> {
    serde_json::from_slice(&record.value)
        .map_err(|err| S3Error::Internal(format!("corrupt record {}: {err}", record.key)))
}

fn object_key(bucket: &str, key: &str) -> String {
    format!("{bucket}/{key}")
}

pub struct Store {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
}

impl Store {
    pub fn new(meta: Arc<dyn MetadataStore>, blobs: Arc<dyn BlobStore>) -> Self {
        Self { meta, blobs }
    }

    pub fn bucket(&self, name: &str) -> Result<BucketRecord> {
        match self.meta.get(BUCKETS, name)? {
            Some(record) => decode(&record),
            None => Err(S3Error::NoSuchBucket(name.to_owned())),
        }
    }

    pub fn buckets(&self) -> Result<Vec<BucketRecord>> {
        self.meta
            .scan_all(BUCKETS, "")?
            .iter()
            .map(decode)
            .collect()
    }

    pub fn create_bucket(&self, bucket: BucketRecord) -> Result<()> {
        let value = serde_json::to_vec(&bucket).expect("records serialize");
        match self
            .meta
            .commit(WriteBatch::new().put(BUCKETS, &bucket.name, value, Expect::Absent))
        {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { .. }) => Err(S3Error::BucketAlreadyOwnedByYou(bucket.name)),
            Err(err) => Err(err.into()),
        }
    }

    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        let record = self
            .meta
            .get(BUCKETS, name)?
            .ok_or_else(|| S3Error::NoSuchBucket(name.to_owned()))?;
        if !self
            .meta
            .scan(OBJECTS, &format!("{name}/"), None, 1)?
            .is_empty()
        {
            return Err(S3Error::BucketNotEmpty(name.to_owned()));
        }
        self.meta.commit(WriteBatch::new().delete(
            BUCKETS,
            name,
            Expect::Version(record.version),
        ))?;
        Ok(())
    }

    pub fn object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        match self.meta.get(OBJECTS, &object_key(bucket, key))? {
            Some(record) => decode(&record),
            None => Err(S3Error::NoSuchKey(key.to_owned())),
        }
    }

    pub fn open(&self, object: &ObjectRecord) -> Result<Blob> {
        let digest: Digest = object
            .blob
            .parse()
            .map_err(|_| S3Error::Internal(format!("bad blob name {}", object.blob)))?;
        self.blobs
            .open(&digest)?
            .ok_or_else(|| S3Error::Internal(format!("object {} lost its bytes", object.key)))
    }

    pub fn writer(&self) -> Result<Box<dyn BlobWriter>> {
        Ok(self.blobs.writer()?)
    }

    /// Makes a written object visible in one commit; the bucket must exist.
    pub fn put_object(&self, bucket: &str, object: &ObjectRecord) -> Result<()> {
        self.bucket(bucket)?;
        let value = serde_json::to_vec(object).expect("records serialize");
        self.meta.commit(WriteBatch::new().put(
            OBJECTS,
            &object_key(bucket, &object.key),
            value,
            Expect::Anything,
        ))?;
        Ok(())
    }

    /// Deletes an object; deleting one that is not there succeeds, as on S3.
    pub fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.bucket(bucket)?;
        self.meta.commit(WriteBatch::new().delete(
            OBJECTS,
            &object_key(bucket, key),
            Expect::Anything,
        ))?;
        Ok(())
    }

    /// Objects whose keys start with `prefix`, in key order, strictly after `after`,
    /// at most `limit`.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>> {
        let scan_prefix = object_key(bucket, prefix);
        let after = after.map(|after| object_key(bucket, after));
        self.meta
            .scan(OBJECTS, &scan_prefix, after.as_deref(), limit)?
            .iter()
            .map(decode)
            .collect()
    }
}
