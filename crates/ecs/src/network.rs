//! Task networking for the `bridge` and `awsvpc` network modes with the CNI plugins
//! (Debian's containernetworking-plugins): a network namespace per container (bridge)
//! or per task (awsvpc), held by a file under the data dir, set up by the `loopback`,
//! `bridge` (host-local addresses in the node's task subnet on the `nimbus-ecs0`
//! bridge) and `portmap` plugins in turn, with one masquerade rule for traffic that
//! leaves the task range 10.214.0.0/16. A node alone on its store gives its tasks the
//! whole range; in a deployment each node has a /24 of it (`ecs.subnets/<n>` = the
//! node's name, `10.214.<n>.0/24`) and routes the others' through their addresses,
//! so tasks reach tasks on other nodes by their own addresses. nimbus
//! allocates host ports itself (portmap reserves nothing): a static port must be free,
//! port 0 takes one from ECS's ephemeral range. Each attachment's record, kept beside
//! its namespace, holds what tearing it down needs, so the next start removes what a
//! crash left. What tasks may connect to is the engine's [`Egress`] policy, applied
//! to the bridge: containers on it reach each other, as on Docker's bridge.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nimbus_engine::Egress;
use nimbus_storage::{Expect, MetadataStore, StoreError, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const NETWORK: &str = "nimbus-tasks";
const BRIDGE: &str = "nimbus-ecs0";
/// Every task address on every node; what leaves it is masqueraded.
const SUBNET: &str = "10.214.0.0/16";
/// Which node has which /24 of `SUBNET`.
pub const SUBNETS: &str = "ecs.subnets";
const CNI_VERSION: &str = "1.0.0";
/// ECS's ephemeral host ports on Linux.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49153..=65535;

/// A host port forwarded to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host: u16,
    pub container: u16,
    pub protocol: String,
}

/// A network namespace on the task network.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub netns: PathBuf,
    pub ip: String,
    pub mac: String,
    pub ports: Vec<PortMapping>,
}

pub struct Networks {
    plugins: PathBuf,
    dir: PathBuf,
    /// The host's rules for task traffic, set up once in the background from the
    /// start (they take a few hundred milliseconds of iptables runs): a task attached
    /// sooner waits for them, and none is attached without them.
    host: Arc<tokio::sync::OnceCell<Result<(), String>>>,
    egress: Egress,
    /// The addresses of this node's tasks.
    subnet: String,
    /// The routes to other nodes' task subnets this node has set, by subnet.
    routes: Mutex<BTreeMap<String, IpAddr>>,
}

/// The task subnet of the /24 numbered `n`.
pub fn numbered_subnet(n: u8) -> String {
    format!("10.214.{n}.0/24")
}

/// The subnet of `node`'s tasks: all of the task range for a node alone on its store;
/// else the /24 recorded for it, or the lowest one free, taken by a conditional write.
pub fn task_subnet(meta: &dyn MetadataStore, node: &str) -> Result<String, StoreError> {
    if !meta.shared() {
        return Ok(SUBNET.to_owned());
    }
    loop {
        let taken = meta.scan_all(SUBNETS, "")?;
        if let Some(mine) = taken.iter().find(|r| r.value == node.as_bytes())
            && let Ok(n) = mine.key.parse::<u8>()
        {
            return Ok(numbered_subnet(n));
        }
        let Some(free) = (1..=254u8).find(|n| !taken.iter().any(|r| r.key == n.to_string())) else {
            return Err(StoreError::Conflict {
                table: SUBNETS.into(),
                key: "every task subnet is taken".into(),
            });
        };
        match meta.commit(WriteBatch::new().put(
            SUBNETS,
            &free.to_string(),
            node.as_bytes().to_vec(),
            Expect::Absent,
        )) {
            Ok(()) => return Ok(numbered_subnet(free)),
            Err(StoreError::Conflict { .. }) => continue,
            Err(err) => return Err(err),
        }
    }
}

/// Host ports held by tasks on this node, with their protocol.
#[derive(Default)]
pub struct HostPorts(Mutex<HashSet<(u16, String)>>);

/// Runs `program` with `input` on stdin; its stdout, or its stderr as the error.
async fn run(command: &mut Command, input: Option<&str>) -> Result<Vec<u8>, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| err.to_string())?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|err| err.to_string())?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|err| err.to_string())?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        let mut message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        // CNI plugins report errors as JSON on stdout.
        if let Ok(error) = serde_json::from_slice::<Value>(&output.stdout) {
            message = format!("{} {}", error["msg"], error["details"])
                .trim()
                .to_owned();
        }
        Err(message)
    }
}

/// The plugins' configurations, in the order they are added.
fn configs(subnet: &str, ports: &[PortMapping]) -> Vec<Value> {
    let mut chain = vec![
        json!({ "cniVersion": CNI_VERSION, "name": NETWORK, "type": "loopback" }),
        json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": true,
            // The bridge takes its subnet's gateway address even if it had another
            // (the node's subnet changed when it joined a deployment).
            "forceAddress": true,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
            },
        }),
    ];
    if !ports.is_empty() {
        chain.push(json!({
            "cniVersion": CNI_VERSION,
            "name": NETWORK,
            "type": "portmap",
            "snat": true,
            "capabilities": { "portMappings": true },
            "runtimeConfig": { "portMappings": ports.iter().map(|p| json!({
                "hostPort": p.host, "containerPort": p.container, "protocol": p.protocol,
            })).collect::<Vec<_>>() },
        }));
    }
    chain
}

/// Whether nothing on this host listens on `port` now.
fn free(port: u16, protocol: &str) -> bool {
    match protocol {
        "udp" => std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok(),
        _ => std::net::TcpListener::bind(("0.0.0.0", port)).is_ok(),
    }
}

impl HostPorts {
    /// Takes host ports for `wanted` (host port, 0 for any; container port; protocol),
    /// all or none; `RESOURCE:PORTS` when a static one is taken.
    pub fn reserve(&self, wanted: &[(u16, u16, String)]) -> Result<Vec<PortMapping>, String> {
        let mut held = self.0.lock().expect("host ports");
        let mut taken: Vec<PortMapping> = Vec::new();
        let in_use =
            |held: &HashSet<(u16, String)>, taken: &[PortMapping], port: u16, proto: &str| {
                held.contains(&(port, proto.to_owned()))
                    || taken.iter().any(|t| t.host == port && t.protocol == proto)
            };
        for (host, container, protocol) in wanted {
            let port = if *host != 0 {
                if in_use(&held, &taken, *host, protocol) || !free(*host, protocol) {
                    return Err("RESOURCE:PORTS".to_owned());
                }
                *host
            } else {
                // Spread over the range so a port just given back is not reused at once.
                let start = EPHEMERAL.start() + (crate::tasks::random_u16() % 16_000);
                (start..=*EPHEMERAL.end())
                    .chain(*EPHEMERAL.start()..start)
                    .find(|p| !in_use(&held, &taken, *p, protocol) && free(*p, protocol))
                    .ok_or("RESOURCE:PORTS")?
            };
            taken.push(PortMapping {
                host: port,
                container: *container,
                protocol: protocol.clone(),
            });
        }
        held.extend(taken.iter().map(|p| (p.host, p.protocol.clone())));
        Ok(taken)
    }

    /// Gives host ports back.
    pub fn release(&self, ports: &[PortMapping]) {
        let mut held = self.0.lock().expect("host ports");
        for port in ports {
            held.remove(&(port.host, port.protocol.clone()));
        }
    }

    /// Holds again ports a previous run reserved.
    pub fn hold(&self, ports: &[PortMapping]) {
        self.0
            .lock()
            .expect("host ports")
            .extend(ports.iter().map(|p| (p.host, p.protocol.clone())));
    }
}

/// iptables, waiting for its lock: the sandboxes' rules may be written at the same
/// time.
fn iptables() -> Command {
    let mut command = Command::new("iptables");
    command.arg("-w");
    command
}

/// Lets task traffic out of the host where `egress` allows, and to other nodes' tasks.
async fn host_rules(egress: Egress) -> Result<(), String> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|err| err.to_string())?;
    let rule = [
        "POSTROUTING",
        "-s",
        SUBNET,
        "!",
        "-d",
        SUBNET,
        "-j",
        "MASQUERADE",
    ];
    let check = run(iptables().args(["-t", "nat", "-C"]).args(rule), None).await;
    if check.is_err() {
        run(iptables().args(["-t", "nat", "-A"]).args(rule), None)
            .await
            .map_err(|err| format!("cannot let task traffic out: {err}"))?;
    }
    egress
        .enforce(BRIDGE, true)
        .await
        .map_err(|err| format!("cannot confine task traffic: {err}"))?;
    // Tasks reach tasks on other nodes, as those on this bridge reach each other;
    // ahead of the egress policy, which closes private ranges.
    let between = ["FORWARD", "-i", BRIDGE, "-d", SUBNET, "-j", "ACCEPT"];
    let present = run(iptables().arg("-C").args(between), None).await;
    if present.is_err() {
        run(iptables().args(["-I"]).args(between), None)
            .await
            .map_err(|err| format!("cannot let tasks reach other nodes' tasks: {err}"))?;
    }
    Ok(())
}

impl Networks {
    /// Finds the CNI plugins and lets task traffic out where `egress` allows, and to
    /// other nodes' tasks; why tasks cannot have these network modes here otherwise.
    pub async fn open(dir: &Path, egress: &Egress, subnet: String) -> Result<Self, String> {
        let plugins = ["/usr/lib/cni", "/opt/cni/bin"]
            .into_iter()
            .map(PathBuf::from)
            .find(|dir| {
                ["bridge", "host-local", "portmap", "loopback"]
                    .iter()
                    .all(|p| dir.join(p).is_file())
            })
            .ok_or(
                "the CNI plugins are not installed (apt-get install containernetworking-plugins)",
            )?;
        std::fs::create_dir_all(dir).map_err(|err| err.to_string())?;
        let networks = Self {
            plugins,
            dir: dir.to_owned(),
            host: Arc::new(tokio::sync::OnceCell::new()),
            egress: egress.clone(),
            subnet,
            routes: Mutex::new(BTreeMap::new()),
        };
        let (host, egress) = (networks.host.clone(), egress.clone());
        tokio::spawn(async move {
            if let Err(reason) = host.get_or_init(|| host_rules(egress)).await {
                tracing::warn!(%reason, "tasks get host and none network modes only");
            }
        });
        Ok(networks)
    }

    /// The host's rules for task traffic, once set up.
    async fn host_ready(&self) -> Result<(), String> {
        self.host
            .get_or_init(|| host_rules(self.egress.clone()))
            .await
            .clone()
    }
    /// Routes each other node's task subnet through its address (`routes`: subnet →
    /// address), replacing those an earlier call set. A route the kernel refuses (an
    /// address not on a network this node is on) is logged and tried again next time.
    pub fn route(&self, routes: BTreeMap<String, IpAddr>) {
        let mut applied = self.routes.lock().expect("routes");
        if *applied == routes {
            return;
        }
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .output()
                .map_err(|err| err.to_string())
                .and_then(|out| {
                    out.status
                        .success()
                        .then_some(())
                        .ok_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned())
                })
        };
        for subnet in applied.keys().filter(|s| !routes.contains_key(*s)) {
            let _ = ip(&["route", "del", subnet]);
        }
        applied.clear();
        for (subnet, via) in routes {
            match ip(&["route", "replace", &subnet, "via", &via.to_string()]) {
                Ok(()) => {
                    applied.insert(subnet, via);
                }
                Err(err) => {
                    tracing::warn!(%subnet, %via, error = %err, "cannot route to another node's tasks");
                }
            }
        }
    }

    fn record(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// A network namespace for `id` on the task network with `ports` forwarded to it.
    pub async fn attach(&self, id: &str, ports: Vec<PortMapping>) -> Result<Attachment, String> {
        self.host_ready().await?;
        let netns = self.dir.join(format!("{id}.ns"));
        let attachment = Attachment {
            netns: netns.clone(),
            ip: String::new(),
            mac: String::new(),
            ports,
        };
        // Recorded first: whatever happens next, a detach finds it.
        let write = |attachment: &Attachment| {
            let data = serde_json::to_vec(attachment).expect("attachments serialize");
            std::fs::write(self.record(id), data).map_err(|err| err.to_string())
        };
        write(&attachment)?;
        let attached = async {
            std::fs::File::create(&netns).map_err(|err| err.to_string())?;
            run(
                Command::new("unshare")
                    .arg(format!("--net={}", netns.display()))
                    .arg("true"),
                None,
            )
            .await
            .map_err(|err| format!("cannot make a network namespace: {err}"))?;
            let mut result = Value::Null;
            for config in configs(&self.subnet, &attachment.ports) {
                let mut config = config;
                if !result.is_null() {
                    config["prevResult"] = result.clone();
                }
                let output = self.plugin("ADD", id, Some(&netns), &config).await?;
                let added: Value = serde_json::from_slice(&output).unwrap_or(Value::Null);
                if config["type"] != "loopback" {
                    result = added;
                }
            }
            Ok::<Value, String>(result)
        }
        .await;
        let result = match attached {
            Ok(result) => result,
            Err(err) => {
                self.detach(id).await;
                return Err(err);
            }
        };
        let ip = result["ips"][0]["address"]
            .as_str()
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_owned();
        let mac = result["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["name"] == "eth0")
            .and_then(|i| i["mac"].as_str())
            .unwrap_or_default()
            .to_owned();
        let attachment = Attachment {
            ip,
            mac,
            ..attachment
        };
        write(&attachment)?;
        Ok(attachment)
    }

    async fn plugin(
        &self,
        command: &str,
        id: &str,
        netns: Option<&Path>,
        config: &Value,
    ) -> Result<Vec<u8>, String> {
        let kind = config["type"].as_str().unwrap_or_default();
        run(
            Command::new(self.plugins.join(kind))
                .env_clear()
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", id)
                .env(
                    "CNI_NETNS",
                    netns.map(|p| p.display().to_string()).unwrap_or_default(),
                )
                .env("CNI_IFNAME", if kind == "loopback" { "lo" } else { "eth0" })
                .env("CNI_PATH", &self.plugins)
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            Some(&config.to_string()),
        )
        .await
        .map_err(|err| format!("CNI {kind} {command}: {err}"))
    }

    /// Tears down what `attach` made for `id`, if anything: forwarded ports, address,
    /// links and namespace.
    pub async fn detach(&self, id: &str) {
        let Ok(data) = std::fs::read(self.record(id)) else {
            return;
        };
        let Ok(attachment) = serde_json::from_slice::<Attachment>(&data) else {
            let _ = std::fs::remove_file(self.record(id));
            return;
        };
        // A namespace a previous run held is no longer mounted here: the plugins then
        // release what lives outside it.
        let netns = Some(attachment.netns.as_path()).filter(|path| is_mounted(path));
        for config in configs(&self.subnet, &attachment.ports).iter().rev() {
            if let Err(err) = self.plugin("DEL", id, netns, config).await {
                tracing::warn!(%id, error = %err, "tearing down a task network failed");
            }
        }
        let _ = nix::mount::umount2(&attachment.netns, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&attachment.netns);
        let _ = std::fs::remove_file(self.record(id));
    }

    /// Tears down the attachments of a task and of its containers.
    pub async fn detach_task(&self, task: &str) {
        self.detach(task).await;
        let prefix = format!("{task}-");
        for id in self.attached() {
            if id.starts_with(&prefix) {
                self.detach(&id).await;
            }
        }
    }

    /// The ids with an attachment.
    fn attached(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json").map(str::to_owned)
            })
            .collect()
    }

    /// Tears down every attachment but those in `keep`.
    pub async fn sweep(&self, keep: &HashSet<String>) {
        for id in self.attached() {
            if !keep.contains(&id) {
                self.detach(&id).await;
            }
        }
    }
}

/// Whether `path` is a mount point in this mount namespace.
fn is_mounted(path: &Path) -> bool {
    let wanted = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines()
            .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_forwards_ports_only_when_there_are_some() {
        let plain: Vec<Value> = configs(SUBNET, &[]);
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[1]["ipam"]["ranges"][0][0]["subnet"], SUBNET);
        let mapped = configs(
            &numbered_subnet(3),
            &[PortMapping {
                host: 49200,
                container: 80,
                protocol: "tcp".into(),
            }],
        );
        assert_eq!(mapped[1]["ipam"]["ranges"][0][0]["subnet"], "10.214.3.0/24");
        assert_eq!(mapped[2]["type"], "portmap");
        assert_eq!(
            mapped[2]["runtimeConfig"]["portMappings"][0]["hostPort"],
            49200
        );
    }

    #[test]
    fn host_ports_are_held_once_and_ephemeral_ones_come_from_ecs_range() {
        let ports = HostPorts::default();
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let busy = listener.local_addr().unwrap().port();
        assert_eq!(
            ports.reserve(&[(busy, 80, "tcp".into())]).unwrap_err(),
            "RESOURCE:PORTS"
        );
        let [first] =
            <[PortMapping; 1]>::try_from(ports.reserve(&[(0, 80, "tcp".into())]).unwrap()).unwrap();
        assert!(EPHEMERAL.contains(&first.host));
        assert_eq!(
            ports
                .reserve(&[(first.host, 81, "tcp".into())])
                .unwrap_err(),
            "RESOURCE:PORTS"
        );
        ports.release(std::slice::from_ref(&first));
        assert!(ports.reserve(&[(first.host, 81, "tcp".into())]).is_ok());
    }
}
