//! File access confined to a sandbox's project directory.
//!
//! Paths come from the coding agent, i.e. from a language model, and the tree they point into is
//! writable by code running in the sandbox, which may plant symlinks at any moment. Checking a
//! path and then opening it would race with such a symlink, so every open goes through
//! `openat2(2)` with `RESOLVE_BENEATH` from a descriptor of the project root: the kernel itself
//! refuses any resolution (`..`, absolute or relative symlink) that would leave the root, with no
//! window between check and use. A lexical pass before that gives clearer errors for the
//! common cases (`..`, absolute paths elsewhere).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, ResolveFlags, Uid};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::provider::{EntryInfo, EntryKind, PROJECT_DIR};

/// Largest file `read_file` returns; bigger ones would be a memory hazard for the caller.
pub const MAX_READ_BYTES: u64 = 64 * 1024 * 1024;

/// A path inside the project, split into its normal components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPath {
    components: Vec<String>,
    /// The path as the caller gave it, for messages.
    original: String,
}

impl ProjectPath {
    /// Parses a caller's path: relative to the project, or absolute under [`PROJECT_DIR`].
    pub fn parse(path: &str) -> Result<Self> {
        let escape = |reason: &str| Error::PathEscape {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if path.contains('\0') {
            return Err(Error::WrongKind {
                path: path.to_string(),
                reason: "contains a NUL byte".into(),
            });
        }
        let rest = if let Some(abs) = path.strip_prefix('/') {
            let project = &PROJECT_DIR[1..];
            match abs.strip_prefix(project) {
                Some("") => "",
                Some(r) if r.starts_with('/') => r,
                _ => return Err(escape("absolute paths must be under /home/user/project")),
            }
        } else {
            path
        };
        let mut components: Vec<String> = Vec::new();
        for part in rest.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if components.pop().is_none() {
                        return Err(escape("`..` climbs above the project directory"));
                    }
                }
                other => components.push(other.to_string()),
            }
        }
        Ok(ProjectPath {
            components,
            original: path.to_string(),
        })
    }

    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The path relative to the project root ("." for the root itself).
    fn relative(&self) -> String {
        if self.components.is_empty() {
            ".".to_string()
        } else {
            self.components.join("/")
        }
    }

    /// The absolute path as seen inside the sandbox.
    pub fn sandbox_path(&self) -> String {
        if self.components.is_empty() {
            PROJECT_DIR.to_string()
        } else {
            format!("{PROJECT_DIR}/{}", self.components.join("/"))
        }
    }

    fn child(&self, name: &str) -> ProjectPath {
        let mut components = self.components.clone();
        components.push(name.to_string());
        let original = format!("{}/{}", self.original.trim_end_matches('/'), name);
        ProjectPath { components, original }
    }

    fn prefix(&self, len: usize) -> ProjectPath {
        ProjectPath {
            components: self.components[..len].to_vec(),
            original: self.original.clone(),
        }
    }
}

/// What one write created, so a failed write can remove it again.
#[derive(Default)]
struct Created {
    /// Prefix lengths of the directories made, outermost first.
    dirs: Vec<usize>,
    /// Whether the file itself was made by this write.
    file: bool,
}

/// An open descriptor of a project root (the sandbox's merged overlay directory).
pub struct ProjectRoot {
    fd: OwnedFd,
    uid: Uid,
    gid: Gid,
}

impl ProjectRoot {
    /// Opens `dir` (the sandbox's merged directory); new files and directories get `uid:gid`.
    pub fn open(dir: &Path, uid: u32, gid: u32) -> Result<Self> {
        let c = cstring(dir.as_os_str().as_bytes())?;
        let fd = rustix::fs::open(
            c.as_c_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| Error::io(format!("open project root {}", dir.display()), err.into()))?;
        Ok(ProjectRoot {
            fd,
            uid: Uid::from_raw(uid),
            gid: Gid::from_raw(gid),
        })
    }

    fn open_beneath(&self, path: &ProjectPath, flags: OFlags, mode: Mode) -> Result<OwnedFd> {
        let rel = cstring(path.relative().as_bytes())?;
        openat2(&self.fd, &rel, flags, mode).map_err(|e| map_err(path, e.into()))
    }

    /// Writes `contents` to `path`, creating parent directories; everything created is owned by
    /// the sandbox user so code in the sandbox can change it later. A write that fails leaves
    /// nothing of itself behind: the directories it created (and the file, when it created it)
    /// are removed again.
    pub fn write_file(&self, path: &ProjectPath, contents: &[u8]) -> Result<()> {
        if path.is_root() {
            return Err(Error::WrongKind {
                path: path.original.clone(),
                reason: "is the project directory, not a file".into(),
            });
        }
        let mut created = Created::default();
        let outcome = self.write_creating(path, contents, &mut created);
        if outcome.is_err() {
            self.undo(path, &created);
        }
        outcome
    }

    fn write_creating(&self, path: &ProjectPath, contents: &[u8], created: &mut Created) -> Result<()> {
        self.ensure_dirs(&path.prefix(path.components.len() - 1), &mut created.dirs)?;
        // O_NONBLOCK: opening a FIFO planted by sandbox code must fail instead of hanging us.
        let flags = OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let mode = Mode::from_raw_mode(0o644);
        // O_EXCL first, to know whether this write made the file (and so may remove it again).
        let rel = cstring(path.relative().as_bytes())?;
        let fd = match openat2(&self.fd, &rel, flags | OFlags::CREATE | OFlags::EXCL, mode) {
            Ok(fd) => {
                created.file = true;
                fd
            }
            Err(Errno::EXIST) => self.open_beneath(path, flags | OFlags::CREATE, mode)?,
            Err(e) => return Err(map_err(path, e.into())),
        };
        let mut file = File::from(fd);
        let meta = file.metadata().map_err(|e| map_err(path, e))?;
        if !meta.is_file() {
            return Err(Error::WrongKind {
                path: path.original.clone(),
                reason: "is not a regular file".into(),
            });
        }
        // Truncate only after the checks above, so a directory or device is never touched.
        file.set_len(0).map_err(|e| map_err(path, e))?;
        // A full disk shows here: ext4 (a sandbox's own disk) and tmpfs reserve space at
        // write time, so no fsync is needed to learn of it (one cost a journal commit through
        // the loop device on every file the agent wrote).
        file.write_all(contents).map_err(|e| map_err(path, e))?;
        rustix::fs::fchown(&file, Some(self.uid), Some(self.gid)).map_err(|e| map_err(path, e.into()))?;
        Ok(())
    }

    /// Removes what a failed write created: its file, then its directories, deepest first.
    /// Best effort: a directory that sandbox code has meanwhile put something into stays.
    fn undo(&self, path: &ProjectPath, created: &Created) {
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let remove = |target: &ProjectPath, flags: AtFlags| {
            let len = target.components.len();
            let Ok(parent) = self.open_beneath(&target.prefix(len - 1), dir_flags, Mode::empty()) else {
                return;
            };
            let Ok(name) = cstring(target.components[len - 1].as_bytes()) else {
                return;
            };
            // Relative to a directory fd we hold, a single name cannot traverse anything.
            let _ = rustix::fs::unlinkat(&parent, name.as_c_str(), flags);
        };
        if created.file {
            remove(path, AtFlags::empty());
        }
        for &len in created.dirs.iter().rev() {
            remove(&path.prefix(len), AtFlags::REMOVEDIR);
        }
    }

    /// Creates each missing directory of `dir` (like `mkdir -p`) without following any symlink
    /// out of the root: every step is re-resolved from the root with `RESOLVE_BENEATH`. The
    /// prefix lengths of the directories it made are pushed to `created`.
    fn ensure_dirs(&self, dir: &ProjectPath, created: &mut Vec<usize>) -> Result<()> {
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        for len in 1..=dir.components.len() {
            let prefix = dir.prefix(len);
            match self.open_beneath(&prefix, dir_flags, Mode::empty()) {
                Ok(_) => continue,
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            let parent = self.open_beneath(&dir.prefix(len - 1), dir_flags, Mode::empty())?;
            let name = cstring(dir.components[len - 1].as_bytes())?;
            // mkdirat/fchownat relative to a directory fd we hold: a single name cannot
            // traverse anything, so this cannot leave the root.
            match rustix::fs::mkdirat(&parent, name.as_c_str(), Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                // Lost a race with sandbox code creating it: fine, re-resolved next round.
                Err(Errno::EXIST) => continue,
                Err(err) => return Err(map_err(&prefix, err.into())),
            }
            created.push(len);
            rustix::fs::chownat(
                &parent,
                name.as_c_str(),
                Some(self.uid),
                Some(self.gid),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|err| map_err(&prefix, err.into()))?;
        }
        Ok(())
    }

    /// Reads a regular file of at most [`MAX_READ_BYTES`].
    pub fn read_file(&self, path: &ProjectPath) -> Result<Vec<u8>> {
        let fd = self.open_beneath(path, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty())?;
        let mut file = File::from(fd);
        let meta = file.metadata().map_err(|e| map_err(path, e))?;
        if meta.is_dir() {
            return Err(Error::WrongKind {
                path: path.original.clone(),
                reason: "is a directory; list it instead".into(),
            });
        }
        if !meta.is_file() {
            return Err(Error::WrongKind {
                path: path.original.clone(),
                reason: "is not a regular file".into(),
            });
        }
        if meta.len() > MAX_READ_BYTES {
            return Err(Error::FileTooLarge {
                path: path.original.clone(),
                size: meta.len(),
                limit: MAX_READ_BYTES,
            });
        }
        let mut buf = Vec::with_capacity(meta.len() as usize);
        // take(): the file may grow while we read; never return more than the limit.
        (&mut file)
            .take(MAX_READ_BYTES)
            .read_to_end(&mut buf)
            .map_err(|e| map_err(path, e))?;
        Ok(buf)
    }

    /// Lists `dir`, descending `depth` levels; symlinked directories are listed, not entered.
    pub fn list(&self, dir: &ProjectPath, depth: u32) -> Result<Vec<EntryInfo>> {
        let mut out = Vec::new();
        self.list_into(dir, depth.max(1), &mut out)?;
        Ok(out)
    }

    fn list_into(&self, dir: &ProjectPath, depth: u32, out: &mut Vec<EntryInfo>) -> Result<()> {
        let fd = self.open_beneath(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        // Reading through /proc/self/fd keeps us on the descriptor resolved beneath the root.
        let proc_path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let entries = std::fs::read_dir(&proc_path).map_err(|e| map_err(dir, e))?;
        let mut names: Vec<(String, EntryKind, u64)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| map_err(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = match std::fs::symlink_metadata(proc_path.join(entry.file_name())) {
                Ok(m) => m,
                // Deleted between readdir and stat by sandbox code: skip it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(map_err(dir, e)),
            };
            let ft = meta.file_type();
            let kind = if ft.is_symlink() {
                EntryKind::Symlink
            } else if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_file() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            names.push((name, kind, meta.len()));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, kind, size) in names {
            let child = dir.child(&name);
            out.push(EntryInfo {
                name,
                path: child.sandbox_path(),
                kind,
                size,
            });
            if kind == EntryKind::Dir && depth > 1 {
                self.list_into(&child, depth - 1, out)?;
            }
        }
        Ok(())
    }
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).map_err(|_| Error::WrongKind {
        path: String::from_utf8_lossy(bytes).into_owned(),
        reason: "contains a NUL byte".into(),
    })
}

/// openat2(2) of `path` beneath `dir`: resolution may not leave `dir` (`RESOLVE_BENEATH`) nor
/// go through /proc magic links, which could otherwise jump anywhere (`RESOLVE_NO_MAGICLINKS`).
fn openat2(dir: &OwnedFd, path: &CStr, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
    // The kernel refuses a mode without O_CREAT.
    let mode = if flags.contains(OFlags::CREATE) {
        mode
    } else {
        Mode::empty()
    };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    // The kernel answers EAGAIN when a concurrent rename might have let `..` escape; retrying
    // is the documented remedy. Bounded so a hostile rename loop cannot pin us here.
    for _ in 0..64 {
        match rustix::fs::openat2(dir, path, flags, mode, resolve) {
            Err(Errno::AGAIN | Errno::INTR) => continue,
            result => return result,
        }
    }
    Err(Errno::AGAIN)
}

/// Turns errno values into the errors callers act on.
fn map_err(path: &ProjectPath, err: io::Error) -> Error {
    let p = || path.original.clone();
    match Errno::from_io_error(&err) {
        Some(Errno::XDEV) => Error::PathEscape {
            path: p(),
            reason: "a symlink in it points outside the project".into(),
        },
        Some(Errno::LOOP) => Error::PathEscape {
            path: p(),
            reason: "it goes through a symlink loop or a link that leaves the project".into(),
        },
        Some(Errno::NOENT) => Error::NotFound { path: p() },
        Some(Errno::NOTDIR) => Error::WrongKind {
            path: p(),
            reason: "a parent of it is not a directory".into(),
        },
        Some(Errno::ISDIR) => Error::WrongKind {
            path: p(),
            reason: "is a directory".into(),
        },
        Some(Errno::NXIO) => Error::WrongKind {
            path: p(),
            reason: "is a FIFO or device, not a regular file".into(),
        },
        Some(Errno::NOSPC) | Some(Errno::DQUOT) => Error::DiskFull { path: p() },
        _ => Error::io(format!("access {:?} in the project", path.original), err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_relative_and_project_absolute() {
        assert_eq!(
            ProjectPath::parse("app/page.tsx").unwrap().sandbox_path(),
            "/home/user/project/app/page.tsx"
        );
        assert_eq!(
            ProjectPath::parse("/home/user/project/a/./b").unwrap().sandbox_path(),
            "/home/user/project/a/b"
        );
        assert_eq!(
            ProjectPath::parse("a/../b").unwrap().sandbox_path(),
            "/home/user/project/b"
        );
        assert!(ProjectPath::parse("/home/user/project").unwrap().is_root());
        assert!(ProjectPath::parse("").unwrap().is_root());
    }

    #[test]
    fn parse_refuses_escapes() {
        for p in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "/home/user/projectx/a",
            "/home/user/.bashrc",
            "/",
        ] {
            assert!(matches!(ProjectPath::parse(p), Err(Error::PathEscape { .. })), "{p}");
        }
        assert!(matches!(ProjectPath::parse("a\0b"), Err(Error::WrongKind { .. })));
    }

    fn own_ids() -> (u32, u32) {
        (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw())
    }

    #[test]
    fn a_failed_nested_write_leaves_no_directories_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = own_ids();
        let r = ProjectRoot::open(dir.path(), uid, gid).unwrap();
        let long = "n".repeat(300);
        // The file name is too long for the filesystem: a/b/c are made, then the open fails.
        let error = r
            .write_file(&ProjectPath::parse(&format!("a/b/c/{long}")).unwrap(), b"x")
            .unwrap_err();
        assert!(!dir.path().join("a").exists(), "left a/ behind after: {error}");
        // A directory name is too long: a/b are made, then the third one fails.
        r.write_file(&ProjectPath::parse(&format!("a/b/{long}/file")).unwrap(), b"x")
            .unwrap_err();
        assert!(!dir.path().join("a").exists());
        // Directories that were there before stay; only the new ones go.
        std::fs::create_dir(dir.path().join("keep")).unwrap();
        r.write_file(&ProjectPath::parse(&format!("keep/new/{long}")).unwrap(), b"x")
            .unwrap_err();
        assert!(dir.path().join("keep").is_dir());
        assert!(!dir.path().join("keep/new").exists());
        // A write that works keeps what it made.
        r.write_file(&ProjectPath::parse("a/b/c/file").unwrap(), b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a/b/c/file")).unwrap(), b"x");
    }

    #[test]
    fn a_write_that_fills_the_disk_leaves_nothing_behind() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let target = cstring(dir.path().as_os_str().as_bytes()).unwrap();
        let flags = rustix::mount::MountFlags::empty();
        rustix::mount::mount(c"tmpfs", target.as_c_str(), c"tmpfs", flags, c"size=64k")
            .unwrap_or_else(|e| panic!("mount a tmpfs: {}", io::Error::from(e)));
        struct Unmount(CString);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = rustix::mount::unmount(self.0.as_c_str(), rustix::mount::UnmountFlags::DETACH);
            }
        }
        let _unmount = Unmount(target);
        let (uid, gid) = own_ids();
        let r = ProjectRoot::open(dir.path(), uid, gid).unwrap();
        let error = r
            .write_file(&ProjectPath::parse("a/b/c/big.bin").unwrap(), &vec![7u8; 1 << 20])
            .unwrap_err();
        assert!(matches!(error, Error::DiskFull { .. }), "{error}");
        assert!(!dir.path().join("a").exists(), "the failed write left a/ behind");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn openat2_refuses_symlinks_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("rel")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        std::fs::create_dir(root.join("inside")).unwrap();
        std::os::unix::fs::symlink("inside", root.join("ok")).unwrap();
        let (uid, gid) = own_ids();
        let r = ProjectRoot::open(&root, uid, gid).unwrap();
        for p in ["rel", "abs", "up/secret"] {
            let path = ProjectPath::parse(p).unwrap();
            assert!(matches!(r.read_file(&path), Err(Error::PathEscape { .. })), "{p}");
            assert!(
                matches!(r.write_file(&path, b"x"), Err(Error::PathEscape { .. })),
                "{p}"
            );
        }
        assert!(matches!(
            r.write_file(&ProjectPath::parse("up/new/file").unwrap(), b"x"),
            Err(Error::PathEscape { .. })
        ));
        assert_eq!(std::fs::read_to_string(dir.path().join("secret")).unwrap(), "s");
        r.write_file(&ProjectPath::parse("ok/deep/er/f.txt").unwrap(), b"hello")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("inside/deep/er/f.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            r.read_file(&ProjectPath::parse("ok/deep/er/f.txt").unwrap()).unwrap(),
            b"hello"
        );
        let listed = r.list(&ProjectPath::parse(".").unwrap(), 3).unwrap();
        let names: Vec<_> = listed.iter().map(|e| e.path.as_str()).collect();
        assert!(names.contains(&"/home/user/project/inside/deep/er"), "{names:?}");
        assert!(matches!(
            r.read_file(&ProjectPath::parse("missing").unwrap()),
            Err(Error::NotFound { .. })
        ));
    }
}
