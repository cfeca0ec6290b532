//! Host-side mounts for OCI sandboxes. A sandbox's `/var/task` and `/opt` are slave
//! copies of empty "slot" directories in a shared mount; mounting code onto a slot
//! after the sandbox started makes it appear inside. That is what lets a sandbox be
//! started before it is known which function it will run.

use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

fn io_err(err: nix::Error) -> io::Error {
    io::Error::from(err)
}

/// Gives the calling process a mount namespace of its own, receiving the host's mounts
/// but not showing it any of its own: the sandboxes' mounts then disappear with
/// nimbus, however it ends. Must be called while the process has one thread.
pub fn private_namespace() -> io::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(io_err)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(io_err)
}

/// Makes `dir` a mount point of its own with the given propagation, so that slot
/// mounts neither leak into the host's mount tree nor miss the sandboxes.
pub fn own_mount(dir: &Path, propagation: MsFlags) -> io::Result<()> {
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io_err)?;
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(io_err)?;
    if propagation != MsFlags::MS_PRIVATE {
        mount(None::<&str>, dir, None::<&str>, propagation, None::<&str>).map_err(io_err)?;
    }
    Ok(())
}

/// Shows `sources` read-only at `slot`: one directory as a bind mount, several
/// merged by overlayfs with the last one on top. The mount is made read-only in
/// `stage` (a private mount) before it moves onto the slot, because a remount's
/// flags do not propagate.
pub fn show_read_only(sources: &[PathBuf], stage: &Path, slot: &Path) -> io::Result<()> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match sources {
        [] => return Ok(()),
        [one] => {
            mount(
                Some(one.as_path()),
                stage,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(io_err)?;
            mount(
                None::<&str>,
                stage,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                None::<&str>,
            )
            .map_err(io_err)?;
        }
        many => {
            let mut lower = Vec::new();
            for dir in many.iter().rev() {
                let text = dir.to_str().filter(|t| !t.contains([':', ',']));
                let text = text
                    .ok_or_else(|| io::Error::other(format!("cannot overlay {}", dir.display())))?;
                lower.push(text);
            }
            let options = format!("lowerdir={}", lower.join(":"));
            mount(
                Some("overlay"),
                stage,
                Some("overlay"),
                flags,
                Some(options.as_str()),
            )
            .map_err(io_err)?;
        }
    }
    mount(
        Some(stage),
        slot,
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(|err| {
        let _ = umount2(stage, MntFlags::MNT_DETACH);
        io_err(err)
    })
}

/// Mounts `layers` (bottom first) at `target` as an overlay with a writable upper
/// layer in `dir`.
pub fn overlay(layers: &[PathBuf], dir: &Path, target: &Path) -> io::Result<()> {
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for path in [&upper, &work, &target.to_path_buf()] {
        std::fs::create_dir_all(path)?;
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|layer| layer.display().to_string())
        .collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(io_err)
}

/// The lower layers of every overlay mounted in this mount namespace.
pub fn overlay_lower_dirs() -> std::collections::HashSet<PathBuf> {
    lower_dirs_in(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

fn lower_dirs_in(mountinfo: &str) -> std::collections::HashSet<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split_once(" - "))
        .filter(|(_, tail)| tail.starts_with("overlay "))
        .flat_map(|(_, tail)| {
            tail.split(' ')
                .nth(2)
                .unwrap_or_default()
                .split(',')
                .filter_map(|option| option.strip_prefix("lowerdir="))
                .flat_map(|dirs| dirs.split(':').map(unescape))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn detach(target: &Path) {
    let _ = umount2(target, MntFlags::MNT_DETACH);
}

/// Mount points at or below `dir`, deepest first, from `/proc/self/mountinfo`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|point| point.starts_with(dir))
        .collect();
    found.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(code) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {

    #[test]
    fn overlay_lower_layers_are_read_from_mountinfo() {
        let info = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
            2 1 0:5 / /c/rootfs rw - overlay overlay rw,lowerdir=/s/b:/s/a,upperdir=/c/upper,workdir=/c/work\n";
        let dirs = lower_dirs_in(info);
        assert_eq!(dirs.len(), 2);
        assert!(dirs.contains(Path::new("/s/a")) && dirs.contains(Path::new("/s/b")));
    }
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b"), PathBuf::from("/a b"));
        assert_eq!(unescape("/plain"), PathBuf::from("/plain"));
    }
}
