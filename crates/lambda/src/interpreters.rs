//! The machine's interpreters for managed runtimes: the exact version a function
//! asks for when installed, else the nearest one, named so the function can tell.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

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

/// The machine's interpreters, each found once: every python on the path described
/// together (each may be a shim that takes a tenth of a second to answer), then each
/// runtime id's choice kept.
#[derive(Default)]
pub struct Interpreters {
    found: Mutex<HashMap<String, Option<Interpreter>>>,
    pythons: OnceLock<Vec<Interpreter>>,
    node: OnceLock<Option<Interpreter>>,
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

/// Every python 3 on the path (`python3.8` ... `python3.20`, `python3`), each
/// described at the same time, once per real executable.
fn find_pythons() -> Vec<Interpreter> {
    let mut candidates: Vec<PathBuf> = (8..=20)
        .filter_map(|minor| on_path(&format!("python3.{minor}")))
        .collect();
    candidates.extend(on_path("python3"));
    let described: Vec<Interpreter> = std::thread::scope(|scope| {
        let asked: Vec<_> = candidates
            .iter()
            .map(|candidate| scope.spawn(move || describe(candidate, PYTHON_SELF)))
            .collect();
        asked
            .into_iter()
            .filter_map(|asked| asked.join().ok().flatten())
            .collect()
    });
    let mut pythons: Vec<Interpreter> = Vec::new();
    for python in described {
        let Some((3, minor)) = major_minor(&python.version) else {
            continue;
        };
        if pythons.iter().all(|known| known.program != python.program) {
            pythons.push(Interpreter {
                runtime: format!("python3.{minor}"),
                ..python
            });
        }
    }
    pythons
}

/// The python nearest `wanted_minor` of those found.
fn nearest_python(pythons: &[Interpreter], wanted_minor: u32) -> Option<Interpreter> {
    pythons
        .iter()
        .filter_map(|python| {
            let (_, minor) = major_minor(&python.version)?;
            Some((minor.abs_diff(wanted_minor), python))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, python)| python.clone())
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
        if let Some(found) = self.found.lock().expect("interpreter cache").get(runtime) {
            return found.clone();
        }
        let chosen = match kind {
            RuntimeKind::Python => {
                let minor = major_minor(runtime.trim_start_matches("python"))?.1;
                nearest_python(self.pythons.get_or_init(find_pythons), minor)
            }
            RuntimeKind::Node => self.node.get_or_init(find_node).clone(),
            RuntimeKind::Provided => None,
        };
        let mut found = self.found.lock().expect("interpreter cache");
        found.entry(runtime.to_owned()).or_insert(chosen).clone()
    }

    /// Finds the machine's interpreters now (a server does at its start, in the
    /// background), so that no invoke waits for it.
    pub fn discover(&self) {
        std::thread::scope(|scope| {
            scope.spawn(|| self.pythons.get_or_init(find_pythons));
            scope.spawn(|| self.node.get_or_init(find_node));
        });
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
    fn the_pythons_are_described_once_for_every_runtime_id() {
        let interpreters = Interpreters::default();
        interpreters.discover();
        let described = interpreters
            .pythons
            .get()
            .expect("found at discovery")
            .clone();
        assert!(!described.is_empty(), "python3 is installed");
        // Each runtime id takes the nearest of those already described.
        for runtime in ["python3.9", "python3.12", "python3.13"] {
            let python = interpreters.resolve(runtime, RuntimeKind::Python).unwrap();
            assert!(described.contains(&python), "{runtime}: {python:?}");
        }
        // One entry per real executable, however many names lead to it.
        let mut programs: Vec<_> = described.iter().map(|p| &p.program).collect();
        programs.sort();
        programs.dedup();
        assert_eq!(programs.len(), described.len());
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
