//! The JSON API: projects, messages, fragments, runs. Every handler is scoped to the caller.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Query, State};
use axum::http::StatusCode;
use forgeai_code_agent::format_bytes;
use forgeai_code_agent::{CODE_AGENT_FUNCTION, PromptTarget, Submitted, submit_prompt};
use forgeai_store::{Fragment, ListedMessage, Message, Project};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};

pub const MAX_MESSAGE_CHARS: usize = 10_000;
const MAX_URL_CHARS: usize = 2048;
const MAX_PATH_CHARS: usize = 512;

/// A JSON body whose rejections are answered as `{error}` like every other failure.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// A path whose rejections are answered as `{error}`.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProject {
    /// The prompt, 1 to 10000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub message: String,
    /// An image (screenshot or mock-up) to build from: an http(s) URL, e.g. from `/api/uploads`.
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048)]
    pub image_url: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateMessage {
    /// The prompt, 1 to 10000 characters.
    #[schema(min_length = 1, max_length = 10000)]
    pub message: String,
    #[schema(format = "uuid")]
    pub project_id: String,
    /// An image to build from: an http(s) URL, e.g. from `/api/uploads`.
    #[serde(default)]
    #[schema(format = "uri", max_length = 2048)]
    pub image_url: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateFragment {
    /// Path (relative to the project root) → new content; merged into the fragment's files.
    pub files: BTreeMap<String, String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    #[param(format = "uuid")]
    pub project_id: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub id: String,
    /// queued, running, completed, failed or cancelled.
    pub status: String,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepSummary {
    pub id: String,
    pub name: String,
    /// running, retrying, completed or failed.
    pub status: String,
    pub attempts: u32,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub error: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunWithSteps {
    #[serde(flatten)]
    pub run: RunSummary,
    pub project_id: Option<String>,
    pub steps: Vec<StepSummary>,
}

pub fn parse_id(kind: &'static str, raw: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map(|id| id.to_string())
        .map_err(|_| ApiError::BadRequest(format!("{kind} must be a UUID, got {raw:?}")))
}

pub(crate) fn validate_message(message: &str) -> Result<(), ApiError> {
    if message.trim().is_empty() {
        return Err(ApiError::BadRequest("message must not be empty".into()));
    }
    // PostgreSQL text cannot hold NUL, and no prompt needs one.
    if message.contains('\0') {
        return Err(ApiError::BadRequest("message must not contain NUL characters".into()));
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "message has {chars} characters; at most {MAX_MESSAGE_CHARS} are allowed"
        )));
    }
    Ok(())
}

pub(crate) fn validate_image_url(url: Option<&str>) -> Result<(), ApiError> {
    let Some(url) = url else { return Ok(()) };
    let well_formed = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= MAX_URL_CHARS
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if well_formed {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "imageUrl must be an http(s) URL of at most {MAX_URL_CHARS} characters (upload files through /api/uploads)"
        )))
    }
}

fn validate_file_path(path: &str) -> Result<(), ApiError> {
    let bad = path.is_empty()
        || path.len() > MAX_PATH_CHARS
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        Err(ApiError::BadRequest(format!(
            "file path {path:?} must be relative to the project, without `.`/`..` parts or empty segments"
        )))
    } else {
        Ok(())
    }
}

impl AppState {
    /// The caller's project named by the raw path id: 400 for a malformed id, 404 for a
    /// project that does not exist or belongs to someone else.
    pub(crate) async fn owned_project(&self, user_id: &str, raw_id: &str) -> Result<Project, ApiError> {
        let id = parse_id("project id", raw_id)?;
        self.store
            .get_project(user_id, &id)
            .await?
            .ok_or(ApiError::NotFound("project"))
    }

    /// Stores the prompt and starts its run (see [`submit_prompt`]).
    async fn submit(
        &self,
        user_id: &str,
        target: PromptTarget<'_>,
        prompt: &str,
        image_url: Option<&str>,
    ) -> Result<Submitted, ApiError> {
        let submitted = submit_prompt(&self.store, &*self.runs, user_id, target, prompt, image_url).await?;
        self.metrics.events_sent.inc();
        Ok(submitted)
    }
}

/// Creates a project from a prompt and starts the code agent on it.
#[utoipa::path(post, path = "/api/projects", request_body = CreateProject, tag = "projects",
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    validate_message(&body.message)?;
    validate_image_url(body.image_url.as_deref())?;
    let submitted = state
        .submit(
            &user.id,
            PromptTarget::NewProject,
            &body.message,
            body.image_url.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(submitted.project)))
}

/// The caller's projects, most recently updated first.
#[utoipa::path(get, path = "/api/projects", tag = "projects",
    responses((status = 200, body = [Project]), (status = 401, body = ErrorBody)))]
pub async fn list_projects(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Vec<Project>>, ApiError> {
    Ok(Json(state.store.list_projects(&user.id).await?))
}

#[utoipa::path(get, path = "/api/projects/{id}", tag = "projects", params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Project>, ApiError> {
    state.owned_project(&user.id, &id).await.map(Json)
}

/// Deletes a project with its messages and fragments, and removes its sandbox.
#[utoipa::path(delete, path = "/api/projects/{id}", tag = "projects", params(("id" = String, Path, format = "uuid")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let project = state.owned_project(&user.id, &id).await?;
    if !state.store.delete_project(&user.id, &project.id).await? {
        return Err(ApiError::NotFound("project"));
    }
    // The project's sandbox would otherwise keep its files (and, until paused, its processes).
    if let (Some(sandboxes), Some(sandbox_id)) = (&state.sandboxes, &project.sandbox_id) {
        match sandboxes.kill(sandbox_id).await {
            Ok(_) | Err(forgeai_sandbox::Error::Gone { .. }) => {}
            Err(error) => tracing::warn!(%sandbox_id, %error, "could not remove the sandbox of a deleted project"),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A project's messages, oldest first, each with a summary of its code fragment (or null):
/// file paths and sizes, not contents, which come from `GET /api/fragments/{id}`.
#[utoipa::path(get, path = "/api/messages", tag = "messages", params(MessagesQuery),
    responses((status = 200, body = [ListedMessage]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_messages(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Result<Query<MessagesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<ListedMessage>>, ApiError> {
    let Query(query) = query?;
    let project_id = parse_id("projectId", &query.project_id)?;
    state
        .store
        .list_messages(&user.id, &project_id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("project"))
}

/// Adds a prompt to a project and queues the code agent for it.
#[utoipa::path(post, path = "/api/messages", request_body = CreateMessage, tag = "messages",
    responses((status = 201, body = Message), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn create_message(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<CreateMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let project_id = parse_id("projectId", &body.project_id)?;
    validate_message(&body.message)?;
    validate_image_url(body.image_url.as_deref())?;
    let submitted = state
        .submit(
            &user.id,
            PromptTarget::Project(&project_id),
            &body.message,
            body.image_url.as_deref(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(submitted.message)))
}

/// A fragment with its files (path → content).
#[utoipa::path(get, path = "/api/fragments/{id}", tag = "fragments", params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = Fragment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_fragment(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Fragment>, ApiError> {
    let id = parse_id("fragment id", &id)?;
    state
        .store
        .get_fragment(&user.id, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("fragment"))
}

/// Replaces files of a fragment (merging them into its file map) and writes them into the
/// project's sandbox, so the preview shows them. A file may have at most `FORGEAI_MAX_FILE_BYTES`
/// and the merged fragment at most `FORGEAI_MAX_FRAGMENT_BYTES` (413 otherwise, nothing saved).
#[utoipa::path(patch, path = "/api/fragments/{id}", request_body = UpdateFragment, tag = "fragments",
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = Fragment), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn update_fragment(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateFragment>,
) -> Result<Json<Fragment>, ApiError> {
    let id = parse_id("fragment id", &id)?;
    validate_files(&state, &body.files)?;
    let update = state
        .store
        .merge_fragment_files_within(&user.id, &id, &body.files, state.limits.max_fragment_bytes)
        .await?
        .ok_or(ApiError::NotFound("fragment"))?;
    if let (Some(sandboxes), Some(sandbox_id)) = (&state.sandboxes, &update.project_sandbox_id) {
        let files: Vec<(String, Vec<u8>)> = body
            .files
            .into_iter()
            .map(|(path, content)| (path, content.into_bytes()))
            .collect();
        match sandboxes.write_files(sandbox_id, &files).await {
            // The next run restores the fragment's files into a new sandbox.
            Ok(()) | Err(forgeai_sandbox::Error::Gone { .. }) => {}
            Err(error) => {
                return Err(ApiError::BadGateway(format!(
                    "the files were saved, but the preview sandbox could not be updated: {error}"
                )));
            }
        }
    }
    Ok(Json(update.fragment))
}

/// The run `raw_id` of one of the user's projects.
async fn owned_run(state: &AppState, user_id: &str, raw_id: &str) -> Result<forgeai_engine::RunDetail, ApiError> {
    let id = parse_run_id(raw_id)?;
    let detail = state.runs.run_detail(&id).await?.ok_or(ApiError::NotFound("run"))?;
    // A run belongs to the owner of the project it is keyed by.
    let owned = match (&detail.run.concurrency_key, detail.run.function_id.as_str()) {
        (Some(project_id), CODE_AGENT_FUNCTION) => state.store.get_project(user_id, project_id).await?.is_some(),
        _ => false,
    };
    if owned {
        Ok(detail)
    } else {
        Err(ApiError::NotFound("run"))
    }
}

/// How long a cancel request waits for the run to end before it answers.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Stops a run: a queued one never starts; a running one stops in its current step (a sandbox
/// command is killed, a model call dropped), file changes made before stay in the sandbox, and
/// the project gets an answer saying the run was stopped. Answers once the run has ended (or
/// after 15 s, still `running`); a run that had ended keeps its status.
#[utoipa::path(post, path = "/api/runs/{id}/cancel", tag = "runs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 200, body = RunSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunSummary>, ApiError> {
    let detail = owned_run(&state, &user.id, &id).await?;
    let id = detail.run.id.clone();
    if !detail.run.status.is_finished() {
        state.runs.cancel_run(&id).await?.ok_or(ApiError::NotFound("run"))?;
    }
    let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
    loop {
        let run = state.runs.run_detail(&id).await?.ok_or(ApiError::NotFound("run"))?.run;
        if run.status.is_finished() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(run_summary(run)));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Files sent to be saved: at least one, each path inside the project, no NUL, none over the
/// per-file limit.
pub(crate) fn validate_files(state: &AppState, files: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if files.is_empty() {
        return Err(ApiError::BadRequest("files must name at least one file".into()));
    }
    for (path, content) in files {
        validate_file_path(path)?;
        // PostgreSQL's JSON cannot hold NUL; source files have no use for it.
        if content.contains('\0') {
            return Err(ApiError::BadRequest(format!(
                "file {path:?} must not contain NUL characters"
            )));
        }
        if content.len() > state.limits.max_file_bytes {
            return Err(ApiError::TooLarge(format!(
                "file {path:?} has {}; a file may have at most {}; nothing was saved",
                format_bytes(content.len()),
                format_bytes(state.limits.max_file_bytes)
            )));
        }
    }
    Ok(())
}

/// A run id: a UUID (the embedded engine) or another engine's id (Restate's `inv_…`), in a
/// safe alphabet.
fn parse_run_id(raw: &str) -> Result<String, ApiError> {
    let ok = (1..=64).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::BadRequest(format!("run id {raw:?} is not an id")))
    }
}

fn timestamp(ms: Option<i64>) -> Option<chrono::DateTime<chrono::Utc>> {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
}

fn run_summary(run: forgeai_engine::RunInfo) -> RunSummary {
    let (status, error) = match outcome_of_legacy_error_reply(&run) {
        Some(error) => ("failed", Some(error)),
        None => (run.status.as_str(), run.error),
    };
    RunSummary {
        status: status.to_owned(),
        id: run.id,
        started_at: timestamp(run.started_at),
        ended_at: timestamp(run.ended_at),
        error,
    }
}

/// A code-agent run that stored an ERROR message fails (with the reason as its error). Runs of
/// older versions completed instead, with `{messageId, fragmentId: null}` as their output (a
/// RESULT always has a fragment): those are shown as the failures they were.
fn outcome_of_legacy_error_reply(run: &forgeai_engine::RunInfo) -> Option<String> {
    let output = run.output.as_ref()?;
    let error_reply = run.status == forgeai_engine::RunStatus::Completed
        && run.function_id == CODE_AGENT_FUNCTION
        && output.get("messageId").is_some_and(serde_json::Value::is_string)
        && output.get("fragmentId").is_some_and(serde_json::Value::is_null);
    error_reply.then(|| "the run ended with an ERROR message: the agent did not finish its task".to_owned())
}

/// The code-agent runs of a project, oldest first.
#[utoipa::path(get, path = "/api/projects/{id}/runs", tag = "runs", params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = [RunSummary]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<RunSummary>>, ApiError> {
    let id = state.owned_project(&user.id, &id).await?.id;
    let runs = state.runs.project_runs(&id).await?;
    Ok(Json(runs.into_iter().map(run_summary).collect()))
}

/// One run with its steps (status, attempts, times, errors).
#[utoipa::path(get, path = "/api/runs/{id}", tag = "runs", params(("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$")),
    responses((status = 200, body = RunWithSteps), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunWithSteps>, ApiError> {
    let detail = owned_run(&state, &user.id, &id).await?;
    let project_id = detail.run.concurrency_key.clone();
    let steps = detail
        .steps
        .into_iter()
        .map(|step| StepSummary {
            status: step.status.as_str().to_owned(),
            id: step.id,
            name: step.name,
            attempts: step.attempts,
            started_at: timestamp(Some(step.started_at)),
            ended_at: timestamp(step.ended_at),
            error: step.error,
        })
        .collect();
    Ok(Json(RunWithSteps {
        run: run_summary(detail.run),
        project_id,
        steps,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_must_stay_inside_the_project() {
        for good in ["app/page.tsx", "public/a b.png", "x"] {
            assert!(validate_file_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a\\b"] {
            assert!(validate_file_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_that_stored_an_error_message_shows_as_failed() {
        let run = |status, output: Option<serde_json::Value>| forgeai_engine::RunInfo {
            id: "r".into(),
            function_id: CODE_AGENT_FUNCTION.into(),
            event_id: "e".into(),
            concurrency_key: Some("p".into()),
            status,
            error: None,
            output,
            created_at: 0,
            started_at: Some(0),
            ended_at: Some(1),
        };
        use forgeai_engine::RunStatus::{Completed, Running};
        let legacy = run_summary(run(
            Completed,
            Some(serde_json::json!({"messageId": "r", "fragmentId": null})),
        ));
        assert_eq!(legacy.status, "failed");
        assert!(legacy.error.unwrap().contains("ERROR message"));
        let result = run_summary(run(
            Completed,
            Some(serde_json::json!({"messageId": "r", "fragmentId": "f"})),
        ));
        assert_eq!((result.status.as_str(), result.error), ("completed", None));
        assert_eq!(run_summary(run(Running, None)).status, "running");
    }

    #[test]
    fn messages_are_one_to_ten_thousand_characters() {
        assert!(validate_message("hi").is_ok());
        assert!(validate_message("   ").is_err());
        assert!(validate_message(&"é".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert!(validate_message(&"a".repeat(MAX_MESSAGE_CHARS + 1)).is_err());
        assert!(validate_message("nul \0 inside").is_err());
    }
}
