//! A sandbox as the provider tracks it: its persisted state, its lifecycle phase, what runs
//! while it is loaded, and the activity that keeps it from being paused.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::cgroup::Cgroup;
use super::devserver::DevServer;
use super::exec::SpawnSpec;
use super::layout::Dirs;
use super::net::SandboxNet;
use crate::error::{Error, IoContext, Result};
use crate::provider::{SandboxInfo, SandboxStatus};

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PersistedState {
    pub(super) id: String,
    pub(super) template: String,
    pub(super) created_at: chrono::DateTime<chrono::Utc>,
    pub(super) timeout_ms: u64,
    pub(super) status: SandboxStatus,
    #[serde(default)]
    pub(super) envs: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, String>,
    /// Size of the sandbox's own filesystem; absent for sandboxes made without a quota.
    #[serde(default)]
    pub(super) disk_bytes: Option<u64>,
}

/// The runtime side of a loaded sandbox.
pub(super) struct Live {
    pub(super) net: SandboxNet,
    pub(super) cgroup: Cgroup,
    pub(super) spec: Arc<SpawnSpec>,
    pub(super) dev: Option<DevServer>,
    pub(super) loaded_at: Instant,
    /// The template's memory estimate (see [`memory`]).
    pub(super) memory_estimate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Files on disk, nothing running (fresh, after a restart, or after `shutdown`).
    Unloaded,
    Running,
    Paused,
    /// Killed; the slot only lingers in callers' hands.
    Dead,
}

pub(super) struct Life {
    pub(super) phase: Phase,
    pub(super) live: Option<Live>,
}

pub(super) struct Activity {
    pub(super) last: Instant,
    pub(super) timeout: Duration,
    /// Commands, file operations and proxied connections in flight: a sandbox with any is
    /// never idle.
    pub(super) active: usize,
}

pub(super) struct Slot {
    pub(super) id: String,
    pub(super) dirs: Dirs,
    pub(super) state: Mutex<PersistedState>,
    /// Serialises lifecycle changes (start, pause, resume, kill).
    pub(super) life: tokio::sync::Mutex<Life>,
    pub(super) activity: Mutex<Activity>,
    /// The last reading of its memory and when it was taken (see [`memory`]).
    pub(super) memory_sample: Mutex<Option<(Instant, u64)>>,
    /// Set by `create` for a disk image just copied from the blank one: its first start need
    /// not look for an earlier filesystem of it still going away.
    pub(super) disk_never_mounted: AtomicBool,
}

impl Slot {
    pub(super) fn short(&self) -> &str {
        &self.id[..self.id.len().min(10)]
    }

    pub(super) fn save_state(&self) -> Result<()> {
        let state = lock(&self.state).clone();
        write_state(&self.dirs.state, &state)
    }

    pub(super) fn info(&self, phase: Phase) -> SandboxInfo {
        let s = lock(&self.state);
        SandboxInfo {
            id: s.id.clone(),
            template: s.template.clone(),
            status: if phase == Phase::Paused {
                SandboxStatus::Paused
            } else {
                SandboxStatus::Running
            },
            created_at: s.created_at,
            timeout_ms: s.timeout_ms,
            metadata: s.metadata.clone(),
        }
    }
}

/// Marks a sandbox busy while held, so it is not paused under an operation.
pub(super) struct ActiveGuard(pub(super) Arc<Slot>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut a = lock(&self.0.activity);
        a.active = a.active.saturating_sub(1);
        a.last = Instant::now();
    }
}

/// A running sandbox's spawn spec and address, with the sandbox marked busy.
pub(super) struct Handle {
    pub(super) spec: Arc<SpawnSpec>,
    pub(super) addr: Ipv4Addr,
    pub(super) guard: ActiveGuard,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these small locks leaves consistent data: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write_state(path: &Path, state: &PersistedState) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::State {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).ctx(|| format!("write {}", tmp.display()))?;
    // rename: a crash mid-write never leaves a truncated state file behind.
    std::fs::rename(&tmp, path).ctx(|| format!("replace {}", path.display()))
}

pub(super) fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // Starts with a letter so ids never look like numbers in host names.
    let mut id = String::with_capacity(16);
    id.push(ALPHABET[rand::random_range(0..26)] as char);
    for _ in 1..16 {
        id.push(ALPHABET[rand::random_range(0..ALPHABET.len())] as char);
    }
    id
}
