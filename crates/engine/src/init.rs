//! The first process of every OCI sandbox (`nimbus sandbox-init`, the nimbus binary
//! mounted read-only into the sandbox). It lets a sandbox be started before anyone
//! knows what it will run: it reports `ready`, waits for a [`Program`] on stdin,
//! starts it, reaps every orphan as PID 1 must, reports how the program ended, and
//! kills everything in the sandbox once nimbus closes stdin (or dies).
//!
//! Messages to nimbus go over fd 3, and the program's stdout and stderr are fds 4 and
//! 5: the OCI runtime passes all three through (`--preserve-fds 3`) untouched.

use std::io::{BufRead, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The file descriptor the OCI runtime hands the init process for its reports.
pub const CONTROL_FD: i32 = 3;

/// What a sandbox runs, as seen from inside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Program {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The whole environment: nothing else is inherited.
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
}

/// Takes a pipe the OCI runtime passed: fd 3 (control), 4 (stdout) or 5 (stderr).
/// Nothing the program starts inherits it but what `Command` hands on.
#[allow(unsafe_code)]
fn passed_pipe(fd: i32) -> OwnedFd {
    // SAFETY: fds 3 to 5 are write ends of nimbus's pipes, passed by the OCI runtime
    // with --preserve-fds; nothing else in this process refers to them.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    fd
}

/// How a process ended, worded as std's `ExitStatus` words it.
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status: {code}"),
        WaitStatus::Signaled(_, signal, _) => {
            format!("signal: {} ({})", signal as i32, signal.as_str())
        }
        other => format!("{other:?}"),
    }
}

/// Ends the sandbox: as PID 1 of its namespace, `kill(-1)` reaches every other
/// process in it, and the kernel kills whatever is left when PID 1 exits.
fn end_sandbox() -> ! {
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    std::process::exit(0);
}

/// What of the sandbox's confinement did not take effect, read from the init's
/// `/proc/self/status`: an OCI runtime may skip a part of the bundle silently (youki
/// built without its `seccomp` feature runs with no filter).
fn confinement_gaps(status: &str) -> Vec<&'static str> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let mut gaps = Vec::new();
    if field("Seccomp") != Some("2") {
        gaps.push("no seccomp filter");
    }
    if field("NoNewPrivs") != Some("1") {
        gaps.push("no_new_privs is off");
    }
    if field("CapEff").is_none_or(|caps| !caps.trim_start_matches('0').is_empty()) {
        gaps.push("capabilities remain");
    }
    gaps
}

pub fn run() -> ! {
    let mut control = std::fs::File::from(passed_pipe(CONTROL_FD));
    let stdout = passed_pipe(CONTROL_FD + 1);
    let stderr = passed_pipe(CONTROL_FD + 2);
    // No process of the same user may open this one's descriptors through /proc.
    let _ = nix::sys::prctl::set_dumpable(false);
    // No code runs in a sandbox whose runtime left out part of its confinement.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let gaps = confinement_gaps(&status);
    if !gaps.is_empty() {
        eprintln!(
            "the sandbox is not confined as its bundle asks ({}): use an OCI runtime that applies the whole bundle",
            gaps.join(", ")
        );
        end_sandbox();
    }
    if control.write_all(b"ready\n").is_err() {
        end_sandbox();
    }
    let (program_tx, program_rx) = std::sync::mpsc::channel::<Program>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut line = String::new();
        if stdin.read_line(&mut line).is_ok_and(|read| read > 0)
            && let Ok(program) = serde_json::from_str(&line)
        {
            let _ = program_tx.send(program);
        }
        // nimbus closing stdin (or dying) ends the sandbox.
        while stdin.read_line(&mut line).is_ok_and(|read| read > 0) {}
        end_sandbox();
    });
    let Ok(program) = program_rx.recv() else {
        end_sandbox();
    };
    let report = match Command::new(&program.program)
        .args(&program.args)
        .env_clear()
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&program.workdir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
    {
        Ok(child) => {
            let main = Pid::from_raw(child.id() as i32);
            loop {
                match waitpid(None, None) {
                    Ok(status) if status.pid() == Some(main) => break describe(status),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(err) => break format!("wait failed: {err}"),
                }
            }
        }
        Err(err) => format!("cannot start {}: {err}", program.program.display()),
    };
    let _ = writeln!(control, "exit {report}");
    // Orphans are still reaped until nimbus ends the sandbox.
    loop {
        if let Err(nix::errno::Errno::ECHILD) = waitpid(None, None) {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_status_has_no_gaps_and_each_missing_part_is_named() {
        let confined = "Name:\tinit\nNoNewPrivs:\t1\nSeccomp:\t2\nCapEff:\t0000000000000000\n";
        assert!(confinement_gaps(confined).is_empty());
        let loose = "NoNewPrivs:\t0\nSeccomp:\t0\nCapEff:\t000001ffffffffff\n";
        assert_eq!(
            confinement_gaps(loose),
            [
                "no seccomp filter",
                "no_new_privs is off",
                "capabilities remain"
            ]
        );
        assert_eq!(confinement_gaps("").len(), 3);
    }
}
