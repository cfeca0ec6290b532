//! The engine: sandboxes that run untrusted code. A sandbox is created from a
//! [`Template`] (what every program of one runtime needs) before it is known what it
//! will run, then launched with a [`Launch`] (the code, limits and program). With an
//! OCI runtime that split is what lets pre-started sandboxes make cold starts cheap;
//! without isolation a sandbox is a plain process group. Nothing here knows about AWS.

mod bundle;
pub mod cgroup;
pub mod confined;
pub mod confinement;
pub mod init;
mod mounts;
mod network;
pub mod oci;
mod pool;
mod process;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use bundle::ReadOnly;
pub use init::Program;
pub use mounts::{overlay, overlay_lower_dirs, private_namespace};
pub use network::{Egress, pinned_client};
pub use oci::OciRuntime;
pub use pool::Pool;

use nix::sys::signal::Signal;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start {program}: {source}")]
    Start {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Oci(String),
    /// Isolation was asked for and cannot be had; says how to fix it.
    #[error("{0}")]
    Unavailable(String),
}

/// What every sandbox of one kind is created with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Template {
    /// Host directories shown read-only (interpreters, runtime clients).
    pub mounts: Vec<ReadOnly>,
    /// The size of the writable `/tmp`.
    pub tmp_mb: u64,
    /// An image's unpacked layers, bottom first, as the whole root filesystem (a
    /// container image function); empty for the host's minimal root.
    pub image: Vec<PathBuf>,
}

/// What a created sandbox is given to run.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: Program,
    /// The code, shown read-only at [`TASK_DIR`]; empty when the sandbox's image
    /// holds it.
    pub task: PathBuf,
    /// Layers merged read-only at [`OPT_DIR`], the last one on top.
    pub layers: Vec<PathBuf>,
    pub memory_mb: u64,
}

/// Where an isolated sandbox sees its code and layers.
pub const TASK_DIR: &str = "/var/task";
pub const OPT_DIR: &str = "/opt";

/// How a sandbox's program ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// As std words an exit status (`exit status: 1`, `signal: 9 (SIGKILL)`).
    pub reason: String,
    /// The kernel killed something for exceeding the memory limit.
    pub out_of_memory: bool,
}

/// Reads a sandbox's memory use, from its cgroup or its main process.
#[derive(Debug, Clone)]
pub enum Meter {
    Cgroup(cgroup::Cgroup),
    Process(u32),
}

impl Meter {
    /// The most memory used at once, in MB.
    pub fn peak_mb(&self) -> u64 {
        match self {
            Meter::Cgroup(cgroup) => cgroup.peak_bytes().div_ceil(1024 * 1024),
            Meter::Process(pid) => {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|kb| kb.parse::<u64>().ok())
                    .map_or(0, |kb| kb.div_ceil(1024))
            }
        }
    }
}

/// How sandboxes are made on this server.
pub enum Isolation {
    /// Plain processes on the host, asked for explicitly.
    None,
    Oci(Arc<OciRuntime>),
    /// Isolation is wanted but impossible here; the message says why and what to do.
    Unavailable(String),
}

impl Isolation {
    pub async fn create(&self, template: &Template) -> Result<Sandbox, SandboxError> {
        match self {
            Isolation::None => Ok(Sandbox(Inner::Process(process::ProcessSandbox::default()))),
            Isolation::Oci(runtime) => Ok(Sandbox(Inner::Oci(Box::new(
                runtime.create(template).await?,
            )))),
            Isolation::Unavailable(message) => Err(SandboxError::Unavailable(message.clone())),
        }
    }

    /// Whether sandboxes see their own filesystem rather than the host's.
    pub fn isolates(&self) -> bool {
        !matches!(self, Isolation::None)
    }

    fn pools(&self) -> bool {
        matches!(self, Isolation::Oci(_))
    }
}

enum Inner {
    Process(process::ProcessSandbox),
    Oci(Box<oci::OciSandbox>),
}

/// A created sandbox. Dropping it kills everything inside.
pub struct Sandbox(Inner);

impl Sandbox {
    /// Whether the program sees its own filesystem ([`TASK_DIR`], [`OPT_DIR`] and the
    /// template's mount targets) rather than the host's paths.
    pub fn isolated(&self) -> bool {
        matches!(self.0, Inner::Oci(_))
    }

    /// Where the program finds `mount`.
    pub fn sees<'a>(&self, mount: &'a ReadOnly) -> &'a Path {
        if self.isolated() {
            &mount.target
        } else {
            &mount.source
        }
    }

    /// A listener on the sandbox's own loopback at `port`; the host's loopback
    /// (port chosen by the kernel) for an unisolated sandbox.
    pub fn listen(&self, port: u16) -> io::Result<TcpListener> {
        match &self.0 {
            Inner::Process(_) => TcpListener::bind(("127.0.0.1", 0)),
            Inner::Oci(sandbox) => {
                let netns = std::fs::File::open(format!("/proc/{}/ns/net", sandbox.init_pid()))?;
                // Only this short-lived thread enters the sandbox's network namespace;
                // the socket stays bound there.
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| {
                            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                                .map_err(io::Error::from)?;
                            TcpListener::bind(("127.0.0.1", port))
                        })
                        .join()
                        .unwrap_or_else(|_| Err(io::Error::other("listener thread panicked")))
                })
            }
        }
    }

    /// Makes `to` (a host address) reachable inside the sandbox at
    /// `127.0.0.1:port`, until the returned task is aborted.
    pub fn forward(&self, port: u16, to: SocketAddr) -> io::Result<tokio::task::JoinHandle<()>> {
        let listener = self.listen(port)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(tokio::spawn(async move {
            while let Ok((mut inside, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outside) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                    }
                });
            }
        }))
    }

    /// Starts the program; returns its stdout and stderr.
    pub fn launch(&mut self, launch: Launch) -> Result<Vec<OwnedFd>, SandboxError> {
        match &mut self.0 {
            Inner::Process(sandbox) => sandbox.launch(launch),
            Inner::Oci(sandbox) => sandbox.launch(launch),
        }
    }

    /// Resolves when the program has ended.
    pub async fn wait(&mut self) -> Exit {
        match &mut self.0 {
            Inner::Process(sandbox) => sandbox.wait().await,
            Inner::Oci(sandbox) => sandbox.wait().await,
        }
    }

    /// Kills every process of the sandbox, including those its program forked.
    pub fn kill(&mut self) {
        match &mut self.0 {
            Inner::Process(sandbox) => sandbox.kill(),
            Inner::Oci(sandbox) => sandbox.kill(),
        }
    }

    fn is_alive(&mut self) -> bool {
        match &mut self.0 {
            Inner::Process(_) => true,
            Inner::Oci(sandbox) => sandbox.is_alive(),
        }
    }

    pub fn meter(&self) -> Meter {
        match &self.0 {
            Inner::Process(sandbox) => Meter::Process(sandbox.pid()),
            Inner::Oci(sandbox) => Meter::Cgroup(sandbox.cgroup.clone()),
        }
    }
}

/// Has the kernel kill the child when nimbus dies, and hands it `passed` as its fds
/// 3, 4, ... in order (the OCI runtime passes those on to the sandbox's init).
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command, passed: Vec<OwnedFd>) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl(2), fcntl(2) and dup2(2), which are async-signal-safe and touch no memory
    // of the parent.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // Copies above the targets first, so that no source is overwritten by an
            // earlier target before it is moved.
            let mut copies = Vec::with_capacity(passed.len());
            for fd in &passed {
                copies.push(nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(init::CONTROL_FD + 16),
                )?);
            }
            for (target, copy) in (init::CONTROL_FD..).zip(copies) {
                let copy = std::os::fd::BorrowedFd::borrow_raw(copy);
                // The new descriptor (not close-on-exec) is what the child execs with.
                std::mem::forget(nix::unistd::dup2_raw(copy, target)?);
            }
            Ok(())
        });
    }
}
