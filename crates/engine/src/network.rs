//! Sandbox networking: each sandbox has a network namespace of its own (its loopback
//! holds its Runtime API, unreachable from any other sandbox) plus a veth link to the
//! host for the outside world. The link is point to point: the host end is
//! 169.254.1.1 on every link, the sandbox end a /32 derived from the host end's
//! interface index (unique among live interfaces, so nimbus servers sharing a host
//! never collide), and outbound traffic is masqueraded. The veth pair disappears
//! with the sandbox's namespace, so a crash leaves no devices behind.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The host's address on every sandbox link, the sandboxes' gateway.
const GATEWAY: &str = "169.254.1.1";
/// Sandbox addresses: 10.213.0.0/16.
const SUBNET: &str = "10.213.0.0/16";
/// Host ends of sandbox links are named `nb…`.
const PREFIX: &str = "nb";

pub struct Network {
    ip: PathBuf,
    nsenter: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

async fn run(program: &Path, args: &[&str], input: Option<String>) -> io::Result<()> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input.as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} {}: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Adds an iptables rule unless it is there already.
async fn ensure_rule(iptables: &Path, table: &str, insert: bool, rule: &[&str]) -> io::Result<()> {
    let check: Vec<&str> = ["-t", table, "-C"].iter().chain(rule).copied().collect();
    if run(iptables, &check, None).await.is_ok() {
        return Ok(());
    }
    let verb = if insert { "-I" } else { "-A" };
    let add: Vec<&str> = ["-t", table, verb].iter().chain(rule).copied().collect();
    run(iptables, &add, None).await
}

impl Network {
    /// Finds the tools and sets up the host once: forwarding and NAT for sandbox
    /// traffic, none between sandboxes. Without iptables sandboxes still reach this
    /// host (and nimbus) but not beyond.
    pub async fn open() -> io::Result<Self> {
        let ip =
            on_path("ip").ok_or_else(|| io::Error::other("`ip` (iproute2) is not installed"))?;
        let nsenter =
            on_path("nsenter").ok_or_else(|| io::Error::other("`nsenter` is not installed"))?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        let outside = match on_path("iptables") {
            Some(iptables) => {
                let between = format!("{PREFIX}+");
                let rules: [(&str, bool, Vec<&str>); 4] = [
                    (
                        "nat",
                        false,
                        vec![
                            "POSTROUTING",
                            "-s",
                            SUBNET,
                            "!",
                            "-o",
                            &between,
                            "-j",
                            "MASQUERADE",
                        ],
                    ),
                    (
                        "filter",
                        true,
                        vec!["FORWARD", "-i", &between, "-o", &between, "-j", "DROP"],
                    ),
                    (
                        "filter",
                        false,
                        vec!["FORWARD", "-i", &between, "-j", "ACCEPT"],
                    ),
                    (
                        "filter",
                        false,
                        vec![
                            "FORWARD",
                            "-o",
                            &between,
                            "-m",
                            "conntrack",
                            "--ctstate",
                            "RELATED,ESTABLISHED",
                            "-j",
                            "ACCEPT",
                        ],
                    ),
                ];
                let mut result = Ok(());
                for (table, insert, rule) in &rules {
                    result = result.and(ensure_rule(&iptables, table, *insert, rule).await);
                }
                result
            }
            None => Err(io::Error::other("iptables is not installed")),
        };
        if let Err(err) = outside {
            tracing::warn!(
                error = %err,
                "sandboxes reach this host but not the outside network (install iptables)"
            );
        }
        Ok(Self { ip, nsenter })
    }

    /// Links the network namespace of process `pid` to the host.
    pub async fn attach(&self, pid: i32) -> io::Result<()> {
        let pid_text = pid.to_string();
        let mut host_end = String::new();
        for attempt in 0..3u32 {
            let suffix = getrandom::u32().unwrap_or(pid as u32 ^ attempt);
            host_end = format!("{PREFIX}{suffix:08x}");
            let added = run(
                &self.ip,
                &[
                    "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns",
                    &pid_text,
                ],
                None,
            )
            .await;
            match added {
                Ok(()) => break,
                Err(err) if attempt == 2 => return Err(err),
                Err(_) => continue,
            }
        }
        let index: u32 = std::fs::read_to_string(format!("/sys/class/net/{host_end}/ifindex"))?
            .trim()
            .parse()
            .map_err(|_| io::Error::other("unreadable interface index"))?;
        let address = format!("10.213.{}.{}", (index >> 8) & 0xff, index & 0xff);
        run(
            &self.ip,
            &["-batch", "-"],
            Some(format!(
                "addr add {GATEWAY}/32 dev {host_end}\n\
                 link set {host_end} up\n\
                 route add {address}/32 dev {host_end}\n"
            )),
        )
        .await?;
        let netns = format!("--net=/proc/{pid}/ns/net");
        run(
            &self.nsenter,
            &[
                &netns,
                "--",
                self.ip.to_str().unwrap_or("ip"),
                "-batch",
                "-",
            ],
            // runc and crun bring loopback up in a new namespace; youki leaves it down.
            Some(format!(
                "link set lo up\n\
                 addr add {address}/32 dev eth0\n\
                 link set eth0 up\n\
                 route add {GATEWAY}/32 dev eth0\n\
                 route add default via {GATEWAY} dev eth0\n"
            )),
        )
        .await
    }
}
