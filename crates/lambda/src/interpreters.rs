//! The machine's interpreters for managed runtimes: the exact version a function
//! asks for when installed, else the nearest one, named so the function can tell.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::runtimes::RuntimeKind;

/// An interpreter found on the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    pub program: PathBuf,
    /// The runtime it stands for, as `AWS_EXECUTION_ENV` names it (`python3.11`).
    pub runtime: String,
    /// What the interpreter says of itself (`Python 3.11.7`).
    pub version: String,
    /// Directories of installed packages a runtime started without its site hooks
    /// (`python -S`, for speed) still puts on its path.
    pub packages: String,
    /// The host directories the interpreter needs beyond `/usr`: its installation
    /// prefix and package directories, shown read-only to sandboxes.
    pub dirs: Vec<PathBuf>,
}

#[derive(Default)]
pub struct Interpreters {
    found: Mutex<HashMap<String, Option<Interpreter>>>,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The real executable behind `program` and its version, as the interpreter itself
/// reports them: `program` may be a wrapper (pyenv and nvm shims are shell scripts)
/// that would cost a runtime tens of milliseconds on every start.
fn describe(program: &Path, script: &[&str]) -> Option<Interpreter> {
    let output = Command::new(program).args(script).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines().map(str::trim);
    // A virtualenv's interpreter is a link to the real one, which sandboxes are shown.
    let executable = PathBuf::from(lines.next()?).canonicalize().ok()?;
    let version = lines.next()?.to_owned();
    let prefix = PathBuf::from(lines.next()?);
    let packages = lines.next().unwrap_or_default().to_owned();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in std::iter::once(prefix).chain(std::env::split_paths(&packages)) {
        let covered = dir.starts_with("/usr") || dirs.iter().any(|known| dir.starts_with(known));
        if dir.is_absolute() && dir.is_dir() && !covered {
            dirs.push(dir);
        }
    }
    (is_executable(&executable) && !version.is_empty()).then_some(Interpreter {
        program: executable,
        runtime: String::new(),
        version,
        packages,
        dirs,
    })
}

const PYTHON_SELF: &[&str] = &[
    "-c",
    "import os, platform, site, sys; print(sys.executable); print('Python', platform.python_version()); \
     print(sys.base_prefix); print(os.pathsep.join(site.getsitepackages()))",
];
const NODE_SELF: &[&str] = &[
    "-e",
    "const path = require('path'); console.log(process.execPath); console.log(process.version); \
     console.log(path.dirname(path.dirname(process.execPath)))",
];

/// `(major, minor)` from `Python 3.11.7` or `v20.20.2`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let digits = version.trim_start_matches(|c: char| !c.is_ascii_digit());
    let mut parts = digits.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
}

fn find_python(wanted_minor: u32) -> Option<Interpreter> {
    let mut candidates: Vec<PathBuf> = (8..=20)
        .filter_map(|minor| on_path(&format!("python3.{minor}")))
        .collect();
    candidates.extend(on_path("python3"));
    candidates
        .into_iter()
        .filter_map(|candidate| {
            let python = describe(&candidate, PYTHON_SELF)?;
            let (major, minor) = major_minor(&python.version)?;
            (major == 3).then(|| {
                (
                    minor.abs_diff(wanted_minor),
                    Interpreter {
                        runtime: format!("python3.{minor}"),
                        ..python
                    },
                )
            })
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, python)| python)
}

fn find_node() -> Option<Interpreter> {
    let node = describe(&on_path("node")?, NODE_SELF)?;
    let (major, _) = major_minor(&node.version)?;
    Some(Interpreter {
        runtime: format!("nodejs{major}.x"),
        ..node
    })
}

impl Interpreters {
    /// The interpreter for a managed runtime id such as `python3.12`, if the machine
    /// has one of its language.
    pub fn resolve(&self, runtime: &str, kind: RuntimeKind) -> Option<Interpreter> {
        let mut found = self.found.lock().expect("interpreter cache");
        found
            .entry(runtime.to_owned())
            .or_insert_with(|| match kind {
                RuntimeKind::Python => {
                    let minor = major_minor(runtime.trim_start_matches("python"))?.1;
                    find_python(minor)
                }
                RuntimeKind::Node => find_node(),
                RuntimeKind::Provided => None,
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(major_minor("Python 3.11.7"), Some((3, 11)));
        assert_eq!(major_minor("v20.20.2"), Some((20, 20)));
        assert_eq!(major_minor("3.12"), Some((3, 12)));
        assert_eq!(major_minor("none"), None);
    }

    #[test]
    fn finds_the_machines_python() {
        let interpreters = Interpreters::default();
        let python = interpreters
            .resolve("python3.12", RuntimeKind::Python)
            .expect("python3 is installed");
        assert!(python.runtime.starts_with("python3."));
        assert!(python.version.starts_with("Python 3."));
        // The interpreter itself, not a wrapper script around it.
        let head = std::fs::read(&python.program).unwrap();
        assert!(
            head.starts_with(b"\x7fELF"),
            "{} is not a binary",
            python.program.display()
        );
    }
}
