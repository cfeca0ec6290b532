//! One layer tar unpacked into its snapshot directory in overlayfs form, the archive
//! treated as hostile. Every entry's parent is resolved inside the snapshot
//! ([`ConfinedDir`]: symlinks the layer planted lead back inside, never to the host),
//! and the entry itself is made as a name in that directory, never followed. Names
//! with `..` are refused and absolute ones taken as relative, as containerd does.
//! Whiteouts become overlay whiteouts (0/0 character devices) and opaque directories
//! get overlay's opaque attribute, both at the resolved place. Decompressed bytes,
//! entries, names and extension records are bounded, so a bomb fails instead of
//! filling the disk or the memory; the result is synced before it is used.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nimbus_engine::confined::{ConfinedDir, is_plain, open_child};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

/// Bounds on what one layer may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes a layer may decompress to, tar headers included.
    pub layer_bytes: u64,
    /// Decompressed bytes per stored byte, past `ratio_floor`: gzip packs real
    /// files ten to one or so, while a bomb reaches a thousand.
    pub ratio: u64,
    /// Decompressed bytes below which the ratio is not checked.
    pub ratio_floor: u64,
    /// Entries per layer.
    pub entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            layer_bytes: 4 << 30,
            ratio: 100,
            ratio_floor: 256 << 20,
            entries: 1_000_000,
        }
    }
}

/// Bytes of one entry's name or link target (Linux's `PATH_MAX`).
const MAX_NAME: u64 = 4096;
/// Bytes of one PAX extension record.
const MAX_PAX: u64 = 64 << 10;

const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT: &[u8] = b".wh.";

/// Fails the read once more than `limit` bytes came out.
struct Bounded<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "the layer decompresses to more than {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

fn refused(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// What GNU long-name and PAX records say about the entry that follows them.
#[derive(Default)]
struct Extensions {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    size: Option<u64>,
}

impl Extensions {
    fn pax(&mut self, records: &[u8]) -> io::Result<()> {
        let number = |value: &[u8]| -> io::Result<u64> {
            std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| refused("a PAX number is not a number"))
        };
        for record in tar::PaxExtensions::new(records) {
            let record = record?;
            let value = record.value_bytes();
            match record.key_bytes() {
                b"path" => self.path = Some(value.to_vec()),
                b"linkpath" => self.link = Some(value.to_vec()),
                b"uid" => self.uid = Some(number(value)?),
                b"gid" => self.gid = Some(number(value)?),
                b"size" => self.size = Some(number(value)?),
                // Seconds, maybe with a fraction.
                b"mtime" => {
                    let whole = value.split(|b| *b == b'.').next().unwrap_or_default();
                    self.mtime = std::str::from_utf8(whole).ok().and_then(|v| v.parse().ok());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads an extension record's body, refusing one longer than `limit`.
fn record(entry: &mut impl Read, size: u64, limit: u64) -> io::Result<Vec<u8>> {
    if size > limit {
        return Err(refused(format!(
            "a tar extension record of {size} bytes (at most {limit})"
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut bytes)?;
    // GNU long names end with NUL.
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    Ok(bytes)
}

/// An entry's name made relative and checked: `None` for the root itself.
fn entry_path(raw: &[u8]) -> io::Result<Option<PathBuf>> {
    let shown = String::from_utf8_lossy(raw);
    if raw.len() as u64 > MAX_NAME || raw.contains(&0) {
        return Err(refused(format!(
            "entry name {shown:?} is too long or has NUL"
        )));
    }
    let path = Path::new(OsStr::from_bytes(raw));
    let path = path.strip_prefix("/").unwrap_or(path);
    if !is_plain(path) {
        return Err(refused(format!("entry {shown} escapes the layer")));
    }
    let clean: PathBuf = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    Ok((!clean.as_os_str().is_empty()).then_some(clean))
}

/// Who owns an entry, its permission bits and its modification time.
struct Attributes {
    uid: u32,
    gid: u32,
    mode: Mode,
    mtime: TimeSpec,
}

impl Attributes {
    /// Applies them to an open file or directory; the owner first, since a change
    /// of owner clears set-id bits.
    fn apply(&self, fd: impl AsFd) -> io::Result<()> {
        let fd = fd.as_fd();
        nix::unistd::fchown(
            fd,
            Some(Uid::from_raw(self.uid)),
            Some(Gid::from_raw(self.gid)),
        )?;
        nix::sys::stat::fchmod(fd, self.mode)?;
        nix::sys::stat::futimens(fd, &self.mtime, &self.mtime)?;
        Ok(())
    }
}

/// Removes whatever a name holds in this layer (a file, a link, an empty
/// directory), so an entry can take its place.
fn clear(parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match nix::unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EISDIR) => match nix::unistd::unlinkat(parent, name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(()),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) => Err(refused(format!(
                "an entry replaces the non-empty directory {}",
                name.display()
            ))),
            Err(err) => Err(err.into()),
        },
        Err(err) => Err(err.into()),
    }
}

fn is_dir(parent: &OwnedFd, name: &OsStr) -> bool {
    nix::sys::stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// Unpacks a layer tar, `stored` bytes as kept in the registry, into `dir`, which it
/// syncs to disk before returning the bytes of its files.
pub fn unpack(reader: impl Read, stored: u64, dir: &Path, limits: &Limits) -> io::Result<u64> {
    let limit = limits
        .layer_bytes
        .min(limits.ratio_floor.max(stored.saturating_mul(limits.ratio)));
    let root = ConfinedDir::open(dir)?;
    let mut archive = tar::Archive::new(Bounded {
        inner: reader,
        read: 0,
        limit,
    });
    let mut size = 0;
    let mut count = 0;
    let mut pending = Extensions::default();
    // Raw: long names and PAX records come to us, to be bounded, not to the crate.
    for entry in archive.entries()?.raw(true) {
        let mut entry = entry?;
        count += 1;
        if count > limits.entries {
            return Err(refused(format!(
                "the layer has more than {} entries",
                limits.entries
            )));
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        let declared = header.entry_size()?;
        match kind {
            tar::EntryType::GNULongName => {
                pending.path = Some(record(&mut entry, declared, MAX_NAME)?);
                continue;
            }
            tar::EntryType::GNULongLink => {
                pending.link = Some(record(&mut entry, declared, MAX_NAME)?);
                continue;
            }
            tar::EntryType::XHeader => {
                pending.pax(&record(&mut entry, declared, MAX_PAX)?)?;
                continue;
            }
            tar::EntryType::XGlobalHeader => continue,
            _ => {}
        }
        let extensions = std::mem::take(&mut pending);
        // The crate reads this entry's data by the header's size; a PAX size that
        // disagrees would make the two parsers see different archives.
        if extensions.size.is_some_and(|s| s != declared) {
            return Err(refused("a PAX size disagrees with its header"));
        }
        let raw = extensions
            .path
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let Some(path) = entry_path(&raw)? else {
            continue;
        };
        let name = path.file_name().unwrap_or_default().to_owned();
        let parent = root.create_dirs(
            path.parent().unwrap_or(Path::new("")),
            Mode::from_bits_truncate(0o755),
        )?;
        let bytes = name.as_bytes();
        if bytes == OPAQUE {
            let dir = File::from(parent);
            xattr::FileExt::set_xattr(&dir, "trusted.overlay.opaque", b"y")?;
            continue;
        }
        if bytes.starts_with(b".wh..wh.") {
            // aufs bookkeeping, meaningless to overlay.
            continue;
        }
        if let Some(hidden) = bytes.strip_prefix(WHITEOUT) {
            let hidden = OsStr::from_bytes(hidden);
            if hidden.is_empty() || hidden == ".." || hidden == "." {
                return Err(refused(format!("whiteout {}", path.display())));
            }
            clear(&parent, hidden)?;
            nix::sys::stat::mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0)?;
            continue;
        }
        let attributes = Attributes {
            uid: u32::try_from(extensions.uid.unwrap_or(header.uid()?))
                .map_err(|_| refused("uid out of range"))?,
            gid: u32::try_from(extensions.gid.unwrap_or(header.gid()?))
                .map_err(|_| refused("gid out of range"))?,
            mode: Mode::from_bits_truncate(header.mode()? & 0o7777),
            mtime: TimeSpec::new(
                extensions
                    .mtime
                    .unwrap_or(header.mtime().unwrap_or(0) as i64),
                0,
            ),
        };
        let link = || -> io::Result<OsString> {
            let target = extensions
                .link
                .clone()
                .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()))
                .ok_or_else(|| refused(format!("link {} has no target", path.display())))?;
            if target.len() as u64 > MAX_NAME || target.contains(&0) {
                return Err(refused(format!("link {} target too long", path.display())));
            }
            Ok(OsString::from_vec(target))
        };
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&parent, &name)?;
                let fd = nix::fcntl::openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let mut file = File::from(fd);
                size += io::copy(&mut entry, &mut file)?;
                attributes.apply(&file)?;
            }
            tar::EntryType::Directory => {
                if !is_dir(&parent, &name) {
                    clear(&parent, &name)?;
                    nix::sys::stat::mkdirat(
                        &parent,
                        name.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    )?;
                }
                attributes.apply(open_child(
                    &parent,
                    &name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                )?)?;
            }
            tar::EntryType::Symlink => {
                let target = link()?;
                clear(&parent, &name)?;
                // Kept as written: it is resolved later only inside a root.
                nix::unistd::symlinkat(target.as_os_str(), &parent, name.as_os_str())?;
                nix::unistd::fchownat(
                    &parent,
                    name.as_os_str(),
                    Some(Uid::from_raw(attributes.uid)),
                    Some(Gid::from_raw(attributes.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            tar::EntryType::Link => {
                let target = link()?;
                let Some(target) = entry_path(target.as_bytes())? else {
                    return Err(refused(format!("hard link {} to the root", path.display())));
                };
                let source = root.dir(target.parent().unwrap_or(Path::new("")))?;
                clear(&parent, &name)?;
                // Links the name itself, never what a symlink there points to.
                nix::unistd::linkat(
                    &source,
                    target.file_name().unwrap_or_default(),
                    &parent,
                    name.as_os_str(),
                    AtFlags::empty(),
                )?;
            }
            tar::EntryType::Fifo => {
                clear(&parent, &name)?;
                nix::sys::stat::mknodat(
                    &parent,
                    name.as_os_str(),
                    SFlag::S_IFIFO,
                    attributes.mode,
                    0,
                )?;
            }
            // Device nodes would hand a container the host's devices; runtimes
            // give containers the devices they need.
            tar::EntryType::Char | tar::EntryType::Block => {
                tracing::debug!(entry = %path.display(), "device node in a layer skipped");
            }
            other => {
                return Err(refused(format!(
                    "entry {} of unsupported tar type {other:?}",
                    path.display()
                )));
            }
        }
    }
    // One sync for the whole snapshot: every file and directory of it is on disk
    // before it is renamed into place (cheaper than a sync per file).
    nix::unistd::syncfs(root.as_fd())?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// One tar entry with its name written raw, as a hostile tool would.
    fn entry(kind: tar::EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        bytes
    }

    fn file(name: &str, data: &[u8]) -> Vec<u8> {
        entry(tar::EntryType::Regular, name.as_bytes(), b"", data)
    }

    fn symlink_entry(name: &str, target: &str) -> Vec<u8> {
        entry(
            tar::EntryType::Symlink,
            name.as_bytes(),
            target.as_bytes(),
            b"",
        )
    }

    fn hardlink(name: &str, target: &str) -> Vec<u8> {
        entry(
            tar::EntryType::Link,
            name.as_bytes(),
            target.as_bytes(),
            b"",
        )
    }

    fn archive(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = entries.concat();
        bytes.extend_from_slice(&[0; 1024]);
        bytes
    }

    /// A snapshot directory beside a canary the layer must not touch.
    struct Scene {
        dir: tempfile::TempDir,
    }

    impl Scene {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("snapshot")).unwrap();
            std::fs::create_dir_all(dir.path().join("canary/keep")).unwrap();
            std::fs::write(dir.path().join("canary/file"), "canary").unwrap();
            Self { dir }
        }

        fn snapshot(&self) -> PathBuf {
            self.dir.path().join("snapshot")
        }

        fn canary(&self) -> String {
            self.dir.path().join("canary").display().to_string()
        }

        fn unpack(&self, tar: &[u8], limits: &Limits) -> io::Result<u64> {
            unpack(tar, tar.len() as u64, &self.snapshot(), limits)
        }

        /// The canary exactly as made: nothing added, removed, linked or marked.
        fn assert_canary_intact(&self) {
            let canary = self.dir.path().join("canary");
            let mut names: Vec<_> = std::fs::read_dir(&canary)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["file", "keep"]);
            let file = canary.join("file");
            assert_eq!(std::fs::read(&file).unwrap(), b"canary");
            assert_eq!(std::fs::metadata(&file).unwrap().nlink(), 1);
            assert!(
                xattr::get(&canary, "trusted.overlay.opaque")
                    .unwrap()
                    .is_none()
            );
            assert_eq!(std::fs::read_dir(canary.join("keep")).unwrap().count(), 0);
            let outside: Vec<_> = std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(outside.len(), 2, "{outside:?}");
        }
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let scene = Scene::new();
        let tar = archive(&[
            entry(tar::EntryType::Directory, b"./", b"", b""),
            entry(tar::EntryType::Directory, b"./etc/", b"", b""),
            file("./etc/keep", b"k"),
            file("etc/.wh.gone", b""),
            file("var/.wh..wh..opq", b""),
            file("/abs", b"a"),
        ]);
        scene.unpack(&tar, &Limits::default()).unwrap();
        let root = scene.snapshot();
        assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"k");
        let whiteout = std::fs::symlink_metadata(root.join("etc/gone")).unwrap();
        assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
        assert_eq!(
            xattr::get(root.join("var"), "trusted.overlay.opaque").unwrap(),
            Some(b"y".to_vec())
        );
        // Absolute names are taken as relative to the layer, as containerd does.
        assert_eq!(std::fs::read(root.join("abs")).unwrap(), b"a");
        let mtime = std::fs::metadata(root.join("abs")).unwrap().mtime();
        assert_eq!(mtime, 1_600_000_000);
    }

    #[test]
    fn hostile_layers_never_touch_the_host() {
        let scene = Scene::new();
        let canary = scene.canary();
        let climb = "../".repeat(20) + canary.trim_start_matches('/');
        let cases: Vec<(&str, Vec<u8>, bool)> = vec![
            (
                "parent-dir name",
                archive(&[file("../canary/file", b"x")]),
                false,
            ),
            (
                "deep parent-dir name",
                archive(&[file(&format!("a/{climb}/file"), b"x")]),
                false,
            ),
            (
                "whiteout through an absolute symlink",
                archive(&[symlink_entry("x", &canary), file("x/.wh.file", b"")]),
                false,
            ),
            (
                "opaque whiteout through a symlink",
                archive(&[symlink_entry("x", &canary), file("x/.wh..wh..opq", b"")]),
                false,
            ),
            (
                "whiteout of the parent",
                archive(&[file("keep/.wh..", b"")]),
                false,
            ),
            (
                "file through a climbing symlink",
                archive(&[symlink_entry("x", &climb), file("x/file", b"x")]),
                false,
            ),
            (
                "file through a symlink chain",
                archive(&[
                    symlink_entry("a", "b"),
                    symlink_entry("b", &canary),
                    file("a/keep/new", b"x"),
                ]),
                false,
            ),
            (
                "file over a symlink to the host",
                archive(&[
                    symlink_entry("f", &format!("{canary}/file")),
                    file("f", b"x"),
                ]),
                true,
            ),
            (
                "hard link to outside",
                archive(&[hardlink("h", "../canary/file")]),
                false,
            ),
            (
                "hard link through a symlink",
                archive(&[symlink_entry("x", &canary), hardlink("h", "x/file")]),
                false,
            ),
            (
                "directory through a symlink",
                archive(&[
                    symlink_entry("x", &canary),
                    entry(tar::EntryType::Directory, b"x/keep", b"", b""),
                ]),
                false,
            ),
        ];
        for (case, tar, unpacks) in cases {
            let result = scene.unpack(&tar, &Limits::default());
            assert_eq!(result.is_ok(), unpacks, "{case}: {result:?}");
            scene.assert_canary_intact();
            std::fs::remove_dir_all(scene.snapshot()).unwrap();
            std::fs::create_dir(scene.snapshot()).unwrap();
        }
    }

    #[test]
    fn what_a_planted_symlink_leads_to_is_made_inside() {
        let scene = Scene::new();
        let canary = scene.canary();
        let tar = archive(&[
            entry(tar::EntryType::Directory, b"etc", b"", b""),
            symlink_entry("x", "/etc"),
            file("x/.wh.shadow", b""),
            symlink_entry("y", &format!("../../../..{canary}")),
            file("y/.wh..wh..opq", b""),
        ]);
        // `y` leads to a directory missing inside: refused, not made on the host.
        assert!(scene.unpack(&tar, &Limits::default()).is_err());
        scene.assert_canary_intact();
        // The link is kept as written; what it leads to is the same path inside.
        let whiteout = std::fs::symlink_metadata(scene.snapshot().join("etc/shadow")).unwrap();
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(
            std::fs::read_link(scene.snapshot().join("x")).unwrap(),
            Path::new("/etc")
        );
    }

    #[test]
    fn bombs_and_floods_are_refused() {
        let scene = Scene::new();
        let small = Limits {
            layer_bytes: 1 << 20,
            ratio: 10,
            ratio_floor: 64 << 10,
            entries: 3,
        };
        // Over the size bound, as a gzip bomb is.
        let zeros = archive(&[file("zeros", &vec![0; 2 << 20])]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        io::Write::write_all(&mut gz, &zeros).unwrap();
        let bomb = gz.finish().unwrap();
        let decoder = flate2::read::MultiGzDecoder::new(&bomb[..]);
        let err = unpack(decoder, bomb.len() as u64, &scene.snapshot(), &small).unwrap_err();
        assert!(
            err.to_string().contains("decompresses to more than"),
            "{err}"
        );
        // Within the size bound but past the ratio.
        let roomy = Limits {
            layer_bytes: 8 << 20,
            ..small
        };
        let decoder = flate2::read::MultiGzDecoder::new(&bomb[..]);
        let err = unpack(decoder, bomb.len() as u64, &scene.snapshot(), &roomy).unwrap_err();
        assert!(
            err.to_string().contains("decompresses to more than"),
            "{err}"
        );
        // Too many entries.
        let many = archive(&[
            file("a", b""),
            file("b", b""),
            file("c", b""),
            file("d", b""),
        ]);
        let err = scene.unpack(&many, &small).unwrap_err();
        assert!(err.to_string().contains("more than 3 entries"), "{err}");
        // A long-name record far past PATH_MAX is refused before it is read.
        let mut long = entry(tar::EntryType::GNULongName, b"././@LongLink", b"", b"");
        let mut header = tar::Header::from_byte_slice(&long[..512]).clone();
        header.set_size(1 << 30);
        header.set_cksum();
        long[..512].copy_from_slice(header.as_bytes());
        let err = scene.unpack(&archive(&[long]), &small).unwrap_err();
        assert!(err.to_string().contains("extension record"), "{err}");
        scene.assert_canary_intact();
    }

    #[test]
    fn long_names_and_hard_links_inside_work() {
        let scene = Scene::new();
        let long = format!("{}/file", "d".repeat(150));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o755);
        header.set_uid(1000);
        header.set_gid(1000);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, &long, &b"hi"[..]).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder.append_link(&mut header, "h", &long).unwrap();
        let tar = builder.into_inner().unwrap();
        scene.unpack(&tar, &Limits::default()).unwrap();
        let root = scene.snapshot();
        assert_eq!(std::fs::read(root.join(&long)).unwrap(), b"hi");
        assert_eq!(std::fs::metadata(root.join("h")).unwrap().nlink(), 2);
        let meta = std::fs::metadata(root.join(&long)).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid(), meta.gid()),
            (0o755, 1000, 1000)
        );
    }
}
