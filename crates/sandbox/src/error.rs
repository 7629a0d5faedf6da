//! Errors of the sandbox crate.
//!
//! Every variant says what went wrong *and* what to do about it, because these messages end up
//! in front of operators (setup problems) or the coding agent (path and command problems).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while creating, using or proxying to a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sandbox was killed or its files were removed; callers should create a new one.
    #[error("sandbox {id} no longer exists (it was killed or its files were removed); create a new sandbox")]
    Gone { id: String },

    /// A sandbox id from outside did not have the shape of our ids (which guards every path join).
    #[error("invalid sandbox id {id:?}: ids are 1 to 32 lowercase ASCII letters and digits")]
    InvalidId { id: String },

    /// The named template has not been built (or was removed).
    #[error("template {name:?} not found at {}: build it first (Templates::ensure_static, build_template or `forgeai template build {name}`)", path.display())]
    TemplateNotFound { name: String, path: PathBuf },

    /// The template exists but its description is unusable.
    #[error("template {name:?} is invalid: {reason}")]
    InvalidTemplate { name: String, reason: String },

    /// A file path given to the file API leaves `/home/user/project`.
    #[error(
        "path {path:?} escapes the project directory /home/user/project: {reason}; use a path inside the project, relative to it"
    )]
    PathEscape { path: String, reason: String },

    /// The file or directory does not exist inside the project.
    #[error("{path:?} does not exist in the project")]
    NotFound { path: String },

    /// The path names a directory where a file was expected, or the other way round.
    #[error("{path:?}: {reason}")]
    WrongKind { path: String, reason: String },

    /// A file is too large to be returned in one piece.
    #[error(
        "{path:?} is {size} bytes, more than the {limit} bytes read_file returns; read it with a command (head, tail) instead"
    )]
    FileTooLarge { path: String, size: u64, limit: u64 },

    /// The sandbox's disk (its quota) or the host disk holding it is full.
    #[error(
        "No space left on device while writing {path:?}: the sandbox's disk is full; delete files (build output, unused packages) to make room"
    )]
    DiskFull { path: String },

    /// The host's disk is too full to take another sandbox.
    #[error("the disk holding {} has {} MiB free, less than the {} MiB kept free for the database and uploads; no new sandbox is created until space is freed", data_dir.display(), free >> 20, reserve >> 20)]
    HostDiskLow { free: u64, reserve: u64, data_dir: PathBuf },

    /// Loaded sandboxes use the whole memory budget and none of them is idle.
    #[error("the sandbox memory budget of {} MiB is in use by {busy} busy sandboxes (this one needs about {} MiB); try again when a run has finished", budget >> 20, needed >> 20)]
    MemoryBudget { budget: u64, needed: u64, busy: usize },

    /// A command ran past its timeout; it and every process it started were killed.
    #[error(
        "command timed out after {after:?} and was killed together with every process it started; run long tasks with a longer timeout"
    )]
    CommandTimeout {
        after: Duration,
        stdout: String,
        stderr: String,
    },

    /// The machine lacks something the local provider needs (root, a tool, a kernel feature).
    #[error("the local sandbox provider cannot run here: {what}; {hint}")]
    Unsupported { what: String, hint: String },

    /// The address range reserved for sandbox networks is already in use on this machine.
    #[error(
        "the sandbox network range {range} overlaps {used_by} already configured on this machine; configure another range (LocalConfig::subnet)"
    )]
    NetworkRangeInUse { range: String, used_by: String },

    /// Every /30 of the sandbox range is taken.
    #[error(
        "no free sandbox network left in {range} ({count} sandboxes running); kill idle sandboxes or configure a larger range"
    )]
    NetworksExhausted { range: String, count: usize },

    /// The kernel refused a netlink request (links, addresses, routes, firewall).
    #[error("{action}: the kernel answered: {source}")]
    Netlink {
        action: String,
        #[source]
        source: io::Error,
    },

    /// An external tool (mkfs.ext4, cp) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Tool {
        command: String,
        status: String,
        stderr: String,
    },

    /// A system call or file operation failed; `action` says which and on what.
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },

    /// The sandbox's stored state could not be read or written.
    #[error("sandbox state file {}: {reason}", path.display())]
    State { path: PathBuf, reason: String },

    /// The remote (E2B-style) side of a provider answered with an error.
    #[error("sandbox provider error: {0}")]
    Provider(String),
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(action: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            action: action.into(),
            source,
        }
    }

    /// Whether this error means the sandbox is gone for good (callers then create a new one).
    pub fn is_gone(&self) -> bool {
        matches!(self, Error::Gone { .. })
    }
}

/// Adds `action` context to I/O results.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(action(), e))
    }
}
