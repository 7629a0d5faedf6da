//! Removing runtime leftovers: network namespaces, veths, firewall set elements, subnet
//! leases, cgroups and mounts that belong to no loaded sandbox. They stay behind when forgeai
//! is killed, or when a sandbox's directory is removed behind its back; run at start and
//! periodically.
//!
//! What is ours: a lease names the sandbox directory that holds it, so leases, and through
//! them networks and cgroups, are attributed to a data dir even after that directory is gone.
//! Mounts are found under this provider's sandboxes dir. Networks and firewall elements that no
//! lease names at all belong to nobody (a lease is taken before and released after them).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use super::net::Leftover;
use super::{Cgroup, Inner, Phase, blocking, layout, lock, mounts, release_runtime};
use crate::error::Result;
use crate::provider::validate_id;

/// What a reconcile pass removed (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Sandboxes of this data dir whose leftovers were removed.
    pub sandboxes: Vec<String>,
    /// Networks (namespace, veth, firewall element, lease) of sandboxes no data dir has.
    pub orphan_networks: usize,
}

impl Inner {
    pub(super) async fn reconcile(self: &Arc<Self>) -> Result<Reconciled> {
        let mut report = Reconciled::default();
        // Another provider manages this data dir's sandboxes; what looks unloaded here is
        // theirs.
        if self.owner_lock.is_none() {
            return Ok(report);
        }
        let this = self.clone();
        let (ours, orphans) = blocking(move || Ok(this.find_leftovers())).await?;
        for id in ours {
            // A sandbox whose directory still exists could be loaded meanwhile: hold its
            // lifecycle lock while cleaning, and leave it alone if it is loaded or busy.
            let slot = self.slot(&id).ok();
            let dirs = slot.as_ref().map(|s| s.dirs.clone());
            let guard = match &slot {
                Some(slot) => match slot.life.try_lock() {
                    Ok(life) if life.phase == Phase::Unloaded => Some(life),
                    _ => continue,
                },
                None => None,
            };
            let this = self.clone();
            let id2 = id.clone();
            blocking(move || {
                this.remove_runtime_of(&id2, dirs);
                Ok(())
            })
            .await?;
            drop(guard);
            report.sandboxes.push(id);
        }
        let this = self.clone();
        report.orphan_networks = blocking(move || {
            let n = orphans.len();
            for leftover in orphans {
                this.net.remove_leftover(&leftover);
                // The lease named a sandbox directory that is gone: its cgroup is garbage too.
                let id = leftover
                    .holder
                    .as_deref()
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str());
                if let Some(id) = id.filter(|id| validate_id(id).is_ok()) {
                    let _ = Cgroup::new(this.cgroups.clone(), id).destroy();
                }
            }
            this.net.remove_stale_elements();
            Ok(n)
        })
        .await?;
        if !report.sandboxes.is_empty() || report.orphan_networks > 0 {
            tracing::info!(?report, "removed leftovers of sandboxes that are not loaded");
        }
        Ok(report)
    }

    /// Ids of this data dir's sandboxes that have runtime state but are not loaded here, and
    /// networks that belong to no sandbox at all.
    fn find_leftovers(&self) -> (BTreeSet<String>, Vec<Leftover>) {
        let loaded: BTreeSet<String> = lock(&self.slots)
            .values()
            .filter(|s| s.life.try_lock().map_or(true, |l| l.phase != Phase::Unloaded))
            .map(|s| s.id.clone())
            .collect();
        let mut ours = BTreeSet::new();
        let mut orphans = Vec::new();
        for leftover in self.net.leftovers() {
            match leftover.holder.as_deref().and_then(|h| self.sandbox_id_of(h)) {
                Some(id) => {
                    ours.insert(id);
                }
                None if leftover.holder.as_deref().is_none_or(|h| !h.exists()) => orphans.push(leftover),
                None => {}
            }
        }
        for mount in mounts::mounts_beneath(&self.sandboxes_dir) {
            if let Some(id) = self.sandbox_id_of(&mount) {
                ours.insert(id);
            }
        }
        // Cgroups are named by sandbox id only; those of sandboxes with a directory here are ours.
        for id in Cgroup::ids(&self.cgroups) {
            if self.sandboxes_dir.join(&id).is_dir() {
                ours.insert(id);
            }
        }
        ours.retain(|id| !loaded.contains(id));
        (ours, orphans)
    }

    /// The sandbox id of a path under this provider's sandboxes dir.
    fn sandbox_id_of(&self, path: &Path) -> Option<String> {
        let rest = path.strip_prefix(&self.sandboxes_dir).ok()?;
        let id = rest.components().next()?.as_os_str().to_str()?.to_string();
        validate_id(&id).ok().map(|_| id)
    }

    /// Stops and removes whatever runs for sandbox `id`; its files stay.
    fn remove_runtime_of(&self, id: &str, dirs: Option<layout::Dirs>) {
        let dirs = dirs.unwrap_or_else(|| layout::Dirs::new(&self.sandboxes_dir, id, true));
        let cgroup = Cgroup::new(self.cgroups.clone(), id);
        if let Err(e) = release_runtime(&cgroup, &dirs, &self.net, &id[..id.len().min(10)]) {
            tracing::warn!(%id, error = %e, "cannot remove all leftovers of sandbox");
        }
        // Its directory may be gone, and with it the note naming its lease.
        self.net.remove_leases_of(&dirs.root);
        // What is left of a sandbox whose state was removed (its mount points) goes too, once
        // nothing is mounted there any more.
        if !dirs.state.exists() && dirs.any_mounted().is_none() {
            let _ = std::fs::remove_dir_all(&dirs.root);
        }
    }
}
