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

use crate::notifications::Staged;

const BUCKETS: &str = "s3.buckets";
const OBJECTS: &str = "s3.objects";
const UPLOADS: &str = "s3.uploads";
const PARTS: &str = "s3.parts";

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
    #[error(
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )]
    NoSuchUpload(String),
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
    /// Which object events go to which function.
    #[serde(default)]
    pub notifications: Vec<crate::notifications::Rule>,
    /// The bucket policy document, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
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

/// A multipart upload in progress: what its object will be once completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub initiated: f64,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    pub number: u32,
    pub blob: String,
    pub size: u64,
    /// MD5 of the part, hex.
    pub etag: String,
    pub last_modified: f64,
}

fn with_events(batch: WriteBatch, events: Vec<Staged>) -> WriteBatch {
    events.into_iter().fold(batch, |batch, event| {
        batch.put(&event.table, &event.key, event.value, Expect::Absent)
    })
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

    /// Changes a bucket's record (its notification rules, its policy), retrying when
    /// another change lands first.
    pub fn update_bucket(&self, name: &str, edit: impl Fn(&mut BucketRecord)) -> Result<()> {
        loop {
            let record = self
                .meta
                .get(BUCKETS, name)?
                .ok_or_else(|| S3Error::NoSuchBucket(name.to_owned()))?;
            let mut bucket: BucketRecord = decode(&record)?;
            edit(&mut bucket);
            let value = serde_json::to_vec(&bucket).expect("records serialize");
            match self.meta.commit(WriteBatch::new().put(
                BUCKETS,
                name,
                value,
                Expect::Version(record.version),
            )) {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Deletes an empty bucket. Its record is read before its objects are scanned and
    /// deleted at the version read, and every object write rewrites that record (see
    /// [`Store::commit_in_bucket`]): an object committed after the scan makes this
    /// delete conflict and look again.
    pub fn delete_bucket(&self, name: &str) -> Result<()> {
        loop {
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
            match self.meta.commit(WriteBatch::new().delete(
                BUCKETS,
                name,
                Expect::Version(record.version),
            )) {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Commits `writes` into a bucket together with a rewrite of the bucket's record
    /// at the version they were built from, retrying when another write to the
    /// bucket lands first. Objects are written only this way, so none outlives its
    /// bucket: a concurrent DeleteBucket either commits first (and this answers
    /// NoSuchBucket) or conflicts with this commit.
    fn commit_in_bucket(
        &self,
        bucket: &str,
        mut writes: impl FnMut(&BucketRecord) -> Result<WriteBatch>,
    ) -> Result<()> {
        loop {
            let record = self
                .meta
                .get(BUCKETS, bucket)?
                .ok_or_else(|| S3Error::NoSuchBucket(bucket.to_owned()))?;
            let batch = writes(&decode(&record)?)?;
            let batch = WriteBatch::new()
                .put(
                    BUCKETS,
                    bucket,
                    record.value,
                    Expect::Version(record.version),
                )
                .extend(batch);
            match self.meta.commit(batch) {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { table, .. }) if table == BUCKETS => continue,
                Err(StoreError::Conflict { table, key }) if table == UPLOADS => {
                    return Err(S3Error::NoSuchUpload(key));
                }
                Err(err) => return Err(err.into()),
            }
        }
    }

    pub fn object(&self, bucket: &str, key: &str) -> Result<ObjectRecord> {
        match self.meta.get(OBJECTS, &object_key(bucket, key))? {
            Some(record) => decode(&record),
            None => Err(S3Error::NoSuchKey(key.to_owned())),
        }
    }

    pub fn open(&self, object: &ObjectRecord) -> Result<Blob> {
        self.open_blob(&object.blob)
    }

    pub fn writer(&self) -> Result<Box<dyn BlobWriter>> {
        Ok(self.blobs.writer()?)
    }

    /// Makes a written object visible in one commit with the events it causes, which
    /// `events` stages from the bucket's record as committed; the bucket must exist.
    pub fn put_object(
        &self,
        bucket: &str,
        object: &ObjectRecord,
        mut events: impl FnMut(&BucketRecord) -> Result<Vec<Staged>>,
    ) -> Result<()> {
        let value = serde_json::to_vec(object).expect("records serialize");
        let key = object_key(bucket, &object.key);
        self.commit_in_bucket(bucket, |record| {
            let batch = WriteBatch::new().put(OBJECTS, &key, value.clone(), Expect::Anything);
            Ok(with_events(batch, events(record)?))
        })
    }

    /// Writes a whole object from bytes in hand (service-generated objects, such as
    /// Lambda's invocation records); blocks on the disk.
    pub fn put_bytes(
        &self,
        bucket: &str,
        key: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<ObjectRecord> {
        use md5::Digest as _;
        self.bucket(bucket)?;
        let mut writer = self.writer()?;
        std::io::Write::write_all(&mut writer, bytes)
            .map_err(|err| S3Error::Internal(err.to_string()))?;
        let (blob, size) = writer.commit(None)?;
        let object = ObjectRecord {
            key: key.to_owned(),
            blob: blob.to_string(),
            size,
            etag: hex::encode(md5::Md5::digest(bytes)),
            last_modified: time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9,
            content_type: Some(content_type.to_owned()),
            metadata: BTreeMap::new(),
            checksums: BTreeMap::new(),
        };
        self.put_object(bucket, &object, |_| Ok(Vec::new()))?;
        Ok(object)
    }

    /// Deletes objects of a bucket the caller found, each with the events its deletion
    /// causes, in one commit; deleting one that is not there succeeds, as on S3.
    pub fn delete_objects(
        &self,
        bucket: &str,
        deletions: Vec<(String, Vec<Staged>)>,
    ) -> Result<()> {
        if deletions.is_empty() {
            return Ok(());
        }
        let batch = deletions
            .into_iter()
            .fold(WriteBatch::new(), |batch, (key, events)| {
                let batch = batch.delete(OBJECTS, &object_key(bucket, &key), Expect::Anything);
                with_events(batch, events)
            });
        self.meta.commit(batch)?;
        Ok(())
    }

    pub fn create_upload(&self, upload: &UploadRecord) -> Result<()> {
        self.bucket(&upload.bucket)?;
        let value = serde_json::to_vec(upload).expect("records serialize");
        self.meta
            .commit(WriteBatch::new().put(UPLOADS, &upload.id, value, Expect::Absent))?;
        Ok(())
    }

    /// An upload of `bucket`/`key`.
    pub fn upload(&self, bucket: &str, key: &str, id: &str) -> Result<UploadRecord> {
        let upload: UploadRecord = match self.meta.get(UPLOADS, id)? {
            Some(record) => decode(&record)?,
            None => return Err(S3Error::NoSuchUpload(id.to_owned())),
        };
        if upload.bucket != bucket || upload.key != key {
            return Err(S3Error::NoSuchUpload(id.to_owned()));
        }
        Ok(upload)
    }

    pub fn uploads(&self, bucket: &str) -> Result<Vec<UploadRecord>> {
        let mut uploads: Vec<UploadRecord> = self
            .meta
            .scan_all(UPLOADS, "")?
            .iter()
            .map(decode)
            .collect::<Result<Vec<UploadRecord>>>()?
            .into_iter()
            .filter(|upload| upload.bucket == bucket)
            .collect();
        uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.total_cmp(&b.initiated)));
        Ok(uploads)
    }

    /// Records a part; a part uploaded again under the same number replaces it.
    pub fn put_part(&self, upload: &UploadRecord, part: &PartRecord) -> Result<()> {
        let value = serde_json::to_vec(part).expect("records serialize");
        let key = format!("{}/{:05}", upload.id, part.number);
        self.meta
            .commit(WriteBatch::new().put(PARTS, &key, value, Expect::Anything))?;
        Ok(())
    }

    pub fn parts(&self, upload: &UploadRecord) -> Result<Vec<PartRecord>> {
        self.meta
            .scan_all(PARTS, &format!("{}/", upload.id))?
            .iter()
            .map(decode)
            .collect()
    }

    /// Ends an upload: completed with `object`, which becomes visible in the same
    /// commit that forgets the upload and its parts, with the events `events` stages;
    /// aborted without.
    pub fn end_upload(
        &self,
        upload: &UploadRecord,
        object: Option<&ObjectRecord>,
        mut events: impl FnMut(&BucketRecord) -> Result<Vec<Staged>>,
    ) -> Result<()> {
        let record = self
            .meta
            .get(UPLOADS, &upload.id)?
            .ok_or_else(|| S3Error::NoSuchUpload(upload.id.clone()))?;
        let mut forget =
            WriteBatch::new().delete(UPLOADS, &upload.id, Expect::Version(record.version));
        for part in self.meta.scan_all(PARTS, &format!("{}/", upload.id))? {
            forget = forget.delete(PARTS, &part.key, Expect::Anything);
        }
        let Some(object) = object else {
            return match self.meta.commit(forget) {
                Ok(()) => Ok(()),
                Err(StoreError::Conflict { .. }) => Err(S3Error::NoSuchUpload(upload.id.clone())),
                Err(err) => Err(err.into()),
            };
        };
        let value = serde_json::to_vec(object).expect("records serialize");
        let key = object_key(&upload.bucket, &object.key);
        self.commit_in_bucket(&upload.bucket, |bucket| {
            let batch = forget
                .clone()
                .put(OBJECTS, &key, value.clone(), Expect::Anything);
            Ok(with_events(batch, events(bucket)?))
        })
    }

    pub fn open_blob(&self, blob: &str) -> Result<Blob> {
        let digest: Digest = blob
            .parse()
            .map_err(|_| S3Error::Internal(format!("bad blob name {blob}")))?;
        self.blobs
            .open(&digest)?
            .ok_or_else(|| S3Error::Internal(format!("blob {blob} is missing")))
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use nimbus_storage::{FsBlobStore, SqliteStore};

    use super::*;

    type Hook = Box<dyn FnOnce() + Send>;

    /// A metadata store that runs a hook just before its next commit: another
    /// request's write landing between what an operation read and what it commits.
    struct Interleaved {
        inner: Arc<SqliteStore>,
        before_commit: Mutex<Option<Hook>>,
    }

    impl MetadataStore for Interleaved {
        fn get(&self, table: &str, key: &str) -> std::result::Result<Option<Record>, StoreError> {
            self.inner.get(table, key)
        }

        fn scan(
            &self,
            table: &str,
            prefix: &str,
            after: Option<&str>,
            limit: usize,
        ) -> std::result::Result<Vec<Record>, StoreError> {
            self.inner.scan(table, prefix, after, limit)
        }

        fn scan_back(
            &self,
            table: &str,
            prefix: &str,
            before: Option<&str>,
            limit: usize,
        ) -> std::result::Result<Vec<Record>, StoreError> {
            self.inner.scan_back(table, prefix, before, limit)
        }

        fn commit(&self, batch: WriteBatch) -> std::result::Result<(), StoreError> {
            let hook = self.before_commit.lock().unwrap().take();
            if let Some(hook) = hook {
                hook();
            }
            self.inner.commit(batch)
        }

        fn tables(&self) -> std::result::Result<Vec<String>, StoreError> {
            self.inner.tables()
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        meta: Arc<Interleaved>,
        /// The same records, written without the hook: the other request.
        other: Arc<Store>,
        store: Store,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let blobs: Arc<dyn BlobStore> =
            Arc::new(FsBlobStore::open(&dir.path().join("blobs")).unwrap());
        let meta = Arc::new(Interleaved {
            inner: inner.clone(),
            before_commit: Mutex::new(None),
        });
        let other = Arc::new(Store::new(inner, blobs.clone()));
        let store = Store::new(meta.clone(), blobs);
        store
            .create_bucket(BucketRecord {
                name: "photos".into(),
                created_at: 0.0,
                notifications: Vec::new(),
                policy: None,
            })
            .unwrap();
        Fixture {
            _dir: dir,
            meta,
            other,
            store,
        }
    }

    fn object(key: &str) -> ObjectRecord {
        ObjectRecord {
            key: key.into(),
            blob: "0".repeat(64),
            size: 0,
            etag: String::new(),
            last_modified: 0.0,
            content_type: None,
            metadata: BTreeMap::new(),
            checksums: BTreeMap::new(),
        }
    }

    #[test]
    fn an_object_committed_after_its_bucket_is_deleted_is_refused() {
        let f = fixture();
        let other = f.other.clone();
        *f.meta.before_commit.lock().unwrap() =
            Some(Box::new(move || other.delete_bucket("photos").unwrap()));
        let put = f
            .store
            .put_object("photos", &object("a.jpg"), |_| Ok(Vec::new()));
        assert!(matches!(put, Err(S3Error::NoSuchBucket(_))), "{put:?}");
        assert!(f.other.list("photos", "", None, 10).unwrap().is_empty());
    }

    #[test]
    fn a_bucket_delete_that_an_object_overtakes_finds_the_bucket_not_empty() {
        let f = fixture();
        let other = f.other.clone();
        *f.meta.before_commit.lock().unwrap() = Some(Box::new(move || {
            other
                .put_object("photos", &object("a.jpg"), |_| Ok(Vec::new()))
                .unwrap()
        }));
        let deleted = f.store.delete_bucket("photos");
        assert!(
            matches!(deleted, Err(S3Error::BucketNotEmpty(_))),
            "{deleted:?}"
        );
        assert_eq!(f.other.object("photos", "a.jpg").unwrap().key, "a.jpg");
    }

    #[test]
    fn a_completed_upload_needs_its_bucket_still_there() {
        let f = fixture();
        let upload = UploadRecord {
            id: "u1".into(),
            bucket: "photos".into(),
            key: "big".into(),
            initiated: 0.0,
            content_type: None,
            metadata: BTreeMap::new(),
        };
        f.store.create_upload(&upload).unwrap();
        let other = f.other.clone();
        *f.meta.before_commit.lock().unwrap() =
            Some(Box::new(move || other.delete_bucket("photos").unwrap()));
        let completed = f
            .store
            .end_upload(&upload, Some(&object("big")), |_| Ok(Vec::new()));
        assert!(
            matches!(completed, Err(S3Error::NoSuchBucket(_))),
            "{completed:?}"
        );
        assert!(f.other.list("photos", "", None, 10).unwrap().is_empty());
    }
}
