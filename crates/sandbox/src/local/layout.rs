//! Where a sandbox lives on the host and how its filesystem is put together.
//!
//! Sandbox `<id>` is `<data_dir>/sandboxes/<id>/` with `state.json` (what brings it back after
//! a restart), `dev.log`, `merged/` (the overlay's mount point: the project) and, with a disk
//! quota, `disk.img` mounted on `disk/`, which holds the writable state: `upper/` and `work/`
//! (the overlay's writable layer) and `home/` (the user's home). Sandboxes made before quotas
//! existed keep those three directly in the sandbox directory.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

use super::disk;
use crate::error::{Error, IoContext, Result};

/// The file in a sandbox's directory that makes it a sandbox.
pub(super) const STATE_FILE: &str = "state.json";

/// Paths of one sandbox.
#[derive(Debug, Clone)]
pub(super) struct Dirs {
    pub root: PathBuf,
    /// The quota filesystem's image and mount point; `None` for sandboxes without a quota.
    pub disk: Option<(PathBuf, PathBuf)>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    pub home: PathBuf,
    pub state: PathBuf,
    pub dev_log: PathBuf,
}

impl Dirs {
    pub fn new(sandboxes: &Path, id: &str, quota: bool) -> Self {
        let root = sandboxes.join(id);
        let writable = if quota { root.join("disk") } else { root.clone() };
        Dirs {
            disk: quota.then(|| (root.join("disk.img"), writable.clone())),
            upper: writable.join("upper"),
            work: writable.join("work"),
            home: writable.join("home"),
            merged: root.join("merged"),
            state: root.join(STATE_FILE),
            dev_log: root.join("dev.log"),
            root,
        }
    }

    /// Makes the sandbox directory, with the quota filesystem (a copy of `blank_image`) when
    /// the sandbox has one.
    pub fn create(&self, blank_image: Option<&Path>, uid: u32, gid: u32) -> Result<()> {
        make_dir(&self.root, 0o711, None)?;
        make_dir(&self.merged, 0o755, Some((uid, gid)))?;
        if let (Some((image, mount_point)), Some(blank)) = (&self.disk, blank_image) {
            disk::sparse_copy(blank, image)?;
            make_dir(mount_point, 0o711, None)?;
        }
        Ok(())
    }

    /// Mounts the quota filesystem (if any and not mounted yet) and makes the writable
    /// directories on it that are missing.
    pub fn mount_writable(&self, uid: u32, gid: u32, never_mounted: bool) -> Result<()> {
        if let Some((image, mount_point)) = &self.disk
            && !is_mounted(mount_point)
        {
            disk::mount_image(image, mount_point, never_mounted)?;
            // The root of a fresh ext4 is 0755 root; the sandbox user only needs to pass.
            std::fs::set_permissions(mount_point, std::fs::Permissions::from_mode(0o711))
                .ctx(|| format!("chmod {}", mount_point.display()))?;
        }
        for (dir, mode, owner) in [
            (&self.upper, 0o755, Some((uid, gid))),
            (&self.work, 0o700, None),
            (&self.home, 0o750, Some((uid, gid))),
        ] {
            if !dir.exists() {
                make_dir(dir, mode, owner)?;
            }
        }
        Ok(())
    }

    /// Unmounts the project overlay, then the quota filesystem.
    pub fn unmount_all(&self) -> Result<()> {
        let merged = unmount(&self.merged);
        let disk = match &self.disk {
            Some((_, mount_point)) => unmount(mount_point),
            None => Ok(()),
        };
        merged.and(disk)
    }

    /// Whether anything of the sandbox is still mounted (then its files must not be removed).
    pub fn any_mounted(&self) -> Option<&Path> {
        std::iter::once(&self.merged)
            .chain(self.disk.as_ref().map(|(_, m)| m))
            .find(|p| is_mounted(p))
            .map(PathBuf::as_path)
    }
}

fn make_dir(dir: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    std::fs::create_dir(dir).ctx(|| format!("create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).ctx(|| format!("chmod {}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).ctx(|| format!("chown {}", dir.display()))?;
    }
    Ok(())
}

pub(super) fn is_mounted(path: &Path) -> bool {
    // A mount point has a different device than its parent directory.
    let (Ok(m), Some(Ok(p))) = (std::fs::metadata(path), path.parent().map(std::fs::metadata)) else {
        return false;
    };
    m.dev() != p.dev()
}

pub(super) fn mount_overlay(lower: &Path, dirs: &Dirs) -> Result<()> {
    if is_mounted(&dirs.merged) {
        return Ok(());
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        dirs.upper.display(),
        dirs.work.display()
    );
    let target = CString::new(dirs.merged.as_os_str().as_bytes())
        .map_err(|_| Error::io("mount path contains NUL", io::ErrorKind::InvalidInput.into()))?;
    let data = CString::new(opts.clone())
        .map_err(|_| Error::io("mount options contain NUL", io::ErrorKind::InvalidInput.into()))?;
    if let Err(err) = rustix::mount::mount(
        c"overlay",
        target.as_c_str(),
        c"overlay",
        MountFlags::empty(),
        data.as_c_str(),
    ) {
        return Err(Error::io(
            format!(
                "mount overlay on {} ({opts}); overlayfs needs root and a kernel with overlay support",
                dirs.merged.display()
            ),
            io::Error::from(err),
        ));
    }
    Ok(())
}

fn unmount(path: &Path) -> Result<()> {
    if !is_mounted(path) {
        return Ok(());
    }
    let target = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::io("mount path contains NUL", io::ErrorKind::InvalidInput.into()))?;
    // MNT_DETACH: sandbox mount namespaces that are still being torn down may hold it for a
    // moment; the host view goes away now.
    if let Err(err) = rustix::mount::unmount(target.as_c_str(), UnmountFlags::DETACH) {
        return Err(Error::io(format!("unmount {}", path.display()), io::Error::from(err)));
    }
    Ok(())
}
