//! Isolated sandboxes in which forgeai's coding agent edits and runs a web app.
//!
//! This crate's one job is to give each project a disposable, isolated machine-like
//! environment — files, commands, a running dev server and a preview URL — behind a provider
//! trait shaped like E2B's SDK ([`SandboxProvider`]), so the agent does not care whether the
//! sandbox is local or in the cloud.
//!
//! - [`LocalProvider`]: each sandbox is an overlayfs copy-on-write clone of a template
//!   directory; commands run under bubblewrap as an unprivileged user in their own mount, pid,
//!   ipc and uts namespaces, inside the sandbox's own network namespace (egress only, cut off
//!   from the host and other sandboxes) and cgroup (memory, pids, cpu, freezer). Idle
//!   sandboxes are frozen and come back on the next use, also after a host restart.
//! - [`templates`]: the `static` template (built in code) and the `forgeai-v1` Next.js one.
//! - [`preview`]: where a sandbox port is reached from the host ([`PreviewTarget`]), for the
//!   preview proxy of the `forgeai-preview` crate.
//!
//! The local provider needs root (namespaces, mounts, cgroups, nftables) and the Debian
//! packages installed by `scripts/setup.sh`.

mod error;
pub mod local;
pub mod preview;
mod provider;
pub mod templates;

pub use error::{Error, Result};
pub use local::{LocalConfig, LocalProvider, MAX_READ_BYTES, ProjectPath, forgeai_v1_recipe};
pub use preview::{PreviewTarget, Upstream};
pub use provider::{
    CommandOptions, CommandResult, CreateOptions, DEFAULT_COMMAND_TIMEOUT, DEFAULT_SANDBOX_TIMEOUT,
    DEV_OUTPUT_MAX_BYTES, DevServerOutput, EntryInfo, EntryKind, HOME_DIR, OutputCallback, OutputChunk, PROJECT_DIR,
    Sandbox, SandboxInfo, SandboxProvider, SandboxStatus, Stream, command_cwd, preview_host, validate_id,
};
pub use templates::{Template, TemplateConfig, Templates, build_template};
