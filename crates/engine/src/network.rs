//! Sandbox networking: each sandbox has a network namespace of its own (its loopback
//! holds its Runtime API, unreachable from any other sandbox) plus a veth link to the
//! host for the outside world. The link is point to point: the host end is
//! 169.254.1.1 on every link, the sandbox end a /32 derived from the host end's
//! interface index (unique among live interfaces, so nimbus servers sharing a host
//! never collide), and outbound traffic is masqueraded. The veth pair disappears
//! with the sandbox's namespace, so a crash leaves no devices behind.
//!
//! Where sandboxes (and ECS containers) may connect is the [`Egress`] policy.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ipnet::IpNet;
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
    // `-w`: the sandboxes' and the tasks' rules are written at the same time.
    let check: Vec<&str> = ["-w", "-t", table, "-C"]
        .iter()
        .chain(rule)
        .copied()
        .collect();
    if run(iptables, &check, None).await.is_ok() {
        return Ok(());
    }
    let verb = if insert { "-I" } else { "-A" };
    let add: Vec<&str> = ["-w", "-t", table, verb]
        .iter()
        .chain(rule)
        .copied()
        .collect();
    run(iptables, &add, None).await
}

/// Where code nimbus runs may connect: nimbus's edge and the outside network, never
/// the host's other addresses, link-local or private ranges, unless the operator
/// opened them. The policy is the host's: one pair of iptables chains of nimbus's
/// own (`NIMBUS-HOST` judges what reaches the host itself from a sandbox or task
/// interface, `NIMBUS-EGRESS` what it forwards elsewhere), rewritten whole by each
/// server that starts and left in place when it stops, as the containers that
/// outlive it are. Only the edges accumulate (`NIMBUS-EDGES`), so servers sharing a
/// host keep each other's edges reachable.
#[derive(Debug, Clone)]
pub struct Egress {
    /// nimbus's edge, reachable on the host's addresses.
    pub edge: SocketAddr,
    /// Destinations the operator opened, the host's own addresses included.
    pub allow: Vec<IpNet>,
}

/// Chains of nimbus's own, for traffic into the host and through it.
const HOST_CHAIN: &str = "NIMBUS-HOST";
const EGRESS_CHAIN: &str = "NIMBUS-EGRESS";
/// The edges of every server on the host, one rule each, added by each server and
/// never rewritten: another server starting must not close this one's edge.
const EDGES_CHAIN: &str = "NIMBUS-EDGES";

/// Ranges no sandbox or task reaches unless allowed: this network and loopback,
/// private and shared address space, link-local (cloud metadata services),
/// protocol assignments, benchmarking, multicast and reserved.
const CLOSED_V4: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];
/// Unspecified, loopback, IPv4-mapped, unique local, link-local and multicast.
const CLOSED_V6: &[&str] = &[
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// The name servers of `resolv_conf` that are not loopback: sandboxes and tasks
/// resolve names through the host's resolvers, often on a private address.
fn resolvers(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|address| address.trim().parse::<IpAddr>().ok())
        .filter(|address| !address.is_loopback())
        .collect()
}

impl Egress {
    /// Whether traffic leaving for `ip` is allowed: opened by the operator, or outside
    /// the ranges closed by default (private, loopback, link-local, ...). For
    /// connections nimbus makes on someone's behalf (SNS's HTTP deliveries).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        let closed = if ip.is_ipv4() { CLOSED_V4 } else { CLOSED_V6 };
        !closed
            .iter()
            .filter_map(|net| net.parse::<IpNet>().ok())
            .any(|net| net.contains(&ip))
    }

    /// The `iptables-restore` input that (re)writes both chains for one address
    /// family; `resolvers` are the host's name servers.
    fn rules(&self, v6: bool, resolvers: &[IpAddr]) -> String {
        let family = |net: &IpNet| matches!(net, IpNet::V6(_)) == v6;
        let allow: Vec<String> = self
            .allow
            .iter()
            .filter(|net| family(net))
            .map(IpNet::to_string)
            .collect();
        let dns: Vec<String> = resolvers
            .iter()
            .filter(|address| address.is_ipv6() == v6)
            .map(IpAddr::to_string)
            .collect();
        let mut lines = vec![
            "*filter".to_owned(),
            format!(":{HOST_CHAIN} - [0:0]"),
            format!(":{EGRESS_CHAIN} - [0:0]"),
        ];
        // Into the host: replies, nimbus's edge, name servers, what was opened.
        lines.push(format!(
            "-A {HOST_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
        ));
        lines.push(format!("-A {HOST_CHAIN} -j {EDGES_CHAIN}"));
        if v6 {
            // Neighbour discovery.
            lines.push(format!("-A {HOST_CHAIN} -p ipv6-icmp -j RETURN"));
        }
        // Through the host: replies and published ports (destination rewritten by a
        // port mapping), name servers, what was opened, then nothing closed.
        lines.push(format!(
            "-A {EGRESS_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j RETURN"
        ));
        for chain in [HOST_CHAIN, EGRESS_CHAIN] {
            for server in &dns {
                for protocol in ["udp", "tcp"] {
                    lines.push(format!(
                        "-A {chain} -d {server} -p {protocol} --dport 53 -j RETURN"
                    ));
                }
            }
            for net in &allow {
                lines.push(format!("-A {chain} -d {net} -j RETURN"));
            }
        }
        lines.push(format!("-A {HOST_CHAIN} -j REJECT"));
        for net in if v6 { CLOSED_V6 } else { CLOSED_V4 } {
            lines.push(format!("-A {EGRESS_CHAIN} -d {net} -j REJECT"));
        }
        lines.push("COMMIT".to_owned());
        lines.join("\n") + "\n"
    }

    /// Writes the chains and sends what enters the host on `interface` (an
    /// iptables name, `+` a wildcard) through them; with `between_allowed`, traffic
    /// from one such interface to another (containers on one bridge, as Docker lets
    /// them talk) is left to the rules that were there. Both address families, IPv6
    /// where ip6tables exists (sandbox links have IPv6 link-local addresses).
    pub async fn enforce(&self, interface: &str, between_allowed: bool) -> io::Result<()> {
        // The sandboxes' and the tasks' policies are set up at the same time: one at
        // a time, so that a rule checked absent is added once.
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _turn = ONE_AT_A_TIME.lock().await;
        let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolvers = resolvers(&resolv_conf);
        for (tool, v6) in [("iptables", false), ("ip6tables", true)] {
            let Some(iptables) = on_path(tool) else {
                if v6 {
                    continue;
                }
                return Err(io::Error::other("iptables is not installed"));
            };
            let restore = on_path(&format!("{tool}-restore"))
                .ok_or_else(|| io::Error::other(format!("{tool}-restore is not installed")))?;
            // The edges' chain is made here (it exists already when another server
            // made it) and never declared to iptables-restore, which would empty it.
            let _ = run(&iptables, &["-w", "-t", "filter", "-N", EDGES_CHAIN], None).await;
            let port = self.edge.port().to_string();
            let edge = self.edge.ip();
            let mut rule = vec![EDGES_CHAIN];
            let address = edge.to_string();
            if !edge.is_unspecified() && edge.is_ipv6() == v6 {
                rule.extend(["-d", &address]);
            }
            rule.extend(["-p", "tcp", "--dport", &port, "-j", "ACCEPT"]);
            ensure_rule(&iptables, "filter", false, &rule).await?;
            // Declaring a chain of its own with --noflush empties just that chain:
            // the whole policy changes at once.
            run(
                &restore,
                &["-w", "--noflush"],
                Some(self.rules(v6, &resolvers)),
            )
            .await?;
            ensure_rule(
                &iptables,
                "filter",
                true,
                &["INPUT", "-i", interface, "-j", HOST_CHAIN],
            )
            .await?;
            let mut forward = vec!["FORWARD", "-i", interface];
            if between_allowed {
                forward.extend(["!", "-o", interface]);
            }
            forward.extend(["-j", EGRESS_CHAIN]);
            ensure_rule(&iptables, "filter", true, &forward).await?;
        }
        Ok(())
    }
}

impl Network {
    /// Finds the tools and sets up the host once: forwarding and NAT for sandbox
    /// traffic, none between sandboxes, and the egress policy. Without iptables
    /// sandboxes reach nimbus but not beyond.
    pub async fn open(egress: &Egress) -> io::Result<Self> {
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
                // Checked first, before the rules that let sandbox traffic out.
                result.and(egress.enforce(&between, false).await)
            }
            None => Err(io::Error::other("iptables is not installed")),
        };
        if let Err(err) = outside {
            // Without the policy nothing may leave: a sandbox keeps its loopback,
            // through which it reaches nimbus.
            tracing::warn!(
                error = %err,
                "sandboxes get no network beyond nimbus (install iptables)"
            );
            return Err(err);
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
        // Asked of the kernel in nimbus's own network namespace: /sys/class/net may
        // describe another one (a node started with `nsenter --net` keeps the host's
        // /sys).
        let index = nix::net::if_::if_nametoindex(host_end.as_str()).map_err(io::Error::from)?;
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

/// A client for one connection nimbus makes on someone's behalf (an SNS delivery, an
/// API's JWKS): the URL's host is resolved once, to the first address `permits`
/// allows, and the client connects to that address only, so a second lookup cannot
/// lead it elsewhere. Redirects are not followed.
pub async fn pinned_client(
    url: &str,
    permits: &(dyn Fn(IpAddr) -> bool + Send + Sync),
    timeout: std::time::Duration,
) -> Result<(reqwest::Client, reqwest::Url), String> {
    let url = reqwest::Url::parse(url).map_err(|err| format!("{url} is not a URL: {err}"))?;
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addresses: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(found) => found.collect(),
        Err(_) => Vec::new(),
    };
    let address = addresses
        .into_iter()
        .find(|a| permits(a.ip()))
        .ok_or_else(|| format!("{host} is not reachable under the egress policy"))?;
    // No proxy: one would look the name up again, past the check.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, address)
        .build()
        .map_err(|err| err.to_string())?;
    Ok((client, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_opens_the_edge_resolvers_and_what_was_allowed_and_closes_the_rest() {
        let egress = Egress {
            edge: "0.0.0.0:4566".parse().unwrap(),
            allow: vec!["10.9.0.0/16".parse().unwrap(), "fd00::/8".parse().unwrap()],
        };
        let resolvers = resolvers("# x\nnameserver 10.255.255.53\nnameserver 127.0.0.53\n");
        assert_eq!(resolvers, ["10.255.255.53".parse::<IpAddr>().unwrap()]);
        let v4 = egress.rules(false, &resolvers);
        let lines: Vec<&str> = v4.lines().collect();
        let at = |rule: &str| {
            lines
                .iter()
                .position(|line| *line == rule)
                .unwrap_or_else(|| panic!("{rule} missing from\n{v4}"))
        };
        assert!(at("-A NIMBUS-HOST -j NIMBUS-EDGES") < at("-A NIMBUS-HOST -j REJECT"));
        let opened = at("-A NIMBUS-EGRESS -d 10.9.0.0/16 -j RETURN");
        let dns = at("-A NIMBUS-EGRESS -d 10.255.255.53 -p udp --dport 53 -j RETURN");
        let closed = at("-A NIMBUS-EGRESS -d 10.0.0.0/8 -j REJECT");
        assert!(opened < closed && dns < closed);
        at("-A NIMBUS-EGRESS -d 169.254.0.0/16 -j REJECT");
        assert!(!v4.contains("fd00::"), "IPv6 ranges stay out of iptables");
        let v6 = egress.rules(true, &resolvers);
        assert!(v6.contains("-A NIMBUS-EGRESS -d fd00::/8 -j RETURN"));
        assert!(v6.contains("-A NIMBUS-EGRESS -d fe80::/10 -j REJECT"));
        assert!(!v6.contains("10.9.0.0"));
    }
}
