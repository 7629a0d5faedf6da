//! `forgeai run "<prompt>"`: the main job from a terminal, on the embedded defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use forgeai_code_agent::{
    ACTIVITY_TOPIC, ERRORS_STATUS, FAILED_STATUS, PromptTarget, READY_STATUS, SubmitError, project_channel,
    submit_prompt,
};
use forgeai_engine::RunStatus;
use forgeai_store::{MessageRole, MessageType, Store, User};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{App, Settings};

#[derive(clap::Args)]
pub struct RunArgs {
    /// What to build or change.
    prompt: String,
    /// A screenshot or mock-up to build from (PNG, JPEG, WebP or GIF, at most 4 MB).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Continue this project instead of starting a new one.
    #[arg(long)]
    project: Option<String>,
    /// The user the project belongs to (created when missing).
    #[arg(long, default_value = "admin")]
    user: String,
    /// Keep serving the preview after the run, until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
}

pub async fn run(settings: &Settings, listen: &str, args: RunArgs) -> Result<()> {
    let prompt_chars = args.prompt.chars().count();
    if args.prompt.trim().is_empty() || prompt_chars > 10_000 {
        bail!("the prompt must have 1 to 10000 characters (it has {prompt_chars})");
    }
    let model = settings.model.llm_config();
    if model.api_key.is_none() && model.base_url == forgeai_llm::DEFAULT_BASE_URL {
        bail!(
            "no model is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible \
             server such as OpenRouter, vLLM, Ollama or llama.cpp)"
        );
    }
    let mut app = App::start(settings, listen).await?;
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = app.serve(async {
        let _ = stopped.await;
    });
    let outcome = run_prompt(&app, settings, &args).await;
    if outcome.is_ok() && args.keep_serving {
        println!("Serving the preview until Ctrl-C...");
        crate::shutdown_signal().await;
    }
    let _ = stop_serving.send(());
    let _ = server.await;
    app.stop().await;
    outcome
}

async fn user(store: &Store, name: &str) -> Result<User> {
    if let Some(user) = store.find_user_by_name(name).await? {
        return Ok(user);
    }
    Ok(store.create_user(name).await.context("cannot create the user")?.0)
}

async fn run_prompt(app: &App, settings: &Settings, args: &RunArgs) -> Result<()> {
    if settings.local_sandboxes() {
        App::ensure_template(settings).await?;
    }
    let user = user(&app.store, &args.user).await?;
    let image_url = match &args.image {
        Some(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name = forgeai_server::save_image(&settings.data_dir, &bytes)
                .await
                .with_context(|| format!("cannot use {} as the image", path.display()))?;
            Some(format!("{}/uploads/{name}", app.listener_url))
        }
        None => None,
    };
    let files_before = match &args.project {
        Some(project_id) => app
            .store
            .latest_fragment(&user.id, project_id)
            .await?
            .map(|fragment| fragment.files)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    // An existing project's statuses are followed from now on (subscribed before the run
    // starts, so none is missed); a new project's channel from its beginning.
    let early = args
        .project
        .as_ref()
        .map(|project_id| app.realtime.subscribe(&project_channel(project_id), None));
    let target = match &args.project {
        Some(project_id) => PromptTarget::Project(project_id),
        None => PromptTarget::NewProject,
    };
    let submitted = submit_prompt(
        &app.store,
        &*app.runs,
        &user.id,
        target,
        &args.prompt,
        image_url.as_deref(),
    )
    .await
    .map_err(|error| match error {
        SubmitError::NoProject(project_id) => anyhow::anyhow!("user {} has no project {project_id}", user.name),
        other => other.into(),
    })?;
    let (project, run_id, prompt_id) = (submitted.project, submitted.run_id, submitted.message.id);
    let mut statuses = early.unwrap_or_else(|| app.realtime.subscribe(&project_channel(&project.id), Some(0)));

    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})")?);
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner.set_message("Queued...");
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            status = statuses.next() => {
                let Some(status) = status else { break };
                let message = status?;
                if message.topic == ACTIVITY_TOPIC {
                    // Each tool call in a line under the status it belongs to.
                    if let Some(summary) = message.data.get("summary").and_then(|s| s.as_str()) {
                        spinner.println(format!("    {summary}"));
                    }
                    continue;
                }
                let text = message.data.as_str().unwrap_or_default().to_owned();
                spinner.println(format!("  {text}"));
                spinner.set_message(text.clone());
                if [READY_STATUS, ERRORS_STATUS, FAILED_STATUS].contains(&text.as_str()) {
                    break;
                }
            }
            _ = check.tick() => {
                let finished = app.runs.run_detail(&run_id).await?.is_some_and(|detail| detail.run.status.is_finished());
                if finished {
                    break;
                }
            }
        }
    }
    spinner.finish_and_clear();
    // The run may still be between its last status and its end.
    while let Some(detail) = app.runs.run_detail(&run_id).await? {
        if detail.run.status.is_finished() {
            if detail.run.status != RunStatus::Completed {
                eprintln!(
                    "The run {}: {}",
                    detail.run.status.as_str(),
                    detail.run.error.unwrap_or_default()
                );
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report(app, &user, &project.id, &prompt_id, &run_id, &files_before).await
}

/// How long the preview link `forgeai run` prints opens the preview.
const PREVIEW_LINK_TTL: chrono::Duration = chrono::Duration::days(1);

/// The preview URL with a grant, so that it opens in a browser (previews are private to their
/// owner). The grant goes through a session of its own, valid a day, which the user can list
/// and revoke like any other (`forgeai users tokens`).
async fn granted_preview(app: &App, user: &User, sandbox_id: &str) -> Result<String> {
    let (session, _) = app
        .store
        .create_session(&user.id, PREVIEW_LINK_TTL)
        .await?
        .context("the user disappeared")?;
    let signer = forgeai_server::PreviewSigner::load(&app.store).await?;
    let (grant, _) = signer.grant(sandbox_id, &user.id, &session.id, PREVIEW_LINK_TTL);
    let host = forgeai_sandbox::SandboxProvider::host(&*app.sandboxes, sandbox_id, forgeai_server::PREVIEW_PORT);
    Ok(forgeai_server::preview_access::granted_url(
        &format!("http://{host}/"),
        &grant,
    ))
}

async fn report(
    app: &App,
    user: &User,
    project_id: &str,
    prompt_id: &str,
    run_id: &str,
    files_before: &BTreeMap<String, String>,
) -> Result<()> {
    // Runs of a project answer its prompts one at a time, in order, one ASSISTANT message each:
    // the n-th prompt's answer is the n-th ASSISTANT message.
    let messages = app.store.list_messages(&user.id, project_id).await?.unwrap_or_default();
    let prompts_so_far = messages
        .iter()
        .filter(|message| message.message.role == MessageRole::User)
        .position(|message| message.message.id == prompt_id);
    let reply = prompts_so_far.and_then(|index| {
        messages
            .into_iter()
            .filter(|message| message.message.role == MessageRole::Assistant)
            .nth(index)
    });
    let Some(reply) = reply else {
        bail!("the run stored no answer; see `GET /api/runs/{run_id}` for its steps");
    };
    if reply.message.kind == MessageType::Error {
        bail!("{} (project {project_id})", reply.message.content);
    }
    println!("\n{}\n", reply.message.content);
    let fragment = match &reply.fragment {
        Some(summary) => app.store.get_fragment(&user.id, &summary.id).await?,
        None => None,
    };
    if let Some(fragment) = fragment {
        let changed: Vec<&String> = fragment
            .files
            .iter()
            .filter(|(path, content)| files_before.get(*path) != Some(content))
            .map(|(path, _)| path)
            .collect();
        println!("{} — files changed ({}):", fragment.title, changed.len());
        for path in changed {
            println!("  {path}");
        }
        let sandbox_id = app
            .store
            .get_project(&user.id, project_id)
            .await?
            .and_then(|project| project.sandbox_id);
        match sandbox_id {
            Some(sandbox_id) => println!("\nPreview: {}", granted_preview(app, user, &sandbox_id).await?),
            None => println!("\nPreview: {}", fragment.sandbox_url),
        }
    }
    println!("Project: {project_id} (continue with `forgeai run --project {project_id} \"...\"`)");
    println!(
        "The preview is served by forgeai: keep it up with `forgeai serve` (same data dir) or `forgeai run --keep-serving`."
    );
    Ok(())
}
