//! A mock E2B: the control plane and envd behind E2B's proxy, over real HTTP on loopback, with
//! each "E2B sandbox" a local forgeai sandbox underneath.
//!
//! - The control plane (`api_url`) answers the REST paths E2B's SDKs call, checks
//!   `X-API-Key`, honours `Idempotency-Key` on create, and stops sandboxes whose timeout ran
//!   out, as E2B does.
//! - The sandbox proxy (`sandbox_url`) routes by the `E2b-Sandbox-Id`/`E2b-Sandbox-Port`
//!   headers, or by a `<port>-<id>.<domain>` Host, like E2B's proxy: port 49983 is envd (access
//!   token checked), any other port is forwarded into the sandbox. A sandbox that does not
//!   exist answers 502 "... was not found", a paused one 409.
//! - envd speaks Connect (unary and server streams; JSON and binary codecs; HTTP/1.1 and h2c)
//!   for `process.Process` and `filesystem.Filesystem`, and `/files` for contents
//!   (multipart or octet-stream upload, download).
//!
//! It is proved faithful by the official `e2b` Python SDK in `crates/e2b/tests/sdk.rs`.

mod envd;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use forgeai_preview::{PreviewConfig, PreviewProxy};
use forgeai_sandbox::{CreateOptions, LocalProvider, SandboxProvider};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// envd's port, as E2B's SDKs address it.
const ENVD_PORT: u16 = 49983;
/// The envd version the mock reports (recent enough for every SDK code path it serves).
const ENVD_VERSION: &str = "0.6.0";

/// One request the mock received, for assertions.
#[derive(Debug, Clone)]
pub struct MockE2bRequest {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
}

#[derive(Debug, Clone)]
struct MockSandbox {
    template: String,
    metadata: BTreeMap<String, String>,
    env_vars: BTreeMap<String, String>,
    started_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    paused: bool,
    access_token: String,
}

struct Shared {
    provider: LocalProvider,
    proxy: Arc<PreviewProxy>,
    api_key: String,
    domain: String,
    templates: Vec<String>,
    sandboxes: Mutex<HashMap<String, MockSandbox>>,
    idempotency: Mutex<HashMap<String, String>>,
    processes: Mutex<HashMap<(String, u32), tokio::sync::oneshot::Sender<()>>>,
    next_pid: AtomicU32,
    rate_limited: AtomicU32,
    requests: Mutex<Vec<MockE2bRequest>>,
}

impl Shared {
    fn sandbox(&self, id: &str) -> Option<MockSandbox> {
        lock(&self.sandboxes).get(id).cloned()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The mock; dropping it stops its servers (the sandboxes stay with their local provider).
pub struct MockE2b {
    api: SocketAddr,
    sandbox: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl MockE2b {
    /// Serves E2B sandboxes made by `provider` from the local templates named in `templates`
    /// (E2B template names are the local ones); the API key is `e2b_test_key`.
    pub async fn start(provider: LocalProvider, templates: &[&str]) -> Self {
        let proxy = PreviewProxy::new(Arc::new(provider.clone()), PreviewConfig::default());
        let shared = Arc::new(Shared {
            provider,
            proxy,
            api_key: "e2b_test_key".into(),
            domain: "e2b.test".into(),
            templates: templates.iter().map(|t| t.to_string()).collect(),
            sandboxes: Mutex::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            processes: Mutex::new(HashMap::new()),
            next_pid: AtomicU32::new(1000),
            rate_limited: AtomicU32::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let api = Router::new()
            .route("/v2/sandboxes", post(create).get(list))
            .route("/sandboxes", post(create).get(list))
            .route("/sandboxes/{id}", get(detail).delete(kill))
            .route("/sandboxes/{id}/timeout", post(set_timeout))
            .route("/sandboxes/{id}/pause", post(pause))
            .route("/sandboxes/{id}/connect", post(connect))
            .route("/v2/sandboxes/{id}/connect", post(connect))
            .route("/health", get(|| async { StatusCode::OK }))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), control_plane_gate))
            .with_state(shared.clone());
        let sandbox = Router::new().fallback(route_to_sandbox).with_state(shared.clone());
        let (api_listener, sandbox_listener) = (bind().await, bind().await);
        let (api_addr, sandbox_addr) = (
            api_listener.local_addr().expect("api addr"),
            sandbox_listener.local_addr().expect("sandbox addr"),
        );
        let tasks = vec![
            tokio::spawn(async move {
                let _ = axum::serve(api_listener, api).await;
            }),
            tokio::spawn(async move {
                let _ = axum::serve(sandbox_listener, sandbox).await;
            }),
            tokio::spawn(reap_expired(shared.clone())),
        ];
        MockE2b {
            api: api_addr,
            sandbox: sandbox_addr,
            shared,
            tasks,
        }
    }

    /// `E2B_API_URL`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// `E2B_SANDBOX_URL`: envd and sandbox ports, routed by headers or Host.
    pub fn sandbox_url(&self) -> String {
        format!("http://{}", self.sandbox)
    }

    /// `E2B_DOMAIN`.
    pub fn domain(&self) -> &str {
        &self.shared.domain
    }

    /// `E2B_API_KEY`.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    /// The variables E2B's SDKs (and forgeai) read to use this mock.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("E2B_API_KEY", self.api_key().to_owned()),
            ("E2B_API_URL", self.api_url()),
            ("E2B_SANDBOX_URL", self.sandbox_url()),
            ("E2B_DOMAIN", self.domain().to_owned()),
        ]
    }

    /// Answers the next `count` control-plane requests with 429, as E2B's rate limit does.
    pub fn rate_limit_next(&self, count: u32) {
        self.shared.rate_limited.store(count, Ordering::SeqCst);
    }

    /// Ids of the sandboxes E2B would list (running and paused).
    pub fn sandbox_ids(&self) -> Vec<String> {
        lock(&self.shared.sandboxes).keys().cloned().collect()
    }

    /// Whether the sandbox is paused.
    pub fn is_paused(&self, id: &str) -> Option<bool> {
        self.shared.sandbox(id).map(|s| s.paused)
    }

    /// Stops the sandbox as E2B does when its timeout runs out.
    pub async fn expire(&self, id: &str) {
        remove_sandbox(&self.shared, id).await;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<MockE2bRequest> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for MockE2b {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind mock E2B")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "code": status.as_u16(), "message": message.into() })),
    )
        .into_response()
}

/// Records the request, checks the API key and plays injected rate limits.
async fn control_plane_gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    lock(&shared.requests).push(MockE2bRequest {
        method: request.method().to_string(),
        uri: request.uri().to_string(),
        headers: request.headers().clone(),
    });
    let key = request.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(shared.api_key.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key, please visit the API Keys tab at https://e2b.dev/dashboard",
        );
    }
    if shared
        .rate_limited
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded, please try again later",
        );
    }
    next.run(request).await
}

fn sandbox_json(id: &str, sandbox: &MockSandbox, domain: &str) -> Value {
    json!({
        "templateID": sandbox.template,
        "sandboxID": id,
        "clientID": "mock",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": sandbox.access_token,
        "trafficAccessToken": null,
        "domain": domain,
    })
}

fn detail_json(id: &str, sandbox: &MockSandbox) -> Value {
    json!({
        "templateID": sandbox.template,
        "sandboxID": id,
        "clientID": "mock",
        "startedAt": sandbox.started_at.to_rfc3339(),
        "endAt": sandbox.end_at.to_rfc3339(),
        "envdVersion": ENVD_VERSION,
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 2048,
        "state": if sandbox.paused { "paused" } else { "running" },
        "metadata": sandbox.metadata,
    })
}

fn seconds(value: Option<&Value>, default: u64) -> Duration {
    Duration::from_secs(value.and_then(Value::as_u64).unwrap_or(default))
}

async fn create(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "request body is not JSON");
    };
    let Some(template) = body.get("templateID").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "templateID is required");
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &key {
        let known = lock(&shared.idempotency).get(key).cloned();
        if let Some(sandbox) = known.and_then(|id| shared.sandbox(&id).map(|s| (id, s))) {
            return (
                StatusCode::CREATED,
                axum::Json(sandbox_json(&sandbox.0, &sandbox.1, &shared.domain)),
            )
                .into_response();
        }
    }
    if !shared.templates.iter().any(|t| t == template) {
        return error(StatusCode::NOT_FOUND, format!("template '{template}' not found"));
    }
    let strings = |field: &str| -> BTreeMap<String, String> {
        body.get(field)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    };
    let (metadata, env_vars) = (strings("metadata"), strings("envVars"));
    let timeout = seconds(body.get("timeout"), 15);
    let options = CreateOptions {
        timeout: Some(Duration::from_secs(3600)),
        envs: env_vars.clone(),
        metadata: metadata.clone(),
    };
    let info = match shared.provider.create(template, options).await {
        Ok(info) => info,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start the sandbox: {e}"),
            );
        }
    };
    let now = Utc::now();
    let sandbox = MockSandbox {
        template: template.to_owned(),
        metadata,
        env_vars,
        started_at: now,
        end_at: now + timeout,
        paused: false,
        access_token: format!("envd-{}", uuid::Uuid::new_v4().simple()),
    };
    lock(&shared.sandboxes).insert(info.id.clone(), sandbox.clone());
    if let Some(key) = key {
        lock(&shared.idempotency).insert(key, info.id.clone());
    }
    (
        StatusCode::CREATED,
        axum::Json(sandbox_json(&info.id, &sandbox, &shared.domain)),
    )
        .into_response()
}

async fn detail(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.sandbox(&id) {
        Some(sandbox) => axum::Json(detail_json(&id, &sandbox)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("sandbox \"{id}\" doesn't exist or you don't have access to it"),
        ),
    }
}

async fn list(State(shared): State<Arc<Shared>>, Query(query): Query<HashMap<String, String>>) -> Response {
    // `metadata` is itself a URL-encoded `k=v&k2=v2`, as the SDKs send it.
    let wanted: Vec<(String, String)> = query.get("metadata").map(|m| url_pairs(m)).unwrap_or_default();
    let states: Option<Vec<String>> = query.get("state").map(|s| s.split(',').map(str::to_owned).collect());
    let sandboxes = lock(&shared.sandboxes).clone();
    let listed: Vec<Value> = sandboxes
        .iter()
        .filter(|(_, s)| wanted.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
        .filter(|(_, s)| {
            let state = if s.paused { "paused" } else { "running" };
            states.as_ref().is_none_or(|states| states.iter().any(|x| x == state))
        })
        .map(|(id, s)| detail_json(id, s))
        .collect();
    axum::Json(Value::Array(listed)).into_response()
}

fn url_pairs(encoded: &str) -> Vec<(String, String)> {
    encoded
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&value[i + 1..i + 3], 16) {
                Ok(byte) => {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn set_timeout(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(timeout) = body.get("timeout").and_then(Value::as_u64) else {
        return error(StatusCode::BAD_REQUEST, "timeout (seconds) is required");
    };
    match lock(&shared.sandboxes).get_mut(&id) {
        Some(sandbox) => {
            sandbox.end_at = Utc::now() + Duration::from_secs(timeout);
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("sandbox \"{id}\" not found")),
    }
}

async fn pause(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(sandbox) = shared.sandbox(&id) else {
        return error(StatusCode::NOT_FOUND, format!("sandbox \"{id}\" not found"));
    };
    if sandbox.paused {
        return error(StatusCode::CONFLICT, format!("sandbox \"{id}\" is already paused"));
    }
    if let Err(e) = shared.provider.pause(&id).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot pause: {e}"));
    }
    if let Some(sandbox) = lock(&shared.sandboxes).get_mut(&id) {
        sandbox.paused = true;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Connect: resumes a paused sandbox (201) or answers a running one (200); the timeout is only
/// ever extended.
async fn connect(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let timeout = seconds(body.get("timeout"), 300);
    let resumed = {
        let mut sandboxes = lock(&shared.sandboxes);
        let Some(sandbox) = sandboxes.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, format!("sandbox \"{id}\" not found"));
        };
        sandbox.end_at = sandbox.end_at.max(Utc::now() + timeout);
        std::mem::replace(&mut sandbox.paused, false)
    };
    if resumed && let Err(e) = shared.provider.connect(&id).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot resume: {e}"));
    }
    let Some(sandbox) = shared.sandbox(&id) else {
        return error(StatusCode::NOT_FOUND, format!("sandbox \"{id}\" not found"));
    };
    let status = if resumed { StatusCode::CREATED } else { StatusCode::OK };
    (status, axum::Json(sandbox_json(&id, &sandbox, &shared.domain))).into_response()
}

async fn kill(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if remove_sandbox(&shared, &id).await {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("sandbox \"{id}\" not found"))
    }
}

async fn remove_sandbox(shared: &Shared, id: &str) -> bool {
    let known = lock(&shared.sandboxes).remove(id).is_some();
    if known {
        let _ = shared.provider.kill(id).await;
    }
    known
}

/// E2B stops a sandbox when its timeout runs out (paused ones stay).
async fn reap_expired(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Utc::now();
        let expired: Vec<String> = lock(&shared.sandboxes)
            .iter()
            .filter(|(_, s)| !s.paused && s.end_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            remove_sandbox(&shared, &id).await;
        }
    }
}

/// The sandbox proxy: `E2b-Sandbox-Id`/`E2b-Sandbox-Port` headers, or a `<port>-<id>.<domain>`
/// Host, pick the sandbox and port.
async fn route_to_sandbox(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    lock(&shared.requests).push(MockE2bRequest {
        method: request.method().to_string(),
        uri: request.uri().to_string(),
        headers: request.headers().clone(),
    });
    let headers = request.headers().clone();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let routed = match (header("e2b-sandbox-id"), header("e2b-sandbox-port")) {
        (Some(id), Some(port)) => port.parse::<u16>().ok().map(|port| (port, id)),
        _ => header("host").and_then(|host| {
            let name = host.split(':').next().unwrap_or_default().to_owned();
            let label = name.strip_suffix(&format!(".{}", shared.domain))?.to_owned();
            let (port, id) = label.split_once('-')?;
            Some((port.parse().ok()?, id.to_owned()))
        }),
    };
    let Some((port, id)) = routed else {
        return error(
            StatusCode::BAD_REQUEST,
            "no sandbox in the request (E2b-Sandbox-Id and E2b-Sandbox-Port, or a <port>-<id>.<domain> host)",
        );
    };
    let Some(sandbox) = shared.sandbox(&id) else {
        return error(StatusCode::BAD_GATEWAY, format!("The sandbox {id} was not found"));
    };
    if sandbox.paused {
        return error(StatusCode::CONFLICT, format!("The sandbox {id} is paused"));
    }
    if port != ENVD_PORT {
        return forward(&shared, request, &id, port).await;
    }
    if request.uri().path() != "/health" && header("x-access-token").as_deref() != Some(sandbox.access_token.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized access, please provide a valid access token",
        );
    }
    envd::handle(shared, &id, &sandbox, request).await
}

/// Forwards to a port inside the local sandbox through forgeai's own preview proxy.
async fn forward(shared: &Shared, mut request: Request, id: &str, port: u16) -> Response {
    let host = format!("{port}-{id}.localhost");
    match host.parse() {
        Ok(value) => {
            request.headers_mut().insert(header::HOST, value);
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "bad sandbox id"),
    }
    for name in ["e2b-sandbox-id", "e2b-sandbox-port", "e2b-traffic-access-token"] {
        request.headers_mut().remove(name);
    }
    let response = shared.proxy.handle(request).await;
    if response.status() == StatusCode::BAD_GATEWAY {
        return error(
            StatusCode::BAD_GATEWAY,
            format!("The sandbox {id} is running but port {port} is not open"),
        );
    }
    response
}
