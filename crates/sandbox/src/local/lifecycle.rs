//! The provider's shared state and the lifecycle of a sandbox: start (mounts, cgroup,
//! network, dev server), pause, unload and release, and the reaper that pauses idle ones.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::cgroup::Cgroup;
use super::devserver::DevServer;
use super::exec::SpawnSpec;
use super::layout::{Dirs, STATE_FILE};
use super::net::Network;
use super::slot::{ActiveGuard, Activity, Handle, Life, Live, PersistedState, Phase, Slot, lock};
use super::spawner::Spawner;
use super::{CgroupLayout, LocalConfig, exec, layout, lockfile, mounts, seccomp};
use crate::error::{Error, IoContext, Result};
use crate::provider::{SandboxStatus, validate_id};
use crate::templates::{Template, Templates};

pub(super) struct Inner {
    pub(super) cfg: LocalConfig,
    pub(super) data_dir: PathBuf,
    pub(super) sandboxes_dir: PathBuf,
    /// Makes `sandboxes_dir` a mount point, so spawns can detach all overlays at once.
    pub(super) sandboxes_mount: Arc<mounts::SandboxesMount>,
    pub(super) etc_dir: PathBuf,
    /// Blank filesystem images sandbox disks are copied from.
    pub(super) disks_dir: PathBuf,
    pub(super) net: Network,
    pub(super) seccomp: Arc<seccomp::SeccompFilters>,
    pub(super) spawner: Arc<Spawner>,
    pub(super) cgroups: CgroupLayout,
    pub(super) slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// Held by the one provider that manages the data dir's sandboxes (`forgeai serve`);
    /// others on the same data dir (a template build) leave the rest alone when reconciling.
    pub(super) owner_lock: Option<std::fs::File>,
    /// One sandbox start at a time decides what to unload for the memory budget.
    pub(super) admission: tokio::sync::Mutex<()>,
    /// Memory set aside for sandboxes that are starting, until they count themselves.
    pub(super) reserved: AtomicU64,
}

impl Inner {
    pub(super) fn init(cfg: LocalConfig) -> Result<Inner> {
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
            spawner: Arc::new(Spawner::new()?),
            cgroups,
            slots: Mutex::new(HashMap::new()),
            admission: tokio::sync::Mutex::new(()),
            reserved: AtomicU64::new(0),
        })
    }

    /// Finds the slot of `id`, loading its state from disk if this process has not seen it.
    pub(super) fn slot(&self, id: &str) -> Result<Arc<Slot>> {
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
            disk_never_mounted: AtomicBool::new(false),
        });
        slots.insert(id.to_string(), slot.clone());
        Ok(slot)
    }

    /// Brings the sandbox to Running (loading or thawing it) and marks it busy.
    pub(super) async fn ensure_running(&self, slot: &Arc<Slot>) -> Result<Handle> {
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
    pub(super) async fn load_locked(&self, slot: &Arc<Slot>, life: &mut Life) -> Result<()> {
        let template_name = lock(&slot.state).template.clone();
        let data_dir = self.data_dir.clone();
        let template = blocking(move || Template::load(&data_dir, &template_name)).await?;
        let reserved = self.admit(template.config.memory_estimate_bytes).await?;
        let started = self.start_locked(slot, life, template).await;
        self.unreserve(reserved);
        started
    }

    pub(super) async fn start_locked(&self, slot: &Arc<Slot>, life: &mut Life, template: Template) -> Result<()> {
        let dirs = slot.dirs.clone();
        let lower = template.project_dir();
        let cgroup = Cgroup::new(self.cgroups.clone(), &slot.id);
        let limits = self.cfg.limits.clone();
        let short = slot.short().to_string();
        let (uid, gid) = (self.cfg.uid, self.cfg.gid);
        let never_mounted = slot.disk_never_mounted.swap(false, Ordering::Relaxed);
        // The filesystem and cgroup on one thread, the network on another: they do not depend
        // on each other, and each is mostly kernel work.
        let storage = {
            let cgroup = cgroup.clone();
            let sandboxes_mount = self.sandboxes_mount.clone();
            blocking(move || {
                sandboxes_mount.ensure();
                dirs.mount_writable(uid, gid, never_mounted)?;
                layout::mount_overlay(&lower, &dirs)?;
                // Leftover processes of a previous run (forgeai restarted without a reboot).
                if cgroup.exists() {
                    cgroup.kill_all()?;
                    let _ = cgroup.thaw();
                }
                cgroup.create(&limits)
            })
        };
        let network = {
            let network = self.net.clone();
            let root = slot.dirs.root.clone();
            blocking(move || network.setup(&short, &root))
        };
        let net = match tokio::join!(storage, network) {
            (Ok(()), Ok(net)) => net,
            (Err(e), _) | (_, Err(e)) => {
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
            spawner: self.spawner.clone(),
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

    pub(super) async fn pause_locked(&self, slot: &Arc<Slot>, life: &mut Life) -> Result<()> {
        let Some(cg) = life.live.as_ref().map(|l| l.cgroup.clone()) else {
            return Ok(());
        };
        blocking(move || cg.freeze()).await?;
        life.phase = Phase::Paused;
        lock(&slot.state).status = SandboxStatus::Paused;
        slot.save_state()
    }

    /// Stops processes and releases mount, network and cgroup; files and state stay.
    pub(super) async fn unload_locked(&self, slot: &Arc<Slot>, life: &mut Life) -> Result<()> {
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

    pub(super) async fn release_runtime(&self, slot: &Arc<Slot>, cgroup: &Cgroup) -> Result<()> {
        let cgroup = cgroup.clone();
        let dirs = slot.dirs.clone();
        let short = slot.short().to_string();
        let network = self.net.clone();
        blocking(move || release_runtime(&cgroup, &dirs, &network, &short)).await
    }

    pub(super) async fn reap(&self) {
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
pub(super) fn release_runtime(cgroup: &Cgroup, dirs: &Dirs, network: &Network, short: &str) -> Result<()> {
    let destroyed = cgroup.destroy();
    let unmounted = dirs.unmount_all();
    network.teardown(short, &dirs.root);
    destroyed.and(unmounted)
}

/// Runs `f` on tokio's blocking pool: mounts, cgroup writes and netlink requests block, and
/// must not stall the async workers.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Provider(format!("sandbox worker task failed: {e}")))?
}

pub(super) async fn reaper(inner: Weak<Inner>, interval: Duration, reconcile_interval: Duration) {
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
