//! The local sandbox provider: overlayfs clones of template directories, processes under
//! bubblewrap as an unprivileged user, one network namespace and one cgroup per sandbox.
//!
//! On disk, sandbox `<id>` is `<data_dir>/sandboxes/<id>/` (see [`layout`]): its files, on a
//! filesystem of its own that enforces the disk quota, and `state.json`. Everything else — the
//! mounts, network namespace, firewall entry, cgroup and processes — is runtime state that
//! [`LocalProvider::connect`](crate::SandboxProvider::connect) rebuilds from those files when it
//! finds a sandbox that is not running.

mod build;
mod cgroup;
mod devserver;
mod disk;
mod exec;
mod layout;
mod lifecycle;
mod lockfile;
mod memory;
mod mounts;
mod net;
mod output;
mod paths;
mod provider;
mod reconcile;
mod seccomp;
mod slot;
mod spawner;
mod tool;

use std::path::PathBuf;
use std::time::Duration;

pub(crate) use build::build_forgeai_v1;
pub use build::{forgeai_v1_e2b_template, forgeai_v1_recipe};
pub use cgroup::{CgroupLayout, Limits};
pub use net::NetConfig;
pub use paths::{MAX_READ_BYTES, ProjectPath};
pub use provider::LocalProvider;
pub use reconcile::Reconciled;

use self::cgroup::Cgroup;
use self::lifecycle::{Inner, blocking, release_runtime};
use self::slot::{Phase, Slot, lock};
use crate::templates::DEFAULT_SANDBOX_UID;

/// Settings of the local provider.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Holds `templates/`, `sandboxes/` and generated `etc/` files.
    pub data_dir: PathBuf,
    /// Domain of preview hosts (`3000-<id>.<domain>`).
    pub preview_domain: String,
    /// Port the preview proxy is reachable on, appended to preview hosts when set.
    pub preview_port: Option<u16>,
    /// Host uid/gid sandbox processes run as (also `user` inside).
    pub uid: u32,
    pub gid: u32,
    /// Per-sandbox resource limits.
    pub limits: Limits,
    pub net: NetConfig,
    /// bubblewrap binary.
    pub bwrap: PathBuf,
    /// Output kept per stream and command (the tail is kept when a command prints more).
    pub max_output_bytes: usize,
    /// How often idle sandboxes are looked for.
    pub reap_interval: Duration,
    /// Size of each sandbox's own filesystem (its writes, `node_modules` installs and home);
    /// `None` puts sandbox files on the data dir's filesystem without a quota.
    pub disk_bytes: Option<u64>,
    /// A sandbox is not created while the data dir's filesystem has less free space than this,
    /// so the database and uploads always have room.
    pub min_free_disk_bytes: u64,
    /// Anonymous memory all loaded sandboxes may use together; the least recently used idle
    /// sandboxes are unloaded to stay within it. `None`: no budget.
    pub memory_budget_bytes: Option<u64>,
    /// Idle sandboxes are unloaded (processes stopped, memory given back) after this long.
    pub idle_unload: Duration,
    /// How long a sandbox start waits for busy sandboxes to free budget before failing.
    pub memory_wait: Duration,
    /// How often leftovers of sandboxes that are not loaded are looked for (see
    /// [`LocalProvider::reconcile`]).
    pub reconcile_interval: Duration,
}

impl LocalConfig {
    /// Defaults: preview domain `localhost`, uid/gid 1000, default limits and network range.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LocalConfig {
            data_dir: data_dir.into(),
            preview_domain: "localhost".into(),
            preview_port: None,
            uid: DEFAULT_SANDBOX_UID,
            gid: DEFAULT_SANDBOX_UID,
            limits: Limits::default(),
            net: NetConfig::default(),
            bwrap: PathBuf::from("/usr/bin/bwrap"),
            max_output_bytes: 1024 * 1024,
            reap_interval: Duration::from_secs(1),
            disk_bytes: Some(DEFAULT_DISK_BYTES),
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
            memory_budget_bytes: Some(memory::half_of_machine_memory()),
            idle_unload: Duration::from_secs(30 * 60),
            memory_wait: Duration::from_secs(60),
            reconcile_interval: Duration::from_secs(60),
        }
    }
}

/// Default size of a sandbox's filesystem.
pub const DEFAULT_DISK_BYTES: u64 = 2 << 30;
/// Default free space kept on the data dir's filesystem.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 2 << 30;
