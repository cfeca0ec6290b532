//! A directory that path resolution cannot leave. Every lookup is `openat2` with
//! `RESOLVE_IN_ROOT` (absolute symlinks and `..` resolve as if the directory were
//! `/`, as in a chroot), `RESOLVE_NO_MAGICLINKS` and `RESOLVE_NO_XDEV`; the kernel
//! enforces it, so a symlink planted by an image can never point a read or a write at
//! the host. Files of images (layer entries, `/etc/passwd`) are reached only this way.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

/// A directory handle whose lookups stay beneath it.
pub struct ConfinedDir {
    fd: OwnedFd,
}

fn resolve() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV
}

/// `path` as `openat2` takes it relative to the root: `.` for the root itself.
fn relative(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

impl ConfinedDir {
    /// Opens `path`, a directory nimbus made (its own path is trusted; nothing below
    /// it is).
    pub fn open(path: &Path) -> io::Result<Self> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens `path` inside the directory with `flags` (`O_CLOEXEC` added).
    pub fn open_in(&self, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve());
        Ok(openat2(&self.fd, relative(path), how)?)
    }

    /// The directory at `path` inside, for `*at` calls and directory attributes.
    pub fn dir(&self, path: &Path) -> io::Result<OwnedFd> {
        self.open_in(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    /// The directory at `path` inside, made (with `mode`) where missing, as
    /// `mkdir -p` would, each level resolved inside.
    pub fn create_dirs(&self, path: &Path, mode: Mode) -> io::Result<OwnedFd> {
        match self.dir(path) {
            Err(err) if err.raw_os_error() == Some(Errno::ENOENT as i32) => {}
            found => return found,
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::other(format!(
                "{} is not a directory name",
                path.display()
            )));
        };
        let parent = self.create_dirs(parent, mode)?;
        match nix::sys::stat::mkdirat(&parent, name, mode) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(err) => return Err(err.into()),
        }
        open_child(&parent, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }

    /// Whether anything (a whiteout, a FIFO, a directory) is at `path` inside.
    pub fn exists(&self, path: &Path) -> bool {
        self.open_in(path, OFlag::O_PATH).is_ok()
    }

    /// The contents of the regular file at `path` inside, at most `limit` bytes;
    /// `None` when there is no such file. Opened without blocking (a FIFO never
    /// stalls the reader) and checked to be a regular file before it is read.
    pub fn read(&self, path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let fd = match self.open_in(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY) {
            Ok(fd) => fd,
            Err(err)
                if [Errno::ENOENT, Errno::ENOTDIR, Errno::ENXIO, Errno::ENODEV]
                    .iter()
                    .any(|e| err.raw_os_error() == Some(*e as i32)) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let file = File::from(fd);
        if !file.metadata()?.is_file() {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(io::Error::other(format!(
                "{} is larger than {limit} bytes",
                path.display()
            )));
        }
        Ok(Some(bytes))
    }
}

/// Opens the entry `name` of `parent` itself with `flags`, never following a
/// symlink, for changing what the name is (its mode, owner, times, contents).
pub fn open_child(parent: impl AsFd, name: &OsStr, flags: OFlag) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    Ok(openat2(parent.as_fd(), name, how)?)
}

/// Whether `path` is relative and made only of plain names (no `..`, no root, no
/// prefix); `.` components are allowed and mean nothing.
pub fn is_plain(path: &Path) -> bool {
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn lookups_stay_inside_through_any_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, "host").unwrap();
        std::fs::write(root.join("secret"), "inside").unwrap();
        symlink(&outside, root.join("host")).unwrap();
        symlink("/secret", root.join("absolute")).unwrap();
        symlink("../../../../secret", root.join("climbing")).unwrap();
        symlink("chain", root.join("start")).unwrap();
        symlink("/absolute", root.join("chain")).unwrap();
        let confined = ConfinedDir::open(&root).unwrap();
        for link in ["absolute", "climbing", "start", "../secret"] {
            let read = confined.read(Path::new(link), 100).unwrap();
            assert_eq!(read.as_deref(), Some(&b"inside"[..]), "{link}");
        }
        // The host's path means the same path inside, where there is nothing.
        assert!(confined.read(Path::new("host"), 100).unwrap().is_none());
        assert!(confined.read(Path::new("missing"), 100).unwrap().is_none());
        assert!(
            confined.read(Path::new("secret"), 3).is_err(),
            "over the limit"
        );
    }

    #[test]
    fn directories_are_made_inside_even_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let host = dir.path().join("host");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        symlink(&host, root.join("x")).unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        symlink("/real", root.join("y")).unwrap();
        let confined = ConfinedDir::open(&root).unwrap();
        let mode = Mode::from_bits_truncate(0o755);
        // `x` names a directory missing inside the root: nothing is made anywhere.
        assert!(confined.create_dirs(Path::new("x/a/b"), mode).is_err());
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 0);
        // `y` leads to `/real` inside the root.
        confined.create_dirs(Path::new("y/a/b"), mode).unwrap();
        assert!(root.join("real/a/b").is_dir());
        assert!(is_plain(Path::new("./a/b")) && !is_plain(Path::new("a/../b")));
        assert!(!is_plain(Path::new("/a")));
    }
}
