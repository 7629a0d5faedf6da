//! Starting processes inside a sandbox: `bwrap` entered into the sandbox's network namespace
//! and cgroup, running as the unprivileged sandbox user.
//!
//! The child (cloned, not forked: see [`super::spawner`]), still root, joins the sandbox's
//! network namespace and cgroups (so every descendant is counted and limited from its first
//! instruction), then drops to the sandbox uid/gid and execs bwrap. bwrap therefore runs
//! unprivileged and builds its mount, pid, ipc and uts namespaces inside a fresh user namespace
//! mapping the sandbox uid to itself: root's powers never reach sandbox code, and files it
//! creates are owned by the sandbox uid on disk.
//!
//! Before dropping root the child also enters a private mount namespace in which the other
//! sandboxes' mounts are detached (see [`super::mounts`]), the sandbox's own project, home,
//! generated /etc files and template support files being bound first to staging directories
//! under [`STAGE_DIR`] that bwrap binds from. So the unprivileged bwrap never walks a path of
//! the data dir, which may sit under a directory only root can enter (a mode-700 home).
//!
//! bwrap reads its options from a pipe (`--args`), not its command line: pid 1 of the
//! sandbox is bwrap, and its `/proc/1/cmdline` would otherwise show host paths.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Gid, Mode, OFlags, Uid};
use rustix::io::Errno;
use rustix::mount::{MountPropagationFlags, UnmountFlags, mount_bind, mount_change, unmount};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use super::seccomp::SeccompFilters;
use super::spawner::{ChildPlan, SandboxProcess, Spawner};
use crate::error::{Error, IoContext, Result};
use crate::provider::{HOME_DIR, PROJECT_DIR};

/// Where a template's support files (e.g. the static server script) appear, read-only.
pub const TEMPLATE_SUPPORT_DIR: &str = "/opt/forgeai-template";

/// Root-owned directory of empty mount points, shared by every spawn (each binds into it in its
/// own mount namespace).
pub const STAGE_DIR: &str = "/run/forgeai/stage";
/// Entries of [`STAGE_DIR`] the sandbox's home, project, /etc files and template support
/// files are bound to.
const STAGE_HOME: &str = "home";
const STAGE_PROJECT: &str = "project";
const STAGE_ETC: &str = "etc";
const STAGE_SUPPORT: &str = "support";

/// Creates [`STAGE_DIR`] and its mount points.
pub fn ensure_stage_dir() -> Result<()> {
    for name in ["", STAGE_HOME, STAGE_PROJECT, STAGE_ETC, STAGE_SUPPORT] {
        let dir = Path::new(STAGE_DIR).join(name);
        std::fs::create_dir_all(&dir).ctx(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .ctx(|| format!("chmod {}", dir.display()))?;
    }
    Ok(())
}

/// Host paths shown read-only inside every sandbox when they exist: the OS's programs and
/// libraries and the few /etc files they need (dynamic linker cache, TLS roots, alternatives).
const RO_SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/mime.types",
];

/// Top-level directories that are symlinks into /usr on merged-/usr systems (or real dirs on
/// older ones).
const TOP_LEVEL_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// Everything needed to start processes in one sandbox; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub bwrap: PathBuf,
    /// The sandbox's merged overlay directory (its project).
    pub merged: PathBuf,
    /// The sandbox user's home directory on the host.
    pub home: PathBuf,
    /// Template support files, if any.
    pub support: Option<PathBuf>,
    /// Generated passwd, group, hosts, hostname and resolv.conf.
    pub etc_dir: PathBuf,
    /// `/run/netns/<name>` of the sandbox's network namespace.
    pub netns: PathBuf,
    /// `cgroup.procs` files the process joins.
    pub cgroup_procs: Vec<PathBuf>,
    /// `<data_dir>/sandboxes`, detached in the child's mount namespace.
    pub sandboxes_dir: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// Sandbox-wide environment (template env + create options).
    pub envs: BTreeMap<String, String>,
    /// The seccomp filters the sandbox's processes run under.
    pub seccomp: Arc<SeccompFilters>,
    pub spawner: Arc<Spawner>,
}

/// What to run in a sandbox, and where its standard output and error go (stdin is empty).
pub struct Launch {
    pub script: String,
    pub cwd: String,
    pub extra_env: BTreeMap<String, String>,
    pub output: Output,
    /// What is being started, for the error message.
    pub what: String,
}

/// Where a sandbox process's stdout and stderr go.
pub enum Output {
    /// Pipes the caller reads ([`Started::stdout`], [`Started::stderr`]).
    Piped,
    /// Both into this file, truncated first.
    Log(PathBuf),
}

/// A process started by [`SpawnSpec::spawn`], with the read ends of its output pipes.
pub struct Started {
    pub process: SandboxProcess,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
}

impl SpawnSpec {
    /// Starts `bwrap … /bin/bash -c <script>` in this sandbox (see [`super::spawner`] for how).
    pub async fn spawn(self: &Arc<Self>, launch: Launch) -> Result<Started> {
        let (stdout, stderr, readers) = match &launch.output {
            Output::Piped => {
                let (out_reader, out_writer) = io::pipe().ctx(|| "create a pipe for stdout".into())?;
                let (err_reader, err_writer) = io::pipe().ctx(|| "create a pipe for stderr".into())?;
                (
                    OwnedFd::from(out_writer),
                    OwnedFd::from(err_writer),
                    Some((out_reader, err_reader)),
                )
            }
            Output::Log(path) => {
                let out = File::create(path).ctx(|| format!("create {}", path.display()))?;
                let err = out.try_clone().ctx(|| format!("dup {}", path.display()))?;
                (OwnedFd::from(out), OwnedFd::from(err), None)
            }
        };
        let stdin = OwnedFd::from(File::open("/dev/null").ctx(|| "open /dev/null".into())?);
        let spec = self.clone();
        let process = self
            .spawner
            .spawn(move || spec.plan(&launch, [stdin, stdout, stderr]))
            .await?;
        let receiver = |reader: io::PipeReader| {
            tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())
                .ctx(|| "read a sandbox process's output".into())
        };
        let (stdout, stderr) = match readers {
            Some((out, err)) => (Some(receiver(out)?), Some(receiver(err)?)),
            None => (None, None),
        };
        Ok(Started {
            process,
            stdout,
            stderr,
        })
    }

    /// What the child of `launch` does between clone and exec: join the sandbox's network
    /// namespace and cgroups, detach the other sandboxes in a mount namespace of its own, drop
    /// root, exec bwrap with its options in a pipe.
    fn plan(&self, launch: &Launch, stdio: [OwnedFd; 3]) -> Result<ChildPlan> {
        let netns = File::open(&self.netns).ctx(|| {
            format!(
                "open network namespace {} (was the sandbox's network torn down?)",
                self.netns.display()
            )
        })?;
        let (options, mut options_writer) = io::pipe().ctx(|| "create a pipe for bwrap's options".into())?;
        let seccomp = self
            .seccomp
            .programs
            .iter()
            .map(|program| {
                let (reader, mut writer) = io::pipe().ctx(|| "create a pipe for a seccomp filter".into())?;
                // A few hundred bytes: far below a pipe's capacity, so this never blocks.
                io::Write::write_all(&mut writer, program).ctx(|| "write a seccomp filter".into())?;
                Ok(reader)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut encoded = Vec::with_capacity(4096);
        let filters = seccomp
            .iter()
            .flat_map(|pipe| [OsString::from("--add-seccomp-fd"), pipe.as_raw_fd().to_string().into()]);
        for arg in filters.chain(self.bwrap_args(&launch.cwd)) {
            encoded.extend_from_slice(arg.as_bytes());
            encoded.push(0);
        }
        // Far below a pipe's capacity, so this never blocks before bwrap reads.
        io::Write::write_all(&mut options_writer, &encoded).ctx(|| "write bwrap's options".into())?;
        drop(options_writer);

        let nul_free = |what: &str, bytes: Vec<u8>| {
            CString::new(bytes).map_err(|_| {
                Error::io(
                    format!("{what} contains a NUL byte"),
                    io::ErrorKind::InvalidInput.into(),
                )
            })
        };
        let c = |p: &Path| nul_free("a sandbox path", p.as_os_str().as_bytes().to_vec());
        let program = c(&self.bwrap)?;
        let argv = [
            program.clone(),
            c"--args".into(),
            nul_free("an fd", options.as_raw_fd().to_string().into_bytes())?,
            c"--".into(),
            c"/bin/bash".into(),
            c"-c".into(),
            nul_free("the command", launch.script.clone().into_bytes())?,
        ]
        .into();
        // Only what we set reaches the sandbox: the host's environment may hold secrets.
        let mut env: BTreeMap<&str, &str> = base_env().into_iter().collect();
        env.extend(
            self.envs
                .iter()
                .chain(launch.extra_env.iter())
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let envp = env
            .into_iter()
            .map(|(k, v)| nul_free("an environment variable", format!("{k}={v}").into_bytes()))
            .collect::<Result<Vec<_>>>()?;

        let procs: Vec<CString> = self.cgroup_procs.iter().map(|p| c(p)).collect::<Result<_>>()?;
        // (source, staging target) binds, then the trees to detach.
        let stage = Path::new(STAGE_DIR);
        let mut binds = vec![
            (c(&self.merged)?, c(&stage.join(STAGE_PROJECT))?),
            (c(&self.home)?, c(&stage.join(STAGE_HOME))?),
            (c(&self.etc_dir)?, c(&stage.join(STAGE_ETC))?),
        ];
        if let Some(support) = &self.support {
            binds.push((c(support)?, c(&stage.join(STAGE_SUPPORT))?));
        }
        let detach = [
            c(&self.sandboxes_dir)?,
            c(self.netns.parent().unwrap_or(Path::new("/run/netns")))?,
        ];
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        // Runs in the child: only system calls on data prepared here, no allocation (rustix
        // takes the `&CStr` paths as they are).
        let setup = move || -> io::Result<()> {
            rustix::thread::move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))?;
            for path in &procs {
                let fd = rustix::fs::open(path.as_c_str(), OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
                // "0" means the writing process itself, in v1 and v2 alike.
                if rustix::io::write(&fd, b"0")? != 1 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
            }
            // A private copy of the host's mount table: nothing done below propagates back (an
            // unmount in a shared peer group would otherwise reach the host).
            // SAFETY (unshare_unsafe): the child is a process of its own (no CLONE_THREAD, no
            // CLONE_FS), so nothing else shares the mount namespace or the fs state it replaces.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }?;
            mount_change(c"/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
            for (src, dst) in &binds {
                mount_bind(src.as_c_str(), dst.as_c_str())?;
            }
            for path in &detach {
                // EINVAL: not a mount point (e.g. the sandboxes dir could not be made one);
                // bwrap is then merely slower.
                match unmount(path.as_c_str(), UnmountFlags::DETACH) {
                    Ok(()) | Err(Errno::INVAL | Errno::NOENT) => {}
                    Err(err) => return Err(err.into()),
                }
            }
            // Groups, then gid, then uid: setgroups and setgid need the root powers setuid gives
            // up. The per-thread calls (the raw system calls) change the whole child, which has
            // one thread.
            rustix::thread::set_thread_groups(&[])?;
            rustix::thread::set_thread_gid(gid)?;
            rustix::thread::set_thread_uid(uid)?;
            Ok(())
        };
        Ok(ChildPlan {
            program,
            argv,
            envp,
            stdio,
            inherit: std::iter::once(options).chain(seccomp).map(OwnedFd::from).collect(),
            setup: Box::new(setup),
            what: format!("bwrap for {}", launch.what),
        })
    }

    fn bwrap_args(&self, cwd: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::with_capacity(96);
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        push(&[
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            // Nested user namespaces are kernel attack surface sandboxed code has no use for.
            "--disable-userns",
            // Killing bwrap (timeout, kill) must take the whole process tree with it.
            "--die-with-parent",
            // A new session stops TIOCSTI-style injection into a controlling terminal.
            "--new-session",
            "--hostname",
            "sandbox",
        ]);
        for p in RO_SYSTEM_PATHS {
            if Path::new(p).exists() {
                push(&["--ro-bind", p, p]);
            }
        }
        for p in TOP_LEVEL_LINKS {
            let path = Path::new(p);
            match std::fs::read_link(path) {
                Ok(target) => {
                    a.push("--symlink".into());
                    a.push(target.into_os_string());
                    a.push(p.into());
                }
                Err(_) if path.is_dir() => a.extend(["--ro-bind", p, p].map(OsString::from)),
                Err(_) => {}
            }
        }
        let stage = Path::new(STAGE_DIR);
        for f in ["passwd", "group", "hosts", "hostname", "resolv.conf"] {
            a.push("--ro-bind".into());
            a.push(stage.join(STAGE_ETC).join(f).into_os_string());
            a.push(format!("/etc/{f}").into());
        }
        a.extend(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"].map(OsString::from));
        // The staging binds the child made of `home` and `merged` (see `prepare`).
        a.push("--bind".into());
        a.push(stage.join(STAGE_HOME).into_os_string());
        a.push(HOME_DIR.into());
        a.push("--bind".into());
        a.push(stage.join(STAGE_PROJECT).into_os_string());
        a.push(PROJECT_DIR.into());
        if self.support.is_some() {
            a.push("--ro-bind".into());
            a.push(stage.join(STAGE_SUPPORT).into_os_string());
            a.push(TEMPLATE_SUPPORT_DIR.into());
        }
        // Nothing outside the explicit mounts may be written, not even bwrap's root tmpfs.
        a.extend(["--remount-ro", "/", "--chdir", cwd].map(OsString::from));
        a
    }
}

fn base_env() -> [(&'static str, &'static str); 8] {
    [
        ("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ("HOME", HOME_DIR),
        ("USER", "user"),
        ("LOGNAME", "user"),
        ("SHELL", "/bin/bash"),
        ("LANG", "C.UTF-8"),
        ("TMPDIR", "/tmp"),
        // npm's update check would phone home on every command and fails offline anyway.
        ("NPM_CONFIG_UPDATE_NOTIFIER", "false"),
    ]
}

/// Writes the generated /etc files every sandbox shares: a passwd and group naming the sandbox
/// user, hosts, hostname, and a resolv.conf with the host's non-loopback name servers (a
/// loopback resolver of the host is unreachable from the sandbox's namespace).
pub fn write_etc(etc_dir: &Path, uid: u32, gid: u32) -> Result<()> {
    std::fs::create_dir_all(etc_dir).ctx(|| format!("create {}", etc_dir.display()))?;
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut servers: Vec<String> = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.starts_with("127.") && s != "::1" && !s.is_empty())
        .collect();
    if servers.is_empty() {
        tracing::warn!("host resolv.conf has no non-loopback name server; sandboxes will have no DNS");
        servers.clear();
    }
    let files = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\nuser:x:{uid}:{gid}:sandbox user:{HOME_DIR}:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        ("group", format!("root:x:0:\nuser:x:{gid}:\nnogroup:x:65534:\n")),
        (
            "hosts",
            "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string(),
        ),
        ("hostname", "sandbox\n".to_string()),
        (
            "resolv.conf",
            servers.iter().map(|s| format!("nameserver {s}\n")).collect(),
        ),
    ];
    for (name, content) in files {
        let path = etc_dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
            let tmp = etc_dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content).ctx(|| format!("write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).ctx(|| format!("replace {}", path.display()))?;
        }
    }
    Ok(())
}
