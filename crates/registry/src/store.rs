//! Repositories, manifests, tags and blobs: the registry's state, shared by the OCI
//! distribution endpoints and the ECR API.
//!
//! Records live in the metadata store; bytes (layers, configs and manifests alike)
//! live once each in the registry's blob store, named by sha256, whatever the number
//! of repositories or digests referring to them. Tables:
//! - `ecr.repos/<repo>`: a repository and its settings;
//! - `ecr.manifests/<repo>|<digest>`: a manifest pushed to a repository;
//! - `ecr.tags/<repo>|<tag>`: the manifest digest a tag points to;
//! - `ecr.subjects/<repo>|<subject>|<digest>`: referrers by subject;
//! - `ecr.blobs/<digest>`: every blob's storage name, size and age;
//! - `ecr.links/<repo>|<digest>`: the blobs pushed to (or mounted into) a repository.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::{Arc, RwLock};

use nimbus_storage::{
    Blob, BlobError, BlobStore, BlobWriter, Expect, MetadataStore, Record, StoreError, WriteBatch,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::names::{Algorithm, OciDigest, Reference};

const REPOS: &str = "ecr.repos";
const MANIFESTS: &str = "ecr.manifests";
const TAGS: &str = "ecr.tags";
const SUBJECTS: &str = "ecr.subjects";
const BLOBS: &str = "ecr.blobs";
const LINKS: &str = "ecr.links";

/// The distribution spec's bound on a manifest a registry must accept; larger ones are
/// refused (413) before they are read.
pub const MAX_MANIFEST: usize = 4 << 20;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What can go wrong, named for both faces of the registry: each maps to an OCI
/// error code and to an ECR exception.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("The repository with name '{0}' does not exist in the registry")]
    RepositoryNotFound(String),
    #[error("The repository with name '{0}' already exists in the registry")]
    RepositoryExists(String),
    #[error("The repository with name '{0}' cannot be deleted because it still contains images")]
    RepositoryNotEmpty(String),
    #[error("invalid repository name {0:?}")]
    NameInvalid(String),
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(String),
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    #[error("{0}")]
    UploadInvalid(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest references a blob unknown to the repository: {0}")]
    ManifestBlobUnknown(String),
    #[error(
        "The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten because the repository is immutable."
    )]
    TagImmutable { repo: String, tag: String },
    #[error("Image with digest '{digest}' and tag '{tag}' already exists in the repository")]
    ImageExists { digest: String, tag: String },
    #[error("too many open uploads: finish or cancel some first")]
    TooManyUploads,
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    NotFound(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl From<StoreError> for RegistryError {
    fn from(err: StoreError) -> Self {
        RegistryError::Internal(err.to_string())
    }
}

impl From<BlobError> for RegistryError {
    fn from(err: BlobError) -> Self {
        RegistryError::Internal(err.to_string())
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(err: std::io::Error) -> Self {
        RegistryError::Internal(err.to_string())
    }
}

/// A conditional write lost a race; the operation is retried.
const CONFLICT: &str = "conflict";

pub type Result<T> = std::result::Result<T, RegistryError>;

pub fn now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoRecord {
    pub name: String,
    pub created_at: f64,
    /// `MUTABLE` or `IMMUTABLE`.
    pub tag_mutability: String,
    pub scan_on_push: bool,
    pub policy: Option<String>,
    pub lifecycle: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl RepoRecord {
    pub fn immutable(&self) -> bool {
        self.tag_mutability == "IMMUTABLE"
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Value>,
    /// The manifest's own length.
    pub size: u64,
    /// The layers' compressed sizes added up: ECR's `imageSizeInBytes`.
    pub image_size: u64,
    pub pushed_at: f64,
    pub last_pull: Option<f64>,
    pub subject: Option<String>,
    /// What the manifest holds on to: blobs for an image, manifests for an index.
    pub references: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TagRecord {
    digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// The sha256 (hex) the bytes are stored under.
    pub storage: String,
    pub size: u64,
    /// When it was last written or referenced by a new manifest; garbage collection
    /// spares anything younger than its grace period.
    pub touched_at: f64,
}

fn key(repo: &str, rest: &str) -> String {
    format!("{repo}|{rest}")
}

fn decode<T: DeserializeOwned>(record: &Record) -> Result<T> {
    serde_json::from_slice(&record.value)
        .map_err(|err| RegistryError::Internal(format!("corrupt record {}: {err}", record.key)))
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// A manifest's parts the registry needs, read from its JSON.
#[doc(hidden)] // public for the fuzz targets
pub struct Parsed {
    media_type: String,
    artifact_type: Option<String>,
    annotations: Option<serde_json::Value>,
    subject: Option<OciDigest>,
    /// Blobs an image manifest refers to, with their sizes.
    blobs: Vec<(OciDigest, u64)>,
    /// Manifests an index refers to.
    manifests: Vec<OciDigest>,
    image_size: u64,
}

fn descriptor_digest(descriptor: &serde_json::Value) -> Result<OciDigest> {
    let text = descriptor["digest"]
        .as_str()
        .ok_or_else(|| RegistryError::ManifestInvalid("a descriptor has no digest".into()))?;
    text.parse()
        .map_err(|err| RegistryError::ManifestInvalid(format!("descriptor: {err}")))
}

/// Validates a manifest as its media type requires: it must parse, say what it is
/// consistently with how it was sent, and be one thing, not two.
#[doc(hidden)] // public for the fuzz targets
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|err| RegistryError::ManifestInvalid(format!("manifest is not JSON: {err}")))?;
    if !json.is_object() {
        return Err(RegistryError::ManifestInvalid(
            "manifest is not a JSON object".into(),
        ));
    }
    let declared = json["mediaType"].as_str();
    let content_type = content_type
        .map(|t| t.split(';').next().unwrap_or_default().trim())
        .filter(|t| !t.is_empty());
    if let (Some(declared), Some(sent)) = (declared, content_type)
        && declared != sent
    {
        return Err(RegistryError::ManifestInvalid(format!(
            "mediaType {declared} does not match Content-Type {sent}"
        )));
    }
    let has_manifests = json.get("manifests").is_some();
    let has_layers = json.get("layers").is_some() || json.get("config").is_some();
    if has_manifests && has_layers {
        return Err(RegistryError::ManifestInvalid(
            "manifest is ambiguous: it has both manifests and config/layers".into(),
        ));
    }
    let media_type = declared
        .or(content_type)
        .map(str::to_owned)
        .or_else(|| {
            // The OCI spec lets mediaType be left out; the shape then decides.
            if has_manifests {
                Some(OCI_INDEX.to_owned())
            } else if has_layers {
                Some(OCI_MANIFEST.to_owned())
            } else {
                None
            }
        })
        .ok_or_else(|| RegistryError::ManifestInvalid("manifest has no media type".into()))?;
    if json["schemaVersion"].as_i64() != Some(2) {
        return Err(RegistryError::ManifestInvalid(
            "only schemaVersion 2 manifests are accepted".into(),
        ));
    }
    let subject = match json.get("subject") {
        Some(subject) => Some(descriptor_digest(subject)?),
        None => None,
    };
    let annotations = json.get("annotations").cloned();
    let mut parsed = Parsed {
        artifact_type: json["artifactType"].as_str().map(str::to_owned),
        media_type,
        annotations,
        subject,
        blobs: Vec::new(),
        manifests: Vec::new(),
        image_size: 0,
    };
    match parsed.media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            if has_manifests || !json["config"].is_object() || !json["layers"].is_array() {
                return Err(RegistryError::ManifestInvalid(
                    "an image manifest needs a config and layers".into(),
                ));
            }
            let config = &json["config"];
            parsed.blobs.push((
                descriptor_digest(config)?,
                config["size"].as_u64().unwrap_or(0),
            ));
            if parsed.artifact_type.is_none() {
                parsed.artifact_type = config["mediaType"].as_str().map(str::to_owned);
            }
            for layer in json["layers"].as_array().into_iter().flatten() {
                // Every digest is one, even where its bytes are not kept here.
                let digest = descriptor_digest(layer)?;
                // Layers kept elsewhere (foreign `urls`) need not be here.
                if layer.get("urls").is_some() {
                    continue;
                }
                let size = layer["size"].as_u64().unwrap_or(0);
                parsed.image_size = parsed.image_size.checked_add(size).ok_or_else(|| {
                    RegistryError::ManifestInvalid("the layers' sizes add up past 2^64".into())
                })?;
                parsed.blobs.push((digest, size));
            }
        }
        OCI_INDEX | DOCKER_LIST => {
            if has_layers || !json["manifests"].is_array() {
                return Err(RegistryError::ManifestInvalid(
                    "an index needs a manifests list".into(),
                ));
            }
            for manifest in json["manifests"].as_array().into_iter().flatten() {
                parsed.manifests.push(descriptor_digest(manifest)?);
            }
        }
        other => {
            return Err(RegistryError::ManifestInvalid(format!(
                "unsupported manifest media type {other}"
            )));
        }
    }
    Ok(parsed)
}

/// Outcome of a manifest push.
#[derive(Debug)]
pub struct Pushed {
    pub digest: OciDigest,
    pub subject: Option<OciDigest>,
}

/// A blob being uploaded: its bytes so far, in a blob-store temporary file.
pub struct Upload {
    pub repo: String,
    pub owner: String,
    writer: Option<Box<dyn BlobWriter>>,
    pub offset: u64,
    pub touched: std::time::Instant,
}

impl Upload {
    /// Appends bytes; blocks on the disk.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let writer = self.writer.as_mut().ok_or(RegistryError::UploadUnknown)?;
        if let Err(err) = writer.write_all(bytes) {
            // Part of the bytes may have gone in: the upload cannot go on from its
            // offset, so it ends here and the client starts the blob again.
            self.writer = None;
            return Err(err.into());
        }
        self.offset += bytes.len() as u64;
        self.touched = std::time::Instant::now();
        Ok(())
    }
}

pub struct Store {
    meta: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    /// Writers naming stored bytes hold it shared; the sweep holds it alone while it
    /// checks a file is unnamed and deletes it, so no push can name a file as it goes.
    naming: RwLock<()>,
}

impl Store {
    /// The metadata store the registry keeps its records in.
    pub fn meta(&self) -> &dyn MetadataStore {
        self.meta.as_ref()
    }

    pub fn new(meta: Arc<dyn MetadataStore>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            meta,
            blobs,
            naming: RwLock::new(()),
        }
    }

    // --- repositories ---------------------------------------------------------------

    pub fn repository(&self, name: &str) -> Result<RepoRecord> {
        match self.meta.get(REPOS, name)? {
            Some(record) => decode(&record),
            None => Err(RegistryError::RepositoryNotFound(name.to_owned())),
        }
    }

    pub fn repositories(&self) -> Result<Vec<RepoRecord>> {
        self.meta.scan_all(REPOS, "")?.iter().map(decode).collect()
    }

    pub fn create_repository(&self, repo: RepoRecord) -> Result<RepoRecord> {
        let batch = WriteBatch::new().put(REPOS, &repo.name, encode(&repo), Expect::Absent);
        match self.meta.commit(batch) {
            Ok(()) => Ok(repo),
            Err(StoreError::Conflict { .. }) => Err(RegistryError::RepositoryExists(repo.name)),
            Err(err) => Err(err.into()),
        }
    }

    /// Changes a repository's settings, retrying if someone else changed it meanwhile.
    pub fn update_repository(
        &self,
        name: &str,
        change: impl Fn(&mut RepoRecord) -> Result<()>,
    ) -> Result<RepoRecord> {
        loop {
            let record = self
                .meta
                .get(REPOS, name)?
                .ok_or_else(|| RegistryError::RepositoryNotFound(name.to_owned()))?;
            let mut repo: RepoRecord = decode(&record)?;
            change(&mut repo)?;
            let batch =
                WriteBatch::new().put(REPOS, name, encode(&repo), Expect::Version(record.version));
            match self.meta.commit(batch) {
                Ok(()) => return Ok(repo),
                Err(StoreError::Conflict { .. }) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Deletes a repository; with images in it only when `force`. Its blobs stay
    /// until garbage collection finds them unreferenced.
    pub fn delete_repository(&self, name: &str, force: bool) -> Result<RepoRecord> {
        let repo = self.repository(name)?;
        let prefix = key(name, "");
        let manifests = self.meta.scan_all(MANIFESTS, &prefix)?;
        if !manifests.is_empty() && !force {
            return Err(RegistryError::RepositoryNotEmpty(name.to_owned()));
        }
        let mut batch = WriteBatch::new().delete(REPOS, name, Expect::Anything);
        for table in [MANIFESTS, TAGS, SUBJECTS, LINKS] {
            for record in self.meta.scan_all(table, &prefix)? {
                batch = batch.delete(table, &record.key, Expect::Anything);
            }
        }
        self.meta.commit(batch)?;
        Ok(repo)
    }

    // --- blobs ----------------------------------------------------------------------

    pub fn blob(&self, digest: &OciDigest) -> Result<Option<BlobRecord>> {
        self.meta
            .get(BLOBS, &digest.to_string())?
            .map(|record| decode(&record))
            .transpose()
    }

    /// A blob as a repository sees it: only once pushed or mounted there.
    pub fn repo_blob(&self, repo: &str, digest: &OciDigest) -> Result<Option<BlobRecord>> {
        if self
            .meta
            .get(LINKS, &key(repo, &digest.to_string()))?
            .is_none()
        {
            return Ok(None);
        }
        self.blob(digest)
    }

    /// A recorded blob's bytes; the record names them, so their absence is an error.
    pub fn open_blob(&self, blob: &BlobRecord) -> Result<Blob> {
        let storage: nimbus_storage::Digest = blob
            .storage
            .parse()
            .map_err(|_| RegistryError::Internal(format!("bad storage name {}", blob.storage)))?;
        match self.blobs.open(&storage)? {
            Some(found) => Ok(found),
            None => Err(RegistryError::Internal(format!(
                "the bytes of blob {} are missing",
                blob.storage
            ))),
        }
    }

    /// Removes a blob from a repository (the bytes stay for others, or for GC).
    pub fn unlink_blob(&self, repo: &str, digest: &OciDigest) -> Result<()> {
        let link = key(repo, &digest.to_string());
        if self.meta.get(LINKS, &link)?.is_none() {
            return Err(RegistryError::BlobUnknown(digest.to_string()));
        }
        self.meta
            .commit(WriteBatch::new().delete(LINKS, &link, Expect::Anything))?;
        Ok(())
    }

    /// Makes a blob another repository holds available in `repo` too; `None` when
    /// there is no such blob (or garbage collection took it meanwhile).
    pub fn mount_blob(&self, repo: &str, digest: &OciDigest) -> Result<Option<BlobRecord>> {
        let Some(record) = self.meta.get(BLOBS, &digest.to_string())? else {
            return Ok(None);
        };
        let mut blob: BlobRecord = decode(&record)?;
        blob.touched_at = now();
        let batch = WriteBatch::new()
            .put(
                BLOBS,
                &digest.to_string(),
                encode(&blob),
                Expect::Version(record.version),
            )
            .put(
                LINKS,
                &key(repo, &digest.to_string()),
                Vec::new(),
                Expect::Anything,
            );
        match self.meta.commit(batch) {
            Ok(()) => Ok(Some(blob)),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    pub fn start_upload(&self, repo: &str, owner: &str) -> Result<Upload> {
        Ok(Upload {
            repo: repo.to_owned(),
            owner: owner.to_owned(),
            writer: Some(self.blobs.writer()?),
            offset: 0,
            touched: std::time::Instant::now(),
        })
    }

    /// Ends an upload: the bytes become the blob `digest` in the upload's repository
    /// if, and only if, they hash to it. Blocks on the disk.
    pub fn finish_upload(&self, upload: &mut Upload, digest: &OciDigest) -> Result<BlobRecord> {
        let writer = upload.writer.take().ok_or(RegistryError::UploadUnknown)?;
        let _naming = self.naming.read().expect("naming lock");
        let expected = match digest.algorithm() {
            Algorithm::Sha256 => Some(
                digest
                    .hex()
                    .parse::<nimbus_storage::Digest>()
                    .map_err(|_| RegistryError::DigestInvalid(digest.to_string()))?,
            ),
            Algorithm::Sha512 => None,
        };
        let (storage, size) = match writer.commit(expected) {
            Ok(committed) => committed,
            Err(BlobError::DigestMismatch { actual, .. }) => {
                return Err(RegistryError::DigestInvalid(format!(
                    "the uploaded content's digest is sha256:{actual}, not {digest}"
                )));
            }
            Err(err) => return Err(err.into()),
        };
        let blob = BlobRecord {
            storage: storage.to_string(),
            size,
            touched_at: now(),
        };
        if digest.algorithm() == Algorithm::Sha512 {
            // Checked on what was stored; a mismatch leaves an unnamed file that
            // garbage collection removes.
            let actual = sha512_of(self.open_blob(&blob)?.reader)?;
            if actual != *digest {
                return Err(RegistryError::DigestInvalid(format!(
                    "the uploaded content's digest is {actual}, not {digest}"
                )));
            }
        }
        let batch = WriteBatch::new()
            .put(BLOBS, &digest.to_string(), encode(&blob), Expect::Anything)
            .put(
                LINKS,
                &key(&upload.repo, &digest.to_string()),
                Vec::new(),
                Expect::Anything,
            );
        self.meta.commit(batch)?;
        Ok(blob)
    }

    // --- manifests and tags ---------------------------------------------------------

    pub fn manifest(&self, repo: &str, digest: &OciDigest) -> Result<Option<ManifestRecord>> {
        self.meta
            .get(MANIFESTS, &key(repo, &digest.to_string()))?
            .map(|record| decode(&record))
            .transpose()
    }

    /// The digest a tag points to.
    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<OciDigest>> {
        let Some(record) = self.meta.get(TAGS, &key(repo, tag))? else {
            return Ok(None);
        };
        let tag: TagRecord = decode(&record)?;
        tag.digest
            .parse()
            .map(Some)
            .map_err(|_| RegistryError::Internal(format!("corrupt tag {}", record.key)))
    }

    pub fn resolve(&self, repo: &str, reference: &Reference) -> Result<Option<ManifestRecord>> {
        let digest = match reference {
            Reference::Digest(digest) => digest.clone(),
            Reference::Tag(tag) => match self.tag(repo, tag)? {
                Some(digest) => digest,
                None => return Ok(None),
            },
        };
        self.manifest(repo, &digest)
    }

    /// A manifest's bytes, exactly as pushed.
    pub fn manifest_bytes(&self, manifest: &ManifestRecord) -> Result<Vec<u8>> {
        let digest: OciDigest = manifest
            .digest
            .parse()
            .map_err(|_| RegistryError::Internal(format!("bad digest {}", manifest.digest)))?;
        let blob = self
            .blob(&digest)?
            .ok_or_else(|| RegistryError::Internal(format!("manifest {digest} has no bytes")))?;
        let mut bytes = Vec::with_capacity(blob.size as usize);
        self.open_blob(&blob)?.reader.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Records that a manifest was pulled, at most once a minute per manifest (ECR's
    /// `lastRecordedPullTime` is approximate too), so pulls stay reads. The write is
    /// conditional on the record as read here: a manifest deleted or pushed again
    /// meanwhile is left as it is, never brought back.
    pub fn record_pull(&self, repo: &str, manifest: &ManifestRecord) -> Result<()> {
        let at = now();
        if manifest.last_pull.is_some_and(|last| at - last < 60.0) {
            return Ok(());
        }
        let manifest_key = key(repo, &manifest.digest);
        let Some(record) = self.meta.get(MANIFESTS, &manifest_key)? else {
            return Ok(());
        };
        let mut updated: ManifestRecord = decode(&record)?;
        updated.last_pull = Some(at);
        let batch = WriteBatch::new().put(
            MANIFESTS,
            &manifest_key,
            encode(&updated),
            Expect::Version(record.version),
        );
        match self.meta.commit(batch) {
            // Changed meanwhile: the other write wins; a pull time is approximate.
            Err(StoreError::Conflict { .. }) => Ok(()),
            written => Ok(written?),
        }
    }

    /// Stores a manifest under its digest and, when given, a tag. Every blob (or
    /// child manifest) it names must already be in the repository.
    pub fn put_manifest(
        &self,
        repo: &RepoRecord,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Pushed> {
        // Blobs are touched conditionally (see `collect_garbage`); a conflict means
        // another push touched one too, or the collector took one: look again.
        for _ in 0..8 {
            match self.try_put_manifest(repo, reference, content_type, bytes) {
                Err(RegistryError::Internal(message)) if message == CONFLICT => continue,
                outcome => return outcome,
            }
        }
        Err(RegistryError::Internal(
            "manifest push kept conflicting".into(),
        ))
    }

    fn try_put_manifest(
        &self,
        repo: &RepoRecord,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Pushed> {
        if bytes.len() > MAX_MANIFEST {
            return Err(RegistryError::ManifestInvalid(format!(
                "manifest is larger than {MAX_MANIFEST} bytes"
            )));
        }
        let digest = match reference {
            Reference::Digest(digest) => {
                if !digest.matches(bytes) {
                    return Err(RegistryError::DigestInvalid(format!(
                        "the manifest's digest is not {digest}"
                    )));
                }
                digest.clone()
            }
            Reference::Tag(_) => OciDigest::sha256(bytes),
        };
        let parsed = parse_manifest(bytes, content_type)?;
        let name = repo.name.as_str();
        let at = now();
        let mut batch = WriteBatch::new();
        let mut references: Vec<String> = Vec::new();
        for (blob_digest, _) in &parsed.blobs {
            if references.contains(&blob_digest.to_string()) {
                continue;
            }
            let link = self.meta.get(LINKS, &key(name, &blob_digest.to_string()))?;
            let record = self.meta.get(BLOBS, &blob_digest.to_string())?;
            let (Some(_), Some(record)) = (link, record) else {
                return Err(RegistryError::ManifestBlobUnknown(blob_digest.to_string()));
            };
            // Referenced again: garbage collection must see it as young.
            let mut blob: BlobRecord = decode(&record)?;
            blob.touched_at = at;
            batch = batch.put(
                BLOBS,
                &blob_digest.to_string(),
                encode(&blob),
                Expect::Version(record.version),
            );
            references.push(blob_digest.to_string());
        }
        for child in &parsed.manifests {
            if self.manifest(name, child)?.is_none() {
                return Err(RegistryError::ManifestBlobUnknown(child.to_string()));
            }
            references.push(child.to_string());
        }
        if let Reference::Tag(tag) = reference
            && repo.immutable()
            && let Some(existing) = self.tag(name, tag)?
            && existing != digest
        {
            return Err(RegistryError::TagImmutable {
                repo: name.to_owned(),
                tag: tag.clone(),
            });
        }
        let _naming = self.naming.read().expect("naming lock");
        let storage = self.blobs.put(bytes)?;
        let previous = self.manifest(name, &digest)?;
        let record = ManifestRecord {
            digest: digest.to_string(),
            media_type: parsed.media_type,
            artifact_type: parsed.artifact_type,
            annotations: parsed.annotations,
            size: bytes.len() as u64,
            image_size: parsed.image_size,
            pushed_at: previous.as_ref().map_or(at, |p| p.pushed_at),
            last_pull: previous.and_then(|p| p.last_pull),
            subject: parsed.subject.as_ref().map(ToString::to_string),
            references,
        };
        let blob = BlobRecord {
            storage: storage.to_string(),
            size: bytes.len() as u64,
            touched_at: at,
        };
        batch = batch
            .put(BLOBS, &digest.to_string(), encode(&blob), Expect::Anything)
            .put(
                MANIFESTS,
                &key(name, &digest.to_string()),
                encode(&record),
                Expect::Anything,
            );
        if let Some(subject) = &parsed.subject {
            batch = batch.put(
                SUBJECTS,
                &key(name, &format!("{subject}|{digest}")),
                Vec::new(),
                Expect::Anything,
            );
        }
        if let Reference::Tag(tag) = reference {
            let tag_record = TagRecord {
                digest: digest.to_string(),
            };
            batch = batch.put(TAGS, &key(name, tag), encode(&tag_record), Expect::Anything);
        }
        match self.meta.commit(batch) {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(RegistryError::Internal(CONFLICT.into()));
            }
            Err(err) => return Err(err.into()),
        }
        Ok(Pushed {
            digest,
            subject: parsed.subject,
        })
    }

    /// Every tag of a repository, sorted, with the digest each points to.
    pub fn tags(&self, repo: &str) -> Result<Vec<(String, String)>> {
        let prefix = key(repo, "");
        self.meta
            .scan_all(TAGS, &prefix)?
            .iter()
            .map(|record| {
                let tag: TagRecord = decode(record)?;
                Ok((record.key[prefix.len()..].to_owned(), tag.digest))
            })
            .collect()
    }

    /// Tags in order after `last`, at most `limit` of them.
    pub fn tag_page(&self, repo: &str, last: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let prefix = key(repo, "");
        let after = last.map(|last| key(repo, last));
        Ok(self
            .meta
            .scan(TAGS, &prefix, after.as_deref(), limit)?
            .into_iter()
            .map(|record| record.key[prefix.len()..].to_owned())
            .collect())
    }

    pub fn manifests(&self, repo: &str) -> Result<Vec<ManifestRecord>> {
        self.meta
            .scan_all(MANIFESTS, &key(repo, ""))?
            .iter()
            .map(decode)
            .collect()
    }

    /// Manifests whose `subject` is `digest`.
    pub fn referrers(&self, repo: &str, digest: &OciDigest) -> Result<Vec<ManifestRecord>> {
        let prefix = key(repo, &format!("{digest}|"));
        let mut found = Vec::new();
        for record in self.meta.scan_all(SUBJECTS, &prefix)? {
            let referrer: OciDigest = record.key[prefix.len()..]
                .parse()
                .map_err(|_| RegistryError::Internal(format!("corrupt key {}", record.key)))?;
            if let Some(manifest) = self.manifest(repo, &referrer)? {
                found.push(manifest);
            }
        }
        Ok(found)
    }

    /// Removes a tag; the manifest stays.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<()> {
        if self.meta.get(TAGS, &key(repo, tag))?.is_none() {
            return Err(RegistryError::ManifestUnknown(tag.to_owned()));
        }
        self.meta
            .commit(WriteBatch::new().delete(TAGS, &key(repo, tag), Expect::Anything))?;
        Ok(())
    }

    /// Removes a manifest and every tag pointing to it.
    pub fn delete_manifest(&self, repo: &str, digest: &OciDigest) -> Result<ManifestRecord> {
        let manifest = self
            .manifest(repo, digest)?
            .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))?;
        let digest_text = digest.to_string();
        let mut batch =
            WriteBatch::new().delete(MANIFESTS, &key(repo, &digest_text), Expect::Anything);
        for (tag, target) in self.tags(repo)? {
            if target == digest_text {
                batch = batch.delete(TAGS, &key(repo, &tag), Expect::Anything);
            }
        }
        if let Some(subject) = &manifest.subject {
            batch = batch.delete(
                SUBJECTS,
                &key(repo, &format!("{subject}|{digest_text}")),
                Expect::Anything,
            );
        }
        self.meta.commit(batch)?;
        Ok(manifest)
    }

    // --- garbage collection ---------------------------------------------------------

    /// Removes blobs no manifest references and nothing touched for `grace` seconds,
    /// then any stored file no blob names. Returns (blobs, files) removed. Runs beside
    /// pushes: a blob referenced or rewritten meanwhile changes its record's version,
    /// which makes its conditional delete fail, and young files are spared.
    pub fn collect_garbage(&self, grace: f64) -> Result<(usize, usize)> {
        let cutoff = now() - grace;
        let mut live: HashSet<String> = HashSet::new();
        for record in self.meta.scan_all(MANIFESTS, "")? {
            let manifest: ManifestRecord = decode(&record)?;
            live.insert(manifest.digest.clone());
            live.extend(manifest.references);
        }
        let mut removed = 0;
        let mut kept_storage = HashSet::new();
        for record in self.meta.scan_all(BLOBS, "")? {
            let blob: BlobRecord = decode(&record)?;
            if live.contains(&record.key) || blob.touched_at > cutoff {
                kept_storage.insert(blob.storage);
                continue;
            }
            let batch =
                WriteBatch::new().delete(BLOBS, &record.key, Expect::Version(record.version));
            match self.meta.commit(batch) {
                Ok(()) => removed += 1,
                Err(StoreError::Conflict { .. }) => {
                    kept_storage.insert(blob.storage);
                }
                Err(err) => return Err(err.into()),
            }
        }
        // Links to blobs that are gone.
        let mut batch = WriteBatch::new();
        for record in self.meta.scan_all(LINKS, "")? {
            let digest = record.key.rsplit('|').next().unwrap_or_default();
            if self.meta.get(BLOBS, digest)?.is_none() {
                batch = batch.delete(LINKS, &record.key, Expect::Version(record.version));
            }
        }
        if !batch.is_empty() {
            match self.meta.commit(batch) {
                Ok(()) | Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        let files = self.sweep_files(&kept_storage, grace)?;
        Ok((removed, files))
    }

    /// Deletes stored blobs older than `grace` that no remaining blob record names.
    /// Names are read again just before each delete, so a blob recorded meanwhile
    /// (the same bytes pushed again) keeps its bytes.
    fn sweep_files(&self, kept: &HashSet<String>, grace: f64) -> Result<usize> {
        let mut candidates = Vec::new();
        self.blobs.list(&mut |info| {
            let old_enough = info
                .modified
                .elapsed()
                .is_ok_and(|age| age.as_secs_f64() >= grace);
            if old_enough && !kept.contains(&info.digest.to_string()) {
                candidates.push(info.digest);
            }
            Ok(())
        })?;
        let mut removed = 0;
        for digest in candidates {
            let _naming = self.naming.write().expect("naming lock");
            if self.storage_named(&digest.to_string())? {
                continue;
            }
            self.blobs.delete(&digest)?;
            removed += 1;
        }
        Ok(removed)
    }

    fn storage_named(&self, storage: &str) -> Result<bool> {
        // The usual case: the blob's own sha256 digest names its storage.
        if self
            .meta
            .get(BLOBS, &format!("sha256:{storage}"))?
            .is_some()
        {
            return Ok(true);
        }
        // Blobs pushed under sha512 name their storage inside the record.
        for record in self.meta.scan_all(BLOBS, "sha512:")? {
            let blob: BlobRecord = decode(&record)?;
            if blob.storage == storage {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn sha512_of(mut file: impl Read) -> Result<OciDigest> {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha512::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    format!("sha512:{}", hex::encode(hasher.finalize()))
        .parse()
        .map_err(|err: nimbus_storage::DigestError| RegistryError::Internal(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let meta =
            Arc::new(nimbus_storage::SqliteStore::open(&dir.path().join("meta.db")).unwrap());
        let blobs = Arc::new(nimbus_storage::FsBlobStore::open(&dir.path().join("blobs")).unwrap());
        let store = Store::new(meta, blobs);
        (dir, store)
    }

    fn repo(store: &Store, name: &str) -> RepoRecord {
        store
            .create_repository(RepoRecord {
                name: name.into(),
                created_at: now(),
                tag_mutability: "MUTABLE".into(),
                scan_on_push: false,
                policy: None,
                lifecycle: None,
                tags: BTreeMap::new(),
            })
            .unwrap()
    }

    fn push_blob(store: &Store, repo: &str, bytes: &[u8]) -> OciDigest {
        let digest = OciDigest::sha256(bytes);
        let mut upload = store.start_upload(repo, "me").unwrap();
        upload.write(bytes).unwrap();
        store.finish_upload(&mut upload, &digest).unwrap();
        digest
    }

    fn image(config: &OciDigest, layers: &[(&OciDigest, usize)]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 2 },
            "layers": layers.iter().map(|(digest, size)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest.to_string(), "size": size
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    /// Pushes `bytes` as the manifest tagged `name`.
    fn tag(store: &Store, repo: &RepoRecord, name: &str, bytes: &[u8]) -> Result<Pushed> {
        store.put_manifest(repo, &Reference::Tag(name.into()), None, bytes)
    }

    fn files(dir: &tempfile::TempDir) -> usize {
        std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap().count())
            .sum()
    }

    #[test]
    fn collection_takes_exactly_the_unreferenced_blobs() {
        let (dir, store) = store();
        let app = repo(&store, "app");
        let config = push_blob(&store, "app", b"{}");
        let shared = push_blob(&store, "app", b"shared layer");
        let own = push_blob(&store, "app", b"own layer");
        let first = image(&config, &[(&shared, 12), (&own, 9)]);
        let second = image(&config, &[(&shared, 12)]);
        let pushed = store
            .put_manifest(&app, &Reference::Tag("one".into()), None, &first)
            .unwrap();
        store
            .put_manifest(&app, &Reference::Tag("two".into()), None, &second)
            .unwrap();
        assert_eq!(files(&dir), 5);
        assert_eq!(store.collect_garbage(0.0).unwrap(), (0, 0));

        store.delete_manifest("app", &pushed.digest).unwrap();
        assert_eq!(store.tag("app", "one").unwrap(), None);
        // The first manifest's bytes and its own layer go; the shared layer stays.
        assert_eq!(store.collect_garbage(0.0).unwrap(), (2, 2));
        assert_eq!(files(&dir), 3);
        assert!(store.repo_blob("app", &own).unwrap().is_none());
        assert!(store.repo_blob("app", &shared).unwrap().is_some());
    }

    #[test]
    fn recording_a_pull_never_brings_back_a_deleted_manifest() {
        let (_dir, store) = store();
        let app = repo(&store, "app");
        let config = push_blob(&store, "app", b"{}");
        let pushed = tag(&store, &app, "v1", &image(&config, &[])).unwrap();
        let pulled = store.manifest("app", &pushed.digest).unwrap().unwrap();
        store.delete_manifest("app", &pushed.digest).unwrap();
        store.record_pull("app", &pulled).unwrap();
        assert_eq!(store.manifest("app", &pushed.digest).unwrap(), None);
        // A manifest still there gets its pull time.
        let pushed = tag(&store, &app, "v2", &image(&config, &[])).unwrap();
        let pulled = store.manifest("app", &pushed.digest).unwrap().unwrap();
        store.record_pull("app", &pulled).unwrap();
        let recorded = store.manifest("app", &pushed.digest).unwrap().unwrap();
        assert!(recorded.last_pull.is_some());
    }

    #[test]
    fn a_young_blob_survives_until_its_manifest_comes() {
        let (dir, store) = store();
        let app = repo(&store, "app");
        let config = push_blob(&store, "app", b"{}");
        assert_eq!(store.collect_garbage(3600.0).unwrap(), (0, 0));
        tag(&store, &app, "v1", &image(&config, &[])).unwrap();
        assert_eq!(files(&dir), 2);
    }

    #[test]
    fn manifests_must_name_blobs_of_their_repository() {
        let (_dir, store) = store();
        let app = repo(&store, "app");
        repo(&store, "other");
        let elsewhere = push_blob(&store, "other", b"{}");
        let err = tag(&store, &app, "v1", &image(&elsewhere, &[])).unwrap_err();
        assert!(matches!(err, RegistryError::ManifestBlobUnknown(_)));
        // Mounted, it is the repository's too.
        store.mount_blob("app", &elsewhere).unwrap().unwrap();
        tag(&store, &app, "v1", &image(&elsewhere, &[])).unwrap();
    }

    #[test]
    fn immutable_tags_refuse_a_new_digest_and_bad_manifests_are_refused() {
        let (_dir, store) = store();
        let mut app = repo(&store, "app");
        app.tag_mutability = "IMMUTABLE".into();
        let config = push_blob(&store, "app", b"{}");
        let layer = push_blob(&store, "app", b"layer");
        let tag = Reference::Tag("v1".into());
        store
            .put_manifest(&app, &tag, None, &image(&config, &[]))
            .unwrap();
        store
            .put_manifest(&app, &tag, None, &image(&config, &[]))
            .unwrap();
        let err = store
            .put_manifest(&app, &tag, None, &image(&config, &[(&layer, 5)]))
            .unwrap_err();
        assert!(matches!(err, RegistryError::TagImmutable { .. }));
        // A foreign layer (kept elsewhere, named by `urls`) still needs a digest.
        let foreign = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                        "digest": "tmp/../../../../etc", "size": 1,
                        "urls": ["http://example.com/layer"]}],
        })
        .to_string();
        for (bytes, content_type) in [
            (&b"not json"[..], None),
            (&image(&config, &[])[..], Some(OCI_INDEX)),
            (
                br#"{"schemaVersion":2,"config":{},"layers":[],"manifests":[]}"#,
                None,
            ),
            (foreign.as_bytes(), None),
        ] {
            let err = store
                .put_manifest(&app, &Reference::Tag("v2".into()), content_type, bytes)
                .unwrap_err();
            assert!(matches!(err, RegistryError::ManifestInvalid(_)), "{err:?}");
        }
    }

    /// Found writing the manifest fuzz target: layer sizes whose sum overflows panicked
    /// (debug) or wrapped to a wrong image size (release).
    #[test]
    fn layer_sizes_that_overflow_are_refused() {
        let layer = format!(
            r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{}","size":{}}}"#,
            "b".repeat(64),
            u64::MAX
        );
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"sha256:{}","size":2}},"layers":[{layer},{layer}]}}"#,
            "a".repeat(64)
        );
        assert!(matches!(
            parse_manifest(manifest.as_bytes(), None),
            Err(RegistryError::ManifestInvalid(_))
        ));
    }

    #[test]
    fn sha512_uploads_are_verified_on_what_was_stored() {
        let (_dir, store) = store();
        repo(&store, "app");
        let digest = Algorithm::Sha512.digest(b"bytes");
        let mut upload = store.start_upload("app", "me").unwrap();
        upload.write(b"bytes").unwrap();
        store.finish_upload(&mut upload, &digest).unwrap();
        assert_eq!(store.repo_blob("app", &digest).unwrap().unwrap().size, 5);
        let mut wrong = store.start_upload("app", "me").unwrap();
        wrong.write(b"other").unwrap();
        let err = store.finish_upload(&mut wrong, &digest).unwrap_err();
        assert!(matches!(err, RegistryError::DigestInvalid(_)));
    }
}
