//! The S3 blob backend: blobs as objects `<prefix>/sha256/<digest>` in a bucket of any
//! S3-compatible store (AWS S3, Garage, MinIO), through the `object_store` client.
//!
//! An object's key cannot be renamed, and a blob's digest is known only once all of it
//! was written, so a blob that fits in one part is hashed in memory and PUT under its
//! digest, while a larger one streams as a multipart upload to `<prefix>/tmp/<uuid>`
//! and is then copied under its digest (as the distribution registry's S3 driver
//! moves uploads). Either way the digest's object appears only whole, and a writer is
//! acknowledged only after it does. Reads stream ranged GETs; nothing is held whole.

use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::client::{
    CryptoProvider, DigestAlgorithm, DigestContext, HmacContext, SigningAlgorithm,
};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload,
    RetryConfig,
};
use sha2::{Digest as _, Sha256};

use crate::blob::{Blob, BlobError, BlobInfo, BlobStore, BlobWriter, Digest};
use crate::remote::{self, BLOBS, Unreachable};

/// Bytes buffered per multipart part (S3 wants at least 5 MiB for all but the last).
const PART: usize = 8 << 20;
/// Parts uploading at once per writer, bounding a writer's memory to this many parts.
const PARTS_IN_FLIGHT: usize = 2;
/// Staged uploads older than this are leftovers of a crash and are swept on open.
const STAGING_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Unreachable for BlobError {
    fn unreachable(&self) -> bool {
        matches!(self, BlobError::Unavailable(_))
    }
}

fn unavailable(err: impl std::fmt::Display) -> BlobError {
    BlobError::Unavailable(format!("object store: {err}"))
}

/// An object store error as a blob error: refusals the store answered with (access
/// denied, a failed precondition) are the store's word, not a sign it is away.
fn store_error(err: object_store::Error) -> BlobError {
    use object_store::Error as E;
    match err {
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::Precondition { .. }
        | E::AlreadyExists { .. }
        | E::NotModified { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. } => BlobError::Refused(format!("object store: {err}")),
        other => unavailable(other),
    }
}

/// Where an S3 blob store lives, parsed from
/// `s3://bucket/prefix?endpoint=http://host:port&region=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl std::str::FromStr for S3Location {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let url = url::Url::parse(text).map_err(|err| format!("invalid blob store URL: {err}"))?;
        if url.scheme() != "s3" {
            return Err(format!("blob store URL {text:?} is not s3://"));
        }
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("blob store URL {text:?} names no bucket"))?
            .to_owned();
        let mut location = S3Location {
            bucket,
            prefix: url.path().trim_matches('/').to_owned(),
            endpoint: None,
            region: None,
        };
        for (name, value) in url.query_pairs() {
            match &*name {
                "endpoint" => location.endpoint = Some(value.into_owned()),
                "region" => location.region = Some(value.into_owned()),
                other => return Err(format!("unknown blob store URL parameter {other:?}")),
            }
        }
        Ok(location)
    }
}

/// Blobs in an S3 bucket under a prefix.
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    blobs: Path,
    staging: Path,
}

/// Credentials given explicitly; without them the standard AWS chain applies.
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3BlobStore {
    /// Opens the store under `location`'s prefix joined with `name`, checks that the
    /// bucket answers, and sweeps staged uploads a crash left behind.
    pub fn open(
        location: &S3Location,
        name: &str,
        keys: Option<&S3Keys>,
    ) -> Result<Self, BlobError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&location.bucket)
            .with_crypto_provider(Arc::new(Sha2Crypto))
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(5),
                ..Default::default()
            })
            // Streams of large blobs may last long; each wait is bounded instead.
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout_disabled()
                    .with_allow_http(true),
            );
        if let Some(endpoint) = &location.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &location.region {
            builder = builder.with_region(region);
        }
        if let Some(keys) = keys {
            builder = builder
                .with_access_key_id(&keys.access_key_id)
                .with_secret_access_key(&keys.secret_access_key);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(
            builder
                .build()
                .map_err(|err| BlobError::Config(format!("blob store: {err}")))?,
        );
        let root = Path::from(location.prefix.as_str()).join(name);
        let this = Self {
            store,
            blobs: root.clone().join("sha256"),
            staging: root.clone().join("tmp"),
        };
        this.check_bucket(location)?;
        // Leftovers only cost space: a sweep that fails must not keep the server down.
        if let Err(err) = this.sweep_staging() {
            tracing::warn!(error = %err, "sweeping staged uploads failed");
        }
        let (store, probe) = (this.store.clone(), this.staging.clone());
        BLOBS.set_probe(move || {
            let (store, probe) = (store.clone(), probe.clone());
            // Any answer, "not found" or "denied" included, means the store is back.
            let _ =
                BLOBS.observe(
                    || match remote::block_on(async move { store.head(&probe).await }) {
                        Ok(Ok(_) | Err(object_store::Error::NotFound { .. })) => Ok(()),
                        Ok(Err(err)) => match store_error(err) {
                            BlobError::Refused(_) => Ok(()),
                            other => Err(other),
                        },
                        Err(elapsed) => Err(unavailable(elapsed)),
                    },
                );
        });
        Ok(this)
    }

    fn check_bucket(&self, location: &S3Location) -> Result<(), BlobError> {
        let store = self.store.clone();
        let probe = self.staging.clone();
        let listed = BLOBS.observe(|| {
            remote::block_on(async move { store.list_with_delimiter(Some(&probe)).await })
                .map_err(unavailable)
        })?;
        let endpoint = location
            .endpoint
            .as_deref()
            .unwrap_or("the default S3 endpoint");
        listed.map(|_| ()).map_err(|err| {
            // A listing's 404 reaches object_store as a generic error naming S3's code.
            let missing = matches!(err, object_store::Error::NotFound { .. })
                || err.to_string().contains("NoSuchBucket");
            if missing {
                BlobError::Config(format!(
                    "bucket {} does not exist at {endpoint}",
                    location.bucket
                ))
            } else {
                BlobError::Config(format!(
                    "cannot reach bucket {} at {endpoint}: {err}",
                    location.bucket
                ))
            }
        })
    }

    fn sweep_staging(&self) -> Result<(), BlobError> {
        let cutoff = SystemTime::now() - STAGING_GRACE;
        let mut stale = Vec::new();
        self.each(&self.staging, &mut |meta| {
            if SystemTime::from(meta.last_modified) < cutoff {
                stale.push(meta.location);
            }
            Ok(())
        })?;
        for path in stale {
            self.remove(path)?;
        }
        Ok(())
    }

    fn path_of(&self, digest: &Digest) -> Path {
        self.blobs.clone().join(digest.to_string())
    }

    /// Runs one call against the store, bounded and observed.
    fn call<T: Send + 'static>(
        &self,
        work: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<Option<T>, BlobError> {
        BLOBS.observe(|| match remote::block_on(work).map_err(unavailable)? {
            Ok(value) => Ok(Some(value)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(store_error(err)),
        })
    }

    fn remove(&self, path: Path) -> Result<(), BlobError> {
        let store = self.store.clone();
        self.call(async move { store.delete(&path).await })
            .map(|_| ())
    }

    fn each(
        &self,
        prefix: &Path,
        visit: &mut dyn FnMut(object_store::ObjectMeta) -> Result<(), BlobError>,
    ) -> Result<(), BlobError> {
        let mut listing = Some(self.store.list(Some(prefix)));
        while let Some(mut stream) = listing.take() {
            let (next, stream) = BLOBS.observe(|| {
                remote::block_on(async move { (stream.next().await, stream) }).map_err(unavailable)
            })?;
            match next {
                None => break,
                Some(Ok(meta)) => visit(meta)?,
                Some(Err(err)) => return Err(unavailable(err)),
            }
            listing = Some(stream);
        }
        Ok(())
    }
}

impl BlobStore for S3BlobStore {
    fn writer(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(S3BlobWriter {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            staging: self.staging.clone().join(uuid::Uuid::new_v4().to_string()),
            buffer: Vec::new(),
            upload: None,
            parts: VecDeque::new(),
            hasher: Sha256::new(),
            len: 0,
        }))
    }

    fn open(&self, digest: &Digest) -> Result<Option<Blob>, BlobError> {
        // The GET starts at the first read, from wherever the reader then is: a blob
        // opened and not yet read (the parts of an upload being assembled) holds no
        // connection, and one read from an offset costs one ranged GET.
        Ok(self.stat(digest)?.map(|info| Blob {
            len: info.len,
            reader: Box::new(S3Reader {
                store: self.store.clone(),
                path: self.path_of(digest),
                len: info.len,
                pos: 0,
                body: None,
                chunk: Bytes::new(),
                resumed_at: None,
            }),
        }))
    }

    fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, BlobError> {
        let store = self.store.clone();
        let path = self.path_of(digest);
        let meta = self.call(async move { store.head(&path).await })?;
        Ok(meta.map(|meta| BlobInfo {
            digest: *digest,
            len: meta.size,
            modified: meta.last_modified.into(),
        }))
    }

    fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        self.remove(self.path_of(digest))
    }

    fn list(
        &self,
        visit: &mut dyn FnMut(BlobInfo) -> Result<(), BlobError>,
    ) -> Result<(), BlobError> {
        self.each(&self.blobs, &mut |meta| {
            // Anything not named by a digest is not a blob of ours.
            match meta.location.filename().and_then(|name| name.parse().ok()) {
                Some(digest) => visit(BlobInfo {
                    digest,
                    len: meta.size,
                    modified: meta.last_modified.into(),
                }),
                None => Ok(()),
            }
        })
    }
}

type PartUpload = tokio::task::JoinHandle<object_store::Result<()>>;

struct S3BlobWriter {
    store: Arc<dyn ObjectStore>,
    blobs: Path,
    staging: Path,
    buffer: Vec<u8>,
    /// Started once the blob outgrows one part.
    upload: Option<Box<dyn MultipartUpload>>,
    parts: VecDeque<PartUpload>,
    hasher: Sha256,
    len: u64,
}

impl S3BlobWriter {
    /// Sends the buffered bytes as the next part, first waiting for the oldest part
    /// when enough are in flight.
    fn send_part(&mut self) -> Result<(), BlobError> {
        while self.parts.len() >= PARTS_IN_FLIGHT {
            let oldest = self.parts.pop_front().expect("parts in flight");
            wait_part(oldest)?;
        }
        if self.upload.is_none() {
            let store = self.store.clone();
            let staging = self.staging.clone();
            let upload = BLOBS.observe(|| {
                remote::block_on(async move { store.put_multipart(&staging).await })
                    .map_err(unavailable)?
                    .map_err(unavailable)
            })?;
            self.upload = Some(upload);
        }
        let part = std::mem::take(&mut self.buffer);
        let upload = self.upload.as_mut().expect("upload started");
        self.parts
            .push_back(remote::spawn(upload.put_part(PutPayload::from(part))));
        Ok(())
    }

    /// Completes the multipart upload at the staging key and copies it under `target`.
    fn finish_upload(&mut self, target: Path) -> Result<(), BlobError> {
        self.send_part()?;
        while let Some(part) = self.parts.pop_front() {
            wait_part(part)?;
        }
        let mut upload = self.upload.take().expect("upload started");
        let store = self.store.clone();
        let staging = self.staging.clone();
        // Completing and copying take time in proportion to the size on most stores.
        let deadline = remote::deadline_for(self.len);
        BLOBS.observe(|| {
            remote::block_on_within(deadline, async move {
                if let Err(err) = upload.complete().await {
                    let _ = upload.abort().await;
                    return Err(err);
                }
                let copied = store.copy(&staging, &target).await;
                let _ = store.delete(&staging).await;
                copied
            })
            .map_err(unavailable)?
            .map_err(unavailable)
        })
    }
}

fn wait_part(part: PartUpload) -> Result<(), BlobError> {
    let abort = part.abort_handle();
    BLOBS.observe(|| {
        remote::block_on_within(remote::deadline_for(PART as u64), part)
            .map_err(|elapsed| {
                // Not left running with its buffer and connection.
                abort.abort();
                unavailable(elapsed)
            })?
            .map_err(unavailable)?
            .map_err(store_error)
    })
}

impl Write for S3BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // A full buffer goes out only once more bytes come: a blob of exactly one
        // part is a plain PUT, and the last part is never empty.
        if self.buffer.len() == PART && !buf.is_empty() {
            self.send_part().map_err(io::Error::other)?;
        }
        let room = PART - self.buffer.len();
        let taken = &buf[..buf.len().min(room)];
        self.buffer.extend_from_slice(taken);
        self.hasher.update(taken);
        self.len += taken.len() as u64;
        Ok(taken.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for S3BlobWriter {
    fn commit(mut self: Box<Self>, expected: Option<Digest>) -> Result<(Digest, u64), BlobError> {
        let digest = Digest::from_bytes(std::mem::take(&mut self.hasher).finalize().into());
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(BlobError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        let target = self.blobs.clone().join(digest.to_string());
        if self.upload.is_some() {
            self.finish_upload(target)?;
        } else {
            let store = self.store.clone();
            let bytes = PutPayload::from(std::mem::take(&mut self.buffer));
            BLOBS.observe(|| {
                remote::block_on(async move { store.put(&target, bytes).await })
                    .map_err(unavailable)?
                    .map_err(unavailable)
            })?;
        }
        Ok((digest, self.len))
    }
}

impl Drop for S3BlobWriter {
    fn drop(&mut self) {
        // A write abandoned (or failed) mid-upload: its parts are discarded.
        if let Some(mut upload) = self.upload.take() {
            for part in self.parts.drain(..) {
                part.abort();
            }
            remote::spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// A blob read as a stream of the object's bytes; a seek starts a ranged GET.
struct S3Reader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    len: u64,
    pos: u64,
    body: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
    /// Where a broken body was last picked up again with a fresh GET: a body that
    /// breaks twice at the same place is an error, not a loop.
    resumed_at: Option<u64>,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk.split_to(n));
                self.pos += n as u64;
                return Ok(n);
            }
            if self.pos >= self.len || buf.is_empty() {
                return Ok(0);
            }
            let mut body = match self.body.take() {
                Some(body) => body,
                None => {
                    let store = self.store.clone();
                    let path = self.path.clone();
                    let options = GetOptions {
                        range: Some(GetRange::Bounded(self.pos..self.len)),
                        ..Default::default()
                    };
                    remote::block_on(async move { store.get_opts(&path, options).await })
                        .map_err(io::Error::other)?
                        .map_err(io::Error::other)?
                        .into_stream()
                }
            };
            let (next, body) = remote::block_on(async move { (body.next().await, body) })
                .map_err(io::Error::other)?;
            let broken = match next {
                Some(Ok(bytes)) => {
                    self.chunk = bytes;
                    self.body = Some(body);
                    continue;
                }
                Some(Err(err)) => io::Error::other(err),
                None => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} ended at {} of {} bytes", self.path, self.pos, self.len),
                ),
            };
            // A connection reset mid-body (a reader slower than the store's patience)
            // resumes once from where it broke.
            if self.resumed_at == Some(self.pos) {
                return Err(broken);
            }
            self.resumed_at = Some(self.pos);
        }
    }
}

impl Seek for S3Reader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if target != self.pos {
            self.body = None;
            self.chunk = Bytes::new();
            self.pos = target;
        }
        Ok(target)
    }
}

/// SigV4 signing for object_store from the sha2 and hmac crates nimbus already
/// builds, instead of its default provider's C toolchain build.
#[derive(Debug)]
struct Sha2Crypto;

struct Sha256Context {
    hasher: Sha256,
    out: Vec<u8>,
}

impl DigestContext for Sha256Context {
    fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        self.out = std::mem::take(&mut self.hasher).finalize().to_vec();
        Ok(&self.out)
    }
}

struct HmacSha256 {
    mac: Option<hmac::Hmac<Sha256>>,
    out: Vec<u8>,
}

impl HmacContext for HmacSha256 {
    fn update(&mut self, data: &[u8]) {
        if let Some(mac) = &mut self.mac {
            hmac::Mac::update(mac, data);
        }
    }

    fn finish(&mut self) -> object_store::Result<&[u8]> {
        if let Some(mac) = self.mac.take() {
            self.out = hmac::Mac::finalize(mac).into_bytes().to_vec();
        }
        Ok(&self.out)
    }
}

impl CryptoProvider for Sha2Crypto {
    fn digest(&self, _: DigestAlgorithm) -> object_store::Result<Box<dyn DigestContext>> {
        Ok(Box::new(Sha256Context {
            hasher: Sha256::new(),
            out: Vec::new(),
        }))
    }

    fn hmac(
        &self,
        _: DigestAlgorithm,
        secret: &[u8],
    ) -> object_store::Result<Box<dyn HmacContext>> {
        let mac = <hmac::Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret)
            .expect("HMAC takes keys of any length");
        Ok(Box::new(HmacSha256 {
            mac: Some(mac),
            out: Vec::new(),
        }))
    }

    fn sign(
        &self,
        _: SigningAlgorithm,
        _: &[u8],
    ) -> object_store::Result<Box<dyn object_store::client::Signer>> {
        Err(object_store::Error::NotSupported {
            source: "RSA signing is not needed for S3".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store under a prefix of its own in the test environment's bucket
    /// (`NIMBUS_TEST_S3`, keys in `NIMBUS_TEST_S3_ACCESS_KEY_ID` and
    /// `NIMBUS_TEST_S3_SECRET_ACCESS_KEY`).
    fn fresh_store() -> Option<S3BlobStore> {
        let location: S3Location = std::env::var("NIMBUS_TEST_S3").ok()?.parse().unwrap();
        let keys = S3Keys {
            access_key_id: std::env::var("NIMBUS_TEST_S3_ACCESS_KEY_ID").unwrap(),
            secret_access_key: std::env::var("NIMBUS_TEST_S3_SECRET_ACCESS_KEY").unwrap(),
        };
        let name = uuid::Uuid::new_v4().to_string();
        Some(S3BlobStore::open(&location, &name, Some(&keys)).unwrap())
    }

    fn read_all(store: &S3BlobStore, digest: &Digest) -> Vec<u8> {
        let mut blob = store.open(digest).unwrap().unwrap();
        let mut bytes = Vec::new();
        blob.reader.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, blob.len);
        bytes
    }

    fn staged(store: &S3BlobStore) -> usize {
        let mut count = 0;
        store
            .each(&store.staging, &mut |_| {
                count += 1;
                Ok(())
            })
            .unwrap();
        count
    }

    #[test]
    fn locations_parse() {
        let location: S3Location =
            "s3://bucket/some/prefix/?endpoint=http://127.0.0.1:3900&region=garage"
                .parse()
                .unwrap();
        assert_eq!(
            location,
            S3Location {
                bucket: "bucket".into(),
                prefix: "some/prefix".into(),
                endpoint: Some("http://127.0.0.1:3900".into()),
                region: Some("garage".into()),
            }
        );
        let bare: S3Location = "s3://bucket".parse().unwrap();
        assert_eq!(bare.prefix, "");
        assert!("file:///x".parse::<S3Location>().is_err());
        assert!("s3://bucket?color=red".parse::<S3Location>().is_err());
        assert!("s3:///prefix".parse::<S3Location>().is_err());
    }

    #[test]
    fn small_and_multipart_blobs_round_trip() {
        let Some(store) = fresh_store() else {
            return;
        };
        let small = b"hello, blobs".to_vec();
        let digest = store.put(&small).unwrap();
        assert_eq!(digest, Digest::of(&small));
        assert_eq!(read_all(&store, &digest), small);
        // Whole parts only: no empty last part.
        for exact in [vec![2u8; PART], vec![3u8; PART * 2]] {
            let digest = store.put(&exact).unwrap();
            assert_eq!(read_all(&store, &digest), exact);
            store.delete(&digest).unwrap();
        }

        // Three parts and a bit, so parts upload while later ones are written.
        let large: Vec<u8> = (0..PART * 3 + 12345).map(|i| (i * 7 % 251) as u8).collect();
        let mut writer = store.writer().unwrap();
        for chunk in large.chunks(1 << 20) {
            writer.write_all(chunk).unwrap();
        }
        let (digest, len) = writer.commit(Some(Digest::of(&large))).unwrap();
        assert_eq!(len, large.len() as u64);
        assert_eq!(read_all(&store, &digest), large);
        assert_eq!(staged(&store), 0, "the staged upload is gone once copied");

        let mut blob = store.open(&digest).unwrap().unwrap();
        blob.reader.seek(SeekFrom::Start(PART as u64 - 3)).unwrap();
        let mut middle = [0u8; 6];
        blob.reader.read_exact(&mut middle).unwrap();
        assert_eq!(middle, large[PART - 3..PART + 3]);

        let info = store.stat(&digest).unwrap().unwrap();
        assert_eq!(info.len, large.len() as u64);
        let mut listed = Vec::new();
        store
            .list(&mut |info| {
                listed.push(info.digest);
                Ok(())
            })
            .unwrap();
        listed.sort();
        let mut expected = vec![Digest::of(&small), digest];
        expected.sort();
        assert_eq!(listed, expected);

        store.delete(&digest).unwrap();
        store.delete(&digest).unwrap();
        assert!(store.open(&digest).unwrap().is_none());
        assert!(store.stat(&digest).unwrap().is_none());
    }

    #[test]
    fn a_mismatched_or_abandoned_write_leaves_nothing() {
        let Some(store) = fresh_store() else {
            return;
        };
        let bytes = vec![1u8; PART + 1];
        let mut writer = store.writer().unwrap();
        writer.write_all(&bytes).unwrap();
        let wrong = Digest::of(b"something else");
        assert!(matches!(
            writer.commit(Some(wrong)),
            Err(BlobError::DigestMismatch { .. })
        ));
        assert!(store.open(&Digest::of(&bytes)).unwrap().is_none());

        let mut abandoned = store.writer().unwrap();
        abandoned.write_all(&bytes).unwrap();
        drop(abandoned);
        assert!(store.open(&Digest::of(&bytes)).unwrap().is_none());
        assert_eq!(staged(&store), 0);
    }

    #[test]
    fn a_missing_bucket_is_named() {
        let Some(base) = std::env::var("NIMBUS_TEST_S3").ok() else {
            return;
        };
        let mut location: S3Location = base.parse().unwrap();
        location.bucket = "no-such-bucket".into();
        let keys = S3Keys {
            access_key_id: std::env::var("NIMBUS_TEST_S3_ACCESS_KEY_ID").unwrap(),
            secret_access_key: std::env::var("NIMBUS_TEST_S3_SECRET_ACCESS_KEY").unwrap(),
        };
        let err = S3BlobStore::open(&location, "blobs", Some(&keys))
            .err()
            .expect("the bucket does not exist");
        assert!(
            err.to_string()
                .contains("bucket no-such-bucket does not exist"),
            "{err}"
        );
    }
}
