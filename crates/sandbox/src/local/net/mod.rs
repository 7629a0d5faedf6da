//! One network namespace per sandbox, wired to the host through a veth pair on its own /30,
//! with a firewall that cuts the sandbox off from the host and from other sandboxes.
//!
//! Layout of sandbox number `i` in the range (10.88.0.0/16 by default): namespace
//! `fa-<short>`, host end `fah-<short>` = 10.88.x.(4i+1), sandbox end `eth0` = 10.88.x.(4i+2),
//! default route via the host end, egress masqueraded.
//!
//! Everything is done in-process over netlink, no `ip` or `nft` process is started:
//! [`links`] makes namespaces, links, addresses and routes (rtnetlink); [`nft`] loads the
//! firewall once and adds or removes one set element per sandbox (nfnetlink); [`lease`] hands
//! out the /30s.

mod lease;
mod links;
mod nft;

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use self::links::{Links, NETNS_DIR, Veth};
use self::nft::{Firewall, HOST_IF_PREFIX, Policy};
use crate::error::{Error, IoContext, Result};

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
            lease_dir: PathBuf::from("/run/forgeai/subnets"),
        }
    }
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
    links: Links,
    firewall: Firewall,
}

impl Network {
    /// Checks that this machine can host sandbox networks and prepares it (once per provider):
    /// root, the range unused by anything else, forwarding on, the firewall loaded. Runs
    /// inside the tokio runtime (its blocking pool included).
    pub fn init(cfg: NetConfig) -> Result<Self> {
        if !rustix::process::geteuid().is_root() {
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
        let mut cfg = cfg;
        if cfg.dns_servers.is_empty() {
            cfg.dns_servers = host_name_servers();
        }
        let firewall = Firewall {
            table: cfg.table.clone(),
        };
        let net = Network {
            links: Links::connect()?,
            firewall,
            cfg,
        };
        net.check_range_unused()?;
        fs::write("/proc/sys/net/ipv4/ip_forward", "1").ctx(|| "enable IPv4 forwarding for sandbox egress".into())?;
        fs::create_dir_all(&net.cfg.lease_dir).ctx(|| format!("create {}", net.cfg.lease_dir.display()))?;
        net.ensure_firewall()?;
        Ok(net)
    }

    /// Refuses to start when an address or route of this machine (other than our own veths)
    /// overlaps the range, since our NAT and drop rules would then break that network.
    fn check_range_unused(&self) -> Result<()> {
        let range = (self.cfg.range_base, self.cfg.range_prefix);
        for (device, addr, prefix) in self.links.host_networks()? {
            if !device.starts_with(HOST_IF_PREFIX) && overlaps(range, (addr, prefix)) {
                return Err(Error::NetworkRangeInUse {
                    range: self.cfg.range(),
                    used_by: format!("{addr}/{prefix} on {device}"),
                });
            }
        }
        Ok(())
    }

    /// Loads the firewall unless it is there; a lock keeps concurrent providers from both
    /// loading it.
    fn ensure_firewall(&self) -> Result<()> {
        let _lock = super::lockfile::lock(&self.cfg.lease_dir.join("nft.lock"))?;
        if self.firewall.is_loaded()? {
            return Ok(());
        }
        self.firewall.load(&Policy {
            range: (self.cfg.range_base, self.cfg.range_prefix),
            blocked: self.cfg.blocked.clone(),
            dns_servers: self.cfg.dns_servers.clone(),
        })
    }

    fn names(short: &str) -> (String, String) {
        (format!("fa-{short}"), format!("{HOST_IF_PREFIX}{short}"))
    }

    /// Gives sandbox `short` (≤ 10 chars) its namespace, veth pair, addresses and rules.
    /// `owner` (the sandbox directory) marks the subnet lease as ours and lets a later run
    /// recognise leases whose sandbox disappeared.
    pub fn setup(&self, short: &str, owner: &Path) -> Result<SandboxNet> {
        let (netns, host_if) = Self::names(short);
        // Leftovers of an earlier run (crash, restart of forgeai without reboot) go first; a
        // fresh sandbox has none, and checking costs two stats.
        if Path::new(NETNS_DIR).join(&netns).exists() || Path::new("/sys/class/net").join(&host_if).exists() {
            self.teardown(short, owner);
        }
        let index = self.lease(owner)?;
        let (host_addr, sandbox_addr) = self.addresses(index);
        let net = SandboxNet {
            netns,
            host_if,
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
        self.links.create(&Veth {
            netns: &net.netns,
            host_if: &net.host_if,
            host_addr: net.host_addr,
            sandbox_addr: net.sandbox_addr,
        })?;
        if let Err(e) = self.firewall.allow(&net.host_if, net.sandbox_addr) {
            // The table can vanish under us (a firewall reload flushing the ruleset): load it
            // again and retry once rather than leave this sandbox without rules.
            tracing::warn!(error = %e, "adding the sandbox's firewall element failed; reloading the firewall");
            self.ensure_firewall()?;
            self.firewall.allow(&net.host_if, net.sandbox_addr)?;
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
        // address through, so it goes first.
        if let Some(addr) = addr
            && let Err(e) = self.firewall.revoke(&host_if, addr)
        {
            tracing::warn!(error = %e, "cannot remove a sandbox's firewall element");
        }
        if Path::new("/sys/class/net").join(&host_if).exists()
            && let Err(e) = self.links.delete_link(&host_if)
        {
            tracing::warn!(error = %e, "cannot remove a sandbox's veth");
        }
        let path = Path::new(NETNS_DIR).join(&netns);
        if path.exists() {
            links::remove_namespace(&path);
        }
    }
}

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
        let elements = match self.firewall.elements() {
            Ok(elements) => elements,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the sandbox firewall's elements");
                return;
            }
        };
        for (host_if, addr) in elements {
            if !Path::new("/sys/class/net").join(&host_if).exists() {
                let _ = self.firewall.revoke(&host_if, addr);
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
        assert!(overlaps(r, (Ipv4Addr::new(10, 88, 3, 4), 30)));
        assert!(overlaps(r, (Ipv4Addr::new(10, 0, 0, 0), 8)));
        assert!(!overlaps(r, (Ipv4Addr::new(10, 89, 0, 0), 16)));
        assert!(!overlaps(r, (Ipv4Addr::new(192, 0, 2, 2), 24)));
        assert!(overlaps(r, (Ipv4Addr::new(10, 88, 0, 1), 32)));
    }
}
