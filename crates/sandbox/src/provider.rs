//! The provider trait every sandbox backend implements, shaped after E2B's SDK so a cloud
//! provider and the local one are interchangeable behind `Arc<dyn SandboxProvider>`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::preview::PreviewTarget;

/// The project directory inside every sandbox; relative file paths and commands start here.
pub const PROJECT_DIR: &str = "/home/user/project";
/// The home directory of the sandbox user.
pub const HOME_DIR: &str = "/home/user";
/// Idle time after which a sandbox is paused when the creator does not say otherwise
/// (E2B's default sandbox timeout is five minutes as well).
pub const DEFAULT_SANDBOX_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Time a command may run when the caller does not say otherwise (E2B's default too).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Options for [`SandboxProvider::create`].
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Idle time after which the sandbox is paused (local) or stopped (cloud); `None` means
    /// [`DEFAULT_SANDBOX_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// Environment variables for every command and the dev server.
    pub envs: BTreeMap<String, String>,
    /// Free-form labels kept with the sandbox (e.g. the project id).
    pub metadata: BTreeMap<String, String>,
}

/// Whether a sandbox's processes are running or frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxStatus {
    Running,
    Paused,
}

/// What a provider knows about one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    pub id: String,
    pub template: String,
    pub status: SandboxStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Idle timeout in milliseconds.
    pub timeout_ms: u64,
    pub metadata: BTreeMap<String, String>,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One piece of a command's output, delivered while the command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: Stream,
    /// Text of the chunk (UTF-8; a character split across reads is delivered whole).
    pub data: String,
}

/// Receives output chunks while a command runs (E2B's `onStdout`/`onStderr`).
pub type OutputCallback = Arc<dyn Fn(&OutputChunk) + Send + Sync>;

/// Options for [`SandboxProvider::run_command`].
#[derive(Clone, Default)]
pub struct CommandOptions {
    /// Working directory inside the sandbox; relative to [`PROJECT_DIR`] unless absolute.
    pub cwd: Option<String>,
    /// Extra environment variables for this command.
    pub envs: BTreeMap<String, String>,
    /// `None` means [`DEFAULT_COMMAND_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// Called with each chunk of stdout/stderr as it arrives.
    pub on_output: Option<OutputCallback>,
}

impl fmt::Debug for CommandOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandOptions")
            .field("cwd", &self.cwd)
            .field("envs", &self.envs)
            .field("timeout", &self.timeout)
            .field("on_output", &self.on_output.as_ref().map(|_| "<callback>"))
            .finish()
    }
}

impl CommandOptions {
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn with_cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.insert(key.into(), value.into());
        self
    }
    pub fn on_output(mut self, callback: impl Fn(&OutputChunk) + Send + Sync + 'static) -> Self {
        self.on_output = Some(Arc::new(callback));
        self
    }
}

/// The outcome of a command that ran to completion (whatever its exit code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// True when the output was longer than the provider keeps and only its tail is here.
    pub truncated: bool,
}

impl CommandResult {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry returned by [`SandboxProvider::list_files`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryInfo {
    pub name: String,
    /// Absolute path inside the sandbox (under [`PROJECT_DIR`]).
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
}

/// The most of a dev server's output [`SandboxProvider::dev_server_output`] returns at once.
pub const DEV_OUTPUT_MAX_BYTES: u64 = 256 << 10;

/// Part of a dev server's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevServerOutput {
    /// The text (invalid UTF-8 replaced).
    pub text: String,
    /// Where the output ended when it was read: the `from` of the next read.
    pub end: u64,
}

/// A sandbox backend: the local overlayfs+bubblewrap provider, or a cloud one.
///
/// Methods take the sandbox id rather than living on a sandbox object so the trait stays
/// object-safe and cheap to share; [`Sandbox`] wraps an id and a provider for E2B-like ergonomics.
///
/// Every provider is also a [`PreviewTarget`]: its sandboxes' ports can be reached from the
/// host (the preview proxy, the agent's route checks).
#[async_trait]
pub trait SandboxProvider: PreviewTarget + Send + Sync {
    /// Creates a sandbox from `template` and starts the template's dev server.
    async fn create(&self, template: &str, options: CreateOptions) -> Result<SandboxInfo>;

    /// Reattaches to an existing sandbox, resuming it if paused (also after a host restart).
    /// Fails with [`Error::Gone`](crate::Error::Gone) when it no longer exists.
    async fn connect(&self, id: &str) -> Result<SandboxInfo>;

    /// Runs `command` with `bash -c` in the sandbox and waits for it to exit.
    /// A command past its timeout is killed with its whole process tree
    /// ([`Error::CommandTimeout`](crate::Error::CommandTimeout)); a non-zero exit is not an error.
    async fn run_command(&self, id: &str, command: &str, options: CommandOptions) -> Result<CommandResult>;

    /// Writes a file (creating parent directories), path relative to [`PROJECT_DIR`] or absolute under it.
    async fn write_file(&self, id: &str, path: &str, contents: &[u8]) -> Result<()>;

    /// Reads a whole file.
    async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>>;

    /// Lists a directory, descending `depth` levels (1 = direct children only).
    async fn list_files(&self, id: &str, path: &str, depth: u32) -> Result<Vec<EntryInfo>>;

    /// The public host (`<port>-<id>.<domain>[:<proxy port>]`) through which `port` is reachable.
    fn host(&self, id: &str, port: u16) -> String;

    /// Changes the idle timeout (and counts as activity).
    async fn set_timeout(&self, id: &str, timeout: Duration) -> Result<()>;

    /// Destroys the sandbox and everything in it. Returns false if it did not exist.
    async fn kill(&self, id: &str) -> Result<bool>;

    /// Pauses the sandbox: its processes stop until [`connect`](Self::connect) (or, for the
    /// local provider, the next use) resumes it with its files and memory as they were.
    async fn pause(&self, id: &str) -> Result<()>;

    /// What the template's dev server printed, from byte `from` of its output on (from the start
    /// when the output is shorter, i.e. the server restarted since), at most the last
    /// [`DEV_OUTPUT_MAX_BYTES`] of it. `None` when the provider keeps no such output.
    async fn dev_server_output(&self, id: &str, from: u64) -> Result<Option<DevServerOutput>> {
        let _ = (id, from);
        Ok(None)
    }

    /// Writes several files; providers may override this with something faster.
    async fn write_files(&self, id: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        for (path, contents) in files {
            self.write_file(id, path, contents).await?;
        }
        Ok(())
    }
}

/// A handle on one sandbox: an id plus the provider that owns it (E2B's `Sandbox` object).
#[derive(Clone)]
pub struct Sandbox {
    id: String,
    provider: Arc<dyn SandboxProvider>,
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("id", &self.id).finish()
    }
}

impl Sandbox {
    /// `Sandbox.create(template, { timeoutMs })`.
    pub async fn create(provider: Arc<dyn SandboxProvider>, template: &str, options: CreateOptions) -> Result<Self> {
        let info = provider.create(template, options).await?;
        Ok(Sandbox { id: info.id, provider })
    }

    /// `Sandbox.connect(id)`.
    pub async fn connect(provider: Arc<dyn SandboxProvider>, id: &str) -> Result<Self> {
        let info = provider.connect(id).await?;
        Ok(Sandbox { id: info.id, provider })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn provider(&self) -> &Arc<dyn SandboxProvider> {
        &self.provider
    }

    pub async fn run(&self, command: &str, options: CommandOptions) -> Result<CommandResult> {
        self.provider.run_command(&self.id, command, options).await
    }

    pub async fn write_file(&self, path: &str, contents: impl AsRef<[u8]>) -> Result<()> {
        self.provider.write_file(&self.id, path, contents.as_ref()).await
    }

    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>> {
        self.provider.read_file(&self.id, path).await
    }

    /// Reads a file as UTF-8 text (invalid sequences replaced).
    pub async fn read_text(&self, path: &str) -> Result<String> {
        let bytes = self.read_file(path).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub async fn list_files(&self, path: &str) -> Result<Vec<EntryInfo>> {
        self.provider.list_files(&self.id, path, 1).await
    }

    /// `sandbox.getHost(port)`.
    pub fn host(&self, port: u16) -> String {
        self.provider.host(&self.id, port)
    }

    pub async fn set_timeout(&self, timeout: Duration) -> Result<()> {
        self.provider.set_timeout(&self.id, timeout).await
    }

    pub async fn kill(&self) -> Result<bool> {
        self.provider.kill(&self.id).await
    }
}

/// Builds `<port>-<id>.<domain>[:<public_port>]`, the host name the preview proxy answers to.
pub fn preview_host(id: &str, port: u16, domain: &str, public_port: Option<u16>) -> String {
    match public_port {
        Some(p) => format!("{port}-{id}.{domain}:{p}"),
        None => format!("{port}-{id}.{domain}"),
    }
}

/// The working directory of a command: [`PROJECT_DIR`], a directory relative to it, or any
/// absolute directory inside the sandbox (its mounts are its world).
pub fn command_cwd(cwd: Option<&str>) -> Result<String> {
    let Some(cwd) = cwd else {
        return Ok(PROJECT_DIR.to_string());
    };
    if cwd.contains('\0') {
        return Err(crate::Error::WrongKind {
            path: cwd.into(),
            reason: "contains a NUL byte".into(),
        });
    }
    if cwd.starts_with('/') {
        Ok(cwd.to_string())
    } else {
        Ok(format!("{PROJECT_DIR}/{cwd}"))
    }
}

/// Checks that `id` has the shape of a sandbox id before it is used in paths or names.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(crate::Error::InvalidId {
            id: id.chars().take(64).collect(),
        })
    }
}
