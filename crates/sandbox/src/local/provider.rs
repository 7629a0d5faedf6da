//! [`LocalProvider`]: the local sandboxes behind the [`SandboxProvider`] trait.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::cgroup::Cgroup;
use super::devserver::read_output;
use super::exec::{Launch, Output, Started};
use super::layout::{Dirs, STATE_FILE};
use super::lifecycle::{Inner, blocking, reaper};
use super::paths::ProjectRoot;
use super::slot::{Handle, PersistedState, Phase, Slot, lock, new_id, write_state};
use super::{LocalConfig, Reconciled, disk, output, tool};
use crate::error::{Error, IoContext, Result};
use crate::local::paths::ProjectPath;
use crate::preview::{PreviewTarget, Upstream};
use crate::provider::{
    CommandOptions, CommandResult, CreateOptions, DEFAULT_COMMAND_TIMEOUT, DEFAULT_SANDBOX_TIMEOUT, DevServerOutput,
    EntryInfo, SandboxInfo, SandboxProvider, SandboxStatus, Stream, command_cwd, preview_host, validate_id,
};
use crate::templates::{Template, Templates};

/// The local provider. Cheap to clone; all clones share sandboxes.
#[derive(Clone)]
pub struct LocalProvider {
    pub(super) inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProvider")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
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
    pub(super) async fn export_upper(&self, id: &str, dest: &Path) -> Result<()> {
        let slot = self.inner.slot(id)?;
        let mut life = slot.life.lock().await;
        self.inner.unload_locked(&slot, &mut life).await?;
        let dirs = slot.dirs.clone();
        let (uid, gid) = (self.inner.cfg.uid, self.inner.cfg.gid);
        let dest = dest.to_path_buf();
        blocking(move || {
            // The writable layer is on the sandbox's own disk, unmounted with the rest.
            dirs.mount_writable(uid, gid, false)?;
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

    pub(super) async fn handle(&self, id: &str) -> Result<Handle> {
        let slot = self.inner.slot(id)?;
        self.inner.ensure_running(&slot).await
    }

    /// Runs blocking file work on the sandbox's project root.
    pub(super) async fn with_root<T: Send + 'static>(
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
        slot.disk_never_mounted
            .store(true, std::sync::atomic::Ordering::Relaxed);
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
        let launch = Launch {
            script: command.to_owned(),
            cwd,
            extra_env: options.envs.clone(),
            output: Output::Piped,
            what: format!("a command in sandbox {id}"),
        };
        let Started {
            process: mut child,
            stdout,
            stderr,
        } = h.spec.spawn(launch).await?;
        let max = self.inner.cfg.max_output_bytes;
        let out = stdout.map(|s| tokio::spawn(output::pump(s, Stream::Stdout, options.on_output.clone(), max)));
        let err = stderr.map(|s| tokio::spawn(output::pump(s, Stream::Stderr, options.on_output.clone(), max)));
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
