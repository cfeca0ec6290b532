//! Containers on this node: an overlayfs root over the image's snapshots, an OCI
//! bundle generated with `oci-spec`, and the OCI runtime (runc) in the foreground
//! with the container's output read line by line into its log stream.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use nimbus_logs::{LogEvent, LogSink};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceType, LinuxResourcesBuilder, ProcessBuilder, RootBuilder, SpecBuilder,
    UserBuilder, get_default_mounts,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::images::Image;

/// What to run in one container.
#[derive(Debug, Clone)]
pub struct Launch {
    pub id: String,
    pub image: Image,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub memory_mb: Option<i64>,
    /// Share the host's network namespace (`networkMode` host), else none at all.
    pub host_network: bool,
    /// The log group and stream its output goes to.
    pub log: Option<(String, String)>,
}

pub struct Runner {
    dir: PathBuf,
    runtime: PathBuf,
    logs: LogSink,
}

/// What signals a running container.
#[derive(Debug, Clone)]
pub struct Handle {
    id: String,
    runtime: PathBuf,
    state: PathBuf,
}

impl Handle {
    /// Runs `args` inside the container; whether it exits 0 within `timeout`.
    pub async fn exec(&self, args: &[String], timeout: std::time::Duration) -> bool {
        let run = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.state)
            .args(["exec", &self.id])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        matches!(tokio::time::timeout(timeout, run).await, Ok(Ok(status)) if status.success())
    }

    /// Whether this is the container `name` of task `task`.
    pub fn names(&self, task: &str, name: &str) -> bool {
        self.id == format!("{task}-{name}")
    }

    /// Sends a signal (`TERM`, `KILL`) to every process of the container.
    pub async fn signal(&self, signal: &str) {
        let _ = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.state)
            .args(["kill", "--all", &self.id, signal])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

/// A started container.
pub struct Container {
    pub id: String,
    /// The runtime process; none for a container found after a restart.
    child: Option<Child>,
    dir: PathBuf,
    runtime: PathBuf,
    state: PathBuf,
}

/// How long a container may take to start.
const START_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Docker's default capabilities, which images expect.
const CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

impl Runner {
    pub fn new(dir: &Path, runtime: PathBuf, logs: LogSink) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir.join("state"))?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            runtime,
            logs,
        }))
    }

    /// Removes every container a previous run of nimbus left (they cannot be
    /// re-adopted yet): the runtime's record, the root mount and the files.
    pub async fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut swept = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "state" {
                continue;
            }
            let leftover = Container {
                id: name,
                child: None,
                dir: entry.path(),
                runtime: self.runtime.clone(),
                state: self.dir.join("state"),
            };
            leftover.remove().await;
            swept += 1;
        }
        swept
    }

    /// Mounts the root, writes the bundle and starts the container.
    pub async fn start(&self, launch: Launch) -> Result<Container, String> {
        let dir = self.dir.join(&launch.id);
        let (rootfs, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
        for path in [&rootfs, &upper, &work] {
            std::fs::create_dir_all(path).map_err(|err| err.to_string())?;
        }
        let lower: Vec<String> = launch
            .image
            .layers
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
        nix::mount::mount(
            Some("overlay"),
            &rootfs,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|err| format!("cannot mount the container's root: {err}"))?;
        let id = launch.id.clone();
        match self.run(launch, dir.clone(), &rootfs).await {
            Ok(container) => Ok(container),
            Err(err) => {
                // Nothing of a container that did not start stays behind.
                Container {
                    id,
                    child: None,
                    dir,
                    runtime: self.runtime.clone(),
                    state: self.dir.join("state"),
                }
                .remove()
                .await;
                Err(err)
            }
        }
    }

    /// Writes the bundle of a mounted root and starts the runtime on it.
    async fn run(&self, launch: Launch, dir: PathBuf, rootfs: &Path) -> Result<Container, String> {
        let spec = bundle(&launch, rootfs).map_err(|err| err.to_string())?;
        spec.save(dir.join("config.json"))
            .map_err(|err| err.to_string())?;
        let state = self.dir.join("state");
        let mut child = Command::new(&self.runtime)
            .arg("--root")
            .arg(&state)
            .arg("run")
            .arg("--bundle")
            .arg(&dir)
            .arg("--pid-file")
            .arg(dir.join("pid"))
            .arg(&launch.id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.runtime.display()))?;
        for output in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = self.logs.clone();
            let target = launch.log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(output).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some((group, stream)) = &target {
                        let event = LogEvent {
                            timestamp: nimbus_logs::now_ms(),
                            message: line,
                        };
                        logs.append(group, stream, vec![event]).await;
                    }
                }
            });
        }
        // Running means the container's process exists: the runtime writes its pid
        // file once it has started it.
        let pid_file = dir.join("pid");
        let deadline = std::time::Instant::now() + START_LIMIT;
        while !pid_file.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the container did not start ({status})"));
            }
            if std::time::Instant::now() > deadline {
                let _ = child.start_kill();
                return Err("the container did not start in time".to_owned());
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Ok(Container {
            id: launch.id,
            child: Some(child),
            dir,
            runtime: self.runtime.clone(),
            state,
        })
    }
}

impl Container {
    /// Waits for the container's main process to end; its exit code (128 + signal
    /// for a signal, as Docker reports it).
    pub async fn wait(&mut self) -> i32 {
        let Some(child) = self.child.as_mut() else {
            return 137;
        };
        match child.wait().await {
            Ok(status) => status.code().unwrap_or(137),
            Err(_) => 137,
        }
    }

    /// How to signal this container from elsewhere.
    pub fn handle(&self) -> Handle {
        Handle {
            id: self.id.clone(),
            runtime: self.runtime.clone(),
            state: self.state.clone(),
        }
    }

    /// Removes the container, its root and its files.
    pub async fn remove(self) {
        self.handle().signal("KILL").await;
        let _ = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        let _ = nix::mount::umount2(&self.dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }
}

fn bundle(
    launch: &Launch,
    rootfs: &Path,
) -> Result<oci_spec::runtime::Spec, oci_spec::OciSpecError> {
    let caps: HashSet<Capability> = CAPABILITIES.iter().copied().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(launch.uid)
                .gid(launch.gid)
                .build()?,
        )
        .args(launch.args.clone())
        .env(launch.env.clone())
        .cwd(launch.cwd.clone())
        .capabilities(capabilities)
        .build()?;
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(mb) = launch.memory_mb {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(mb * 1024 * 1024)
                .build()?,
        );
    }
    let defaults = oci_spec::runtime::Linux::default();
    let namespaces: Vec<LinuxNamespace> = defaults
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|ns| !(launch.host_network && ns.typ() == LinuxNamespaceType::Network))
        .collect();
    let mut linux = LinuxBuilder::default()
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(format!("/nimbus-tasks/{}", launch.id)))
        .namespaces(namespaces)
        .build()?;
    linux.set_masked_paths(defaults.masked_paths().clone());
    linux.set_readonly_paths(defaults.readonly_paths().clone());
    let mut mounts = get_default_mounts();
    if launch.host_network {
        // The host's resolver, so names resolve as on the host.
        mounts.push(
            oci_spec::runtime::MountBuilder::default()
                .destination("/etc/resolv.conf")
                .typ("bind")
                .source("/etc/resolv.conf")
                .options(vec!["rbind".to_owned(), "ro".to_owned()])
                .build()?,
        );
    }
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs)
                .readonly(false)
                .build()?,
        )
        .hostname(launch.id.chars().take(12).collect::<String>())
        .mounts(mounts)
        .process(process)
        .linux(linux)
        .build()
}
