//! Namespaces, veth pairs, addresses and routes, made in-process over rtnetlink.
//!
//! The network code runs on tokio's blocking pool next to the mounts, so requests are driven
//! to completion with the runtime's `block_on`; their connections live on the runtime.

use std::fs::{self, File};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::UnshareFlags;
use tokio::runtime::Handle as Runtime;

use crate::error::{Error, IoContext, Result};

/// Where named network namespaces live (the place `ip netns` uses too).
pub(super) const NETNS_DIR: &str = "/run/netns";
/// The sandbox side of every veth pair.
const SANDBOX_IF: &str = "eth0";

/// A route netlink connection to the host's network namespace.
#[derive(Debug, Clone)]
pub(super) struct Links {
    host: Handle,
    runtime: Runtime,
}

/// One end of a sandbox's veth pair and its /30.
pub(super) struct Veth<'a> {
    pub netns: &'a str,
    pub host_if: &'a str,
    pub host_addr: Ipv4Addr,
    pub sandbox_addr: Ipv4Addr,
}

fn netlink(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let action = action.into();
    move |e| Error::Netlink {
        action,
        source: match e {
            rtnetlink::Error::NetlinkError(message) => message.to_io(),
            other => io::Error::other(other.to_string()),
        },
    }
}

impl Links {
    /// Opens the host connection. Must run inside the tokio runtime (the blocking pool counts).
    pub fn connect() -> Result<Links> {
        let runtime = Runtime::try_current()
            .map_err(|e| Error::Provider(format!("sandbox networks need a tokio runtime: {e}")))?;
        let (connection, host, _) = rtnetlink::new_connection().ctx(|| "open a route netlink socket".into())?;
        runtime.spawn(connection);
        // `ip netns` makes the namespace directory a shared mount point of its own; sandbox
        // processes detach it (one unmount instead of one per namespace), which needs the same.
        fs::create_dir_all(NETNS_DIR).ctx(|| format!("create {NETNS_DIR}"))?;
        if !is_mount_point(NETNS_DIR)? {
            rustix::mount::mount_bind_recursive(NETNS_DIR, NETNS_DIR)
                .map_err(io::Error::from)
                .ctx(|| format!("make {NETNS_DIR} a mount point"))?;
        }
        rustix::mount::mount_change(NETNS_DIR, MountPropagationFlags::SHARED | MountPropagationFlags::REC)
            .map_err(io::Error::from)
            .ctx(|| format!("make {NETNS_DIR} shared"))?;
        Ok(Links { host, runtime })
    }

    /// Every IPv4 address (with the device holding it) and main-table route (with its
    /// device) of the host, default routes excepted.
    pub fn host_networks(&self) -> Result<Vec<(String, Ipv4Addr, u8)>> {
        let host = self.host.clone();
        self.runtime.block_on(async move {
            let links: Vec<_> = host
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(netlink("list links"))?;
            let name_of = |index: u32| -> String {
                links
                    .iter()
                    .find(|link| link.header.index == index)
                    .and_then(|link| {
                        link.attributes.iter().find_map(|a| match a {
                            LinkAttribute::IfName(name) => Some(name.clone()),
                            _ => None,
                        })
                    })
                    .unwrap_or_default()
            };
            let mut found = Vec::new();
            let addresses: Vec<_> = host
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(netlink("list addresses"))?;
            for message in addresses {
                for attribute in message.attributes {
                    if let AddressAttribute::Address(IpAddr::V4(addr)) = attribute {
                        found.push((name_of(message.header.index), addr, message.header.prefix_len));
                    }
                }
            }
            let routes: Vec<_> = host
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .map_err(netlink("list routes"))?;
            for route in routes {
                let prefix = route.header.destination_prefix_length;
                if route.header.table != RouteHeader::RT_TABLE_MAIN || prefix == 0 {
                    continue;
                }
                let destination = route.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(addr)) => Some(*addr),
                    _ => None,
                });
                let device = route.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(index) => Some(name_of(*index)),
                    _ => None,
                });
                if let Some(destination) = destination {
                    found.push((device.unwrap_or_default(), destination, prefix));
                }
            }
            Ok(found)
        })
    }

    /// Creates namespace `veth.netns` and wires it to the host: the veth pair, both
    /// addresses, the links up, and the sandbox's default route via the host end.
    pub fn create(&self, veth: &Veth<'_>) -> Result<()> {
        let path = Path::new(NETNS_DIR).join(veth.netns);
        let namespace = self.new_namespace(&path)?;
        let host = self.host.clone();
        let netns = File::open(&path).ctx(|| format!("open network namespace {}", path.display()))?;
        let host_if = veth.host_if.to_string();
        let (host_addr, sandbox_addr) = (veth.host_addr, veth.sandbox_addr);
        self.runtime.block_on(async move {
            let peer = LinkMessageBuilder::<LinkUnspec>::new()
                .name(SANDBOX_IF.to_string())
                .setns_by_fd(netns.as_raw_fd())
                .build();
            let pair = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
                .name(host_if.clone())
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .build();
            host.link()
                .add(pair)
                .execute()
                .await
                .map_err(netlink(format!("create veth pair {host_if}/{SANDBOX_IF}")))?;
            let host_index = index_of(&host, &host_if).await?;
            // The host end needs no IPv6; without a link-local address there is no v6 path to
            // us. The file is the host namespace's: this thread never left it.
            let _ = fs::write(format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"), "1");
            host.address()
                .add(host_index, IpAddr::V4(host_addr), 30)
                .execute()
                .await
                .map_err(netlink(format!("add {host_addr}/30 to {host_if}")))?;
            set_up(&host, host_index, &host_if).await?;

            set_up(&namespace, 1, "lo").await?;
            let sandbox_index = index_of(&namespace, SANDBOX_IF).await?;
            namespace
                .address()
                .add(sandbox_index, IpAddr::V4(sandbox_addr), 30)
                .execute()
                .await
                .map_err(netlink(format!("add {sandbox_addr}/30 to the sandbox's {SANDBOX_IF}")))?;
            set_up(&namespace, sandbox_index, SANDBOX_IF).await?;
            namespace
                .route()
                .add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(host_addr).build())
                .execute()
                .await
                .map_err(netlink(format!("add the sandbox's default route via {host_addr}")))
        })
    }

    /// Makes a network namespace and pins it at `path`, returning a connection into it.
    ///
    /// `unshare` moves only the calling thread, so a short-lived thread makes the namespace;
    /// the bind mount keeps it alive after the thread ends, and the socket opened there stays
    /// in it.
    fn new_namespace(&self, path: &Path) -> Result<Handle> {
        File::create(path).ctx(|| format!("create {}", path.display()))?;
        let runtime = self.runtime.clone();
        let target = path.to_path_buf();
        let made = std::thread::spawn(move || -> Result<Handle> {
            // SAFETY: NEWNET moves only this thread into a new network namespace; it shares
            // nothing (files, fs) with other threads differently afterwards.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }.map_err(|e| Error::Unsupported {
                what: format!("cannot create a network namespace: {}", io::Error::from(e)),
                hint: "the local provider needs CAP_SYS_ADMIN and CAP_NET_ADMIN (run as root)".into(),
            })?;
            rustix::mount::mount("/proc/thread-self/ns/net", &target, "none", MountFlags::BIND, None)
                .map_err(io::Error::from)
                .ctx(|| format!("pin network namespace at {}", target.display()))?;
            let _entered = runtime.enter();
            let (connection, handle, _) =
                rtnetlink::new_connection().ctx(|| "open a route netlink socket in the sandbox namespace".into())?;
            runtime.spawn(connection);
            Ok(handle)
        })
        .join()
        .map_err(|_| Error::Provider("the thread creating a network namespace panicked".into()))?;
        if made.is_err() {
            remove_namespace(path);
        }
        made
    }

    /// Deletes the host end of a veth pair (its peer goes with it); a missing one is fine.
    pub fn delete_link(&self, name: &str) -> Result<()> {
        let host = self.host.clone();
        let message = LinkUnspec::new_with_name(name).build();
        let deleted = self
            .runtime
            .block_on(async move { host.link().del_with_message(message).execute().await });
        match deleted {
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
            other => other.map_err(netlink(format!("delete link {name}"))),
        }
    }
}

/// Unpins and removes a namespace made by [`Links::create`]; the kernel frees it once nothing
/// uses it any more.
pub(super) fn remove_namespace(path: &Path) {
    let _ = rustix::mount::unmount(path, UnmountFlags::DETACH);
    let _ = fs::remove_file(path);
}

fn is_mount_point(path: &str) -> Result<bool> {
    let stat = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::BASIC_STATS,
    )
    .map_err(io::Error::from)
    .ctx(|| format!("stat {path}"))?;
    Ok(stat
        .stx_attributes_mask
        .contains(rustix::fs::StatxAttributes::MOUNT_ROOT)
        && stat.stx_attributes.contains(rustix::fs::StatxAttributes::MOUNT_ROOT))
}

async fn index_of(handle: &Handle, name: &str) -> Result<u32> {
    let link = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(netlink(format!("look up link {name}")))?;
    link.map(|l| l.header.index).ok_or_else(|| Error::Netlink {
        action: format!("look up link {name}"),
        source: io::ErrorKind::NotFound.into(),
    })
}

async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(netlink(format!("set link {name} up")))
}
