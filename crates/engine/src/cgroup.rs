//! A sandbox's control group, read and written through the cgroup filesystem. The
//! OCI runtime creates it; nimbus sets the limits that depend on what runs inside
//! (known only when a pre-started sandbox is assigned) and reads usage back.

use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Memory that buys one full CPU, as on Lambda.
const MB_PER_CPU: u64 = 1769;

#[derive(Debug, Clone)]
pub struct Cgroup {
    /// cgroup v2 (one unified tree) rather than v1's tree per controller.
    unified: bool,
    /// The path below each hierarchy's root, without a leading slash.
    path: String,
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file such as `memory.events`.
fn read_key(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|line| {
            line.strip_prefix(key)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

impl Cgroup {
    pub fn new(path: &str) -> Self {
        Self {
            unified: Path::new(ROOT).join("cgroup.controllers").exists(),
            path: path.trim_start_matches('/').to_owned(),
        }
    }

    fn file(&self, controller: &str, name: &str) -> PathBuf {
        if self.unified {
            Path::new(ROOT).join(&self.path).join(name)
        } else {
            Path::new(ROOT).join(controller).join(&self.path).join(name)
        }
    }

    /// Caps memory (swap included) at `mb` and gives CPU time in proportion to it:
    /// 1769 MB weighs as much as one full CPU's default share.
    pub fn limit(&self, mb: u64) -> io::Result<()> {
        let bytes = (mb * 1024 * 1024).to_string();
        let shares = (1024 * mb / MB_PER_CPU).clamp(2, 262_144);
        if self.unified {
            std::fs::write(self.file("", "memory.max"), &bytes)?;
            // Absent where the kernel has no swap accounting.
            let _ = std::fs::write(self.file("", "memory.swap.max"), "0");
            let weight = 1 + (shares - 2) * 9999 / 262_142;
            std::fs::write(self.file("", "cpu.weight"), weight.to_string())?;
        } else {
            std::fs::write(self.file("memory", "memory.limit_in_bytes"), &bytes)?;
            let memsw = self.file("memory", "memory.memsw.limit_in_bytes");
            if memsw.exists() {
                std::fs::write(memsw, &bytes)?;
            }
            std::fs::write(self.file("cpu", "cpu.shares"), shares.to_string())?;
            // The high-water mark starts from what the assigned program uses.
            let _ = std::fs::write(self.file("memory", "memory.max_usage_in_bytes"), "0");
        }
        Ok(())
    }

    /// The most memory the sandbox has used at once.
    pub fn peak_bytes(&self) -> u64 {
        let name = if self.unified {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        read_u64(&self.file("memory", name)).unwrap_or(0)
    }

    /// How many processes the kernel killed for exceeding the memory limit.
    pub fn oom_kills(&self) -> u64 {
        let name = if self.unified {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        read_key(&self.file("memory", name), "oom_kill").unwrap_or(0)
    }

    /// Removes the empty groups left below `parent` (after a crash) and `parent`.
    pub fn remove_tree(parent: &str) {
        let hierarchies: Vec<PathBuf> = if Path::new(ROOT).join("cgroup.controllers").exists() {
            vec![PathBuf::from(ROOT)]
        } else {
            std::fs::read_dir(ROOT)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .collect()
        };
        for hierarchy in hierarchies {
            let dir = hierarchy.join(parent.trim_start_matches('/'));
            for child in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_are_read_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.oom_control");
        std::fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").unwrap();
        assert_eq!(read_key(&file, "oom_kill"), Some(3));
        assert_eq!(read_key(&file, "under_oom"), Some(0));
        assert_eq!(read_key(&file, "missing"), None);
    }
}
