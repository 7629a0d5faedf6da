//! Subnet leases: which /30 of the range each sandbox holds, as files on tmpfs, so several
//! providers on one machine never hand out the same subnet and leases vanish at reboot with
//! the namespaces they describe.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use super::Network;
use crate::error::{Error, IoContext, Result};

/// File in a sandbox's directory naming the subnet it leases.
const LEASE_NOTE: &str = "subnet";

impl Network {
    /// Takes a free /30: reuses the lease this owner already holds, else claims a free slot
    /// with an exclusive create, reclaiming leases whose sandbox directory is gone.
    pub(super) fn lease(&self, owner: &Path) -> Result<u32> {
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
    pub(super) fn addresses(&self, index: u32) -> (Ipv4Addr, Ipv4Addr) {
        let base = u32::from(self.cfg.range_base) + index * 4;
        (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
    }

    /// The sandbox address of the subnet `owner` holds a lease on, if any.
    pub(super) fn sandbox_addr_of(&self, owner: &Path) -> Option<Ipv4Addr> {
        Some(self.addresses(self.owned_lease(owner)?).1)
    }

    /// The subnet `owner` holds a lease on. The index is noted in the owner's directory, so
    /// finding it does not read every lease (which made each start cost O(sandboxes)).
    pub(super) fn owned_lease(&self, owner: &Path) -> Option<u32> {
        let index: u32 = fs::read_to_string(owner.join(LEASE_NOTE)).ok()?.trim().parse().ok()?;
        let holder = fs::read_to_string(self.cfg.lease_dir.join(index.to_string())).ok()?;
        (holder == owner.to_string_lossy()).then_some(index)
    }

    pub(super) fn release(&self, owner: &Path) {
        if let Some(index) = self.owned_lease(owner) {
            let _ = fs::remove_file(self.cfg.lease_dir.join(index.to_string()));
        }
        let _ = fs::remove_file(owner.join(LEASE_NOTE));
    }
}
