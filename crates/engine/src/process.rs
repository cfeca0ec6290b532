//! Unisolated sandboxes: the program runs on the host as nimbus's user, in a process
//! group of its own so that stopping it reaches everything it forked. Used only when
//! isolation is turned off explicitly.

use std::os::fd::OwnedFd;
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::{Exit, Launch, SandboxError, die_with_parent};

#[derive(Default)]
pub(crate) struct ProcessSandbox {
    child: Option<Child>,
    group: Option<Pid>,
}

impl ProcessSandbox {
    pub(crate) fn pid(&self) -> u32 {
        self.group.map_or(0, |pid| pid.as_raw() as u32)
    }

    pub(crate) fn launch(&mut self, launch: Launch) -> Result<Vec<OwnedFd>, SandboxError> {
        let program = launch.program;
        let mut command = Command::new(&program.program);
        die_with_parent(&mut command, Vec::new());
        let mut child = command
            .args(&program.args)
            .env_clear()
            .envs(program.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&program.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SandboxError::Start {
                program: program.program.clone(),
                source,
            })?;
        let pid = child.id().expect("a just-started child has a pid");
        self.group = Some(Pid::from_raw(pid as i32));
        let outputs = [
            child.stdout.take().and_then(|o| o.into_owned_fd().ok()),
            child.stderr.take().and_then(|e| e.into_owned_fd().ok()),
        ];
        self.child = Some(child);
        Ok(outputs.into_iter().flatten().collect())
    }

    pub(crate) async fn wait(&mut self) -> Exit {
        let reason = match self.child.as_mut() {
            Some(child) => match child.wait().await {
                Ok(status) => status.to_string(),
                Err(err) => err.to_string(),
            },
            None => std::future::pending().await,
        };
        Exit {
            reason,
            out_of_memory: false,
        }
    }

    pub(crate) fn kill(&mut self) {
        if let Some(group) = self.group {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

impl Drop for ProcessSandbox {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::Program;
    use tokio::io::AsyncReadExt;

    fn launch(script: &str) -> Launch {
        Launch {
            program: Program {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), script.into()],
                env: vec![("GREETING".into(), "hi".into())],
                workdir: std::env::temp_dir(),
            },
            task: PathBuf::new(),
            layers: Vec::new(),
            memory_mb: 128,
        }
    }

    #[tokio::test]
    async fn runs_with_only_the_given_environment() {
        let mut sandbox = ProcessSandbox::default();
        let mut outputs = sandbox.launch(launch("echo $GREETING-$HOME")).unwrap();
        let stdout = outputs.remove(0);
        let mut out = String::new();
        tokio::fs::File::from_std(std::fs::File::from(stdout))
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "hi-\n");
        assert_eq!(sandbox.wait().await.reason, "exit status: 0");
    }

    #[tokio::test]
    async fn kill_reaches_forked_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", marker.display());
        let mut sandbox = ProcessSandbox::default();
        let _outputs = sandbox.launch(launch(&script)).unwrap();
        let child_pid = loop {
            if let Ok(text) = std::fs::read_to_string(&marker)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                break pid;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        sandbox.kill();
        sandbox.wait().await;
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
