//! Test hosts with addresses a real API server accepts in EndpointSlices: network
//! namespaces (`ip netns`) joined by veth pairs to a bridge on the host, on a private /24
//! of `10.213.0.0/16` that no address or route of the machine overlaps. The host side of
//! the bridge is `.1`, plus any addresses the host serves on it (the backends'); the
//! operator and the test reach the namespaces through it, and the namespaces reach the
//! host's addresses. Nothing is routed beyond the bridge.
//!
//! Every name carries the test process's id (`weir-e2e-<pid>-…` for namespaces,
//! `we2e-<pid>-…` for links), so [`clean_leftovers`] can tell the leftovers of a crashed
//! run (a dead pid) from a run in progress.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

use ipnet::{IpNet, Ipv4Net};

/// Prefix of every network namespace the suite creates.
pub const NETNS_PREFIX: &str = "weir-e2e-";
/// Prefix of every link (bridge, veth) the suite creates; links have at most 15 bytes.
pub const LINK_PREFIX: &str = "we2e-";
/// The /16 the suite takes its /24s from.
const POOL: [u8; 2] = [10, 213];

/// What went wrong setting up or tearing down test hosts.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A command could not be started at all.
    #[error("running {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// A command exited with an error.
    #[error("{command} failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// `ip -j` printed something that is not the JSON it documents.
    #[error("reading the output of {command}: {source}")]
    Output {
        /// The command line.
        command: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Every /24 of the pool overlaps an address or route of this machine.
    #[error("no /24 of 10.213.0.0/16 is free on this machine")]
    NoFreeSubnet,
}

/// Runs `ip` with `args`, returning its stdout.
pub fn ip(args: &[&str]) -> Result<String, NetError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(NetError::Failed {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ip_json(args: &[&str]) -> Result<Vec<serde_json::Value>, NetError> {
    let text = ip(args)?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&text).map_err(|source| NetError::Output {
        command: format!("ip {}", args.join(" ")),
        source,
    })
}

/// Third octets handed out by this process, so two networks of one run never share a /24
/// even before the first one's addresses show in `ip addr`.
static TAKEN: Mutex<BTreeSet<u8>> = Mutex::new(BTreeSet::new());

/// Networks this process has made, for unique link names.
static NETWORKS: Mutex<u32> = Mutex::new(0);

/// Every network the machine has an address in or a route to.
fn networks_in_use() -> Result<Vec<IpNet>, NetError> {
    let mut used = Vec::new();
    for address in ip_json(&["-j", "addr", "show"])? {
        for info in address["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (info["local"].as_str(), info["prefixlen"].as_u64())
            else {
                continue;
            };
            if let Ok(net) = format!("{local}/{len}").parse::<IpNet>() {
                used.push(net.trunc());
            }
        }
    }
    for route in ip_json(&["-j", "route", "show", "table", "all"])? {
        let Some(dst) = route["dst"].as_str() else {
            continue;
        };
        let net = dst
            .parse::<IpNet>()
            .or_else(|_| dst.parse::<std::net::IpAddr>().map(IpNet::from));
        // `default` does not parse and is left out: it is reached through a gateway, and
        // a more specific route or address would still show a /24 in use.
        if let Ok(net) = net {
            used.push(net);
        }
    }
    Ok(used)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A free /24 of the pool.
fn free_subnet() -> Result<Ipv4Net, NetError> {
    let used = networks_in_use()?;
    let mut taken = TAKEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for third in 0..=u8::MAX {
        if taken.contains(&third) {
            continue;
        }
        let candidate = Ipv4Net::new(Ipv4Addr::new(POOL[0], POOL[1], third, 0), 24)
            .expect("a /24 is a valid prefix");
        if used.iter().any(|net| overlaps(net, &IpNet::V4(candidate))) {
            continue;
        }
        taken.insert(third);
        return Ok(candidate);
    }
    Err(NetError::NoFreeSubnet)
}

/// A network namespace on the suite's bridge.
#[derive(Clone, Debug)]
pub struct Host {
    /// The namespace's name (`ip netns exec <name> …`).
    pub netns: String,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
}

/// A bridge on the host with a /24 of its own, and the network namespaces attached to it.
/// Dropping it kills every process left in its namespaces and deletes the namespaces, the
/// veth pairs and the bridge.
pub struct Network {
    subnet: Ipv4Net,
    /// `we2e-<pid>-<n>`: the bridge's name; veths append a character to it.
    link_base: String,
    /// `weir-e2e-<pid>-<n>`: namespaces append `-<role>` to it.
    netns_base: String,
    hosts: Vec<Host>,
}

impl Network {
    /// Creates the bridge on a free /24, its host side `.1`.
    pub fn create() -> Result<Self, NetError> {
        let subnet = free_subnet()?;
        let number = {
            let mut networks = NETWORKS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *networks += 1;
            *networks
        };
        let pid = std::process::id();
        // Links have at most 15 bytes: `we2e-` + 7 pid digits + `-` + base 36 + 1 = 15.
        let link_base = format!("{LINK_PREFIX}{pid}-{}", base36(number));
        let network = Self {
            subnet,
            netns_base: format!("{NETNS_PREFIX}{pid}-{number}"),
            link_base,
            hosts: Vec::new(),
        };
        let bridge = network.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", network.address(1)),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(network)
    }

    fn bridge(&self) -> String {
        format!("{}b", self.link_base)
    }

    /// The address `.last` of the network's /24.
    pub fn address(&self, last: u8) -> Ipv4Addr {
        let [a, b, c, _] = self.subnet.network().octets();
        Ipv4Addr::new(a, b, c, last)
    }

    /// Creates the namespace `<base>-<role>` with the address `.last` on a veth to the
    /// bridge (and loopback up).
    pub fn add_host(&mut self, role: &str, last: u8) -> Result<Host, NetError> {
        let netns = format!("{}-{role}", self.netns_base);
        let veth = format!("{}{}", self.link_base, base36(self.hosts.len() as u32));
        ip(&["netns", "add", &netns])?;
        // Recorded before it is complete, so a failure below still tears it down.
        let host = Host {
            netns: netns.clone(),
            address: self.address(last),
        };
        self.hosts.push(host.clone());
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge(), "up"])?;
        let inside = |args: &[&str]| {
            let mut full = vec!["-n", netns.as_str()];
            full.extend_from_slice(args);
            ip(&full)
        };
        inside(&[
            "addr",
            "add",
            &format!("{}/24", host.address),
            "dev",
            "eth0",
        ])?;
        inside(&["link", "set", "eth0", "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// Adds the address `.last` to the host side of the bridge (a backend's address).
    pub fn add_local_address(&self, last: u8) -> Result<Ipv4Addr, NetError> {
        let address = self.address(last);
        ip(&[
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            &self.bridge(),
        ])?;
        Ok(address)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            delete_netns(&host.netns);
        }
        // Deleting a namespace deletes its veth end, and with it the pair.
        let _ = ip(&["link", "del", &self.bridge()]);
        if let Some(third) = self.subnet.network().octets().get(2) {
            TAKEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(third);
        }
    }
}

fn base36(n: u32) -> char {
    char::from_digit(n % 36, 36).expect("a base 36 digit")
}

/// Kills every process in `netns` and deletes it.
fn delete_netns(netns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", netns]) {
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            crate::process::kill(pid);
        }
    }
    let _ = ip(&["netns", "del", netns]);
}

/// The pid a suite name (`weir-e2e-<pid>-…`, `we2e-<pid>-…`) carries.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.split('-').next()?.parse().ok()
}

/// Whether the process `pid` exists.
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what a crashed run (a test process that no longer exists) left behind: its
/// processes (tagged with [`crate::process::RUN_ENV`]), network namespaces and links.
/// Runs of live processes are left alone.
pub fn clean_leftovers() -> Result<(), NetError> {
    clean(|run| !alive(run))
}

/// Removes everything this run made: for an interrupted run, whose guards never drop.
pub fn clean_this_run() -> Result<(), NetError> {
    let own = std::process::id();
    clean(|run| run == own)
}

/// Kills the processes and deletes the namespaces and links of the runs `of` selects.
fn clean(of: impl Fn(u32) -> bool) -> Result<(), NetError> {
    crate::process::kill_runs(&of);
    for line in ip(&["netns", "list"])?.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if owner_pid(name, NETNS_PREFIX).is_some_and(&of) {
            delete_netns(name);
        }
    }
    for link in ip_json(&["-j", "link", "show"])? {
        let Some(name) = link["ifname"].as_str() else {
            continue;
        };
        // A veth shows as `name@ifN`.
        let name = name.split('@').next().unwrap_or(name);
        if owner_pid(name, LINK_PREFIX).is_some_and(&of) {
            let _ = ip(&["link", "del", name]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_run() {
        assert_eq!(owner_pid("weir-e2e-4242-3-proxy", NETNS_PREFIX), Some(4242));
        assert_eq!(owner_pid("we2e-4242-3b", LINK_PREFIX), Some(4242));
        assert_eq!(owner_pid("weir-other", NETNS_PREFIX), None);
    }

    #[test]
    fn overlapping_networks() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(overlaps(&net("10.0.0.0/8"), &net("10.213.4.0/24")));
        assert!(overlaps(&net("10.213.4.7/32"), &net("10.213.4.0/24")));
        assert!(!overlaps(&net("10.213.5.0/24"), &net("10.213.4.0/24")));
    }
}
