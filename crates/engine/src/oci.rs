//! Sandboxes as OCI containers, driven through an OCI runtime's command line (runc,
//! crun: anything that takes the same bundles and flags).
//!
//! Each sandbox is `<runtime> run` in the foreground, a child of nimbus, its init
//! process nimbus's own [`crate::init`]. Everything a sandbox owns on the host lives
//! under one directory (bundles, runtime state, mount slots) and one cgroup parent,
//! so whatever a crash left behind is found and removed at the next start.

use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::mount::MsFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::net::unix::pipe::Receiver;
use tokio::process::{Child, Command};

use crate::bundle::{self, BundleSpec, SANDBOX_GID, SANDBOX_UID};
use crate::cgroup::Cgroup;
use crate::network::{Egress, Network};
use crate::{Exit, Launch, SandboxError, Template, die_with_parent, mounts};

/// How long a runtime may take to start a sandbox's init process.
const START_LIMIT: Duration = Duration::from_secs(20);

pub struct OciRuntime {
    cli: PathBuf,
    dir: PathBuf,
    state: PathBuf,
    bundles: PathBuf,
    slots: PathBuf,
    stage: PathBuf,
    etc: PathBuf,
    init: PathBuf,
    cgroup_parent: String,
    next: AtomicU64,
    /// One reference per runtime process still running, so shutdown can wait until
    /// every one has removed its container and exited.
    running: Arc<()>,
    /// Links to the host, set up once in the background from the start (a few hundred
    /// milliseconds of iptables runs): a sandbox made sooner waits for them. Without
    /// them sandboxes have only their loopback.
    network: Arc<tokio::sync::OnceCell<Option<Network>>>,
    egress: Egress,
}

/// The host's links for sandboxes, or none (logged) when they cannot be set up.
async fn host_network(egress: Egress) -> Option<Network> {
    Network::open(&egress)
        .await
        .inspect_err(
            |err| tracing::warn!(error = %err, "sandboxes get no network beyond their loopback"),
        )
        .ok()
}

fn start_error(message: impl Into<String>) -> SandboxError {
    SandboxError::Oci(message.into())
}

/// `/etc` inside sandboxes: the sandbox user, and the few host files name
/// resolution and TLS need. Mount points for `/etc/ssl` and friends are made here.
fn write_etc(etc: &Path) -> io::Result<()> {
    std::fs::create_dir_all(etc)?;
    std::fs::write(
        etc.join("passwd"),
        format!(
            "root:x:0:0:root:/root:/usr/sbin/nologin\n\
             sbx_user1051:x:{SANDBOX_UID}:{SANDBOX_GID}::/tmp:/usr/sbin/nologin\n"
        ),
    )?;
    std::fs::write(
        etc.join("group"),
        format!("root:x:0:\nsbx_user1051:x:{SANDBOX_GID}:\n"),
    )?;
    std::fs::write(
        etc.join("hosts"),
        "127.0.0.1 localhost sandbox\n::1 localhost\n",
    )?;
    for file in [
        "resolv.conf",
        "nsswitch.conf",
        "ld.so.cache",
        "protocols",
        "services",
    ] {
        if let Ok(bytes) = std::fs::read(Path::new("/etc").join(file)) {
            std::fs::write(etc.join(file), bytes)?;
        }
    }
    for dir in ["ssl", "ca-certificates", "alternatives"] {
        std::fs::create_dir_all(etc.join(dir))?;
    }
    Ok(())
}

impl OciRuntime {
    /// Takes over `dir` for sandboxes run by `cli`, first removing whatever an earlier
    /// nimbus on the same directory left behind. `init` is the nimbus binary;
    /// `egress` says where sandboxes may connect.
    pub async fn open(
        cli: PathBuf,
        dir: PathBuf,
        init: PathBuf,
        egress: &Egress,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
        let cgroup_parent = format!("nimbus-{}", hex::encode(&digest[..6]));
        let runtime = Self {
            state: dir.join("state"),
            bundles: dir.join("bundles"),
            slots: dir.join("slots"),
            stage: dir.join("stage"),
            etc: dir.join("etc"),
            dir,
            cli,
            init,
            cgroup_parent,
            next: AtomicU64::new(0),
            running: Arc::new(()),
            network: Arc::new(tokio::sync::OnceCell::new()),
            egress: egress.clone(),
        };
        let (network, egress) = (runtime.network.clone(), egress.clone());
        tokio::spawn(async move {
            network.get_or_init(|| host_network(egress)).await;
        });
        runtime.sweep().await;
        for sub in [&runtime.bundles, &runtime.slots, &runtime.stage] {
            std::fs::create_dir_all(sub)?;
        }
        write_etc(&runtime.etc)?;
        mounts::own_mount(&runtime.slots, MsFlags::MS_SHARED)?;
        mounts::own_mount(&runtime.stage, MsFlags::MS_PRIVATE)?;
        Ok(runtime)
    }

    /// Removes leftover containers, their processes, cgroups, mounts and files.
    async fn sweep(&self) {
        let listed = Command::new(&self.cli)
            .arg("--root")
            .arg(&self.state)
            .args(["list", "-q"])
            .output()
            .await;
        let mut leftovers = 0;
        if let Ok(listed) = listed {
            for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
                leftovers += 1;
                let _ = Command::new(&self.cli)
                    .arg("--root")
                    .arg(&self.state)
                    .args(["delete", "--force", id])
                    .output()
                    .await;
            }
        }
        self.kill_leftovers().await;
        Cgroup::remove_tree(&self.cgroup_parent);
        let stale = mounts::mounts_under(&self.dir);
        for point in &stale {
            mounts::detach(point);
        }
        for sub in [&self.state, &self.bundles, &self.slots, &self.stage] {
            let _ = std::fs::remove_dir_all(sub);
        }
        if leftovers + stale.len() > 0 {
            tracing::info!(
                containers = leftovers,
                mounts = stale.len(),
                "removed sandboxes left by an earlier run"
            );
        }
    }

    /// Kills every process still in the instance's cgroups: whatever the runtime
    /// no longer knows of, such as a container process orphaned mid-creation.
    async fn kill_leftovers(&self) {
        let pids_root = Path::new("/sys/fs/cgroup/pids").join(&self.cgroup_parent);
        let procs_root = if pids_root.exists() {
            pids_root
        } else {
            Path::new("/sys/fs/cgroup").join(&self.cgroup_parent)
        };
        for group in std::fs::read_dir(&procs_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let procs = std::fs::read_to_string(group.path().join("cgroup.procs"));
            for pid in procs.unwrap_or_default().split_whitespace() {
                if let Ok(pid) = pid.parse() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// At shutdown, once the sandboxes were killed: waits (a few seconds at most)
    /// for the runtime processes to remove their containers and exit, then removes
    /// the instance's cgroup parent and unmounts the slot trees.
    pub async fn close(&self) {
        for _ in 0..250 {
            if Arc::strong_count(&self.running) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill_leftovers().await;
        Cgroup::remove_tree(&self.cgroup_parent);
        for point in mounts::mounts_under(&self.dir) {
            mounts::detach(&point);
        }
    }

    /// The propagation that lets slot mounts reach sandboxes: `rslave`, which runc
    /// and crun take (and every CI run has used); youki refuses anything but the
    /// spec's names, and the sandbox suite passes under it with `slave`.
    fn root_propagation(&self) -> &'static str {
        if self.name() == "youki" {
            "slave"
        } else {
            "rslave"
        }
    }

    /// The runtime's name, for messages.
    pub fn name(&self) -> String {
        self.cli
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub(crate) async fn create(&self, template: &Template) -> Result<OciSandbox, SandboxError> {
        // Counted from the start, so a shutdown waits for a sandbox still being made.
        let running = self.running.clone();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("sb{}-{n}", std::process::id());
        let bundle = self.bundles.join(&id);
        let slot = self.slots.join(&id);
        let mut sandbox_files = Files {
            bundle: bundle.clone(),
            slot: slot.clone(),
            stage: self.stage.join(&id),
            mounted: Vec::new(),
        };
        let rootfs = bundle.join("rootfs");
        let setup = |files: &mut Files| -> io::Result<()> {
            if template.image.is_empty() {
                bundle::prepare_rootfs(&rootfs)?;
            } else {
                // The image's layers under a scratch upper layer, which only takes
                // the runtime's mount points: the root is then made read-only.
                mounts::overlay(&template.image, &bundle, &rootfs)?;
                files.mounted.push(rootfs.clone());
            }
            for dir in [slot.join("task"), slot.join("opt"), files.stage.clone()] {
                std::fs::create_dir_all(dir)?;
            }
            Ok(())
        };
        setup(&mut sandbox_files)
            .map_err(|err| start_error(format!("cannot prepare a bundle: {err}")))?;
        let cgroup_path = format!("/{}/{id}", self.cgroup_parent);
        let config = bundle::config(&BundleSpec {
            rootfs: &rootfs,
            init: &self.init,
            etc: &self.etc,
            mounts: &template.mounts,
            task_slot: &slot.join("task"),
            opt_slot: &slot.join("opt"),
            tmp_mb: template.tmp_mb,
            cgroup: &cgroup_path,
            image: !template.image.is_empty(),
            root_propagation: self.root_propagation(),
        })
        .map_err(|err| start_error(format!("cannot write a bundle: {err}")))?;
        config
            .save(bundle.join("config.json"))
            .map_err(|err| start_error(format!("cannot write a bundle: {err}")))?;

        let pipe = || {
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|err| start_error(format!("cannot open a pipe: {err}")))
        };
        let (control_read, control_write) = pipe()?;
        // The program's output reaches nimbus without passing through the runtime,
        // which would copy it on its own schedule: an invocation's output must be in
        // the pipe by the time its response arrives.
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let mut command = Command::new(&self.cli);
        command
            .arg("--root")
            .arg(&self.state)
            .arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg("--pid-file")
            .arg(bundle.join("pid"))
            .args(["--preserve-fds", "3"])
            .arg(&id)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(
            &mut command,
            vec![control_write, stdout_write, stderr_write],
        );
        let mut child = command
            .spawn()
            .map_err(|err| start_error(format!("cannot run {}: {err}", self.cli.display())))?;
        // The write ends now live in the child only (the closure holding them is
        // dropped with the command).
        drop(command);
        let stdin = child
            .stdin
            .take()
            .and_then(|stdin| stdin.into_owned_fd().ok())
            .map(std::fs::File::from);
        let mut stderr = child.stderr.take();
        let control = Receiver::from_owned_fd(control_read)
            .map_err(|err| start_error(format!("cannot read the control pipe: {err}")))?;
        let mut control = BufReader::new(control).lines();
        let ready = tokio::select! {
            line = control.next_line() => matches!(line, Ok(Some(ref l)) if l == "ready"),
            _ = child.wait() => false,
            () = tokio::time::sleep(START_LIMIT) => false,
        };
        if !ready {
            let _ = child.start_kill();
            let mut message = String::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    stderr.read_to_string(&mut message),
                )
                .await;
            }
            let message = message.trim();
            return Err(start_error(format!(
                "{} could not start a sandbox: {}",
                self.name(),
                if message.is_empty() {
                    "no reason given"
                } else {
                    message
                }
            )));
        }
        // The runtime may write its pid file just after the init process started.
        let mut pid = None;
        for _ in 0..200 {
            pid = std::fs::read_to_string(bundle.join("pid"))
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok());
            if pid.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pid = pid.ok_or_else(|| start_error(format!("{} wrote no pid file", self.name())))?;
        let network = self
            .network
            .get_or_init(|| host_network(self.egress.clone()))
            .await;
        if let Some(network) = network {
            network
                .attach(pid)
                .await
                .map_err(|err| start_error(format!("cannot link a sandbox to the host: {err}")))?;
        }
        // The runtime's own messages join the program's output.
        let runtime_stderr = stderr.and_then(|e| e.into_owned_fd().ok());
        Ok(OciSandbox {
            child: Some(child),
            running,
            init: Pid::from_raw(pid),
            stdin,
            outputs: [Some(stdout_read), Some(stderr_read), runtime_stderr]
                .into_iter()
                .flatten()
                .collect(),
            control,
            cgroup: Cgroup::new(&cgroup_path),
            files: sandbox_files,
        })
    }
}

/// What a sandbox holds on the host, given back when it is dropped.
struct Files {
    bundle: PathBuf,
    slot: PathBuf,
    stage: PathBuf,
    mounted: Vec<PathBuf>,
}

impl Drop for Files {
    fn drop(&mut self) {
        for point in &self.mounted {
            mounts::detach(point);
        }
        let _ = std::fs::remove_dir_all(&self.slot);
        let _ = std::fs::remove_dir(&self.stage);
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}

pub(crate) struct OciSandbox {
    /// The runtime process; taken only when the sandbox is dropped.
    child: Option<Child>,
    running: Arc<()>,
    /// The init process, as the host sees it.
    init: Pid,
    stdin: Option<std::fs::File>,
    outputs: Vec<OwnedFd>,
    control: Lines<BufReader<Receiver>>,
    pub(crate) cgroup: Cgroup,
    files: Files,
}

impl OciSandbox {
    pub(crate) fn init_pid(&self) -> Pid {
        self.init
    }

    pub(crate) fn launch(&mut self, launch: Launch) -> Result<Vec<OwnedFd>, SandboxError> {
        let show = |sources: &[PathBuf], slot: &str| -> io::Result<Option<PathBuf>> {
            if sources.is_empty() {
                return Ok(None);
            }
            let target = self.files.slot.join(slot);
            mounts::show_read_only(sources, &self.files.stage, &target)?;
            Ok(Some(target))
        };
        // An image sandbox's code is in its image.
        let code: &[PathBuf] = if launch.task.as_os_str().is_empty() {
            &[]
        } else {
            std::slice::from_ref(&launch.task)
        };
        let task = show(code, "task")
            .map_err(|err| start_error(format!("cannot mount the code: {err}")))?;
        self.files.mounted.extend(task);
        let opt = show(&launch.layers, "opt")
            .map_err(|err| start_error(format!("cannot mount the layers: {err}")))?;
        self.files.mounted.extend(opt);
        self.cgroup
            .limit(launch.memory_mb)
            .map_err(|err| start_error(format!("cannot set the sandbox's limits: {err}")))?;
        let mut line = serde_json::to_vec(&launch.program).expect("programs serialize");
        line.push(b'\n');
        self.stdin
            .as_mut()
            .ok_or_else(|| start_error("the sandbox was already launched"))?
            .write_all(&line)
            .map_err(|err| start_error(format!("the sandbox is gone: {err}")))?;
        Ok(std::mem::take(&mut self.outputs))
    }

    pub(crate) async fn wait(&mut self) -> Exit {
        let child = self
            .child
            .as_mut()
            .expect("the runtime process is taken only on drop");
        loop {
            tokio::select! {
                line = self.control.next_line() => match line {
                    Ok(Some(line)) => {
                        if let Some(reason) = line.strip_prefix("exit ") {
                            return Exit {
                                reason: reason.to_owned(),
                                out_of_memory: self.cgroup.oom_kills() > 0,
                            };
                        }
                    }
                    // The init process is gone without a word: the sandbox ended.
                    _ => break,
                },
                status = child.wait() => {
                    return Exit {
                        reason: match status {
                            Ok(status) => format!("sandbox ended: {status}"),
                            Err(err) => format!("sandbox ended: {err}"),
                        },
                        out_of_memory: false,
                    };
                }
            }
        }
        let status = child.wait().await;
        Exit {
            reason: match status {
                Ok(status) => format!("sandbox ended: {status}"),
                Err(err) => format!("sandbox ended: {err}"),
            },
            out_of_memory: false,
        }
    }

    pub(crate) fn is_alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the init process, and with it every process of the sandbox's pid
    /// namespace; the runtime then removes the container and its cgroup.
    pub(crate) fn kill(&mut self) {
        if self.is_alive() {
            let _ = kill(self.init, Signal::SIGKILL);
        }
        self.stdin = None;
    }
}

impl Drop for OciSandbox {
    fn drop(&mut self) {
        self.kill();
        // The runtime removes the container once its init is gone, then exits; it
        // counts as running until reaped.
        let child = self.child.take();
        let running = self.running.clone();
        if let (Some(mut child), Ok(handle)) = (child, tokio::runtime::Handle::try_current()) {
            handle.spawn(async move {
                let _ = child.wait().await;
                drop(running);
            });
        }
    }
}
