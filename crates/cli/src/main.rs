//! `forgeai`: the command line of the self-hostable AI app builder — serve the API, engine and
//! previews in one process, run a prompt from the terminal, manage users and templates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use forgeai_engine::{Engine, EngineConfig};
use forgeai_server::{AppState, ServerConfig};
use forgeai_store::Store;

#[derive(Parser)]
#[command(name = "forgeai", version, about = "Self-hostable AI app builder")]
struct Cli {
    /// Where forgeai keeps its databases, uploads and sandboxes.
    #[arg(long, global = true, env = "FORGEAI_DATA_DIR", default_value = "./.forgeai")]
    data_dir: PathBuf,
    /// A postgres:// URL to keep projects in PostgreSQL instead of SQLite in the data dir.
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API, the engine's workers and the preview proxy in one process.
    Serve {
        #[arg(long, env = "FORGEAI_LISTEN", default_value = "127.0.0.1:4000")]
        listen: String,
        /// The URL people reach this server at, when it is behind a proxy or on a domain.
        #[arg(long, env = "FORGEAI_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Manage the people who may use this server.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user; prints a new API token as the last line.
    Add { name: String },
    /// Print a one-time login URL for the web UI.
    Login {
        name: String,
        #[arg(long, env = "FORGEAI_PUBLIC_URL", default_value = "http://127.0.0.1:4000")]
        url: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FORGEAI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, public_url } => {
            serve(&cli.data_dir, cli.database_url.as_deref(), &listen, public_url).await
        }
        Command::Users { command } => {
            let store = open_store(&cli.data_dir, cli.database_url.as_deref()).await?;
            match command {
                UsersCommand::Add { name } => {
                    let (user, token) = store.create_user(&name).await.context("cannot create the user")?;
                    println!("created user {} ({})", user.name, user.id);
                    println!("API token (shown once; send it as `Authorization: Bearer <token>`):");
                    println!("{token}");
                }
                UsersCommand::Login { name, url } => {
                    let user = store
                        .find_user_by_name(&name)
                        .await?
                        .with_context(|| format!("no user named {name:?}; create one with `forgeai users add {name}`"))?;
                    let token = store
                        .create_login_token(&user.id)
                        .await?
                        .context("the user disappeared while creating the login link")?;
                    println!("{}", login_url(&url, &token));
                }
            }
            Ok(())
        }
    }
}

async fn open_store(data_dir: &Path, database_url: Option<&str>) -> Result<Store> {
    let store = match database_url {
        Some(url) => Store::connect(url).await,
        None => Store::open_default(data_dir).await,
    };
    store.map_err(|error| anyhow::Error::new(error).context("cannot open the project database"))
}

fn login_url(base: &str, token: &str) -> String {
    format!("{}/login?token={token}", base.trim_end_matches('/'))
}

async fn serve(data_dir: &Path, database_url: Option<&str>, listen: &str, public_url: Option<String>) -> Result<()> {
    let store = open_store(data_dir, database_url).await?;
    let engine = Engine::builder(EngineConfig::new(data_dir.join("engine")))
        .start()
        .await
        .context("cannot start the engine")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (set FORGEAI_LISTEN to another address)"))?;
    let address = listener.local_addr()?;
    let base_url = public_url.clone().unwrap_or_else(|| format!("http://{address}"));
    if store.user_count().await? == 0 {
        let (user, _) = store.create_user("admin").await?;
        let token = store
            .create_login_token(&user.id)
            .await?
            .context("the first user disappeared while creating its login link")?;
        println!("Created the first user `admin`. Open this link to sign in (it works once):");
        println!("{}", login_url(&base_url, &token));
    }
    let state = AppState::new(
        store.clone(),
        engine.clone(),
        ServerConfig {
            data_dir: data_dir.to_owned(),
            public_url,
        },
    );
    println!("forgeai is listening on {base_url}");
    axum::serve(listener, forgeai_server::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    engine.shutdown(Duration::from_secs(5)).await;
    store.close().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
}
