//! Resource limits and freezing for one sandbox through cgroups (v1 split hierarchies or the
//! v2 unified one).
//!
//! Every process of a sandbox (dev server and commands) joins its cgroup before exec, so the
//! limits cover the whole tree, a fork bomb hits `pids.max` instead of the host, and pausing is
//! a single freezer write.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Resource limits applied to each sandbox as a whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory (RSS + page cache) in bytes; the kernel OOM-kills inside the sandbox beyond it.
    pub memory_bytes: Option<u64>,
    /// Maximum number of processes/threads: contains fork bombs.
    pub pids: Option<u64>,
    /// CPU time as a number of cores (e.g. 1.5); `None` = no hard cap.
    pub cpu_cores: Option<f64>,
    /// Relative CPU weight against other sandboxes (v1 shares; 1024 = default).
    pub cpu_shares: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Next.js dev with turbopack needs about 1 GiB; leave room for npm installs.
            memory_bytes: Some(2 * 1024 * 1024 * 1024),
            // npm and next spawn many threads; 1024 is plenty for them and still stops a fork bomb.
            pids: Some(1024),
            cpu_cores: None,
            cpu_shares: Some(1024),
        }
    }
}

/// Which cgroup layout the host uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Separate hierarchies per controller under `root` (e.g. /sys/fs/cgroup/memory).
    V1 { root: PathBuf },
    /// The unified hierarchy at `root`.
    V2 { root: PathBuf },
}

impl CgroupLayout {
    /// Detects the layout under /sys/fs/cgroup.
    pub fn detect() -> Result<Self> {
        let root = PathBuf::from("/sys/fs/cgroup");
        if root.join("cgroup.controllers").exists() {
            return Ok(CgroupLayout::V2 { root });
        }
        for ctrl in ["memory", "pids", "freezer"] {
            if !root.join(ctrl).join("cgroup.procs").exists() {
                return Err(Error::Unsupported {
                    what: format!(
                        "cgroup v1 controller {ctrl} is not mounted at {}",
                        root.join(ctrl).display()
                    ),
                    hint:
                        "mount the memory, pids and freezer controllers (or boot with the unified cgroup v2 hierarchy)"
                            .into(),
                });
            }
        }
        Ok(CgroupLayout::V1 { root })
    }
}

/// The cgroup(s) of one sandbox: `forgeai/<id>` under each controller (v1) or once (v2).
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: CgroupLayout,
    id: String,
}

/// v1 controllers we use; cpu is optional (some hosts do not mount it).
const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "freezer", "cpu"];

impl Cgroup {
    pub fn new(layout: CgroupLayout, id: &str) -> Self {
        Cgroup {
            layout,
            id: id.to_string(),
        }
    }

    /// Ids of every sandbox cgroup on the machine (of any forgeai data dir).
    pub fn ids(layout: &CgroupLayout) -> Vec<String> {
        let parent = match layout {
            CgroupLayout::V1 { root } => root.join("freezer").join("forgeai"),
            CgroupLayout::V2 { root } => root.join("forgeai"),
        };
        fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect()
    }

    fn v1_dir(root: &Path, ctrl: &str, id: &str) -> PathBuf {
        root.join(ctrl).join("forgeai").join(id)
    }

    /// Directories of this cgroup that exist or should exist.
    fn dirs(&self) -> Vec<PathBuf> {
        match &self.layout {
            CgroupLayout::V1 { root } => V1_CONTROLLERS
                .iter()
                .filter(|c| root.join(c).join("cgroup.procs").exists())
                .map(|c| Self::v1_dir(root, c, &self.id))
                .collect(),
            CgroupLayout::V2 { root } => vec![root.join("forgeai").join(&self.id)],
        }
    }

    /// The `cgroup.procs` files a new process writes itself into (before exec).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Creates the cgroup (idempotent) and applies `limits`.
    pub fn create(&self, limits: &Limits) -> Result<()> {
        if let CgroupLayout::V2 { root } = &self.layout {
            // Controllers must be delegated down the tree before a child can use them.
            enable_v2_controllers(root)?;
            let parent = root.join("forgeai");
            fs::create_dir_all(&parent).ctx(|| format!("create cgroup {}", parent.display()))?;
            enable_v2_controllers(&parent)?;
        }
        for dir in self.dirs() {
            fs::create_dir_all(&dir).ctx(|| format!("create cgroup {}", dir.display()))?;
        }
        self.apply(limits)
    }

    fn apply(&self, limits: &Limits) -> Result<()> {
        match &self.layout {
            CgroupLayout::V1 { root } => {
                let dir = |c: &str| Self::v1_dir(root, c, &self.id);
                if let Some(mem) = limits.memory_bytes {
                    write(&dir("memory").join("memory.limit_in_bytes"), &mem.to_string())?;
                    // With swap accounting the combined limit must be set too, or swap is unbounded.
                    let memsw = dir("memory").join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &mem.to_string())?;
                    }
                }
                if let Some(pids) = limits.pids {
                    write(&dir("pids").join("pids.max"), &pids.to_string())?;
                }
                let cpu = dir("cpu");
                if cpu.exists() {
                    if let Some(shares) = limits.cpu_shares {
                        write(&cpu.join("cpu.shares"), &shares.max(2).to_string())?;
                    }
                    if let Some(cores) = limits.cpu_cores {
                        let period: u64 = 100_000;
                        write(&cpu.join("cpu.cfs_period_us"), &period.to_string())?;
                        let quota = ((cores * period as f64) as u64).max(1000);
                        write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    }
                }
            }
            CgroupLayout::V2 { root } => {
                let dir = root.join("forgeai").join(&self.id);
                if let Some(mem) = limits.memory_bytes {
                    write(&dir.join("memory.max"), &mem.to_string())?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                if let Some(pids) = limits.pids {
                    write(&dir.join("pids.max"), &pids.to_string())?;
                }
                if let Some(shares) = limits.cpu_shares {
                    // v1 shares 2..262144 (default 1024) map onto v2 weight 1..10000 (default 100).
                    let weight = (1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142).clamp(1, 10_000);
                    let _ = write(&dir.join("cpu.weight"), &weight.to_string());
                }
                if let Some(cores) = limits.cpu_cores {
                    let period: u64 = 100_000;
                    let quota = ((cores * period as f64) as u64).max(1000);
                    write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                }
            }
        }
        Ok(())
    }

    /// Pids of every process in the sandbox.
    pub fn pids(&self) -> Vec<i32> {
        let Some(dir) = self.primary_dir() else {
            return Vec::new();
        };
        fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// The directory whose `cgroup.procs` lists every sandbox process.
    fn primary_dir(&self) -> Option<PathBuf> {
        match &self.layout {
            CgroupLayout::V1 { root } => Some(Self::v1_dir(root, "pids", &self.id)),
            CgroupLayout::V2 { root } => Some(root.join("forgeai").join(&self.id)),
        }
    }

    /// Stops every process of the sandbox (they keep their memory and open files).
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Lets frozen processes run again.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        match &self.layout {
            CgroupLayout::V1 { root } => {
                let state = Self::v1_dir(root, "freezer", &self.id).join("freezer.state");
                let want = if frozen { "FROZEN" } else { "THAWED" };
                write(&state, want)?;
                // FREEZING is transitional: wait until every task is actually stopped.
                while fs::read_to_string(&state)
                    .ctx(|| format!("read {}", state.display()))?
                    .trim()
                    != want
                {
                    if Instant::now() > deadline {
                        return Err(Error::io(
                            format!("{} did not reach {want}", state.display()),
                            io::ErrorKind::TimedOut.into(),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                    write(&state, want)?;
                }
            }
            CgroupLayout::V2 { root } => {
                let dir = root.join("forgeai").join(&self.id);
                write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
                let want = if frozen { "frozen 1" } else { "frozen 0" };
                let events = dir.join("cgroup.events");
                while !fs::read_to_string(&events)
                    .ctx(|| format!("read {}", events.display()))?
                    .lines()
                    .any(|l| l == want)
                {
                    if Instant::now() > deadline {
                        return Err(Error::io(
                            format!("{} did not report {want}", events.display()),
                            io::ErrorKind::TimedOut.into(),
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        Ok(())
    }

    /// Kills every process in the sandbox and waits until none is left.
    pub fn kill_all(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        if let CgroupLayout::V2 { root } = &self.layout {
            let kill = root.join("forgeai").join(&self.id).join("cgroup.kill");
            if kill.exists() {
                write(&kill, "1")?;
                return self.wait_empty();
            }
        }
        // Freeze first so nothing can fork between listing and killing, then kill and thaw:
        // SIGKILL is delivered as the tasks thaw.
        let _ = self.freeze();
        for pid in self.pids() {
            sigkill(pid);
        }
        let _ = self.thaw();
        self.wait_empty()
    }

    fn wait_empty(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::io(
                    format!("processes {pids:?} of sandbox {} survived SIGKILL", self.id),
                    io::ErrorKind::TimedOut.into(),
                ));
            }
            // Again, for processes forked before the freeze took hold.
            for pid in pids {
                sigkill(pid);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn exists(&self) -> bool {
        self.primary_dir().is_some_and(|d| d.exists())
    }

    /// Kills what is left and removes the cgroup directories.
    pub fn destroy(&self) -> Result<()> {
        self.kill_all()?;
        for dir in self.dirs() {
            if !dir.exists() {
                continue;
            }
            // rmdir can briefly fail with EBUSY while the last killed task is being reaped.
            let mut tries = 0;
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if tries < 100 => {
                        tries += 1;
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(Error::io(format!("remove cgroup {}", dir.display()), e)),
                }
            }
        }
        Ok(())
    }

    /// Processes the kernel OOM-killed in the sandbox because it hit its memory limit.
    pub fn oom_kills(&self) -> u64 {
        match &self.layout {
            CgroupLayout::V1 { root } => stat_field(
                &Self::v1_dir(root, "memory", &self.id).join("memory.oom_control"),
                "oom_kill",
            ),
            CgroupLayout::V2 { root } => {
                stat_field(&root.join("forgeai").join(&self.id).join("memory.events"), "oom_kill")
            }
        }
    }

    /// Memory the kernel cannot reclaim without swap: anonymous pages and tmpfs (`/tmp`).
    pub fn unreclaimable_bytes(&self) -> u64 {
        match &self.layout {
            CgroupLayout::V1 { root } => {
                let stat = Self::v1_dir(root, "memory", &self.id).join("memory.stat");
                stat_field(&stat, "total_rss") + stat_field(&stat, "total_shmem")
            }
            CgroupLayout::V2 { root } => {
                let stat = root.join("forgeai").join(&self.id).join("memory.stat");
                stat_field(&stat, "anon") + stat_field(&stat, "shmem")
            }
        }
    }
}

fn enable_v2_controllers(dir: &Path) -> Result<()> {
    let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let wanted: Vec<String> = ["memory", "pids", "cpu"]
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).ctx(|| format!("write {value:?} to {}", path.display()))
}

/// The value of `key` in a cgroup file of `key value` lines; 0 when absent or unreadable.
fn stat_field(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// SIGKILL to a process read from one of our cgroups; one that is already gone is fine. Only a
/// positive pid: kill(2) of 0 or a negative one would signal whole process groups.
fn sigkill(pid: i32) {
    if let Some(pid) = Pid::from_raw(pid.max(0)) {
        let _ = kill_process(pid, Signal::KILL);
    }
}
