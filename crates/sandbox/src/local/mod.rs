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
mod lockfile;
mod memory;
mod mounts;
mod net;
mod output;
mod paths;
mod reconcile;
mod seccomp;
mod tool;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) use build::build_forgeai_v1;
pub use build::{forgeai_v1_e2b_template, forgeai_v1_recipe};
pub use cgroup::{CgroupLayout, Limits};
pub use net::NetConfig;
pub use paths::{MAX_READ_BYTES, ProjectPath};
pub use reconcile::Reconciled;

use self::cgroup::Cgroup;
use self::devserver::{DevServer, read_output};
use self::exec::SpawnSpec;
use self::layout::{Dirs, STATE_FILE};
use self::net::{Network, SandboxNet};
use self::paths::ProjectRoot;
use crate::error::{Error, IoContext, Result};
use crate::preview::{PreviewTarget, Upstream};
use crate::provider::{
    CommandOptions, CommandResult, CreateOptions, DEFAULT_COMMAND_TIMEOUT, DEFAULT_SANDBOX_TIMEOUT, DevServerOutput,
    EntryInfo, SandboxInfo, SandboxProvider, SandboxStatus, Stream, command_cwd, preview_host, validate_id,
};
use crate::templates::{DEFAULT_SANDBOX_UID, Template, Templates};

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

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PersistedState {
    id: String,
    template: String,
    created_at: chrono::DateTime<chrono::Utc>,
    timeout_ms: u64,
    status: SandboxStatus,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Size of the sandbox's own filesystem; absent for sandboxes made without a quota.
    #[serde(default)]
    disk_bytes: Option<u64>,
}

/// The runtime side of a loaded sandbox.
struct Live {
    net: SandboxNet,
    cgroup: Cgroup,
    spec: Arc<SpawnSpec>,
    dev: Option<DevServer>,
    loaded_at: Instant,
    /// The template's memory estimate (see [`memory`]).
    memory_estimate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Files on disk, nothing running (fresh, after a restart, or after `shutdown`).
    Unloaded,
    Running,
    Paused,
    /// Killed; the slot only lingers in callers' hands.
    Dead,
}

struct Life {
    phase: Phase,
    live: Option<Live>,
}

struct Activity {
    last: Instant,
    timeout: Duration,
    /// Commands, file operations and proxied connections in flight: a sandbox with any is
    /// never idle.
    active: usize,
}

struct Slot {
    id: String,
    dirs: Dirs,
    state: Mutex<PersistedState>,
    /// Serialises lifecycle changes (start, pause, resume, kill).
    life: tokio::sync::Mutex<Life>,
    activity: Mutex<Activity>,
    /// The last reading of its memory and when it was taken (see [`memory`]).
    memory_sample: Mutex<Option<(Instant, u64)>>,
}

impl Slot {
    fn short(&self) -> &str {
        &self.id[..self.id.len().min(10)]
    }

    fn save_state(&self) -> Result<()> {
        let state = lock(&self.state).clone();
        write_state(&self.dirs.state, &state)
    }

    fn info(&self, phase: Phase) -> SandboxInfo {
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
struct ActiveGuard(Arc<Slot>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let mut a = lock(&self.0.activity);
        a.active = a.active.saturating_sub(1);
        a.last = Instant::now();
    }
}

/// A running sandbox's spawn spec and address, with the sandbox marked busy.
struct Handle {
    spec: Arc<SpawnSpec>,
    addr: Ipv4Addr,
    guard: ActiveGuard,
}

struct Inner {
    cfg: LocalConfig,
    data_dir: PathBuf,
    sandboxes_dir: PathBuf,
    /// Makes `sandboxes_dir` a mount point, so spawns can detach all overlays at once.
    sandboxes_mount: Arc<mounts::SandboxesMount>,
    etc_dir: PathBuf,
    /// Blank filesystem images sandbox disks are copied from.
    disks_dir: PathBuf,
    net: Network,
    seccomp: Arc<seccomp::SeccompFilters>,
    cgroups: CgroupLayout,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Held by the one provider that manages the data dir's sandboxes (`forgeai serve`);
    /// others on the same data dir (a template build) leave the rest alone when reconciling.
    owner_lock: Option<std::fs::File>,
    /// One sandbox start at a time decides what to unload for the memory budget.
    admission: tokio::sync::Mutex<()>,
    /// Memory set aside for sandboxes that are starting, until they count themselves.
    reserved: AtomicU64,
}

/// The local provider. Cheap to clone; all clones share sandboxes.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these small locks leaves consistent data: keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalProvider {
    /// Checks the machine (root, bwrap, cgroups, network range) and prepares the data dir.
    /// Must be called inside a tokio runtime: it starts the idle-sandbox reaper.
    pub async fn new(cfg: LocalConfig) -> Result<Self> {
        let cfg2 = cfg.clone();
        let inner = blocking(move || Inner::init(cfg2)).await?;
        let inner = Arc::new(inner);
        if let Err(e) = inner.reconcile().await {
            tracing::warn!(error = %e, "cannot remove leftovers of earlier sandboxes");
        }
        let weak = Arc::downgrade(&inner);
        tokio::spawn(reaper(weak, cfg.reap_interval, cfg.reconcile_interval));
        Ok(LocalProvider { inner })
    }

    /// Removes namespaces, veths, firewall elements, leases, cgroups and mounts that belong to
    /// no loaded sandbox (also done at start and every `reconcile_interval`).
    pub async fn reconcile(&self) -> Result<Reconciled> {
        self.inner.reconcile().await
    }

    /// The provider's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Builds the `static` template for this provider's sandbox user if it is missing.
    pub async fn ensure_static_template(&self) -> Result<Template> {
        let (dir, uid, gid) = (self.inner.data_dir.clone(), self.inner.cfg.uid, self.inner.cfg.gid);
        blocking(move || Templates::ensure_static_for(&dir, uid, gid)).await
    }

    /// Freezes every process of the sandbox; files stay, and any operation resumes it.
    pub async fn pause(&self, id: &str) -> Result<()> {
        let slot = self.inner.slot(id)?;
        let mut life = slot.life.lock().await;
        match life.phase {
            Phase::Running => self.inner.pause_locked(&slot, &mut life).await,
            Phase::Paused | Phase::Unloaded => Ok(()),
            Phase::Dead => Err(Error::Gone { id: id.into() }),
        }
    }

    /// Running or paused (a sandbox that is not loaded counts as paused: nothing runs).
    pub async fn status(&self, id: &str) -> Result<SandboxStatus> {
        let slot = self.inner.slot(id)?;
        let life = slot.life.lock().await;
        match life.phase {
            Phase::Running => Ok(SandboxStatus::Running),
            Phase::Paused | Phase::Unloaded => Ok(SandboxStatus::Paused),
            Phase::Dead => Err(Error::Gone { id: id.into() }),
        }
    }

    /// Addresses of the host's and the sandbox's ends of its veth pair, while it is loaded.
    pub async fn network(&self, id: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
        let slot = self.inner.slot(id).ok()?;
        let life = slot.life.lock().await;
        life.live.as_ref().map(|l| (l.net.host_addr, l.net.sandbox_addr))
    }

    /// Names of the sandbox's network namespace and host-side veth (for diagnostics and tests).
    pub fn network_names(&self, id: &str) -> (String, String) {
        let short = &id[..id.len().min(10)];
        (format!("fa-{short}"), format!("fah-{short}"))
    }

    /// Kills every sandbox stored in the data dir; returns how many were killed.
    pub async fn kill_all(&self) -> Result<usize> {
        let mut killed = 0;
        let mut first_err = None;
        for id in self.list() {
            match self.kill(&id).await {
                Ok(true) => killed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%id, error = %e, "cannot kill sandbox");
                    first_err.get_or_insert(e);
                }
            }
        }
        if self.list().is_empty() {
            // Lets the data dir be deleted; the next sandbox start makes it a mount point again.
            let sandboxes_mount = self.inner.sandboxes_mount.clone();
            let _ = blocking(move || {
                sandboxes_mount.release();
                Ok(())
            })
            .await;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(killed),
        }
    }

    /// How often the dev server has been started since the sandbox was (re)loaded.
    pub async fn dev_server_starts(&self, id: &str) -> Result<u64> {
        let slot = self.inner.slot(id)?;
        let life = slot.life.lock().await;
        Ok(life
            .live
            .as_ref()
            .and_then(|l| l.dev.as_ref())
            .map_or(0, |d| d.starts()))
    }

    /// Whether the sandbox's processes, mounts and network are up (running or paused), as
    /// opposed to only its files being on disk.
    pub async fn loaded(&self, id: &str) -> Result<bool> {
        let slot = self.inner.slot(id)?;
        let life = slot.life.lock().await;
        Ok(matches!(life.phase, Phase::Running | Phase::Paused))
    }

    /// Memory of the sandbox the kernel cannot reclaim (anonymous and tmpfs pages); what the
    /// memory budget counts. 0 when it is not loaded.
    pub fn memory_usage(&self, id: &str) -> Result<u64> {
        let slot = self.inner.slot(id)?;
        Ok(Cgroup::new(self.inner.cgroups.clone(), &slot.id).unreclaimable_bytes())
    }

    /// Pids (host view) of every process in the sandbox.
    pub async fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let slot = self.inner.slot(id)?;
        Ok(Cgroup::new(self.inner.cgroups.clone(), &slot.id).pids())
    }

    /// How many processes the kernel killed in the sandbox for exceeding its memory limit.
    pub async fn oom_kills(&self, id: &str) -> Result<u64> {
        let slot = self.inner.slot(id)?;
        Ok(Cgroup::new(self.inner.cgroups.clone(), &slot.id).oom_kills())
    }

    /// Ids of the sandboxes stored in the data dir.
    pub fn list(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.inner.sandboxes_dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|id| validate_id(id).is_ok())
            // A directory without its state is not a sandbox (what is left of a removed one).
            .filter(|id| self.inner.sandboxes_dir.join(id).join(STATE_FILE).exists())
            .collect();
        ids.sort();
        ids
    }

    /// The template a stored sandbox was made from, read from its state without loading it.
    pub fn stored_template(&self, id: &str) -> Option<String> {
        let slot = self.inner.slot(id).ok()?;
        let template = lock(&slot.state).template.clone();
        Some(template)
    }

    /// Stops every loaded sandbox's processes and releases its mount, network and cgroup,
    /// keeping files and state — what a host shutdown does. `connect` brings each back.
    pub async fn shutdown(&self) {
        let slots: Vec<Arc<Slot>> = lock(&self.inner.slots).values().cloned().collect();
        for slot in slots {
            let mut life = slot.life.lock().await;
            if matches!(life.phase, Phase::Running | Phase::Paused)
                && let Err(e) = self.inner.unload_locked(&slot, &mut life).await
            {
                tracing::warn!(id = %slot.id, error = %e, "sandbox did not unload cleanly");
            }
        }
        // Nothing of forgeai stays mounted after a clean stop.
        let sandboxes_mount = self.inner.sandboxes_mount.clone();
        let _ = blocking(move || {
            sandboxes_mount.release();
            Ok(())
        })
        .await;
    }

    /// Stops the sandbox and moves its writable layer to `dest` (same filesystem); used to
    /// turn a build sandbox of an empty template into a new template's project directory.
    async fn export_upper(&self, id: &str, dest: &Path) -> Result<()> {
        let slot = self.inner.slot(id)?;
        let mut life = slot.life.lock().await;
        self.inner.unload_locked(&slot, &mut life).await?;
        let dirs = slot.dirs.clone();
        let (uid, gid) = (self.inner.cfg.uid, self.inner.cfg.gid);
        let dest = dest.to_path_buf();
        blocking(move || {
            // The writable layer is on the sandbox's own disk, unmounted with the rest.
            dirs.mount_writable(uid, gid)?;
            let upper = &dirs.upper;
            let moved = match std::fs::rename(upper, &dest) {
                // The sandbox disk, or the sandboxes directory as its own mount point (see
                // `mounts.rs`), make this cross mounts: copy, keeping owners and modes.
                Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                    let args = [
                        "-a".as_ref(),
                        "--reflink=auto".as_ref(),
                        upper.as_os_str(),
                        dest.as_os_str(),
                    ];
                    tool::run(Path::new("/bin/cp"), &args).map(drop)
                }
                moved => moved.ctx(|| format!("move {} to {}", upper.display(), dest.display())),
            };
            moved.and(dirs.unmount_all())
        })
        .await
    }

    async fn handle(&self, id: &str) -> Result<Handle> {
        let slot = self.inner.slot(id)?;
        self.inner.ensure_running(&slot).await
    }

    /// Runs blocking file work on the sandbox's project root.
    async fn with_root<T: Send + 'static>(
        &self,
        id: &str,
        f: impl FnOnce(&ProjectRoot) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let h = self.handle(id).await?;
        let (uid, gid) = (self.inner.cfg.uid, self.inner.cfg.gid);
        let merged = h.spec.merged.clone();
        let out = blocking(move || {
            let root = ProjectRoot::open(&merged, uid, gid)?;
            f(&root)
        })
        .await;
        drop(h.guard);
        out
    }
}

impl Inner {
    fn init(cfg: LocalConfig) -> Result<Inner> {
        if !cfg.bwrap.exists() {
            return Err(Error::Unsupported {
                what: format!("bubblewrap is not installed ({} is missing)", cfg.bwrap.display()),
                hint: "run scripts/setup.sh or `apt-get install bubblewrap`".into(),
            });
        }
        let net = Network::init(cfg.net.clone())?;
        let seccomp = Arc::new(seccomp::SeccompFilters::new()?);
        let cgroups = CgroupLayout::detect()?;
        std::fs::create_dir_all(&cfg.data_dir).ctx(|| format!("create data dir {}", cfg.data_dir.display()))?;
        let data_dir = cfg
            .data_dir
            .canonicalize()
            .ctx(|| format!("resolve data dir {}", cfg.data_dir.display()))?;
        for c in [",", ":", "\\"] {
            if data_dir.to_string_lossy().contains(c) {
                return Err(Error::Unsupported {
                    what: format!(
                        "the data dir {} contains {c:?}, which overlayfs mount options cannot carry",
                        data_dir.display()
                    ),
                    hint: "choose a data dir path without ',', ':' or '\\'".into(),
                });
            }
        }
        let sandboxes_dir = data_dir.join("sandboxes");
        for dir in [&sandboxes_dir, &Templates::dir(&data_dir)] {
            std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
        }
        exec::ensure_stage_dir()?;
        let sandboxes_mount = Arc::new(mounts::SandboxesMount::new(sandboxes_dir.clone()));
        let etc_dir = data_dir.join("etc");
        exec::write_etc(&etc_dir, cfg.uid, cfg.gid)?;
        std::fs::set_permissions(&etc_dir, std::fs::Permissions::from_mode(0o755))
            .ctx(|| format!("chmod {}", etc_dir.display()))?;
        let disks_dir = data_dir.join("disks");
        let owner_lock = lockfile::try_lock(&data_dir.join("sandboxes.lock"))?;
        Ok(Inner {
            owner_lock,
            cfg,
            data_dir,
            sandboxes_dir,
            sandboxes_mount,
            etc_dir,
            disks_dir,
            net,
            seccomp,
            cgroups,
            slots: Mutex::new(HashMap::new()),
            admission: tokio::sync::Mutex::new(()),
            reserved: AtomicU64::new(0),
        })
    }

    /// Finds the slot of `id`, loading its state from disk if this process has not seen it.
    fn slot(&self, id: &str) -> Result<Arc<Slot>> {
        validate_id(id)?;
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(id) {
            return Ok(s.clone());
        }
        let state_path = self.sandboxes_dir.join(id).join(STATE_FILE);
        let state = match std::fs::read_to_string(&state_path) {
            Ok(text) => serde_json::from_str::<PersistedState>(&text).map_err(|e| Error::State {
                path: state_path.clone(),
                reason: format!("unreadable ({e}); kill the sandbox and create a new one"),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Error::Gone { id: id.into() }),
            Err(e) => return Err(Error::io(format!("read {}", state_path.display()), e)),
        };
        let dirs = Dirs::new(&self.sandboxes_dir, id, state.disk_bytes.is_some());
        let slot = Arc::new(Slot {
            id: id.to_string(),
            activity: Mutex::new(Activity {
                last: Instant::now(),
                timeout: Duration::from_millis(state.timeout_ms),
                active: 0,
            }),
            state: Mutex::new(state),
            dirs,
            life: tokio::sync::Mutex::new(Life {
                phase: Phase::Unloaded,
                live: None,
            }),
            memory_sample: Mutex::new(None),
        });
        slots.insert(id.to_string(), slot.clone());
        Ok(slot)
    }

    /// Brings the sandbox to Running (loading or thawing it) and marks it busy.
    async fn ensure_running(&self, slot: &Arc<Slot>) -> Result<Handle> {
        let mut life = slot.life.lock().await;
        match life.phase {
            Phase::Running => {}
            Phase::Paused => {
                let cg = life.live.as_ref().map(|l| l.cgroup.clone());
                if let Some(cg) = cg {
                    blocking(move || cg.thaw()).await?;
                }
                life.phase = Phase::Running;
                lock(&slot.state).status = SandboxStatus::Running;
                slot.save_state()?;
            }
            Phase::Unloaded => self.load_locked(slot, &mut life).await?,
            Phase::Dead => return Err(Error::Gone { id: slot.id.clone() }),
        }
        let live = life.live.as_ref().ok_or_else(|| Error::Gone { id: slot.id.clone() })?;
        // Counted while the lifecycle lock is held, so the reaper cannot pause in between.
        {
            let mut a = lock(&slot.activity);
            a.active += 1;
            a.last = Instant::now();
        }
        Ok(Handle {
            spec: live.spec.clone(),
            addr: live.net.sandbox_addr,
            guard: ActiveGuard(slot.clone()),
        })
    }

    /// Mounts, networks and limits a sandbox whose files exist, then starts its dev server.
    async fn load_locked(&self, slot: &Arc<Slot>, life: &mut Life) -> Result<()> {
        let template_name = lock(&slot.state).template.clone();
        let data_dir = self.data_dir.clone();
        let template = blocking(move || Template::load(&data_dir, &template_name)).await?;
        let reserved = self.admit(template.config.memory_estimate_bytes).await?;
        let started = self.start_locked(slot, life, template).await;
        self.unreserve(reserved);
        started
    }

    async fn start_locked(&self, slot: &Arc<Slot>, life: &mut Life, template: Template) -> Result<()> {
        let dirs = slot.dirs.clone();
        let lower = template.project_dir();
        let cgroup = Cgroup::new(self.cgroups.clone(), &slot.id);
        let limits = self.cfg.limits.clone();
        let short = slot.short().to_string();
        let (uid, gid) = (self.cfg.uid, self.cfg.gid);
        let net = {
            let cgroup = cgroup.clone();
            let network = self.net.clone();
            let sandboxes_mount = self.sandboxes_mount.clone();
            blocking(move || {
                sandboxes_mount.ensure();
                dirs.mount_writable(uid, gid)?;
                layout::mount_overlay(&lower, &dirs)?;
                // Leftover processes of a previous run (forgeai restarted without a reboot).
                if cgroup.exists() {
                    cgroup.kill_all()?;
                    let _ = cgroup.thaw();
                }
                cgroup.create(&limits)?;
                network.setup(&short, &dirs.root)
            })
            .await
        };
        let net = match net {
            Ok(n) => n,
            Err(e) => {
                let _ = self.release_runtime(slot, &cgroup).await;
                return Err(e);
            }
        };
        let mut envs = template.config.env.clone();
        // Lets dev servers allow the preview origin (Next.js `allowedDevOrigins`).
        envs.insert("FORGEAI_PREVIEW_DOMAIN".into(), self.cfg.preview_domain.clone());
        envs.extend(lock(&slot.state).envs.clone());
        let spec = Arc::new(SpawnSpec {
            bwrap: self.cfg.bwrap.clone(),
            merged: slot.dirs.merged.clone(),
            home: slot.dirs.home.clone(),
            support: template.support_dir(),
            etc_dir: self.etc_dir.clone(),
            netns: net.netns_path(),
            cgroup_procs: cgroup.procs_files(),
            sandboxes_dir: self.sandboxes_dir.clone(),
            uid: self.cfg.uid,
            gid: self.cfg.gid,
            envs,
            seccomp: self.seccomp.clone(),
        });
        let dev = template
            .config
            .dev_command
            .clone()
            .map(|cmd| DevServer::start(spec.clone(), cmd, slot.dirs.dev_log.clone()));
        life.live = Some(Live {
            net,
            cgroup,
            spec,
            dev,
            loaded_at: Instant::now(),
            memory_estimate: template.config.memory_estimate_bytes,
        });
        life.phase = Phase::Running;
        lock(&slot.state).status = SandboxStatus::Running;
        slot.save_state()?;
        Ok(())
    }

    async fn pause_locked(&self, slot: &Arc<Slot>, life: &mut Life) -> Result<()> {
        let Some(cg) = life.live.as_ref().map(|l| l.cgroup.clone()) else {
            return Ok(());
        };
        blocking(move || cg.freeze()).await?;
        life.phase = Phase::Paused;
        lock(&slot.state).status = SandboxStatus::Paused;
        slot.save_state()
    }

    /// Stops processes and releases mount, network and cgroup; files and state stay.
    async fn unload_locked(&self, slot: &Arc<Slot>, life: &mut Life) -> Result<()> {
        let cgroup = Cgroup::new(self.cgroups.clone(), &slot.id);
        if let Some(dev) = life.live.take().and_then(|live| live.dev) {
            // Thaw first: a frozen dev server cannot die.
            let cg = cgroup.clone();
            let _ = blocking(move || cg.thaw()).await;
            dev.stop().await;
        }
        life.phase = Phase::Unloaded;
        self.release_runtime(slot, &cgroup).await
    }

    async fn release_runtime(&self, slot: &Arc<Slot>, cgroup: &Cgroup) -> Result<()> {
        let cgroup = cgroup.clone();
        let dirs = slot.dirs.clone();
        let short = slot.short().to_string();
        let network = self.net.clone();
        blocking(move || release_runtime(&cgroup, &dirs, &network, &short)).await
    }

    async fn reap(&self) {
        self.enforce_budget().await;
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        for slot in slots {
            let idle = {
                let a = lock(&slot.activity);
                a.active == 0 && a.last.elapsed() > a.timeout
            };
            if !idle {
                continue;
            }
            // try_lock: a sandbox in the middle of a lifecycle change is not idle.
            let Ok(mut life) = slot.life.try_lock() else { continue };
            if life.phase == Phase::Running && lock(&slot.activity).active == 0 {
                tracing::info!(id = %slot.id, "pausing idle sandbox");
                if let Err(e) = self.pause_locked(&slot, &mut life).await {
                    tracing::warn!(id = %slot.id, error = %e, "cannot pause idle sandbox");
                }
            }
        }
    }
}

/// Stops the sandbox's processes and removes its cgroup, mounts and network (each part
/// independently, so a half-built sandbox is cleaned as well); its files stay.
fn release_runtime(cgroup: &Cgroup, dirs: &Dirs, network: &Network, short: &str) -> Result<()> {
    let destroyed = cgroup.destroy();
    let unmounted = dirs.unmount_all();
    network.teardown(short, &dirs.root);
    destroyed.and(unmounted)
}

/// Runs `f` on tokio's blocking pool: mounts, cgroup writes and `ip`/`nft` calls block, and
/// must not stall the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Provider(format!("sandbox worker task failed: {e}")))?
}

async fn reaper(inner: Weak<Inner>, interval: Duration, reconcile_interval: Duration) {
    let mut last_reconcile = Instant::now();
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        inner.reap().await;
        if last_reconcile.elapsed() >= reconcile_interval {
            last_reconcile = Instant::now();
            if let Err(e) = inner.reconcile().await {
                tracing::warn!(error = %e, "cannot remove leftovers of sandboxes");
            }
        }
    }
}

fn write_state(path: &Path, state: &PersistedState) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::State {
        path: path.into(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).ctx(|| format!("write {}", tmp.display()))?;
    // rename: a crash mid-write never leaves a truncated state file behind.
    std::fs::rename(&tmp, path).ctx(|| format!("replace {}", path.display()))
}

fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // Starts with a letter so ids never look like numbers in host names.
    let mut id = String::with_capacity(16);
    id.push(ALPHABET[rand::random_range(0..26)] as char);
    for _ in 1..16 {
        id.push(ALPHABET[rand::random_range(0..ALPHABET.len())] as char);
    }
    id
}

#[async_trait]
impl SandboxProvider for LocalProvider {
    async fn create(&self, template: &str, options: CreateOptions) -> Result<SandboxInfo> {
        crate::templates::validate_name(template)?;
        let inner = &self.inner;
        let data_dir = inner.data_dir.clone();
        let name = template.to_string();
        let tpl = blocking(move || Template::load(&data_dir, &name)).await?;
        let timeout = options.timeout.unwrap_or(DEFAULT_SANDBOX_TIMEOUT);
        let (uid, gid) = (inner.cfg.uid, inner.cfg.gid);
        let sandboxes = inner.sandboxes_dir.clone();
        let state_template = tpl.name.clone();
        let (disk_bytes, min_free) = (inner.cfg.disk_bytes, inner.cfg.min_free_disk_bytes);
        let (data_dir, disks_dir) = (inner.data_dir.clone(), inner.disks_dir.clone());
        let (id, dirs) = blocking(move || {
            let free = disk::free_bytes(&data_dir)?;
            if free < min_free {
                return Err(Error::HostDiskLow {
                    free,
                    reserve: min_free,
                    data_dir,
                });
            }
            let blank = disk_bytes
                .map(|bytes| disk::blank_image(&disks_dir, bytes))
                .transpose()?;
            // Ids are random; the first 10 characters name the network devices and must be
            // unique among the sandboxes on this machine's data dir.
            let existing: Vec<String> = std::fs::read_dir(&sandboxes)
                .map(|r| {
                    r.flatten()
                        .filter_map(|e| e.file_name().to_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let id = loop {
                let id = new_id();
                if !existing.iter().any(|e| e.get(..10) == id.get(..10)) {
                    break id;
                }
            };
            let dirs = Dirs::new(&sandboxes, &id, blank.is_some());
            if let Err(e) = dirs.create(blank.as_deref(), uid, gid) {
                let _ = std::fs::remove_dir_all(&dirs.root);
                return Err(e);
            }
            Ok((id, dirs))
        })
        .await?;
        let state = PersistedState {
            id: id.clone(),
            template: state_template,
            created_at: chrono::Utc::now(),
            timeout_ms: timeout.as_millis() as u64,
            status: SandboxStatus::Running,
            envs: options.envs,
            metadata: options.metadata,
            disk_bytes,
        };
        if let Err(e) = write_state(&dirs.state, &state) {
            let _ = std::fs::remove_dir_all(&dirs.root);
            return Err(e);
        }
        let slot = inner.slot(&id)?;
        match inner.ensure_running(&slot).await {
            Ok(h) => drop(h.guard),
            Err(e) => {
                let _ = self.kill(&id).await;
                return Err(e);
            }
        }
        Ok(slot.info(Phase::Running))
    }

    async fn connect(&self, id: &str) -> Result<SandboxInfo> {
        let slot = self.inner.slot(id)?;
        let h = self.inner.ensure_running(&slot).await?;
        drop(h.guard);
        Ok(slot.info(Phase::Running))
    }

    async fn run_command(&self, id: &str, command: &str, options: CommandOptions) -> Result<CommandResult> {
        let cwd = command_cwd(options.cwd.as_deref())?;
        let h = self.handle(id).await?;
        let mut prepared = h.spec.prepare(command, &cwd, &options.envs)?;
        prepared
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = prepared
            .command
            .spawn()
            .ctx(|| format!("start bwrap for a command in sandbox {id}"))?;
        drop(prepared);
        let max = self.inner.cfg.max_output_bytes;
        let out = child
            .stdout
            .take()
            .map(|s| tokio::spawn(output::pump(s, Stream::Stdout, options.on_output.clone(), max)));
        let err = child
            .stderr
            .take()
            .map(|s| tokio::spawn(output::pump(s, Stream::Stderr, options.on_output.clone(), max)));
        let limit = options.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => Some(status.ctx(|| format!("wait for a command in sandbox {id}"))?),
            Err(_) => {
                // SIGKILL to bwrap: --die-with-parent kills its pid-namespace init, and the
                // kernel then kills every process in that namespace, however deep.
                let _ = child.start_kill();
                let _ = child.wait().await;
                None
            }
        };
        // The pipes close once the last process holding them is gone; bounded in case the
        // kernel is slow to reap a large tree.
        let collect = |task: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>| async move {
            match task {
                Some(t) => tokio::time::timeout(Duration::from_secs(10), t)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default(),
                None => (Vec::new(), false),
            }
        };
        let (stdout, t1) = collect(out).await;
        let (stderr, t2) = collect(err).await;
        drop(h.guard);
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let stderr = String::from_utf8_lossy(&stderr).into_owned();
        match status {
            Some(status) => {
                use std::os::unix::process::ExitStatusExt;
                let exit_code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                Ok(CommandResult {
                    exit_code,
                    stdout,
                    stderr,
                    truncated: t1 || t2,
                })
            }
            None => Err(Error::CommandTimeout {
                after: limit,
                stdout,
                stderr,
            }),
        }
    }

    async fn write_file(&self, id: &str, path: &str, contents: &[u8]) -> Result<()> {
        let p = ProjectPath::parse(path)?;
        let data = contents.to_vec();
        self.with_root(id, move |root| root.write_file(&p, &data)).await
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let p = ProjectPath::parse(path)?;
        self.with_root(id, move |root| root.read_file(&p)).await
    }

    async fn list_files(&self, id: &str, path: &str, depth: u32) -> Result<Vec<EntryInfo>> {
        let p = ProjectPath::parse(path)?;
        self.with_root(id, move |root| root.list(&p, depth)).await
    }

    fn host(&self, id: &str, port: u16) -> String {
        preview_host(id, port, &self.inner.cfg.preview_domain, self.inner.cfg.preview_port)
    }

    async fn set_timeout(&self, id: &str, timeout: Duration) -> Result<()> {
        let slot = self.inner.slot(id)?;
        {
            let mut a = lock(&slot.activity);
            a.timeout = timeout;
            a.last = Instant::now();
        }
        lock(&slot.state).timeout_ms = timeout.as_millis() as u64;
        slot.save_state()
    }

    async fn pause(&self, id: &str) -> Result<()> {
        LocalProvider::pause(self, id).await
    }

    async fn dev_server_output(&self, id: &str, from: u64) -> Result<Option<DevServerOutput>> {
        let slot = self.inner.slot(id)?;
        let log = slot.dirs.dev_log.clone();
        blocking(move || read_output(&log, from).map(Some)).await
    }

    async fn kill(&self, id: &str) -> Result<bool> {
        let slot = match self.inner.slot(id) {
            Ok(s) => s,
            Err(Error::Gone { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut life = slot.life.lock().await;
        if life.phase == Phase::Dead {
            return Ok(false);
        }
        let result = self.inner.unload_locked(&slot, &mut life).await;
        life.phase = Phase::Dead;
        lock(&self.inner.slots).remove(id);
        result?;
        let dirs = slot.dirs.clone();
        blocking(move || {
            // Never recurse into a still-mounted project: that would delete through the mount.
            if let Some(mounted) = dirs.any_mounted() {
                return Err(Error::io(
                    format!(
                        "{} is still mounted; not removing the sandbox's files",
                        mounted.display()
                    ),
                    io::ErrorKind::ResourceBusy.into(),
                ));
            }
            match std::fs::remove_dir_all(&dirs.root) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("remove {}", dirs.root.display()), e)),
            }
        })
        .await?;
        Ok(true)
    }
}

#[async_trait]
impl PreviewTarget for LocalProvider {
    async fn upstream(&self, id: &str, port: u16) -> Result<Upstream> {
        let h = self.handle(id).await?;
        Ok(Upstream::local(
            SocketAddr::from((h.addr, port)),
            Some(Box::new(h.guard)),
        ))
    }
}
