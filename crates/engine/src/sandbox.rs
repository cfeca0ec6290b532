//! Sandboxes: a program started with a given environment, its output captured, and
//! everything it started killed together when it is stopped.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start {program}: {source}")]
    Start {
        program: PathBuf,
        source: std::io::Error,
    },
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment: nothing of nimbus's own environment leaks in.
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
}

/// A technology that runs sandboxes.
pub trait SandboxRuntime: Send + Sync {
    fn start(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError>;
}

/// A started sandbox. Dropping it kills everything inside.
pub struct Sandbox {
    child: Child,
    group: Pid,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Sandbox {
    /// The sandbox's main process, for reading its resource use.
    pub fn pid(&self) -> u32 {
        self.group.as_raw() as u32
    }

    /// Kills every process of the sandbox, including those its program forked.
    pub fn kill(&mut self) {
        let _ = killpg(self.group, Signal::SIGKILL);
    }

    /// Waits for the main process to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
    }
}

/// No isolation beyond a process group of its own: the program runs as nimbus's user
/// on the host. A stand-in until the OCI runtime backend lands; it keeps the seam.
pub struct ProcessRuntime;

impl SandboxRuntime for ProcessRuntime {
    fn start(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let mut command = Command::new(&spec.program);
        die_with_parent(&mut command);
        let mut child = command
            .args(&spec.args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SandboxError::Start {
                program: spec.program.clone(),
                source,
            })?;
        let pid = child.id().expect("a just-started child has a pid");
        Ok(Sandbox {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            group: Pid::from_raw(pid as i32),
        })
    }
}

/// Has the kernel kill the sandbox's main process when nimbus dies, so a crash of
/// nimbus leaves no runtime behind.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl(2), which is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn spec(script: &str) -> SandboxSpec {
        SandboxSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hi".into())],
            workdir: std::env::temp_dir(),
        }
    }

    #[tokio::test]
    async fn runs_with_only_the_given_environment() {
        let mut sandbox = ProcessRuntime.start(&spec("echo $GREETING-$HOME")).unwrap();
        let mut out = String::new();
        sandbox
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "hi-\n");
        assert!(sandbox.wait().await.unwrap().success());
    }

    #[tokio::test]
    async fn kill_reaches_forked_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let mut sandbox = ProcessRuntime.start(&spec(&script)).unwrap();
        let child_pid = loop {
            if let Ok(text) = std::fs::read_to_string(&marker)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                break pid;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        sandbox.kill();
        sandbox.wait().await.unwrap();
        // The forked sleep is dead too: gone, or a zombie waiting for its new parent.
        for _ in 0..100 {
            let stat =
                std::fs::read_to_string(format!("/proc/{child_pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(") ")
                .next()
                .and_then(|rest| rest.chars().next());
            if matches!(state, None | Some('Z')) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("forked child {child_pid} survived the sandbox kill");
    }
}
