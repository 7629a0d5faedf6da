//! `forgeai`: the command line of the self-hostable AI app builder — serve the API, engine and
//! previews in one process, run a prompt from the terminal, manage users and templates.

mod access_args;
mod app;
mod e2b_args;
mod engine_args;
mod limit_args;
mod model_args;
mod run;
mod sandbox_args;
mod size;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::app::{App, Settings, open_store};

#[derive(Parser)]
#[command(name = "forgeai", version, about = "Self-hostable AI app builder")]
struct Cli {
    /// Where forgeai keeps its databases, uploads, templates and sandboxes.
    #[arg(long, global = true, env = "FORGEAI_DATA_DIR", default_value = "./.forgeai")]
    data_dir: PathBuf,
    /// A postgres:// URL to keep projects in PostgreSQL (default: SQLite in the data dir).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The template new sandboxes are made from (`forgeai-v1` or `static`).
    #[arg(long, global = true, env = "FORGEAI_SANDBOX_TEMPLATE", default_value = "forgeai-v1")]
    template: String,
    /// Address of the HTTP server (API, UI and previews).
    #[arg(long, global = true, env = "FORGEAI_LISTEN", default_value = "127.0.0.1:4000")]
    listen: String,
    /// Preview URLs are `http://3000-<sandbox>.<domain>:<port>/`; browsers resolve `*.localhost`.
    #[arg(long, global = true, env = "FORGEAI_PREVIEW_DOMAIN", default_value = "localhost")]
    preview_domain: String,
    /// The URL people reach this server at, when it is behind a proxy or on a domain (default:
    /// `http://<Host header>` of each request).
    #[arg(long, global = true, env = "FORGEAI_PUBLIC_URL")]
    public_url: Option<String>,
    /// The web UI's build; by default this checkout's `ui/dist`.
    #[arg(long, global = true, env = "FORGEAI_UI_DIR")]
    ui_dir: Option<PathBuf>,
    /// What is logged, in tracing's `EnvFilter` syntax (`debug` also prints an error's stack
    /// trace when `RUST_BACKTRACE=1`).
    #[arg(long, global = true, env = "FORGEAI_LOG", default_value = DEFAULT_LOG)]
    log: String,
    #[command(flatten)]
    model: model_args::ModelArgs,
    #[command(flatten)]
    sandbox: sandbox_args::SandboxArgs,
    #[command(flatten)]
    provider: e2b_args::ProviderArgs,
    #[command(flatten)]
    access: access_args::AccessArgs,
    #[command(flatten)]
    engine: engine_args::EngineArgs,
    #[command(flatten)]
    limits: limit_args::LimitArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API, the engine's workers and the preview proxy in one process.
    Serve,
    /// Build or change an app from the terminal: shows progress live, prints the preview URL.
    Run(run::RunArgs),
    /// Manage the people who may use this server.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Manage sandbox templates.
    Template {
        #[command(subcommand)]
        command: TemplateCommand,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create a user; prints a new API token as the last line.
    Add { name: String },
    /// Print a one-time login URL for the web UI (it works once, within 15 minutes).
    Login { name: String },
    /// List a user's tokens (API tokens, browser sessions, unused login links), never their secrets.
    Tokens { name: String },
    /// Revoke one of a user's tokens by its id (from `forgeai users tokens`).
    Revoke { name: String, token_id: String },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Build a template into the data dir (`forgeai-v1` downloads its packages from npm).
    Build { name: String },
}

/// The default `FORGEAI_LOG`.
const DEFAULT_LOG: &str = "warn,forgeai=info";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // A filter that does not parse logs as by default (as it did when read with `try_from_env`).
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log.trim())
        .ok()
        .filter(|_| !cli.log.trim().is_empty())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match forgeai(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// An error as one line, `error: what failed: because: because` (anyhow's `{:#}`). The stack
/// trace anyhow captures when `RUST_BACKTRACE` is set is for developers: it is shown only with
/// debug logging (`FORGEAI_LOG=debug`), never to a person who mistyped a setting.
fn report(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
    if tracing::level_filters::LevelFilter::current() >= tracing::level_filters::LevelFilter::DEBUG {
        eprintln!("\n{error:?}");
    }
}

async fn forgeai(cli: Cli) -> Result<()> {
    let settings = Settings {
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        template: cli.template,
        preview_domain: cli.preview_domain,
        public_url: cli.public_url,
        ui_dir: cli.ui_dir.unwrap_or_else(forgeai_server::default_ui_dir),
        limits: cli.limits.limits(),
        sandbox: cli.sandbox,
        provider: cli.provider,
        access: cli.access,
        engine: cli.engine,
        model: cli.model,
    };
    match cli.command {
        Command::Serve => serve(&settings, &cli.listen).await,
        Command::Run(args) => run::run(&settings, &cli.listen, args).await,
        Command::Users { command } => users(&settings, &cli.listen, command).await,
        Command::Template {
            command: TemplateCommand::Build { name },
        } => {
            let template = forgeai_sandbox::build_template(&name, &settings.data_dir)
                .await
                .with_context(|| format!("cannot build the {name} template"))?;
            println!("built template {name} in {}", template.project_dir().display());
            Ok(())
        }
    }
}

fn login_url(base: &str, token: &str) -> String {
    format!("{}/login?token={token}", base.trim_end_matches('/'))
}

async fn users(settings: &Settings, listen: &str, command: UsersCommand) -> Result<()> {
    let store = open_store(settings).await?;
    let find_user = async |name: &str| {
        store
            .find_user_by_name(name)
            .await?
            .with_context(|| format!("no user named {name:?}; create one with `forgeai users add {name}`"))
    };
    match command {
        UsersCommand::Tokens { name } => {
            let user = find_user(&name).await?;
            let tokens = store.list_tokens(&user.id).await?;
            println!(
                "{:<36}  {:<10}  {:<20}  {:<20}  last used",
                "id", "kind", "created", "expires"
            );
            let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
                at.map_or_else(|| "-".to_owned(), |at| at.format("%Y-%m-%d %H:%M UTC").to_string())
            };
            for token in tokens {
                let kind = serde_json::to_value(token.kind)?;
                println!(
                    "{:<36}  {:<10}  {:<20}  {:<20}  {}",
                    token.id,
                    kind.as_str().unwrap_or_default(),
                    time(Some(token.created_at)),
                    time(token.expires_at),
                    time(token.last_used_at)
                );
            }
        }
        UsersCommand::Revoke { name, token_id } => {
            let user = find_user(&name).await?;
            if !store.revoke_token(&user.id, token_id.trim()).await? {
                anyhow::bail!("user {name} has no token {token_id}; `forgeai users tokens {name}` lists them");
            }
            println!("revoked token {token_id} of {name}");
        }
        UsersCommand::Add { name } => {
            let (user, token) = store.create_user(&name).await.context("cannot create the user")?;
            println!("created user {} ({})", user.name, user.id);
            println!("API token (shown once; send it as `Authorization: Bearer <token>`):");
            println!("{token}");
        }
        UsersCommand::Login { name } => {
            let user = find_user(&name).await?;
            let token = store
                .create_login_token(&user.id)
                .await?
                .context("the user disappeared while creating the login link")?;
            let base = settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{listen}"));
            println!("{}", login_url(&base, &token));
        }
    }
    Ok(())
}

async fn serve(settings: &Settings, listen: &str) -> Result<()> {
    let mut app = App::start(settings, listen).await?;
    if settings.local_sandboxes() && App::current_template(settings).is_none() {
        // Prompts wait (through their retries) while the template is built.
        let settings = settings.clone();
        tokio::spawn(async move {
            match App::build_template(&settings).await {
                Ok(_) => eprintln!("The {} template is ready.", settings.template),
                Err(error) => eprintln!("error: {error:#}"),
            }
        });
    }
    let base_url = settings.public_url.clone().unwrap_or_else(|| app.listener_url.clone());
    if app.store.user_count().await? == 0 {
        let (user, _) = app.store.create_user("admin").await?;
        let token = app
            .store
            .create_login_token(&user.id)
            .await?
            .context("the first user disappeared while creating its login link")?;
        println!(
            "Created the first user `admin`. Open this link to sign in (it works once, within 15 minutes; \
             `forgeai users login admin` prints a new one):"
        );
        println!("{}", login_url(&base_url, &token));
    }
    println!("forgeai is listening on {base_url}");
    let served = app.serve(shutdown_signal()).await;
    app.stop().await;
    served.context("the HTTP server task panicked")?
}

pub(crate) async fn shutdown_signal() {
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
