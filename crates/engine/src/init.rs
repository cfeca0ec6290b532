//! The first process of every OCI sandbox (`nimbus sandbox-init`, the nimbus binary
//! mounted read-only into the sandbox). It lets a sandbox be started before anyone
//! knows what it will run: it reports `ready`, waits for a [`Program`] on stdin,
//! starts it, reaps every orphan as PID 1 must, reports how the program ended, and
//! kills everything in the sandbox once nimbus closes stdin (or dies).
//!
//! Messages to nimbus go over fd 3, which the OCI runtime passes through
//! (`--preserve-fds 1`); the program's stdout and stderr are the sandbox's own.

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

/// Takes the control pipe the OCI runtime passed as fd 3.
#[allow(unsafe_code)]
fn control_pipe() -> std::fs::File {
    // SAFETY: fd 3 is the write end of nimbus's control pipe, passed by the OCI
    // runtime with --preserve-fds; nothing else in this process refers to it.
    let fd = unsafe { OwnedFd::from_raw_fd(CONTROL_FD) };
    std::fs::File::from(fd)
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

pub fn run() -> ! {
    let mut control = control_pipe();
    // Nothing the program starts may inherit the control pipe, and no process of the
    // same user may open this one's descriptors through /proc.
    let _ = nix::fcntl::fcntl(
        &control,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let _ = nix::sys::prctl::set_dumpable(false);
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
