//! The blob store: immutable byte strings named by their sha256 digest.
//!
//! A blob becomes visible only once it is whole and durable: bytes go to a temporary
//! file, are synced, and are renamed into place, so a crash at any moment leaves either
//! no blob or the complete one. Writers of the same content race harmlessly, since
//! every writer renames identical bytes onto the same name.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

/// A blob store failure.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The bytes written do not hash to the digest the caller promised.
    #[error("digest mismatch: expected {expected}, computed {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob store i/o at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob write: {0}")]
    Write(#[from] io::Error),
    /// The backend could not be reached; the call may succeed when tried again.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with a refusal (access denied, a failed precondition).
    #[error("blob store refused: {0}")]
    Refused(String),
    /// The store's location or settings are unusable.
    #[error("{0}")]
    Config(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A sha256 digest, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

/// The text was not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("invalid sha256 digest {0:?}")]
pub struct InvalidDigest(String);

impl FromStr for Digest {
    type Err = InvalidDigest;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(InvalidDigest(text.to_owned()));
        }
        hex::decode_to_slice(text, &mut bytes).map_err(|_| InvalidDigest(text.to_owned()))?;
        Ok(Digest(bytes))
    }
}

/// Readable, seekable blob content.
pub trait BlobRead: Read + Seek + Send {}
impl<T: Read + Seek + Send> BlobRead for T {}

/// An open blob and its length.
pub struct Blob {
    pub len: u64,
    pub reader: Box<dyn BlobRead>,
}

/// A blob being written. Dropping it without committing discards the bytes.
pub trait BlobWriter: Write + Send {
    /// Makes the bytes durable and visible under their digest. When `expected` is
    /// given and differs from what was written, nothing becomes visible.
    fn commit(self: Box<Self>, expected: Option<Digest>) -> Result<(Digest, u64), BlobError>;
}

/// What the store knows of one stored blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub len: u64,
    /// When the blob was last written; garbage collectors spare young blobs.
    pub modified: SystemTime,
}

/// Content-addressed storage for immutable bytes. Calls block on the disk or the
/// network.
pub trait BlobStore: Send + Sync {
    fn writer(&self) -> Result<Box<dyn BlobWriter>, BlobError>;
    fn open(&self, digest: &Digest) -> Result<Option<Blob>, BlobError>;
    fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, BlobError>;
    /// Removes the blob; removing one that is not there is not an error.
    fn delete(&self, digest: &Digest) -> Result<(), BlobError>;
    /// Calls `visit` with every stored blob, in no particular order.
    fn list(
        &self,
        visit: &mut dyn FnMut(BlobInfo) -> Result<(), BlobError>,
    ) -> Result<(), BlobError>;

    fn put(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let mut writer = self.writer()?;
        writer.write_all(bytes)?;
        Ok(writer.commit(None)?.0)
    }
}

/// Blobs as files under `<root>/sha256/<first two hex digits>/<digest>`, written
/// through `<root>/tmp`, which is emptied on open since anything there is a write a
/// crash interrupted.
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        // Every shard directory exists, durably, before any blob is written, so a
        // committed blob never hangs on a directory entry a crash could lose.
        let shards = root.join("sha256");
        for byte in 0..=255u8 {
            let shard = shards.join(format!("{byte:02x}"));
            fs::create_dir_all(&shard).map_err(io_at(&shard))?;
        }
        sync_dir(&shards)?;
        sync_dir(root)?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// Where the blob `digest` lives (or would).
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.root, digest)
    }
}

fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.to_string();
    root.join("sha256").join(&hex[..2]).join(hex)
}

struct FsBlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    len: u64,
    store_root: PathBuf,
}

impl Write for FsBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn sync_dir(dir: &Path) -> Result<(), BlobError> {
    crate::file::sync_dir(dir).map_err(io_at(dir))
}

impl BlobWriter for FsBlobWriter {
    fn commit(self: Box<Self>, expected: Option<Digest>) -> Result<(Digest, u64), BlobError> {
        let FsBlobWriter {
            mut file,
            hasher,
            len,
            store_root,
        } = *self;
        let digest = Digest(hasher.finalize().into());
        if let Some(expected) = expected.filter(|e| *e != digest) {
            return Err(BlobError::DigestMismatch {
                expected,
                actual: digest,
            });
        }
        let target = blob_path(&store_root, &digest);
        if target.exists() {
            return Ok((digest, len));
        }
        let temp_path = file.path().to_owned();
        file.flush().map_err(io_at(&temp_path))?;
        file.as_file().sync_all().map_err(io_at(&temp_path))?;
        let parent = target.parent().expect("blob path has a parent");
        file.persist(&target).map_err(|err| BlobError::Io {
            path: target.clone(),
            source: err.error,
        })?;
        sync_dir(parent)?;
        Ok((digest, len))
    }
}

impl BlobStore for FsBlobStore {
    fn writer(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        let tmp = self.root.join("tmp");
        let file = tempfile::NamedTempFile::new_in(&tmp).map_err(io_at(&tmp))?;
        Ok(Box::new(FsBlobWriter {
            file,
            hasher: Sha256::new(),
            len: 0,
            store_root: self.root.clone(),
        }))
    }

    fn open(&self, digest: &Digest) -> Result<Option<Blob>, BlobError> {
        let path = self.path_of(digest);
        match File::open(&path) {
            Ok(file) => {
                let len = file.metadata().map_err(io_at(&path))?.len();
                Ok(Some(Blob {
                    len,
                    reader: Box::new(file),
                }))
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_at(&path)(err)),
        }
    }

    fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, BlobError> {
        let path = self.path_of(digest);
        match fs::metadata(&path) {
            Ok(meta) => Ok(Some(info(*digest, &meta, &path)?)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_at(&path)(err)),
        }
    }

    fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.path_of(digest);
        match fs::remove_file(&path) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(io_at(&path)(err)),
            _ => Ok(()),
        }
    }

    fn list(
        &self,
        visit: &mut dyn FnMut(BlobInfo) -> Result<(), BlobError>,
    ) -> Result<(), BlobError> {
        let shards = self.root.join("sha256");
        for shard in fs::read_dir(&shards).map_err(io_at(&shards))? {
            let shard = shard.map_err(io_at(&shards))?.path();
            for entry in fs::read_dir(&shard).map_err(io_at(&shard))? {
                let entry = entry.map_err(io_at(&shard))?;
                // Anything not named by a digest is not a blob of ours.
                let Some(digest) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                    continue;
                };
                let path = entry.path();
                match entry.metadata() {
                    Ok(meta) => visit(info(digest, &meta, &path)?)?,
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                    Err(err) => return Err(io_at(&path)(err)),
                }
            }
        }
        Ok(())
    }
}

fn info(digest: Digest, meta: &fs::Metadata, path: &Path) -> Result<BlobInfo, BlobError> {
    Ok(BlobInfo {
        digest,
        len: meta.len(),
        modified: meta.modified().map_err(io_at(path))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, FsBlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn read_all(store: &FsBlobStore, digest: &Digest) -> Vec<u8> {
        let mut blob = store.open(digest).unwrap().expect("blob exists");
        let mut bytes = Vec::new();
        blob.reader.read_to_end(&mut bytes).unwrap();
        assert_eq!(blob.len, bytes.len() as u64);
        bytes
    }

    #[test]
    fn put_is_content_addressed_and_deduplicated() {
        let (dir, store) = store();
        let digest = store.put(b"hello").unwrap();
        assert_eq!(
            digest.to_string(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(store.put(b"hello").unwrap(), digest);
        assert_eq!(read_all(&store, &digest), b"hello");
        let files = walk(dir.path().join("sha256").as_path());
        assert_eq!(files.len(), 1, "one copy on disk: {files:?}");
    }

    #[test]
    fn digest_mismatch_leaves_nothing_visible() {
        let (_dir, store) = store();
        let wrong = Digest::of(b"something else");
        let mut writer = store.writer().unwrap();
        writer.write_all(b"actual bytes").unwrap();
        let err = writer.commit(Some(wrong)).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }));
        assert!(store.open(&Digest::of(b"actual bytes")).unwrap().is_none());
        assert!(store.open(&wrong).unwrap().is_none());
    }

    #[test]
    fn an_abandoned_write_is_invisible_and_swept_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).unwrap();
        let mut writer = store.writer().unwrap();
        writer.write_all(b"half of a blob").unwrap();
        // A crash: the writer is never committed nor dropped.
        std::mem::forget(writer);
        assert!(
            store
                .open(&Digest::of(b"half of a blob"))
                .unwrap()
                .is_none()
        );
        assert_eq!(walk(&dir.path().join("tmp")).len(), 1);
        FsBlobStore::open(dir.path()).unwrap();
        assert!(walk(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn concurrent_writers_of_one_blob_agree() {
        let (_dir, store) = store();
        let payload = vec![7u8; 1 << 20];
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let mut writer = store.writer().unwrap();
                    for chunk in payload.chunks(4096) {
                        writer.write_all(chunk).unwrap();
                    }
                    writer.commit(Some(Digest::of(&payload))).unwrap();
                });
            }
        });
        assert_eq!(read_all(&store, &Digest::of(&payload)), payload);
    }

    #[test]
    fn stat_list_and_delete() {
        let (_dir, store) = store();
        let a = store.put(b"a").unwrap();
        let b = store.put(b"bb").unwrap();
        assert_eq!(store.stat(&b).unwrap().unwrap().len, 2);
        let mut listed = Vec::new();
        store
            .list(&mut |info| {
                listed.push((info.digest, info.len));
                Ok(())
            })
            .unwrap();
        listed.sort();
        let mut expected = vec![(a, 1), (b, 2)];
        expected.sort();
        assert_eq!(listed, expected);
        store.delete(&a).unwrap();
        store.delete(&a).unwrap();
        assert!(store.stat(&a).unwrap().is_none());
        assert!(store.open(&a).unwrap().is_none());
    }

    #[test]
    fn digest_text_round_trips_and_rejects_junk() {
        let digest = Digest::of(b"abc");
        assert_eq!(digest.to_string().parse::<Digest>().unwrap(), digest);
        for junk in ["", "abc", &"A".repeat(64), &"g".repeat(64)] {
            assert!(junk.parse::<Digest>().is_err(), "{junk}");
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
