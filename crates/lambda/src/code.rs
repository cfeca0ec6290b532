//! Function code packages: zips checked and kept in the blob store, unpacked once per
//! digest into a directory every environment of that code shares.
//!
//! Unpacking never writes outside its directory: entry names must stay inside
//! (no absolute paths, no `..` escapes), symlinks must point inside, no entry may pass
//! through a symlink the archive itself created, and the bytes actually written are
//! counted against the unzipped limit, whatever sizes the archive declares.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Cursor, Read, Seek};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use nimbus_storage::{BlobStore, Digest};

/// The largest zip a request may carry (after base64 decoding).
pub const MAX_ZIP_BYTES: usize = 50 * 1024 * 1024;
/// The largest unzipped size of code and layers together.
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;
/// Symlink targets are short paths; anything longer is refused before it is read.
const MAX_LINK_TARGET: u64 = 4096;
/// What each entry costs against the unzipped limit beyond its bytes, so a zip of a
/// million empty files cannot pass as small.
const ENTRY_COST: u64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("Could not unzip uploaded file. Please check your file, then try to upload again.")]
    NotAZip,
    #[error("Zip entry {0:?} would be written outside the function's directory")]
    UnsafeEntry(String),
    #[error("Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes")]
    TooLarge,
    #[error("code store: {0}")]
    Io(String),
}

impl From<io::Error> for CodeError {
    fn from(err: io::Error) -> Self {
        CodeError::Io(err.to_string())
    }
}

/// A stored zip: its digest names it in the blob store and in `CodeSha256`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CodeRef {
    pub digest: String,
    pub size: u64,
    /// The unzipped size the archive declares.
    #[serde(default)]
    pub unzipped: u64,
}

impl CodeRef {
    /// `CodeSha256` as Lambda reports it: the zip's sha256, base64.
    pub fn code_sha256(&self) -> String {
        let digest: Digest = self.digest.parse().expect("stored digests are valid");
        base64::engine::general_purpose::STANDARD.encode(digest.as_bytes())
    }
}

/// A zip with no entries: the code of a container image function, whose image is
/// its whole root.
pub const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// Checks a zip's entries and declared sizes, then stores it.
pub fn store_zip(blobs: &dyn BlobStore, zip: &[u8]) -> Result<CodeRef, CodeError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).map_err(|_| CodeError::NotAZip)?;
    let mut declared: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|_| CodeError::NotAZip)?;
        safe_name(&entry)?;
        declared = declared
            .saturating_add(entry.size())
            .saturating_add(ENTRY_COST);
    }
    if declared > MAX_UNZIPPED_BYTES {
        return Err(CodeError::TooLarge);
    }
    let digest = blobs
        .put(zip)
        .map_err(|err| CodeError::Io(err.to_string()))?;
    Ok(CodeRef {
        digest: digest.to_string(),
        size: zip.len() as u64,
        unzipped: declared,
    })
}

/// Where unpacked code lives: `<root>/<digest>/`, made whole in a temporary directory
/// and renamed into place, so a crash never leaves a half-unpacked tree in use.
pub struct CodeCache {
    root: PathBuf,
    /// Digests known to be unpacked, so the invoke path skips the file system.
    unpacked: std::sync::RwLock<HashSet<String>>,
}

impl CodeCache {
    pub fn open(root: &Path) -> Result<Self, CodeError> {
        fs::create_dir_all(root)?;
        for entry in fs::read_dir(root)? {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".unpack-"))
            {
                fs::remove_dir_all(&path)?;
            }
        }
        Ok(Self {
            root: root.to_owned(),
            unpacked: Default::default(),
        })
    }

    /// The unpacked directory of `code`, unpacking it first if needed.
    /// The unpacked directory of `code` if it is known to be there, without touching
    /// the disk.
    pub fn ready(&self, code: &CodeRef) -> Option<PathBuf> {
        let known = self
            .unpacked
            .read()
            .expect("code cache")
            .contains(&code.digest);
        known.then(|| self.root.join(&code.digest))
    }

    pub fn ensure(&self, blobs: &dyn BlobStore, code: &CodeRef) -> Result<PathBuf, CodeError> {
        if let Some(ready) = self.ready(code) {
            return Ok(ready);
        }
        let target = self.unpack_once(blobs, code)?;
        self.unpacked
            .write()
            .expect("code cache")
            .insert(code.digest.clone());
        Ok(target)
    }

    fn unpack_once(&self, blobs: &dyn BlobStore, code: &CodeRef) -> Result<PathBuf, CodeError> {
        let target = self.root.join(&code.digest);
        if target.is_dir() {
            return Ok(target);
        }
        let digest: Digest = code.digest.parse().map_err(|_| CodeError::NotAZip)?;
        let blob = blobs
            .open(&digest)
            .map_err(|err| CodeError::Io(err.to_string()))?
            .ok_or_else(|| CodeError::Io(format!("code blob {} is missing", code.digest)))?;
        let staging = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&self.root)?;
        unpack(blob.reader, staging.path(), MAX_UNZIPPED_BYTES)?;
        // Sandboxed code runs as an unprivileged user that must read the tree.
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))?;
        }
        // Everything unpacked reaches the disk before the tree goes live under its
        // final name: one syncfs rather than a sync per file.
        let dir = fs::File::open(staging.path())?;
        nix::unistd::syncfs(&dir).map_err(io::Error::from)?;
        match fs::rename(staging.path(), &target) {
            Ok(()) => {
                // The directory now lives under its final name; nothing to clean up.
                let _ = staging.keep();
                fs::File::open(&self.root)?.sync_all()?;
                Ok(target)
            }
            // Another task unpacked the same code first.
            Err(_) if target.is_dir() => Ok(target),
            Err(err) => Err(err.into()),
        }
    }
}

/// An entry's path inside the root. An absolute name is refused outright rather than
/// quietly re-rooted.
fn safe_name<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> Result<PathBuf, CodeError> {
    let raw = entry.name_raw();
    entry
        .enclosed_name()
        .filter(|_| !raw.starts_with(b"/"))
        .ok_or_else(|| CodeError::UnsafeEntry(String::from_utf8_lossy(raw).into_owned()))
}

/// Unpacks a zip into `dest` under the rules in the module documentation.
pub fn unpack(reader: impl Read + Seek, dest: &Path, limit: u64) -> Result<u64, CodeError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|_| CodeError::NotAZip)?;
    let mut written: u64 = 0;
    let mut links: HashSet<PathBuf> = HashSet::new();
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|_| CodeError::NotAZip)?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        let relative = safe_name(&entry)?;
        written += ENTRY_COST;
        if relative
            .ancestors()
            .skip(1)
            .any(|ancestor| links.contains(ancestor))
        {
            return Err(CodeError::UnsafeEntry(name));
        }
        let path = dest.join(&relative);
        if entry.is_dir() {
            fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        if entry.is_symlink() {
            let mut target = String::new();
            (&mut entry)
                .take(MAX_LINK_TARGET)
                .read_to_string(&mut target)?;
            if !link_stays_inside(&relative, Path::new(&target)) {
                return Err(CodeError::UnsafeEntry(name));
            }
            std::os::unix::fs::symlink(&target, &path)?;
            links.insert(relative);
            continue;
        }
        if written > limit {
            return Err(CodeError::TooLarge);
        }
        let mode = entry.unix_mode().map_or(0o644, |mode| mode & 0o755);
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode | 0o400)
                .open(&path)?
        };
        let budget = limit.saturating_sub(written);
        let copied = io::copy(&mut (&mut entry).take(budget + 1), &mut file)?;
        written += copied;
        if written > limit {
            return Err(CodeError::TooLarge);
        }
    }
    // Each link was checked on its own; a chain of them (`a -> ..`, `b -> a/..`)
    // can still lead out, which only resolving them shows. Dangling links lead
    // nowhere and stay.
    let root = dest.canonicalize()?;
    for link in &links {
        if let Ok(resolved) = dest.join(link).canonicalize()
            && !resolved.starts_with(&root)
        {
            return Err(CodeError::UnsafeEntry(link.to_string_lossy().into_owned()));
        }
    }
    Ok(written)
}

/// Whether a link at `link` (relative to the root) pointing at `target` resolves
/// inside the root, reading the path lexically.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = link.components().count().saturating_sub(1);
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    enum Entry<'a> {
        File(&'a str, &'a [u8], u32),
        Link(&'a str, &'a str),
    }

    fn build(entries: &[Entry]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for entry in entries {
            match entry {
                Entry::File(name, bytes, mode) => {
                    zip.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                        .unwrap();
                    zip.write_all(bytes).unwrap();
                }
                Entry::Link(name, target) => {
                    zip.add_symlink(*name, *target, SimpleFileOptions::default())
                        .unwrap();
                }
            }
        }
        zip.finish().unwrap().into_inner()
    }

    fn unpack_into(zip: &[u8]) -> (tempfile::TempDir, Result<u64, CodeError>) {
        let dir = tempfile::tempdir().unwrap();
        let result = unpack(Cursor::new(zip), dir.path(), MAX_UNZIPPED_BYTES);
        (dir, result)
    }

    #[test]
    fn unpacks_files_modes_and_inner_links() {
        let zip = build(&[
            Entry::File("bootstrap", b"#!/bin/sh\n", 0o755),
            Entry::File("lib/app.py", b"x = 1\n", 0o644),
            Entry::Link("lib/current", "app.py"),
        ]);
        let (dir, result) = unpack_into(&zip);
        assert_eq!(result.unwrap(), 16 + 3 * ENTRY_COST);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "bootstrap stays executable");
        assert_eq!(
            fs::read_to_string(dir.path().join("lib/current")).unwrap(),
            "x = 1\n"
        );
    }

    #[test]
    fn refuses_entries_that_escape() {
        let cases = [
            build(&[Entry::File("../evil", b"x", 0o644)]),
            build(&[Entry::File("/etc/evil", b"x", 0o644)]),
            build(&[Entry::Link("up", "../../etc")]),
            build(&[Entry::Link("abs", "/etc/passwd")]),
            // A link that is inside on its own, then an entry written through it.
            build(&[Entry::Link("here", "."), Entry::File("here/x", b"x", 0o644)]),
            // Each link inside on its own; together they lead out.
            build(&[Entry::Link("a/l1", ".."), Entry::Link("e", "a/l1/..")]),
        ];
        for zip in cases {
            let (dir, result) = unpack_into(&zip);
            assert!(
                matches!(result, Err(CodeError::UnsafeEntry(_))),
                "{result:?}"
            );
            assert!(!dir.path().parent().unwrap().join("evil").exists());
        }
    }

    #[test]
    fn counts_real_bytes_against_the_limit() {
        let big = vec![0u8; 1 << 20];
        let zip = build(&[Entry::File("a", &big, 0o644), Entry::File("b", &big, 0o644)]);
        let dir = tempfile::tempdir().unwrap();
        let result = unpack(Cursor::new(&zip), dir.path(), (1 << 20) + 10);
        assert!(matches!(result, Err(CodeError::TooLarge)));
        assert!(
            zip.len() < 20_000,
            "zeros compress: the limit is on what is unpacked"
        );
    }

    #[test]
    fn store_checks_then_cache_unpacks_once() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = nimbus_storage::FsBlobStore::open(&dir.path().join("blobs")).unwrap();
        assert!(matches!(
            store_zip(&blobs, b"not a zip"),
            Err(CodeError::NotAZip)
        ));
        let zip = build(&[Entry::File("app.py", b"def h(e, c): return 1\n", 0o644)]);
        let code = store_zip(&blobs, &zip).unwrap();
        assert_eq!(code.size, zip.len() as u64);
        assert_eq!(code.code_sha256().len(), 44);

        let cache = CodeCache::open(&dir.path().join("code")).unwrap();
        let unpacked = cache.ensure(&blobs, &code).unwrap();
        assert!(unpacked.join("app.py").is_file());
        assert_eq!(cache.ensure(&blobs, &code).unwrap(), unpacked);
    }

    #[test]
    fn link_targets_are_read_lexically() {
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("../c")));
        assert!(link_stays_inside(Path::new("a"), Path::new("./c/../d")));
    }
}
