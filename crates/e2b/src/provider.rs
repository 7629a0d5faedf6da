//! [`E2bProvider`]: forgeai's sandbox trait over E2B's control plane and envd.
//!
//! A node keeps no sandbox state of its own, only a cache of access tokens: any node can
//! serve any sandbox, since the first use of an unknown id connects to it (which resumes it if
//! it was paused). While a sandbox is used, its timeout is pushed back, so a long run does not
//! lose its sandbox halfway; an idle one is left to expire, and the next run recreates it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use forgeai_sandbox::{
    CommandOptions, CommandResult, CreateOptions, DEFAULT_COMMAND_TIMEOUT, DEFAULT_SANDBOX_TIMEOUT,
    DEV_OUTPUT_MAX_BYTES, DevServerOutput, EntryInfo, EntryKind, Error, MAX_READ_BYTES, PreviewTarget, ProjectPath,
    Result, SandboxInfo, SandboxProvider, SandboxStatus, Stream, Upstream, command_cwd, preview_host, validate_id,
};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::api::{ApiError, ControlPlane, CreatedSandbox, NewSandbox, SandboxDetail};
use crate::connect::{RpcError, RpcTarget};
use crate::envd::{Envd, ProcessEvent};
use crate::output::OutputTail;
use crate::proto::filesystem::FileType;

/// envd's port in every E2B sandbox.
pub const ENVD_PORT: u16 = 49983;
/// Where the `forgeai-v1` E2B template's start command writes the dev server's output.
pub const DEV_LOG: &str = "/home/user/.forgeai-dev.log";

/// Settings of the E2B provider, named after the variables E2B's SDKs read.
#[derive(Debug, Clone)]
pub struct E2bConfig {
    /// `E2B_API_KEY`, sent as `X-API-Key`.
    pub api_key: String,
    /// `E2B_DOMAIN`: sandboxes are served at `<port>-<id>.<domain>`.
    pub domain: String,
    /// `E2B_API_URL`: the control plane; `https://api.<domain>` when unset.
    pub api_url: Option<String>,
    /// `E2B_SANDBOX_URL`: when set, every envd and port request goes here, routed by the
    /// `E2b-Sandbox-Id` and `E2b-Sandbox-Port` headers.
    pub sandbox_url: Option<String>,
    /// Bound of one control-plane or envd request (commands have their own timeout).
    pub request_timeout: Duration,
    /// How often a control-plane answer asking for a retry (429, 502, 503, 504) is retried.
    pub retries: u32,
    /// The timeout set on a sandbox this node connects to, and renewed while it is used.
    pub keepalive: Duration,
    /// Output of one command kept in its result (the tail beyond it is kept).
    pub max_output_bytes: usize,
    /// forgeai's own preview host names (`3000-<id>.<preview_domain>[:<preview_port>]`),
    /// through which users reach a sandbox port with forgeai's access rules.
    pub preview_domain: String,
    pub preview_port: Option<u16>,
}

impl E2bConfig {
    /// The defaults of E2B's SDKs for `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        E2bConfig {
            api_key: api_key.into(),
            domain: "e2b.app".into(),
            api_url: None,
            sandbox_url: None,
            request_timeout: Duration::from_secs(60),
            retries: 5,
            keepalive: DEFAULT_SANDBOX_TIMEOUT,
            max_output_bytes: 1 << 20,
            preview_domain: "localhost".into(),
            preview_port: None,
        }
    }

    pub fn api_url(&self) -> String {
        self.api_url
            .clone()
            .unwrap_or_else(|| format!("https://api.{}", self.domain))
    }
}

/// What this node knows about a sandbox it has connected to.
#[derive(Clone)]
struct Session {
    envd: Envd,
    /// Where a port of the sandbox is reached, and the headers that reach it.
    domain: String,
    traffic_token: Option<String>,
    timeout: Duration,
    extended_at: Instant,
}

struct Inner {
    config: E2bConfig,
    api: ControlPlane,
    http: reqwest::Client,
    sessions: Mutex<HashMap<String, Session>>,
}

/// Sandboxes in E2B's cloud or a self-hosted E2B. Cheap to clone.
#[derive(Clone)]
pub struct E2bProvider {
    inner: Arc<Inner>,
}

impl E2bProvider {
    pub fn new(config: E2bConfig) -> Result<Self> {
        if config.api_key.trim().is_empty() {
            return Err(Error::Provider(
                "the E2B sandbox provider needs an API key: set E2B_API_KEY (E2B dashboard, API Keys tab)".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("forgeai/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Provider(format!("cannot build the HTTP client for E2B: {e}")))?;
        let api = ControlPlane::new(http.clone(), &config.api_url(), &config.api_key, config.retries);
        Ok(E2bProvider {
            inner: Arc::new(Inner {
                config,
                api,
                http,
                sessions: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The control plane's view of running and paused sandboxes with all of `metadata`.
    pub async fn list(&self, metadata: &BTreeMap<String, String>) -> Result<Vec<SandboxInfo>> {
        let listed = self
            .inner
            .api
            .list(metadata)
            .await
            .map_err(|e| self.api_error(e, None))?;
        Ok(listed.into_iter().map(|detail| info(&detail)).collect())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn forget(&self, id: &str) {
        self.sessions().remove(id);
    }

    /// The sandbox's session: cached (its timeout pushed back when half of it has passed), or
    /// made by connecting, which resumes a paused sandbox.
    async fn session(&self, id: &str) -> Result<Session> {
        validate_id(id)?;
        let cached = self.sessions().get(id).cloned();
        let Some(session) = cached else {
            return self.connect_session(id).await;
        };
        if session.extended_at.elapsed() < session.timeout / 2 {
            return Ok(session);
        }
        match self.inner.api.set_timeout(id, session.timeout).await {
            Ok(true) => {
                if let Some(cached) = self.sessions().get_mut(id) {
                    cached.extended_at = Instant::now();
                }
                Ok(session)
            }
            Ok(false) => {
                self.forget(id);
                Err(Error::Gone { id: id.into() })
            }
            // Paused meanwhile (by E2B or another node): connecting resumes it.
            Err(error) if error.status == 409 => {
                self.forget(id);
                self.connect_session(id).await
            }
            Err(error) => Err(self.api_error(error, Some(id))),
        }
    }

    async fn connect_session(&self, id: &str) -> Result<Session> {
        let timeout = self.inner.config.keepalive;
        match self.inner.api.connect(id, timeout).await {
            Ok(Some(sandbox)) => Ok(self.remember(&sandbox, timeout)),
            Ok(None) => {
                self.forget(id);
                Err(Error::Gone { id: id.into() })
            }
            Err(error) => Err(self.api_error(error, Some(id))),
        }
    }

    fn remember(&self, sandbox: &CreatedSandbox, timeout: Duration) -> Session {
        let config = &self.inner.config;
        let domain = sandbox.domain.clone().unwrap_or_else(|| config.domain.clone());
        let mut headers = HeaderMap::new();
        insert(&mut headers, "e2b-sandbox-id", &sandbox.sandbox_id);
        insert(&mut headers, "e2b-sandbox-port", &ENVD_PORT.to_string());
        if let Some(token) = &sandbox.envd_access_token {
            insert(&mut headers, "x-access-token", token);
        }
        let base_url = match &config.sandbox_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{ENVD_PORT}-{}.{domain}", sandbox.sandbox_id),
        };
        let session = Session {
            envd: Envd::new(
                self.inner.http.clone(),
                RpcTarget { base_url, headers },
                config.request_timeout,
            ),
            domain,
            traffic_token: sandbox.traffic_access_token.clone(),
            timeout,
            extended_at: Instant::now(),
        };
        self.sessions().insert(sandbox.sandbox_id.clone(), session.clone());
        session
    }

    /// Runs an envd call; a sandbox the proxy reports paused (409) is resumed and the call made
    /// once more. `known` turns the errors the caller understands (a missing file) into its own.
    async fn with_envd<T, F, Fut>(
        &self,
        id: &str,
        action: &str,
        call: F,
        known: impl Fn(RpcError) -> std::result::Result<Error, RpcError>,
    ) -> Result<T>
    where
        F: Fn(Envd) -> Fut,
        Fut: Future<Output = std::result::Result<T, RpcError>>,
    {
        let session = self.session(id).await?;
        let outcome = match call(session.envd).await {
            Err(RpcError::Http { status: 409, .. }) => {
                self.forget(id);
                call(self.session(id).await?.envd).await
            }
            other => other,
        };
        match outcome {
            Ok(value) => Ok(value),
            Err(error) => match known(error) {
                Ok(mapped) => Err(mapped),
                Err(error) => Err(self.envd_error(id, error, action).await),
            },
        }
    }

    /// What an envd failure means: the sandbox is gone (the proxy says so, or the control
    /// plane does not know it any more), or a failure a user can act on.
    async fn envd_error(&self, id: &str, error: RpcError, action: &str) -> Error {
        let said_gone = match &error {
            RpcError::Http { status: 502, message } => message.to_ascii_lowercase().contains("not found"),
            RpcError::Http { status: 404, message } => message.to_ascii_lowercase().contains("sandbox"),
            _ => false,
        };
        let ambiguous = matches!(
            &error,
            RpcError::Transport(_)
                | RpcError::Http {
                    status: 502 | 503 | 404,
                    ..
                }
        ) || matches!(&error, RpcError::Connect { code, .. } if code == "unavailable");
        if said_gone || (ambiguous && matches!(self.inner.api.get(id).await, Ok(None))) {
            self.forget(id);
            return Error::Gone { id: id.into() };
        }
        if let RpcError::Http { status: 401, message } = &error {
            self.forget(id);
            return Error::Provider(format!(
                "E2B sandbox {id} refused the access token while trying to {action} ({message}); reconnect to the sandbox"
            ));
        }
        Error::Provider(format!("E2B sandbox {id}: cannot {action}: {error}"))
    }

    fn api_error(&self, error: ApiError, id: Option<&str>) -> Error {
        let hint = match error.status {
            401 | 403 => "check E2B_API_KEY (and E2B_DOMAIN / E2B_API_URL for a self-hosted E2B)",
            429 => {
                "E2B's rate limit or sandbox quota was hit and retrying did not help; wait, or raise the limit with E2B"
            }
            0 => "check that E2B is reachable (E2B_DOMAIN, E2B_API_URL)",
            _ => "",
        };
        let subject = id.map(|id| format!(" for sandbox {id}")).unwrap_or_default();
        if hint.is_empty() {
            Error::Provider(format!("E2B's API failed{subject}: {error}"))
        } else {
            Error::Provider(format!("E2B's API failed{subject}: {error}; {hint}"))
        }
    }

    async fn read_detail(&self, id: &str) -> Result<SandboxInfo> {
        match self.inner.api.get(id).await {
            Ok(Some(detail)) => Ok(info(&detail)),
            Ok(None) => Err(Error::Gone { id: id.into() }),
            Err(error) => Err(self.api_error(error, Some(id))),
        }
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn info(detail: &SandboxDetail) -> SandboxInfo {
    let started_at = detail.started_at.unwrap_or_else(chrono::Utc::now);
    let timeout = detail
        .end_at
        .map_or(0, |end| (end - started_at).num_milliseconds().max(0) as u64);
    SandboxInfo {
        id: detail.sandbox_id.clone(),
        template: detail.template_id.clone(),
        status: if detail.state == "paused" {
            SandboxStatus::Paused
        } else {
            SandboxStatus::Running
        },
        created_at: started_at,
        timeout_ms: timeout,
        metadata: detail.metadata.clone().unwrap_or_default(),
    }
}

/// The exit code of an ended process: its own, or 128 + the signal that killed it.
fn exit_code(code: i32, exited: bool, status: &str) -> i32 {
    if exited {
        return code;
    }
    let signal = match status.trim().strip_prefix("signal: ") {
        Some("killed") => 9,
        Some("terminated") => 15,
        Some("interrupt") => 2,
        Some("hangup") => 1,
        Some("segmentation fault") | Some("segmentation fault (core dumped)") => 11,
        Some("aborted") | Some("aborted (core dumped)") => 6,
        _ if code > 0 => return code,
        _ => 9,
    };
    128 + signal
}

/// The absolute path of a project path, refusing paths that leave the project.
fn project_path(path: &str) -> Result<String> {
    Ok(ProjectPath::parse(path)?.sandbox_path())
}

#[async_trait]
impl SandboxProvider for E2bProvider {
    async fn create(&self, template: &str, options: CreateOptions) -> Result<SandboxInfo> {
        let timeout = options.timeout.unwrap_or(DEFAULT_SANDBOX_TIMEOUT);
        let body = NewSandbox {
            template_id: template,
            timeout: timeout.as_secs().max(1),
            secure: true,
            metadata: &options.metadata,
            env_vars: &options.envs,
        };
        // One key for every retry of this create, so E2B makes one sandbox however often the
        // request has to be sent.
        let key = uuid::Uuid::new_v4().to_string();
        let sandbox = self
            .inner
            .api
            .create(&body, &key)
            .await
            .map_err(|error| match error.status {
                400..=499
                    if ![401, 403, 429].contains(&error.status)
                        && error.message.to_ascii_lowercase().contains("template") =>
                {
                    Error::TemplateNotFound {
                        name: template.into(),
                        path: format!("E2B ({}): {}", self.inner.api.api_url(), error.message).into(),
                    }
                }
                _ => self.api_error(error, None),
            })?;
        self.remember(&sandbox, timeout);
        Ok(SandboxInfo {
            id: sandbox.sandbox_id,
            template: template.into(),
            status: SandboxStatus::Running,
            created_at: chrono::Utc::now(),
            timeout_ms: timeout.as_millis() as u64,
            metadata: options.metadata,
        })
    }

    async fn connect(&self, id: &str) -> Result<SandboxInfo> {
        validate_id(id)?;
        self.forget(id);
        self.connect_session(id).await?;
        self.read_detail(id).await
    }

    async fn run_command(&self, id: &str, command: &str, options: CommandOptions) -> Result<CommandResult> {
        let cwd = command_cwd(options.cwd.as_deref())?;
        let limit = options.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT);
        let max = self.inner.config.max_output_bytes;
        let tail = Arc::new(Mutex::new(Some(OutputTail::new(max, options.on_output.clone()))));
        let pid = Arc::new(Mutex::new(None::<u32>));
        let ended = Arc::new(Mutex::new(None::<i32>));
        let run = self.with_envd(
            id,
            "run a command",
            |envd| {
                let (tail, pid, ended) = (tail.clone(), pid.clone(), ended.clone());
                let (command, cwd, envs) = (command.to_owned(), cwd.clone(), options.envs.clone());
                async move {
                    envd.run(&command, &cwd, &envs, limit, move |event| match event {
                        ProcessEvent::Started { pid: started } => {
                            *pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
                        }
                        ProcessEvent::Stdout(bytes) | ProcessEvent::Stderr(bytes) if bytes.is_empty() => {}
                        ProcessEvent::Stdout(bytes) => push(&tail, Stream::Stdout, &bytes),
                        ProcessEvent::Stderr(bytes) => push(&tail, Stream::Stderr, &bytes),
                        ProcessEvent::Ended {
                            exit_code: code,
                            exited,
                            status,
                            error,
                        } => {
                            if let Some(error) = error.filter(|e| !e.is_empty()) {
                                tracing::debug!(%error, %status, "envd reported a process error");
                            }
                            *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit_code(code, exited, &status));
                        }
                    })
                    .await
                }
            },
            |error| match error {
                RpcError::Connect { code, .. } if code == "deadline_exceeded" => Ok(Error::CommandTimeout {
                    after: limit,
                    stdout: String::new(),
                    stderr: String::new(),
                }),
                other => Err(other),
            },
        );
        // envd enforces the deadline; this bounds a stream whose end never comes.
        let started_at = Instant::now();
        let outcome = tokio::time::timeout(limit + Duration::from_secs(5), run).await;
        let taken = tail.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (stdout, stderr, truncated) = taken.map(OutputTail::finish).unwrap_or_default();
        // A stream that broke off at the deadline (rather than ending with `deadline_exceeded`)
        // is the deadline too, unless the sandbox is gone.
        let timed_out = match &outcome {
            Err(_) | Ok(Err(Error::CommandTimeout { .. })) => true,
            Ok(Err(Error::Gone { .. })) | Ok(Ok(())) => false,
            Ok(Err(_)) => started_at.elapsed() >= limit,
        };
        let started = *pid.lock().unwrap_or_else(|p| p.into_inner());
        if timed_out {
            // envd kills the process when the call's deadline passes; make sure of it.
            if let (Some(pid), Ok(session)) = (started, self.session(id).await) {
                let _ = session.envd.kill_process(pid).await;
            }
            return Err(Error::CommandTimeout {
                after: limit,
                stdout,
                stderr,
            });
        }
        match outcome {
            Ok(Ok(())) => {
                let exit_code = ended.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(-1);
                Ok(CommandResult {
                    exit_code,
                    stdout,
                    stderr,
                    truncated,
                })
            }
            Ok(Err(error)) => Err(error),
            Err(_) => unreachable!("a timeout returned above"),
        }
    }

    async fn write_file(&self, id: &str, path: &str, contents: &[u8]) -> Result<()> {
        self.write_files(id, &[(path.to_owned(), contents.to_vec())]).await
    }

    async fn write_files(&self, id: &str, files: &[(String, Vec<u8>)]) -> Result<()> {
        let resolved = files
            .iter()
            .map(|(path, contents)| Ok((project_path(path)?, contents.clone())))
            .collect::<Result<Vec<_>>>()?;
        if resolved.is_empty() {
            return Ok(());
        }
        let first = files[0].0.clone();
        self.with_envd(
            id,
            "write files",
            |envd| {
                let resolved = resolved.clone();
                async move { envd.upload(&resolved).await }
            },
            |error| match error {
                RpcError::Http { status: 507, .. } => Ok(Error::DiskFull { path: first.clone() }),
                RpcError::Http { status: 400, message } => Ok(Error::WrongKind {
                    path: first.clone(),
                    reason: message,
                }),
                other => Err(other),
            },
        )
        .await
    }

    async fn read_file(&self, id: &str, path: &str) -> Result<Vec<u8>> {
        let absolute = project_path(path)?;
        let read = self
            .with_envd(
                id,
                "read a file",
                |envd| {
                    let absolute = absolute.clone();
                    async move { envd.download(&absolute, MAX_READ_BYTES).await }
                },
                |error| match error {
                    RpcError::Http { status: 404, message } if !message.to_ascii_lowercase().contains("sandbox") => {
                        Ok(Error::NotFound { path: path.into() })
                    }
                    RpcError::Http { status: 400, message } => Ok(Error::WrongKind {
                        path: path.into(),
                        reason: message,
                    }),
                    other => Err(other),
                },
            )
            .await;
        // envd's 404 for a missing file and a proxy's 404 for a missing sandbox look alike.
        let read = match read {
            Err(Error::NotFound { .. }) if matches!(self.inner.api.get(id).await, Ok(None)) => {
                self.forget(id);
                return Err(Error::Gone { id: id.into() });
            }
            other => other?,
        };
        read.map_err(|size| Error::FileTooLarge {
            path: path.into(),
            size,
            limit: MAX_READ_BYTES,
        })
    }

    async fn list_files(&self, id: &str, path: &str, depth: u32) -> Result<Vec<EntryInfo>> {
        let absolute = project_path(path)?;
        let entries = self
            .with_envd(
                id,
                "list a directory",
                |envd| {
                    let absolute = absolute.clone();
                    async move { envd.list_dir(&absolute, depth).await }
                },
                |error| match error {
                    RpcError::Connect { code, .. } if code == "not_found" => Ok(Error::NotFound { path: path.into() }),
                    RpcError::Connect { code, message } if code == "invalid_argument" => Ok(Error::WrongKind {
                        path: path.into(),
                        reason: message,
                    }),
                    other => Err(other),
                },
            )
            .await?;
        let mut listed: Vec<EntryInfo> = entries
            .into_iter()
            .map(|entry| EntryInfo {
                kind: if entry.is_symlink {
                    EntryKind::Symlink
                } else {
                    match FileType::try_from(entry.r#type) {
                        Ok(FileType::File) => EntryKind::File,
                        Ok(FileType::Directory) => EntryKind::Dir,
                        Ok(FileType::Symlink) => EntryKind::Symlink,
                        _ => EntryKind::Other,
                    }
                },
                name: entry.name,
                path: entry.path,
                size: entry.size.max(0) as u64,
            })
            .collect();
        listed.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listed)
    }

    fn host(&self, id: &str, port: u16) -> String {
        let config = &self.inner.config;
        preview_host(id, port, &config.preview_domain, config.preview_port)
    }

    async fn set_timeout(&self, id: &str, timeout: Duration) -> Result<()> {
        validate_id(id)?;
        match self.inner.api.set_timeout(id, timeout).await {
            Ok(true) => {
                if let Some(session) = self.sessions().get_mut(id) {
                    session.timeout = timeout;
                    session.extended_at = Instant::now();
                }
                Ok(())
            }
            Ok(false) => {
                self.forget(id);
                Err(Error::Gone { id: id.into() })
            }
            Err(error) => Err(self.api_error(error, Some(id))),
        }
    }

    async fn kill(&self, id: &str) -> Result<bool> {
        validate_id(id)?;
        self.forget(id);
        self.inner
            .api
            .kill(id)
            .await
            .map_err(|error| self.api_error(error, Some(id)))
    }

    /// The dev server's log, which the `forgeai-v1` E2B template's start command writes.
    async fn dev_server_output(&self, id: &str, from: u64) -> Result<Option<DevServerOutput>> {
        // The size first, then the bytes from `from` (from the start when the log is shorter),
        // at most the last DEV_OUTPUT_MAX_BYTES of them.
        let script = format!(
            "f={DEV_LOG}; [ -f \"$f\" ] || exit 3; size=$(stat -c %s \"$f\"); from={from}; \
             [ \"$from\" -le \"$size\" ] || from=0; echo \"$size\"; tail -c +$((from + 1)) \"$f\" | tail -c {DEV_OUTPUT_MAX_BYTES}"
        );
        let result = self
            .run_command(
                id,
                &script,
                CommandOptions::default().with_timeout(Duration::from_secs(30)),
            )
            .await?;
        if result.exit_code == 3 {
            return Ok(None);
        }
        let Some((size, text)) = result.stdout.split_once('\n') else {
            return Ok(None);
        };
        Ok(size.trim().parse().ok().map(|end| DevServerOutput {
            text: text.to_owned(),
            end,
        }))
    }

    async fn pause(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        self.forget(id);
        match self.inner.api.pause(id).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Error::Gone { id: id.into() }),
            Err(error) => Err(self.api_error(error, Some(id))),
        }
    }
}

fn push(tail: &Mutex<Option<OutputTail>>, stream: Stream, bytes: &[u8]) {
    if let Some(tail) = tail.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        tail.push(stream, bytes);
    }
}

#[async_trait]
impl PreviewTarget for E2bProvider {
    /// Port `port` of the sandbox through E2B's proxy: `https://<port>-<id>.<domain>`, or
    /// `E2B_SANDBOX_URL` with the routing headers. Connecting first resumes a paused sandbox.
    async fn upstream(&self, id: &str, port: u16) -> Result<Upstream> {
        let session = self.session(id).await?;
        let host = format!("{port}-{id}.{}", session.domain);
        let mut headers = HeaderMap::new();
        insert(&mut headers, "e2b-sandbox-id", id);
        insert(&mut headers, "e2b-sandbox-port", &port.to_string());
        if let Some(token) = &session.traffic_token {
            insert(&mut headers, "e2b-traffic-access-token", token);
        }
        let origin = match &self.inner.config.sandbox_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("https://{host}"),
        };
        Ok(Upstream {
            origin,
            host: Some(host),
            headers,
            guard: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_killed_processes() {
        assert_eq!(exit_code(0, true, "exit status 0"), 0);
        assert_eq!(exit_code(3, true, "exit status 3"), 3);
        assert_eq!(exit_code(-1, false, "signal: killed"), 137);
        assert_eq!(exit_code(-1, false, "signal: terminated"), 143);
    }

    #[test]
    fn paths_stay_in_the_project() {
        assert_eq!(project_path("app/page.tsx").unwrap(), "/home/user/project/app/page.tsx");
        assert_eq!(project_path("").unwrap(), "/home/user/project");
        assert!(project_path("../etc/passwd").is_err());
        assert!(project_path("/etc/passwd").is_err());
    }

    #[test]
    fn an_api_key_is_required() {
        let error = E2bProvider::new(E2bConfig::new(" "))
            .err()
            .expect("no key, no provider");
        assert!(error.to_string().contains("E2B_API_KEY"), "{error}");
    }
}
