//! Exclusive locks on files (`flock`), released by the kernel when the holder closes the file
//! or dies, so a crash never leaves one behind.

use std::fs::{File, OpenOptions};
use std::path::Path;

use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;

use crate::error::{Error, IoContext, Result};

/// Takes the lock on `path` (creating the file) if nobody holds it; `None` when someone does.
pub fn try_lock(path: &Path) -> Result<Option<File>> {
    let file = open(path)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(Errno::WOULDBLOCK) => Ok(None),
        Err(err) => Err(Error::io(format!("lock {}", path.display()), err.into())),
    }
}

/// Takes the lock on `path` (creating the file), waiting while someone else holds it.
pub fn lock(path: &Path) -> Result<File> {
    let file = open(path)?;
    flock(&file, FlockOperation::LockExclusive)
        .map_err(|err| Error::io(format!("lock {}", path.display()), err.into()))?;
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
