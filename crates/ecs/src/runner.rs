//! Containers on this node: an overlayfs root over the image's snapshots, an OCI
//! bundle generated with `oci-spec`, and a monitor process (`monitor.rs`) that runs the
//! OCI runtime (runc) in the foreground and outlives nimbus; its output file is
//! shipped to the container's log stream from here.

use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nimbus_engine::confinement::{Workload, confine};
use nimbus_logs::{LogEvent, LogSink};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, ProcessBuilder, RootBuilder,
    SpecBuilder, UserBuilder, get_default_mounts,
};
use tokio::process::Command;
use tokio::task::JoinHandle;

use crate::images::Image;
use crate::monitor::{EXIT, MONITOR_PID, OUTPUT, parse_lines};

/// The network namespace a container joins.
#[derive(Debug, Clone)]
pub enum Netns {
    /// The host's (`networkMode` host).
    Host,
    /// A new one with only a loopback (`none`).
    None,
    /// One prepared for it or its task (`bridge`, `awsvpc`).
    Path(PathBuf),
}

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
    /// The soft limit the kernel reclaims towards under memory pressure.
    pub memory_reservation_mb: Option<i64>,
    pub network: Netns,
    /// The log group and stream its output goes to.
    pub log: Option<(String, String)>,
}

pub struct Runner {
    dir: PathBuf,
    runtime: PathBuf,
    /// The program whose `container-monitor` command monitors a container.
    monitor: PathBuf,
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
    dir: PathBuf,
    runtime: PathBuf,
    state: PathBuf,
    /// What ships its output to its log stream until it has ended.
    shipper: Option<JoinHandle<()>>,
}

/// The log group and stream a container's output goes to, kept beside its bundle.
const LOG_TARGET: &str = "log-target";
/// The image snapshots under the container's root, one per line.
const LAYERS: &str = "layers";
/// How far the container's output file has been shipped.
const SHIPPED: &str = "shipped";
/// How often a container's files are looked at for output and its end.
const POLL: Duration = Duration::from_millis(50);

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
    pub fn new(
        dir: &Path,
        runtime: PathBuf,
        monitor: PathBuf,
        logs: LogSink,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir.join("state"))?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            runtime,
            monitor,
            logs,
        }))
    }

    fn container(&self, id: String) -> Container {
        Container {
            dir: self.dir.join(&id),
            id,
            runtime: self.runtime.clone(),
            state: self.dir.join("state"),
            shipper: None,
        }
    }

    /// The snapshots the containers on this node stand on, whichever run of nimbus
    /// started them.
    pub fn layers_in_use(&self) -> HashSet<PathBuf> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path().join(LAYERS)).ok())
            .flat_map(|text| text.lines().map(PathBuf::from).collect::<Vec<_>>())
            .collect()
    }

    /// Removes every container but those in `keep` (re-adopted after a restart): the
    /// runtime's record, the root mount and the files.
    pub async fn sweep(&self, keep: &HashSet<String>) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut swept = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "state" || keep.contains(&name) {
                continue;
            }
            self.container(name).remove().await;
            swept += 1;
        }
        swept
    }

    /// A container a previous run of nimbus started, if its monitor still watches it
    /// or recorded its end; its output is shipped from where that run left off.
    pub fn adopt(&self, id: &str) -> Option<Container> {
        let mut container = self.container(id.to_owned());
        let dir = &container.dir;
        if !dir.join("pid").exists() || !(dir.join(EXIT).exists() || monitor_alive(dir)) {
            return None;
        }
        let target = std::fs::read(dir.join(LOG_TARGET))
            .ok()
            .and_then(|data| serde_json::from_slice(&data).ok());
        container.shipper = Some(self.ship(dir.clone(), target));
        Some(container)
    }

    /// Sends the container's output to its log stream as it comes, until it has ended
    /// and every line is shipped; shipped bytes are released from the file.
    fn ship(&self, dir: PathBuf, target: Option<(String, String)>) -> JoinHandle<()> {
        let logs = self.logs.clone();
        tokio::spawn(async move {
            let mut offset: u64 = std::fs::read_to_string(dir.join(SHIPPED))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(0);
            loop {
                let ended = dir.join(EXIT).exists();
                // Writable too: releasing shipped bytes (fallocate) needs it.
                let opened = std::fs::File::options()
                    .read(true)
                    .write(true)
                    .open(dir.join(OUTPUT));
                let Ok(mut file) = opened else {
                    if ended || !dir.exists() {
                        return;
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                };
                let mut data = Vec::new();
                let read = file
                    .seek(SeekFrom::Start(offset))
                    .and_then(|_| file.by_ref().take(4 << 20).read_to_end(&mut data));
                let (lines, used) = parse_lines(&data);
                if used > 0 {
                    if let Some((group, stream)) = &target {
                        let events = lines
                            .into_iter()
                            .map(|(timestamp, message)| LogEvent { timestamp, message })
                            .collect();
                        // The lines stay in the file until the log store has them:
                        // a crash before then ships them again, never loses them.
                        if !logs.append_committed(group, stream, events).await {
                            tokio::time::sleep(POLL).await;
                            continue;
                        }
                    }
                    // Where shipping resumes is durable before the bytes before it go.
                    let shipped = dir.join(SHIPPED);
                    let next = offset + used as u64;
                    if let Err(err) =
                        nimbus_storage::write_atomic(&shipped, next.to_string().as_bytes(), 0o644)
                    {
                        tracing::warn!(error = %err, "recording shipped output failed");
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                    offset = next;
                    if let Err(err) = release_shipped(&file, offset) {
                        tracing::debug!(error = %err, "releasing shipped output failed");
                    }
                    continue;
                }
                if ended || read.is_err() {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }

    /// Mounts the root, writes the bundle and starts the container.
    pub async fn start(&self, launch: Launch) -> Result<Container, String> {
        let dir = self.dir.join(&launch.id);
        let rootfs = dir.join("rootfs");
        nimbus_engine::overlay(&launch.image.layers, &dir, &rootfs)
            .map_err(|err| format!("cannot mount the container's root: {err}"))?;
        let id = launch.id.clone();
        match self.run(launch, &rootfs).await {
            Ok(container) => Ok(container),
            Err(err) => {
                // Nothing of a container that did not start stays behind.
                self.container(id).remove().await;
                Err(err)
            }
        }
    }

    /// Writes the bundle of a mounted root and starts the container's monitor on it.
    async fn run(&self, launch: Launch, rootfs: &Path) -> Result<Container, String> {
        let mut container = self.container(launch.id.clone());
        let dir = container.dir.clone();
        let spec = bundle(&launch, rootfs).map_err(|err| err.to_string())?;
        spec.save(dir.join("config.json"))
            .map_err(|err| err.to_string())?;
        let target = serde_json::to_vec(&launch.log).map_err(|err| err.to_string())?;
        std::fs::write(dir.join(LOG_TARGET), target).map_err(|err| err.to_string())?;
        let layers: Vec<String> = launch
            .image
            .layers
            .iter()
            .map(|layer| layer.display().to_string())
            .collect();
        std::fs::write(dir.join(LAYERS), layers.join("\n")).map_err(|err| err.to_string())?;
        self.start_monitor(&mut container, launch.log).await?;
        Ok(container)
    }

    /// Runs a container that has ended once more from its bundle, its root as it was
    /// left (an ECS restart policy).
    pub async fn restart(&self, container: &mut Container) -> Result<(), String> {
        container.delete_record().await;
        for file in [EXIT, "pid", MONITOR_PID] {
            let _ = std::fs::remove_file(container.dir.join(file));
        }
        let target = std::fs::read(container.dir.join(LOG_TARGET))
            .ok()
            .and_then(|data| serde_json::from_slice(&data).ok());
        self.start_monitor(container, target).await
    }

    /// Starts the monitor of a container whose bundle is written and the shipping of
    /// its output; returns once the container's process runs.
    async fn start_monitor(
        &self,
        container: &mut Container,
        target: Option<(String, String)>,
    ) -> Result<(), String> {
        let dir = container.dir.clone();
        let mut monitor = Command::new(&self.monitor)
            .arg("container-monitor")
            .arg(&self.runtime)
            .arg(&container.state)
            .arg(&dir)
            .arg(&container.id)
            // Its own process group: a signal for nimbus's group does not reach it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.monitor.display()))?;
        // Reaped here while nimbus runs; re-parented to init should nimbus end first.
        tokio::spawn(async move { monitor.wait().await });
        container.shipper = Some(self.ship(dir.clone(), target));
        // Running means the container's process exists: the runtime writes its pid
        // file once it has started it.
        let deadline = std::time::Instant::now() + START_LIMIT;
        while !dir.join("pid").exists() {
            if dir.join(EXIT).exists() {
                let output = std::fs::read(dir.join(OUTPUT)).unwrap_or_default();
                let (lines, _) = parse_lines(&output);
                let last = lines.last().map_or("", |(_, text)| text.as_str());
                return Err(format!("the container did not start: {last}"));
            }
            if std::time::Instant::now() > deadline {
                return Err("the container did not start in time".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

/// Gives the disk space of a file's first `upto` bytes back (a hole; its size stays),
/// so a chatty container's output takes only what is not shipped yet.
fn release_shipped(file: &std::fs::File, upto: u64) -> nix::Result<()> {
    nix::fcntl::fallocate(
        file.as_fd(),
        nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
            | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        upto as i64,
    )
}

/// Whether the monitor that wrote its pid in `dir` still runs.
fn monitor_alive(dir: &Path) -> bool {
    let Some(pid) = std::fs::read_to_string(dir.join(MONITOR_PID))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
    else {
        return false;
    };
    // A reused pid runs something else; a zombie has no command line.
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.windows(17).any(|w| w == b"container-monitor"))
}

impl Container {
    /// Waits for the container's main process to end and its output to be shipped;
    /// its exit code (128 + signal for a signal, as Docker reports it; 137 when its
    /// monitor was lost).
    pub async fn wait(&mut self) -> i32 {
        let exit = self.dir.join(EXIT);
        let code = loop {
            if let Ok(text) = std::fs::read_to_string(&exit) {
                break text.trim().parse().unwrap_or(137);
            }
            if !monitor_alive(&self.dir) && !exit.exists() {
                break 137;
            }
            tokio::time::sleep(POLL).await;
        };
        if let Some(shipper) = self.shipper.take() {
            let _ = shipper.await;
        }
        code
    }

    /// The environment the container was started with.
    pub fn env(&self) -> Vec<String> {
        std::fs::read(self.dir.join("config.json"))
            .ok()
            .and_then(|data| serde_json::from_slice::<serde_json::Value>(&data).ok())
            .and_then(|spec| {
                spec["process"]["env"].as_array().map(|env| {
                    env.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// How to signal this container from elsewhere.
    pub fn handle(&self) -> Handle {
        Handle {
            id: self.id.clone(),
            runtime: self.runtime.clone(),
            state: self.state.clone(),
        }
    }

    /// Removes the runtime's record of the container's last run.
    async fn delete_record(&self) {
        let _ = Command::new(&self.runtime)
            .arg("--root")
            .arg(&self.state)
            .args(["delete", "--force", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }

    /// Removes the container, its root and its files.
    pub async fn remove(self) {
        if let Some(shipper) = &self.shipper {
            shipper.abort();
        }
        self.handle().signal("KILL").await;
        self.delete_record().await;
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
        .permitted(caps.clone())
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let mut process = ProcessBuilder::default()
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
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(mb) = launch.memory_mb {
        memory = memory.limit(mb * 1024 * 1024);
    }
    if let Some(mb) = launch.memory_reservation_mb {
        memory = memory.reservation(mb * 1024 * 1024);
    }
    let resources = LinuxResourcesBuilder::default().memory(memory.build()?);
    let defaults = oci_spec::runtime::Linux::default();
    let mut namespaces: Vec<LinuxNamespace> = Vec::new();
    for namespace in defaults.namespaces().clone().unwrap_or_default() {
        match (&launch.network, namespace.typ()) {
            (Netns::Host, LinuxNamespaceType::Network) => {}
            (Netns::Path(path), LinuxNamespaceType::Network) => namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .path(path.clone())
                    .build()?,
            ),
            _ => namespaces.push(namespace),
        }
    }
    let mut linux = LinuxBuilder::default()
        .resources(resources.build()?)
        .cgroups_path(PathBuf::from(format!("/nimbus-tasks/{}", launch.id)))
        .namespaces(namespaces)
        .build()?;
    // Docker's confinement whatever the task definition asks (`privileged` included):
    // a container never gets more of the kernel than Docker's defaults give.
    confine(&mut process, &mut linux, Workload::Container(&caps))?;
    let mut mounts = get_default_mounts();
    if !matches!(launch.network, Netns::None) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn shipped_output_gives_its_disk_space_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(OUTPUT);
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&vec![b'x'; 4 << 20]).unwrap();
        file.sync_all().unwrap();
        let before = std::fs::metadata(&path).unwrap().blocks();
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        release_shipped(&file, 4 << 20).unwrap();
        let after = std::fs::metadata(&path);
        assert_eq!(after.as_ref().unwrap().len(), 4 << 20, "the size stays");
        assert!(
            after.unwrap().blocks() < before / 2,
            "the blocks are given back"
        );
        // A read-only descriptor cannot release anything.
        assert!(release_shipped(&std::fs::File::open(&path).unwrap(), 1).is_err());
    }
}
