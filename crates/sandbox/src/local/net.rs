//! One network namespace per sandbox, wired to the host through a veth pair on its own /30,
//! with nftables rules that cut the sandbox off from the host and from other sandboxes.
//!
//! Layout of sandbox number `i` in the range (10.88.0.0/16 by default):
//! namespace `fa-<short>`, host end `fah-<short>` = 10.88.x.(4i+1), sandbox end `eth0` =
//! 10.88.x.(4i+2), default route via the host end, egress masqueraded.
//!
//! Firewall (table `inet forgeai`, shared by all sandboxes): traffic *from* a sandbox veth to
//! the host itself is dropped unless it answers a connection the host opened (that is how the
//! preview proxy reaches port 3000); forwarded traffic from a sandbox to the sandbox range or
//! link-local (cloud metadata) is dropped; everything else leaves masqueraded. Each sandbox has
//! its own two chains, hooked in through verdict maps keyed by its veth name, so adding or
//! removing a sandbox never rewrites another's rules; a catch-all drops traffic from any
//! `fah-*` interface that has no chain (yet).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result};

/// Where network namespaces live once `ip netns add` created them.
const NETNS_DIR: &str = "/run/netns";
/// Host-side interface prefix; the nftables catch-all matches on it.
const HOST_IF_PREFIX: &str = "fah-";

/// Network settings of the local provider.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// Base address of the range reserved for sandboxes.
    pub range_base: Ipv4Addr,
    /// Prefix length of the range (at most 29: each sandbox takes a /30).
    pub range_prefix: u8,
    /// Destinations sandboxes may not reach, besides the host itself and the sandbox range.
    /// Defaults to private, shared (CGNAT) and link-local ranges: the machines next to a
    /// self-hosted server (databases, cloud metadata) are exactly what sandboxed code must not
    /// probe. Remove a range if the registries are only reachable through it.
    pub blocked: Vec<(Ipv4Addr, u8)>,
    /// Name servers sandboxes may query on port 53 even inside a blocked range; empty = the
    /// host's non-loopback `nameserver` entries of /etc/resolv.conf.
    pub dns_servers: Vec<Ipv4Addr>,
    /// nftables table (family inet) holding the rules.
    pub table: String,
    /// `ip` binary.
    pub ip: PathBuf,
    /// `nft` binary.
    pub nft: PathBuf,
    /// Where subnet leases are kept; on tmpfs so they vanish with the namespaces at reboot.
    pub lease_dir: PathBuf,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            range_base: Ipv4Addr::new(10, 88, 0, 0),
            range_prefix: 16,
            blocked: vec![
                (Ipv4Addr::new(10, 0, 0, 0), 8),
                (Ipv4Addr::new(172, 16, 0, 0), 12),
                (Ipv4Addr::new(192, 168, 0, 0), 16),
                (Ipv4Addr::new(100, 64, 0, 0), 10),
                // Link-local holds cloud metadata services, which hand out credentials.
                (Ipv4Addr::new(169, 254, 0, 0), 16),
            ],
            dns_servers: Vec::new(),
            table: "forgeai".into(),
            ip: find_tool("ip"),
            nft: find_tool("nft"),
            lease_dir: PathBuf::from("/run/forgeai/subnets"),
        }
    }
}

fn find_tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

impl NetConfig {
    fn range(&self) -> String {
        format!("{}/{}", self.range_base, self.range_prefix)
    }

    fn slots(&self) -> u32 {
        1u32 << (30 - self.range_prefix.min(30) as u32)
    }
}

/// The network of one running sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNet {
    pub netns: String,
    pub host_if: String,
    pub index: u32,
    pub host_addr: Ipv4Addr,
    pub sandbox_addr: Ipv4Addr,
}

impl SandboxNet {
    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }
}

/// Host-wide network state shared by all sandboxes of a provider.
#[derive(Debug, Clone)]
pub struct Network {
    cfg: NetConfig,
}

impl Network {
    /// Checks that this machine can host sandbox networks and prepares it (once per provider):
    /// root, tools present, the range unused by anything else, forwarding on, base table there.
    pub fn init(cfg: NetConfig) -> Result<Self> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::Unsupported {
                what: "creating network namespaces, mounts and cgroups needs root".into(),
                hint: "run forgeai as root (or in a container with CAP_SYS_ADMIN and CAP_NET_ADMIN), or use a cloud sandbox provider".into(),
            });
        }
        if cfg.range_prefix > 29 || cfg.range_prefix < 8 {
            return Err(Error::NetworkRangeInUse {
                range: cfg.range(),
                used_by: "an invalid prefix (use /8 to /29)".into(),
            });
        }
        for tool in [&cfg.ip, &cfg.nft] {
            if !tool.exists() {
                return Err(Error::Unsupported {
                    what: format!("{} is not installed", tool.display()),
                    hint: "run scripts/setup.sh (Debian packages iproute2, nftables, bubblewrap)".into(),
                });
            }
        }
        let mut cfg = cfg;
        if cfg.dns_servers.is_empty() {
            cfg.dns_servers = host_name_servers();
        }
        let net = Network { cfg };
        net.check_range_unused()?;
        fs::write("/proc/sys/net/ipv4/ip_forward", "1").ctx(|| "enable IPv4 forwarding for sandbox egress".into())?;
        fs::create_dir_all(&net.cfg.lease_dir).ctx(|| format!("create {}", net.cfg.lease_dir.display()))?;
        net.ensure_table()?;
        Ok(net)
    }

    /// Refuses to start when an address or route of this machine (other than our own veths)
    /// overlaps the range, since our NAT and drop rules would then break that network.
    fn check_range_unused(&self) -> Result<()> {
        let range = (self.cfg.range_base, self.cfg.range_prefix);
        let addrs = run(&self.cfg.ip, &["-o", "-4", "addr", "show"], None)?;
        for line in addrs.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dev = fields.get(1).copied().unwrap_or("");
            let Some(pos) = fields.iter().position(|f| *f == "inet") else {
                continue;
            };
            let Some(cidr) = fields.get(pos + 1).and_then(|c| parse_cidr(c)) else {
                continue;
            };
            if !dev.starts_with(HOST_IF_PREFIX) && device_exists(dev) && overlaps(range, cidr) {
                return Err(Error::NetworkRangeInUse {
                    range: self.cfg.range(),
                    used_by: format!("address {} on {dev}", fields[pos + 1]),
                });
            }
        }
        let routes = run(&self.cfg.ip, &["-4", "route", "show"], None)?;
        for line in routes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(dst) = fields.first() else { continue };
            if *dst == "default" {
                continue;
            }
            let Some(cidr) = parse_cidr(dst) else { continue };
            let dev = fields
                .iter()
                .position(|f| *f == "dev")
                .and_then(|i| fields.get(i + 1))
                .copied()
                .unwrap_or("");
            if !dev.starts_with(HOST_IF_PREFIX) && device_exists(dev) && overlaps(range, cidr) {
                return Err(Error::NetworkRangeInUse {
                    range: self.cfg.range(),
                    used_by: format!("route {line:?}"),
                });
            }
        }
        Ok(())
    }

    /// Creates the shared table once; a lock keeps concurrent providers from both creating it.
    fn ensure_table(&self) -> Result<()> {
        let _lock = super::lockfile::lock(&self.cfg.lease_dir.join("nft.lock"))?;
        let t = &self.cfg.table;
        let listed = Command::new(&self.cfg.nft)
            .args(["list", "table", "inet", t])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .output();
        let listed = listed
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
        if listed.as_deref().is_some_and(|table| table.contains("sb_addrs")) {
            return Ok(());
        }
        let range = self.cfg.range();
        let mut blocked = vec![range.clone()];
        blocked.extend(self.cfg.blocked.iter().map(|(a, p)| format!("{a}/{p}")));
        let dns = if self.cfg.dns_servers.is_empty() {
            String::new()
        } else {
            let servers = self
                .cfg
                .dns_servers
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            format!(
                "    ip daddr {{ {servers} }} udp dport 53 accept\n    ip daddr {{ {servers} }} tcp dport 53 accept\n"
            )
        };
        // One rule set for all sandboxes; a sandbox is only an element of `sb_addrs` (its host
        // interface and its address). Per-sandbox chains made every change validate the whole
        // table, which grew with the sandbox count.
        let recreate = if listed.is_some() {
            format!("delete table inet {t}\n")
        } else {
            String::new()
        };
        let script = format!(
            r#"{recreate}table inet {t} {{
  set sb_addrs {{ type ifname . ipv4_addr ; }}
  chain input {{
    type filter hook input priority filter - 5 ; policy accept ;
    iifname "{HOST_IF_PREFIX}*" ct state established,related accept
    iifname "{HOST_IF_PREFIX}*" counter drop
  }}
  chain forward {{
    type filter hook forward priority filter - 5 ; policy accept ;
    iifname "{HOST_IF_PREFIX}*" jump from_sandbox
    oifname "{HOST_IF_PREFIX}*" ct state established,related accept
    oifname "{HOST_IF_PREFIX}*" drop
  }}
  chain from_sandbox {{
    meta nfproto ipv6 drop
    iifname . ip saddr != @sb_addrs drop
{dns}    ip daddr {{ {blocked} }} counter drop
    accept
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat ; policy accept ;
    ip saddr {range} ip daddr != {range} masquerade
  }}
}}
"#,
            blocked = blocked.join(", ")
        );
        run(&self.cfg.nft, &["-f", "-"], Some(&script)).map(|_| ())
    }

    fn names(short: &str) -> (String, String) {
        (format!("fa-{short}"), format!("{HOST_IF_PREFIX}{short}"))
    }

    /// Gives sandbox `short` (≤ 10 chars) its namespace, veth pair, addresses and rules.
    /// `owner` (the sandbox directory) marks the subnet lease as ours and lets a later run
    /// recognise leases whose sandbox disappeared.
    pub fn setup(&self, short: &str, owner: &Path) -> Result<SandboxNet> {
        let (netns, host_if) = Self::names(short);
        // Leftovers of an earlier run (crash, restart of forgeai without reboot) go first. A
        // fresh sandbox has none, and checking costs two stats instead of six nft calls; stray
        // chains without a namespace are handled by the idempotent rule batch below.
        if Path::new(NETNS_DIR).join(&netns).exists() || Path::new("/sys/class/net").join(&host_if).exists() {
            self.teardown(short, owner);
        }
        let index = self.lease(owner)?;
        let (host_addr, sandbox_addr) = self.addresses(index);
        let net = SandboxNet {
            netns: netns.clone(),
            host_if: host_if.clone(),
            index,
            host_addr,
            sandbox_addr,
        };
        if let Err(e) = self.create(&net) {
            self.teardown(short, owner);
            return Err(e);
        }
        Ok(net)
    }

    fn create(&self, net: &SandboxNet) -> Result<()> {
        let SandboxNet {
            netns,
            host_if,
            host_addr,
            sandbox_addr,
            ..
        } = net;
        let host_batch = format!(
            "netns add {netns}\nlink add {host_if} type veth peer name eth0 netns {netns}\naddr add {host_addr}/30 dev {host_if}\nlink set {host_if} up\n"
        );
        run(&self.cfg.ip, &["-batch", "-"], Some(&host_batch)).map_err(|e| match e {
            Error::Tool { stderr, .. } if stderr.contains("Operation not permitted") => Error::Unsupported {
                what: format!("cannot create network namespace {netns}: {stderr}"),
                hint: "the local provider needs CAP_SYS_ADMIN and CAP_NET_ADMIN (run as root)".into(),
            },
            e => e,
        })?;
        // The host end needs no IPv6; without a link-local address there is no v6 path to us.
        let _ = fs::write(format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"), "1");
        let ns_batch = format!(
            "link set lo up\naddr add {sandbox_addr}/30 dev eth0\nlink set eth0 up\nroute add default via {host_addr}\n"
        );
        run(&self.cfg.ip, &["-n", netns, "-batch", "-"], Some(&ns_batch))?;
        let t = &self.cfg.table;
        let rules = format!("add element inet {t} sb_addrs {{ \"{host_if}\" . {sandbox_addr} }}\n");
        if let Err(e) = run(&self.cfg.nft, &["-f", "-"], Some(&rules)) {
            // The base table can vanish under us (a firewall reload flushing the ruleset):
            // rebuild it and try once more rather than leave this sandbox without rules.
            tracing::warn!(error = %e, "adding sandbox firewall rules failed; recreating table {t}");
            self.ensure_table()?;
            run(&self.cfg.nft, &["-f", "-"], Some(&rules))?;
        }
        Ok(())
    }

    /// Removes everything `setup` made (best effort: each part is removed independently so a
    /// half-built network is cleaned as well).
    pub fn teardown(&self, short: &str, owner: &Path) {
        self.remove_devices(short, self.sandbox_addr_of(owner));
        self.release(owner);
    }

    /// Removes the firewall element (for the sandbox address `addr`, when known), the veth and
    /// the namespace of sandbox `short`; each independently, so a half-built network goes too.
    fn remove_devices(&self, short: &str, addr: Option<Ipv4Addr>) {
        let (netns, host_if) = Self::names(short);
        // Leaving a stale element would let a later sandbox on the same interface name and
        // address through, so it goes first; absent elements are fine.
        if let Some(addr) = addr {
            self.delete_element(&host_if, &addr.to_string());
        }
        if Path::new("/sys/class/net").join(&host_if).exists() {
            let _ = run(&self.cfg.ip, &["link", "del", &host_if], None);
        }
        if Path::new(NETNS_DIR).join(&netns).exists() {
            let _ = run(&self.cfg.ip, &["netns", "del", &netns], None);
        }
    }

    fn delete_element(&self, host_if: &str, addr: &str) {
        let t = &self.cfg.table;
        let rule = format!("delete element inet {t} sb_addrs {{ \"{host_if}\" . {addr} }}\n");
        let _ = run(&self.cfg.nft, &["-f", "-"], Some(&rule));
    }

    /// Takes a free /30: reuses the lease this owner already holds, else claims a free slot
    /// with an exclusive create, reclaiming leases whose sandbox directory is gone.
    fn lease(&self, owner: &Path) -> Result<u32> {
        let owner_s = owner.to_string_lossy().into_owned();
        if let Some(i) = self.owned_lease(owner) {
            return Ok(i);
        }
        let slots = self.cfg.slots();
        let start = rand::random_range(0..slots);
        for k in 0..slots {
            let i = (start + k) % slots;
            let path = self.cfg.lease_dir.join(i.to_string());
            for attempt in 0..2 {
                match OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut f) => {
                        let noted = f
                            .write_all(owner_s.as_bytes())
                            .ctx(|| format!("write lease {}", path.display()))
                            .and_then(|()| {
                                fs::write(owner.join(LEASE_NOTE), i.to_string())
                                    .ctx(|| format!("note lease in {}", owner.display()))
                            });
                        if let Err(e) = noted {
                            let _ = fs::remove_file(&path);
                            return Err(e);
                        }
                        return Ok(i);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt == 0 => {
                        let holder = fs::read_to_string(&path).unwrap_or_default();
                        // A lease whose sandbox directory vanished belongs to nobody.
                        if !holder.is_empty() && !Path::new(&holder).exists() {
                            let _ = fs::remove_file(&path);
                            continue;
                        }
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => break,
                    Err(e) => return Err(Error::io(format!("create lease {}", path.display()), e)),
                }
            }
        }
        Err(Error::NetworksExhausted {
            range: self.cfg.range(),
            count: slots as usize,
        })
    }

    /// The host end's and the sandbox's address in subnet `index`.
    fn addresses(&self, index: u32) -> (Ipv4Addr, Ipv4Addr) {
        let base = u32::from(self.cfg.range_base) + index * 4;
        (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
    }

    /// The sandbox address of the subnet `owner` holds a lease on, if any.
    fn sandbox_addr_of(&self, owner: &Path) -> Option<Ipv4Addr> {
        Some(self.addresses(self.owned_lease(owner)?).1)
    }

    /// The subnet `owner` holds a lease on. The index is noted in the owner's directory, so
    /// finding it does not read every lease (which made each start cost O(sandboxes)).
    fn owned_lease(&self, owner: &Path) -> Option<u32> {
        let index: u32 = fs::read_to_string(owner.join(LEASE_NOTE)).ok()?.trim().parse().ok()?;
        let holder = fs::read_to_string(self.cfg.lease_dir.join(index.to_string())).ok()?;
        (holder == owner.to_string_lossy()).then_some(index)
    }

    fn release(&self, owner: &Path) {
        if let Some(index) = self.owned_lease(owner) {
            let _ = fs::remove_file(self.cfg.lease_dir.join(index.to_string()));
        }
        let _ = fs::remove_file(owner.join(LEASE_NOTE));
    }
}

/// File in a sandbox's directory naming the subnet it leases.
const LEASE_NOTE: &str = "subnet";

/// A sandbox network found on the machine: from a lease (with the directory holding it), or a
/// namespace or veth that no lease names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub holder: Option<PathBuf>,
    pub index: Option<u32>,
    pub short: String,
}

impl Network {
    /// Every lease, and every sandbox namespace or veth that no lease names.
    pub fn leftovers(&self) -> Vec<Leftover> {
        // Devices first, leases second: a lease is taken before its devices are made, so a
        // device seen here whose lease is not found next is not one being set up right now.
        let names = |dir: &str, prefix: &str| -> Vec<String> {
            fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix(prefix).map(str::to_string))
                .collect()
        };
        let mut unleased: Vec<String> = names(NETNS_DIR, "fa-");
        unleased.extend(names("/sys/class/net", HOST_IF_PREFIX));
        unleased.sort();
        unleased.dedup();
        let mut found: Vec<Leftover> = fs::read_dir(&self.cfg.lease_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let index: u32 = entry.file_name().to_str()?.parse().ok()?;
                let holder = PathBuf::from(fs::read_to_string(entry.path()).ok()?);
                let name = holder.file_name()?.to_str()?;
                let short = name.get(..10).unwrap_or(name).to_string();
                Some(Leftover {
                    holder: Some(holder),
                    index: Some(index),
                    short,
                })
            })
            .collect();
        for short in unleased {
            if !found.iter().any(|l| l.short == short) {
                found.push(Leftover {
                    holder: None,
                    index: None,
                    short,
                });
            }
        }
        found
    }

    /// Removes a network found by [`Network::leftovers`]: firewall element, veth, namespace,
    /// and the lease if it still names the same holder.
    pub fn remove_leftover(&self, leftover: &Leftover) {
        self.remove_devices(&leftover.short, leftover.index.map(|i| self.addresses(i).1));
        if let (Some(index), Some(holder)) = (leftover.index, &leftover.holder) {
            let path = self.cfg.lease_dir.join(index.to_string());
            if fs::read_to_string(&path).is_ok_and(|h| Path::new(&h) == holder) {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// Removes the networks of every lease `owner` holds (its directory may be gone, and with
    /// it the note naming its lease).
    pub fn remove_leases_of(&self, owner: &Path) {
        for leftover in self.leftovers() {
            if leftover.holder.as_deref() == Some(owner) {
                self.remove_leftover(&leftover);
            }
        }
    }

    /// Deletes firewall set elements whose veth no longer exists (a veth is created before
    /// its element and deleted after it, so such an element is stale).
    pub fn remove_stale_elements(&self) {
        let t = &self.cfg.table;
        let Ok(listing) = run(&self.cfg.nft, &["-j", "list", "set", "inet", t, "sb_addrs"], None) else {
            return;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&listing) else {
            return;
        };
        let elements = json["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["set"]["elem"].as_array())
            .flatten();
        for element in elements {
            let concat = element["concat"]
                .as_array()
                .or_else(|| element["elem"]["val"]["concat"].as_array());
            let Some([ifname, addr]) = concat.map(Vec::as_slice) else {
                continue;
            };
            let (Some(ifname), Some(addr)) = (ifname.as_str(), addr.as_str()) else {
                continue;
            };
            if !Path::new("/sys/class/net").join(ifname).exists() {
                self.delete_element(ifname, addr);
            }
        }
    }
}

/// The host's name servers that a sandbox can reach (loopback resolvers cannot be).
pub(crate) fn host_name_servers() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

/// Runs a tool, feeding `stdin`, and returns its stdout; failures carry its stderr.
pub(crate) fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| format!("start `{command}`"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .ctx(|| format!("write to `{command}`"))?;
    }
    let out = child.wait_with_output().ctx(|| format!("wait for `{command}`"))?;
    if !out.status.success() {
        return Err(Error::Tool {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip` names a device that vanished while it listed (a sandbox's veth being deleted by
/// another provider) `if<index>`; such a device uses no range.
fn device_exists(dev: &str) -> bool {
    Path::new("/sys/class/net").join(dev).exists()
}

fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    match s.split_once('/') {
        Some((a, p)) => Some((a.parse().ok()?, p.parse().ok().filter(|p: &u8| *p <= 32)?)),
        None => Some((s.parse().ok()?, 32)),
    }
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let prefix = a.1.min(b.1) as u32;
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(a.0) & mask) == (u32::from(b.0) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_overlap() {
        let r = (Ipv4Addr::new(10, 88, 0, 0), 16);
        assert!(overlaps(r, parse_cidr("10.88.3.4/30").unwrap()));
        assert!(overlaps(r, parse_cidr("10.0.0.0/8").unwrap()));
        assert!(!overlaps(r, parse_cidr("10.89.0.0/16").unwrap()));
        assert!(!overlaps(r, parse_cidr("192.0.2.2/24").unwrap()));
        assert!(overlaps(r, parse_cidr("10.88.0.1").unwrap()));
    }
}
