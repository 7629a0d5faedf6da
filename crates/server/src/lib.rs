//! The HTTP face of forgeai: the JSON API with its OpenAPI document, the realtime SSE channel,
//! the Inngest-compatible event endpoint, uploads, login, health and metrics.

mod api;
mod auth;
mod error;
mod events;
mod ops;
pub mod preview_access;
mod realtime;
mod ui;
mod uploads;
mod versions;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{delete, get, patch, post};
use forgeai_code_agent::{CodeAgentRuns, SizeLimits};
use forgeai_engine::{EventSink, RealtimeFeed};
use forgeai_sandbox::SandboxProvider;
use forgeai_store::Store;

pub use error::ApiError;
pub use ops::{ApiDoc, metrics_router};
pub use preview_access::{PREVIEW_PORT, PreviewGate, PreviewSigner};
pub use ui::default_ui_dir;
pub use uploads::save_image;

/// Settings of the HTTP server. Start from [`ServerConfig::new`] (or `..Default::default()`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where uploads are kept (`<data_dir>/uploads`).
    pub data_dir: PathBuf,
    /// The URL people reach the server at (e.g. `https://forge.example.com`); taken from the
    /// request's Host header when unset.
    pub public_url: Option<String>,
    /// The web UI's build (`index.html` and `assets/`); `None` serves a page saying how to build it.
    pub ui_dir: Option<PathBuf>,
    /// How long a browser session lives (capped at 30 days).
    pub session_ttl: Duration,
    /// `GET /metrics` on the API listener needs `Authorization: Bearer <this>`; without it that
    /// route answers 404 (metrics can still be served on a listener of their own, see
    /// [`metrics_router`]).
    pub metrics_token: Option<String>,
    /// Preview hosts are `3000-<sandbox>.<preview_domain>[:<preview_port>]`.
    pub preview_domain: String,
    pub preview_port: Option<u16>,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            public_url: None,
            ui_dir: None,
            session_ttl: auth::MAX_SESSION_TTL,
            metrics_token: None,
            preview_domain: "localhost".into(),
            preview_port: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new("./.forgeai")
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    store: Store,
    /// Where the Inngest-compatible endpoint sends its events.
    events: Arc<dyn EventSink>,
    /// Where `GET /api/projects/{id}/realtime` reads: the engine's own channels unless
    /// [`AppState::with_realtime`] chose another feed (one shared by several servers).
    realtime: Arc<dyn RealtimeFeed>,
    /// Where code-agent runs start and are listed: the engine unless [`AppState::with_runs`]
    /// chose another (Restate).
    runs: Arc<dyn CodeAgentRuns>,
    /// Whether `runs` is another engine than `events`: code-agent events of the Inngest-compatible
    /// endpoint then start their runs there.
    external_runs: bool,
    config: Arc<ServerConfig>,
    metrics: Arc<ops::Metrics>,
    /// Where fragment edits are written so previews show them; none in API-only set-ups.
    sandboxes: Option<Arc<dyn SandboxProvider>>,
    /// Sizes of fragment files accepted from clients.
    limits: SizeLimits,
    /// Signs preview grants and cookies; its key is made on first use and kept in the database.
    preview_signer: Arc<tokio::sync::OnceCell<PreviewSigner>>,
}

impl AppState {
    /// State serving `store` on `engine` (events, code-agent runs and realtime channels, e.g.
    /// the embedded engine), each of which the `with_*` methods can replace.
    pub fn new<E>(store: Store, engine: E, config: ServerConfig) -> Self
    where
        E: EventSink + CodeAgentRuns + RealtimeFeed + 'static,
    {
        let engine = Arc::new(engine);
        Self {
            store,
            events: engine.clone(),
            realtime: engine.clone(),
            runs: engine,
            external_runs: false,
            config: Arc::new(config),
            metrics: Arc::new(ops::Metrics::new()),
            sandboxes: None,
            limits: SizeLimits::default(),
            preview_signer: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// Serves realtime channels from `feed` instead of the engine's, e.g. messages kept in a
    /// database that every server of a cluster reads, so a browser can resume with
    /// `Last-Event-ID` on any of them.
    pub fn with_realtime(mut self, feed: Arc<dyn RealtimeFeed>) -> Self {
        self.realtime = feed;
        self
    }

    /// Starts and lists code-agent runs through `runs` instead of the embedded engine (the
    /// Restate engine, whose runs are kept by restate-server).
    pub fn with_runs(mut self, runs: Arc<dyn CodeAgentRuns>) -> Self {
        self.runs = runs;
        self.external_runs = true;
        self
    }

    pub fn with_sandboxes(mut self, sandboxes: Arc<dyn SandboxProvider>) -> Self {
        self.sandboxes = Some(sandboxes);
        self
    }

    /// Holds fragment edits to `limits` (per file and per fragment) instead of the defaults.
    pub fn with_limits(mut self, limits: SizeLimits) -> Self {
        self.limits = limits;
        self
    }

    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.config.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    }
}

const JSON_BODY_LIMIT: usize = 1024 * 1024;
/// The largest body of a fragment edit: a whole fragment, twice over for JSON escapes.
fn fragment_body_limit(limits: &SizeLimits) -> usize {
    limits.max_fragment_bytes.saturating_mul(2).saturating_add(64 * 1024)
}
const UPLOAD_BODY_LIMIT: usize = uploads::MAX_UPLOAD_BYTES + 64 * 1024;

/// All routes of the server.
pub fn router(state: AppState) -> Router {
    let fragment_body_limit = fragment_body_limit(&state.limits);
    let api = Router::new()
        .route("/api/projects", post(api::create_project).get(api::list_projects))
        .route(
            "/api/projects/{id}",
            get(api::get_project)
                .delete(api::delete_project)
                .patch(preview_access::update_project),
        )
        .route("/api/projects/{id}/preview", get(preview_access::preview_link))
        .route("/api/projects/{id}/runs", get(api::list_runs))
        .route("/api/projects/{id}/realtime", get(realtime::subscribe))
        .route(
            "/api/projects/{id}/versions",
            get(versions::list_versions).post(versions::save_version),
        )
        .route("/api/projects/{id}/versions/{a}/diff/{b}", get(versions::diff_versions))
        .route(
            "/api/projects/{id}/versions/{v}/restore",
            post(versions::restore_version),
        )
        .route("/api/projects/{id}/export.zip", get(versions::export_zip))
        .route("/api/messages", get(api::list_messages).post(api::create_message))
        .route(
            "/api/fragments/{id}",
            patch(api::update_fragment)
                .layer(DefaultBodyLimit::max(fragment_body_limit))
                .get(api::get_fragment),
        )
        .route(
            "/api/uploads",
            post(uploads::upload).layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route("/api/runs/{id}", get(api::get_run))
        .route("/api/runs/{id}/cancel", post(api::cancel_run))
        .route("/api/openapi.json", get(ops::openapi))
        .route("/e/{event_key}", post(events::send))
        .route("/uploads/{name}", get(uploads::serve))
        .route("/login", get(auth::login))
        .route("/api/session", post(auth::sign_in).delete(auth::sign_out))
        .route("/api/tokens", get(auth::list_tokens))
        .route("/api/tokens/{id}", delete(auth::revoke_token))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), ops::track))
        // Answered as `{error}` like every other failure (axum's own have empty bodies).
        .method_not_allowed_fallback(async || ApiError::MethodNotAllowed)
        .fallback(ui::fallback);
    api.layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)).with_state(state)
}
