//! Assembles one forgeai process: store, sandboxes, engine with the code-agent, and the
//! HTTP front (API plus preview proxy) on one listener.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use forgeai_code_agent::{CodeAgent, CodeAgentConfig, CodeAgentRuns, SizeLimits};
use forgeai_e2b::E2bProvider;
use forgeai_engine::{Engine, EngineConfig, RealtimeFeed};
use forgeai_llm::LlmClient;
use forgeai_preview::{PreviewConfig, PreviewProxy};
use forgeai_restate::{CodeAgentObject, RestateRuns, register_deployment};
use forgeai_sandbox::{LocalConfig, LocalProvider, PreviewTarget, SandboxProvider, Template};
use forgeai_server::{AppState, PreviewGate, ServerConfig};
use forgeai_store::{PgRealtime, PgRealtimeConfig, Store};

use crate::e2b_args::ProviderKind;
use crate::engine_args::EngineKind;
use tower::ServiceExt;

/// Where and how the process runs; from the command line and the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub template: String,
    pub preview_domain: String,
    pub public_url: Option<String>,
    pub ui_dir: PathBuf,
    /// Sizes of files, tool calls, tool results and fragments.
    pub limits: SizeLimits,
    pub sandbox: crate::sandbox_args::SandboxArgs,
    pub provider: crate::e2b_args::ProviderArgs,
    pub access: crate::access_args::AccessArgs,
    pub engine: crate::engine_args::EngineArgs,
    /// The model API and Unsplash.
    pub model: crate::model_args::ModelArgs,
}

impl Settings {
    /// Whether sandboxes run on this machine (and so need the template built in the data dir).
    pub fn local_sandboxes(&self) -> bool {
        self.provider.sandbox_provider == ProviderKind::Local
    }
}

pub async fn open_store(settings: &Settings) -> Result<Store> {
    let store = match &settings.database_url {
        Some(url) => Store::connect(url).await,
        None => Store::open_default(&settings.data_dir).await,
    };
    store.map_err(|error| anyhow::Error::new(error).context("cannot open the project database"))
}

/// The Restate engine: statuses in PostgreSQL, the code-agent's service endpoint served and
/// registered with restate-server, runs started through its ingress.
async fn start_restate(
    settings: &Settings,
    store: &Store,
    code_agent: Arc<CodeAgent>,
) -> Result<(Arc<dyn CodeAgentRuns>, Arc<dyn RealtimeFeed>)> {
    let realtime: Arc<dyn RealtimeFeed> = Arc::new(PgRealtime::start(store, PgRealtimeConfig::default()).await.context(
        "FORGEAI_ENGINE=restate keeps projects and realtime messages in PostgreSQL, so that every forgeai node sees \
         every run: set DATABASE_URL to a postgres:// URL",
    )?);
    let listen = settings.engine.restate_listen;
    // Bind first, so a taken address is an error here and not a log line of a background task.
    std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen} for Restate (set FORGEAI_RESTATE_LISTEN)"))?;
    tokio::spawn(forgeai_restate::serve(
        CodeAgentObject::new(code_agent, realtime.clone()),
        listen,
    ));
    let config = settings.engine.restate_config();
    let endpoint = settings.engine.restate_endpoint_url();
    // The endpoint starts in the background; restate-server's discovery call needs it up.
    let mut attempts = 0;
    loop {
        match register_deployment(&config, &endpoint).await {
            Ok(()) => break,
            Err(error) if attempts < 50 => {
                attempts += 1;
                tracing::debug!(%error, "registering with Restate; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "cannot register forgeai's service ({endpoint}) with Restate at {} (is restate-server running? \
                     RESTATE_ADMIN_URL, FORGEAI_RESTATE_ADVERTISE_URL)",
                    config.admin_url
                )));
            }
        }
    }
    Ok((Arc::new(RestateRuns::new(config, realtime.clone())), realtime))
}

/// The sandbox provider `FORGEAI_SANDBOX_PROVIDER` names, as the code-agent and the preview
/// proxy use it, and the local provider itself when it is the one.
async fn start_sandboxes(
    settings: &Settings,
    preview_port: u16,
) -> Result<(
    Arc<dyn SandboxProvider>,
    Arc<dyn PreviewTarget>,
    Option<Arc<LocalProvider>>,
)> {
    match settings.provider.sandbox_provider {
        ProviderKind::Local => {
            let mut config = LocalConfig::new(&settings.data_dir);
            config.preview_domain = settings.preview_domain.clone();
            config.preview_port = Some(preview_port);
            settings.sandbox.apply(&mut config);
            let local = Arc::new(
                LocalProvider::new(config)
                    .await
                    .context("cannot start the local sandbox provider (it needs root and scripts/setup.sh)")?,
            );
            Ok((local.clone(), local.clone(), Some(local)))
        }
        ProviderKind::E2b => {
            let keepalive = CodeAgentConfig::new(&settings.data_dir).sandbox_timeout;
            let config = settings
                .provider
                .e2b_config(&settings.preview_domain, preview_port, keepalive)?;
            let e2b = Arc::new(E2bProvider::new(config).context("cannot start the E2B sandbox provider")?);
            Ok((e2b.clone(), e2b, None))
        }
    }
}

/// A running forgeai: everything `serve` and `run` share.
pub struct App {
    pub store: Store,
    pub engine: Engine,
    /// Where runs start and are listed: the embedded engine, or Restate.
    pub runs: Arc<dyn CodeAgentRuns>,
    /// Where statuses are published and read: the embedded engine, or PostgreSQL.
    pub realtime: Arc<dyn RealtimeFeed>,
    pub sandboxes: Arc<dyn SandboxProvider>,
    /// The local provider, when sandboxes run on this machine (stopped with the process).
    local: Option<Arc<LocalProvider>>,
    pub listener_url: String,
    router: Router,
    listener: Option<tokio::net::TcpListener>,
    /// `/metrics` on a listener of its own (`FORGEAI_METRICS_LISTEN`).
    metrics: Option<(tokio::net::TcpListener, Router)>,
}

impl App {
    pub async fn start(settings: &Settings, listen: &str) -> Result<App> {
        let store = open_store(settings).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (set FORGEAI_LISTEN to another address)"))?;
        let address = listener.local_addr()?;
        let (sandboxes, preview_target, local) = start_sandboxes(settings, address.port()).await?;
        let llm = LlmClient::new(settings.model.llm_config())
            .context("invalid model API settings (OPENAI_BASE_URL, OPENAI_API_KEY)")?;
        let mut agent_config = CodeAgentConfig::new(&settings.data_dir);
        agent_config.template = settings.template.clone();
        agent_config.limits = settings.limits;
        let code_agent = CodeAgent::new(
            store.clone(),
            sandboxes.clone(),
            llm,
            settings.model.unsplash(),
            agent_config,
        );
        let mut engine = Engine::builder(EngineConfig::new(settings.data_dir.join("engine")));
        if settings.engine.engine == EngineKind::Embedded {
            engine = engine.function(code_agent.function());
        }
        let engine = engine.start().await.context("cannot start the engine")?;
        let listener_url = format!("http://{address}");
        let mut server_config = ServerConfig::new(&settings.data_dir);
        server_config.public_url = settings.public_url.clone();
        server_config.ui_dir = Some(settings.ui_dir.clone());
        server_config.preview_domain = settings.preview_domain.clone();
        server_config.preview_port = Some(address.port());
        settings.access.apply(&mut server_config);
        let mut state = AppState::new(store.clone(), engine.clone(), server_config).with_sandboxes(sandboxes.clone());
        let (runs, realtime): (Arc<dyn CodeAgentRuns>, Arc<dyn RealtimeFeed>) = match settings.engine.engine {
            EngineKind::Embedded => (Arc::new(engine.clone()), Arc::new(engine.clone())),
            EngineKind::Restate => {
                let (runs, realtime) = start_restate(settings, &store, code_agent).await?;
                state = state.with_runs(runs.clone()).with_realtime(realtime.clone());
                (runs, realtime)
            }
        };
        let metrics_listener = match &settings.access.metrics_listen {
            Some(address) => Some(tokio::net::TcpListener::bind(address).await.with_context(|| {
                format!("cannot listen for metrics on {address} (set FORGEAI_METRICS_LISTEN to another address)")
            })?),
            None => None,
        };
        let state = state.with_limits(settings.limits);
        let proxy = PreviewProxy::new(
            preview_target,
            PreviewConfig {
                domain: settings.preview_domain.clone(),
                ..PreviewConfig::default()
            },
        );
        let metrics = metrics_listener.map(|listener| (listener, forgeai_server::metrics_router(state.clone())));
        let router = Router::new().fallback(dispatch).with_state(Front {
            preview: PreviewGate::new(state.clone(), proxy),
            api: forgeai_server::router(state),
        });
        Ok(App {
            store,
            engine,
            runs,
            realtime,
            sandboxes,
            local,
            listener_url,
            router,
            listener: Some(listener),
            metrics,
        })
    }

    /// The template in the data dir, when it is there and, for the built-in `forgeai-v1` (whose
    /// packages and configuration the agent's prompt describes), built by this version of forgeai.
    pub fn current_template(settings: &Settings) -> Option<Template> {
        let template = Template::load(&settings.data_dir, &settings.template).ok()?;
        if template.name == "forgeai-v1"
            && template.config.recipe.as_deref() != Some(forgeai_sandbox::forgeai_v1_recipe().as_str())
        {
            eprintln!("The forgeai-v1 template in the data dir was built by another version of forgeai.");
            return None;
        }
        Some(template)
    }

    /// The template sandboxes are made from, built first unless it is current.
    pub async fn ensure_template(settings: &Settings) -> Result<Template> {
        match Self::current_template(settings) {
            Some(template) => Ok(template),
            None => Self::build_template(settings).await,
        }
    }

    pub async fn build_template(settings: &Settings) -> Result<Template> {
        let note = if settings.template == "forgeai-v1" {
            " (it downloads its packages from npm once; this takes a minute or two)"
        } else {
            ""
        };
        eprintln!(
            "Building the {} template into {}{note}...",
            settings.template,
            settings.data_dir.display()
        );
        forgeai_sandbox::build_template(&settings.template, &settings.data_dir)
            .await
            .with_context(|| format!("cannot build the {} template", settings.template))
    }

    /// Serves the API and previews until `shutdown` resolves.
    pub fn serve(
        &mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<()>> {
        let listener = self.listener.take();
        let router = self.router.clone();
        let metrics = self.metrics.take().map(|(listener, router)| {
            tokio::spawn(async move {
                if let Err(error) = axum::serve(listener, router).await {
                    tracing::error!(%error, "the metrics listener failed");
                }
            })
        });
        tokio::spawn(async move {
            let listener = listener.context("the server is already running")?;
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
                .context("the HTTP server failed");
            if let Some(metrics) = metrics {
                metrics.abort();
            }
            served
        })
    }

    pub async fn stop(&self) {
        self.engine.shutdown(Duration::from_secs(5)).await;
        if let Some(local) = &self.local {
            local.shutdown().await;
        }
        self.store.close().await;
    }
}

#[derive(Clone)]
struct Front {
    preview: Arc<PreviewGate>,
    api: Router,
}

/// Requests for `<port>-<sandbox>.<domain>` go to the preview gate (the owner's or a public
/// preview reaches the sandbox); everything else to the API.
async fn dispatch(State(front): State<Front>, request: Request) -> Response {
    if front.preview.matches(request.headers(), request.uri()) {
        return front.preview.handle(request).await;
    }
    match front.api.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
    .into_response()
}
