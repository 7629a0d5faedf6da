//! Keeping the mount table that bubblewrap sees small.
//!
//! bwrap parses `/proc/self/mountinfo` for every bind it makes, and the host namespace holds
//! two mounts per sandbox (its overlay and its `/run/netns` entry); with hundreds of sandboxes
//! every bwrap start would spend most of its time there. So the spawning child, still root,
//! enters a private mount namespace and detaches what bwrap has no use for: `/run/netns` (it
//! already joined its namespace by descriptor) and `<data_dir>/sandboxes`, which the provider
//! makes a mount point of its own so one detach hides every sandbox's overlay. The sandbox's
//! own project and home are first bound to fixed staging directories outside that tree.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::mount::{MountPropagationFlags, UnmountFlags, mount_bind, mount_change, unmount};

/// Whether `<data_dir>/sandboxes` is a mount point of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not looked at since start (or since it was last unmounted).
    Unchecked,
    Bound,
    /// Overlays were mounted beneath it before it became a mount point (an older forgeai
    /// left them): binding now would hide them, so sandboxes run without the shortcut.
    Skipped,
}

/// Makes `<data_dir>/sandboxes` a private bind mount of itself, and undoes it when empty.
#[derive(Debug)]
pub struct SandboxesMount {
    dir: PathBuf,
    state: Mutex<State>,
}

impl SandboxesMount {
    pub fn new(dir: PathBuf) -> Self {
        SandboxesMount {
            dir,
            state: Mutex::new(State::Unchecked),
        }
    }

    /// Makes the directory a mount point (idempotent); call before mounting an overlay under
    /// it. Failure only costs speed, so it is logged, not returned.
    pub fn ensure(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *state != State::Unchecked {
            return;
        }
        *state = match self.bind() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot make the sandboxes dir a mount point; bwrap starts get slower with many sandboxes");
                State::Skipped
            }
        };
    }

    fn bind(&self) -> io::Result<State> {
        let (at, beneath) = mounts_at_or_beneath(&self.dir)?;
        if !at && beneath {
            tracing::info!(dir = %self.dir.display(), "overlays are mounted beneath the sandboxes dir; not making it a mount point");
            return Ok(State::Skipped);
        }
        let c = cstring(&self.dir)?;
        if !at {
            mount_bind(c.as_c_str(), c.as_c_str())?;
        }
        // Private: were it shared with its parent's peer group, every overlay mounted beneath
        // it would be propagated to (and so doubled in) the underlying directory.
        mount_change(c.as_c_str(), MountPropagationFlags::PRIVATE)?;
        Ok(State::Bound)
    }

    /// Removes the mount point once no sandbox is mounted beneath it (e.g. after `kill_all`),
    /// so the data dir can be deleted; the next sandbox start binds it again.
    pub fn release(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Bound => {}
            State::Skipped => {
                *state = State::Unchecked;
                return;
            }
            // A provider that started no sandbox may still clean up after an earlier one: a
            // mount point on the same filesystem as its parent is our bind (a filesystem of
            // its own mounted there by an administrator is left alone).
            State::Unchecked => {
                let same_dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
                let ours = matches!(mounts_at_or_beneath(&self.dir), Ok((true, _)))
                    && self.dir.parent().and_then(same_dev).is_some()
                    && self.dir.parent().and_then(same_dev) == same_dev(&self.dir);
                if !ours {
                    return;
                }
            }
        }
        let Ok(c) = cstring(&self.dir) else { return };
        // Not MNT_DETACH: with an overlay still mounted beneath (or anything open in it) this
        // fails with EBUSY and everything stays as it is.
        if unmount(c.as_c_str(), UnmountFlags::empty()).is_ok() {
            *state = State::Unchecked;
            return;
        }
        // EBUSY with nothing mounted beneath: a sandbox's detached overlay is still referenced
        // by its dying processes. The bind itself hides nothing, so detaching it is safe.
        if matches!(mounts_at_or_beneath(&self.dir), Ok((true, false)))
            && unmount(c.as_c_str(), UnmountFlags::DETACH).is_ok()
        {
            *state = State::Unchecked;
        }
    }
}

/// Mount points strictly beneath `dir`, from this process's mount table.
pub fn mounts_beneath(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.as_os_str().as_bytes();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .filter(|point| point.starts_with(dir) && point.get(dir.len()) == Some(&b'/'))
        .map(|point| PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(point)))
        .collect()
}

/// Whether a mount sits exactly at `dir`, and whether any sits beneath it.
fn mounts_at_or_beneath(dir: &Path) -> io::Result<(bool, bool)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let dir = dir.as_os_str().as_bytes();
    let (mut at, mut beneath) = (false, false);
    for line in info.lines() {
        let Some(field) = line.split(' ').nth(4) else { continue };
        let point = unescape(field);
        if point == dir {
            at = true;
        } else if point.starts_with(dir) && point.get(dir.len()) == Some(&b'/') {
            beneath = true;
        }
    }
    Ok((at, beneath))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, …).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn unescapes_mountinfo_fields() {
        assert_eq!(unescape(r"/a\040b/c"), b"/a b/c");
        assert_eq!(unescape(r"/plain"), b"/plain");
        assert_eq!(unescape(r"/end\"), b"/end\\");
    }
}
