//! Exclusive locks on files (`flock`), released by the kernel when the holder closes the file
//! or dies, so a crash never leaves one behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Takes the lock on `path` (creating the file) if nobody holds it; `None` when someone does.
pub fn try_lock(path: &Path) -> Result<Option<File>> {
    let file = open(path)?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(Error::io(format!("lock {}", path.display()), err))
    }
}

/// Takes the lock on `path` (creating the file), waiting while someone else holds it.
pub fn lock(path: &Path) -> Result<File> {
    let file = open(path)?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(
            format!("lock {}", path.display()),
            io::Error::last_os_error(),
        ));
    }
    Ok(file)
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx(|| format!("open {}", path.display()))
}
