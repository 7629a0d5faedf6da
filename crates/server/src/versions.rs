//! A project's versions (every RESULT fragment, oldest first): the list with what each one
//! changed, unified diffs between two, restoring one, and the export of the latest as a zip.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use forgeai_code_agent::format_bytes;
use forgeai_sandbox::{CommandOptions, SandboxProvider};
use forgeai_store::{AssistantReply, Fragment, NewFragment, Project, files_size};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{ApiJson, ApiPath, UpdateFragment, validate_files};
use crate::auth::CurrentUser;
use crate::error::{ApiError, ErrorBody};

/// How a file changed from one version to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileChange {
    Added,
    Modified,
    Removed,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangedFile {
    pub path: String,
    pub change: FileChange,
}

/// One version of a project: a fragment and what it changed from the one before it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Version {
    /// The fragment's id.
    pub id: String,
    /// 1 for the first version.
    pub number: usize,
    pub title: String,
    /// The ASSISTANT message the version belongs to.
    pub message_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub changed_files: Vec<ChangedFile>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDiff {
    pub path: String,
    pub change: FileChange,
    /// The unified diff (`--- a/<path>`, `+++ b/<path>`, hunks with 3 lines of context).
    pub diff: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionDiff {
    pub from: String,
    pub to: String,
    /// Every file that differs, by path.
    pub files: Vec<FileDiff>,
}

/// A new version (restored or saved by hand), and whether the sandbox holds it now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Restored {
    pub version: Version,
    /// False when the project has no live sandbox; the next prompt restores the version into a
    /// new one.
    pub sandbox_updated: bool,
}

fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<(String, FileChange)> {
    let paths: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    paths
        .into_iter()
        .filter_map(|path| match (before.get(path), after.get(path)) {
            (None, Some(_)) => Some((path.clone(), FileChange::Added)),
            (Some(_), None) => Some((path.clone(), FileChange::Removed)),
            (Some(a), Some(b)) if a != b => Some((path.clone(), FileChange::Modified)),
            _ => None,
        })
        .collect()
}

fn versions_of(fragments: &[Fragment]) -> Vec<Version> {
    let empty = BTreeMap::new();
    fragments
        .iter()
        .enumerate()
        .map(|(index, fragment)| {
            let before = index.checked_sub(1).map_or(&empty, |i| &fragments[i].files);
            Version {
                id: fragment.id.clone(),
                number: index + 1,
                title: fragment.title.clone(),
                message_id: fragment.message_id.clone(),
                created_at: fragment.created_at,
                changed_files: changes(before, &fragment.files)
                    .into_iter()
                    .map(|(path, change)| ChangedFile { path, change })
                    .collect(),
            }
        })
        .collect()
}

async fn fragments(state: &AppState, user_id: &str, raw_project: &str) -> Result<(Project, Vec<Fragment>), ApiError> {
    let project = state.owned_project(user_id, raw_project).await?;
    let fragments = state.store.project_fragments(user_id, &project.id).await?;
    Ok((project, fragments))
}

fn find<'a>(fragments: &'a [Fragment], id: &str) -> Result<&'a Fragment, ApiError> {
    fragments
        .iter()
        .find(|f| f.id == id)
        .ok_or(ApiError::NotFound("version"))
}

/// The project's versions, oldest first, each with the files it added, modified or removed.
#[utoipa::path(get, path = "/api/projects/{id}/versions", tag = "versions",
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = [Version]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Vec<Version>>, ApiError> {
    let (_, fragments) = fragments(&state, &user.id, &id).await?;
    Ok(Json(versions_of(&fragments)))
}

/// The unified diff of every file that differs between versions `a` and `b`.
#[utoipa::path(get, path = "/api/projects/{id}/versions/{a}/diff/{b}", tag = "versions",
    params(("id" = String, Path, format = "uuid"), ("a" = String, Path), ("b" = String, Path)),
    responses((status = 200, body = VersionDiff), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn diff_versions(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((id, a, b)): ApiPath<(String, String, String)>,
) -> Result<Json<VersionDiff>, ApiError> {
    let (_, fragments) = fragments(&state, &user.id, &id).await?;
    let (from, to) = (find(&fragments, &a)?, find(&fragments, &b)?);
    let files = changes(&from.files, &to.files)
        .into_iter()
        .map(|(path, change)| {
            let old = from.files.get(&path).map_or("", String::as_str);
            let new = to.files.get(&path).map_or("", String::as_str);
            let diff = similar::TextDiff::from_lines(old, new)
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{path}"), &format!("b/{path}"))
                .to_string();
            FileDiff { path, change, diff }
        })
        .collect();
    Ok(Json(VersionDiff {
        from: from.id.clone(),
        to: to.id.clone(),
        files,
    }))
}

/// Makes version `v` the latest again: its files are written into the project's sandbox (files
/// the latest version has and `v` has not are removed), and a new version with `v`'s files is
/// stored, so the preview shows it and the next prompt builds on it.
#[utoipa::path(post, path = "/api/projects/{id}/versions/{v}/restore", tag = "versions",
    params(("id" = String, Path, format = "uuid"), ("v" = String, Path)),
    responses((status = 201, body = Restored), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn restore_version(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath((id, v)): ApiPath<(String, String)>,
) -> Result<(StatusCode, Json<Restored>), ApiError> {
    let (project, fragments) = fragments(&state, &user.id, &id).await?;
    let restored = find(&fragments, &v)?;
    let number = fragments.iter().position(|f| f.id == restored.id).unwrap_or(0) + 1;
    let latest = fragments.last().unwrap_or(restored);
    let stale: Vec<&String> = latest
        .files
        .keys()
        .filter(|p| !restored.files.contains_key(*p))
        .collect();
    let content = format!("Restored version {number}: {}", restored.title);
    let restored = store_version(
        &state,
        &user.id,
        &project,
        latest,
        restored.files.clone(),
        &stale,
        content,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(restored)))
}

/// Saves files edited by hand as a new version: the latest version's files with these on top.
/// They are written into the project's sandbox, so the preview shows them and the agent's next
/// run builds on them.
#[utoipa::path(post, path = "/api/projects/{id}/versions", request_body = UpdateFragment, tag = "versions",
    params(("id" = String, Path, format = "uuid")),
    responses((status = 201, body = Restored), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn save_version(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateFragment>,
) -> Result<(StatusCode, Json<Restored>), ApiError> {
    validate_files(&state, &body.files)?;
    let (project, fragments) = fragments(&state, &user.id, &id).await?;
    let latest = fragments
        .last()
        .ok_or_else(|| ApiError::Conflict("the project has no version yet: send a prompt first".into()))?;
    let mut files = latest.files.clone();
    files.extend(body.files.clone());
    if files_size(&files) > state.limits.max_fragment_bytes {
        return Err(ApiError::TooLarge(format!(
            "the version would have {}, more than the {} a version may have; nothing was saved",
            format_bytes(files_size(&files)),
            format_bytes(state.limits.max_fragment_bytes)
        )));
    }
    let paths: Vec<&str> = body.files.keys().map(String::as_str).collect();
    let content = format!("Edited {} in the code view", paths.join(", "));
    let saved = store_version(&state, &user.id, &project, latest, files, &[], content).await?;
    Ok((StatusCode::CREATED, Json(saved)))
}

/// Writes `files` into the project's sandbox (removing `stale` ones) and stores them as the
/// newest version, with an ASSISTANT message saying what happened.
async fn store_version(
    state: &AppState,
    user_id: &str,
    project: &Project,
    latest: &Fragment,
    files: BTreeMap<String, String>,
    stale: &[&String],
    content: String,
) -> Result<Restored, ApiError> {
    let sandbox_updated = match (&state.sandboxes, &project.sandbox_id) {
        (Some(sandboxes), Some(sandbox_id)) => write_version(sandboxes.as_ref(), sandbox_id, &files, stale).await?,
        _ => false,
    };
    let reply = AssistantReply::Result {
        content,
        fragment: NewFragment {
            sandbox_url: latest.sandbox_url.clone(),
            sandbox_id: project.sandbox_id.clone(),
            title: latest.title.clone(),
            files,
            image_url: None,
            design_spec: None,
            app_errors: None,
        },
    };
    state
        .store
        .add_assistant_message(user_id, &project.id, reply)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    let fragments = state.store.project_fragments(user_id, &project.id).await?;
    let version = versions_of(&fragments).pop().ok_or(ApiError::NotFound("version"))?;
    Ok(Restored {
        version,
        sandbox_updated,
    })
}

/// Writes a version's files into the sandbox and removes `stale` ones; false when the sandbox
/// is gone.
async fn write_version(
    sandboxes: &dyn SandboxProvider,
    sandbox_id: &str,
    files: &BTreeMap<String, String>,
    stale: &[&String],
) -> Result<bool, ApiError> {
    let unavailable = |error: forgeai_sandbox::Error| {
        ApiError::BadGateway(format!("the project's sandbox could not be updated: {error}"))
    };
    if !stale.is_empty() {
        let quoted: Vec<String> = stale
            .iter()
            .map(|p| format!("'{}'", p.replace('\'', r"'\''")))
            .collect();
        match sandboxes
            .run_command(
                sandbox_id,
                &format!("rm -f -- {}", quoted.join(" ")),
                CommandOptions::default(),
            )
            .await
        {
            Ok(_) => {}
            Err(forgeai_sandbox::Error::Gone { .. }) => return Ok(false),
            Err(error) => return Err(unavailable(error)),
        }
    }
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(path, content)| (path.clone(), content.clone().into_bytes()))
        .collect();
    match sandboxes.write_files(sandbox_id, &files).await {
        Ok(()) => Ok(true),
        Err(forgeai_sandbox::Error::Gone { .. }) => Ok(false),
        Err(error) => Err(unavailable(error)),
    }
}

/// Directories an export leaves out: installed packages, build output, version control.
const NOT_EXPORTED: [&str; 3] = ["node_modules", ".next", ".git"];

/// The latest version as a project that builds on its own: every file of the project's sandbox
/// (the template's `package.json`, lock file and configuration included) but installed packages
/// and build output, with the version's files on top.
#[utoipa::path(get, path = "/api/projects/{id}/export.zip", tag = "versions",
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, content_type = "application/zip", body = Vec<u8>), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn export_zip(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (project, fragments) = fragments(&state, &user.id, &id).await?;
    let latest = fragments
        .last()
        .ok_or_else(|| ApiError::Conflict("the project has no version yet: send a prompt first".into()))?;
    let (Some(sandboxes), Some(sandbox_id)) = (&state.sandboxes, &project.sandbox_id) else {
        return Err(ApiError::Conflict("the project has no sandbox to export from".into()));
    };
    let gone = || {
        ApiError::Conflict(
            "the project's sandbox is gone; send a prompt (or restore a version) to recreate it, then export".into(),
        )
    };
    let sandbox_error = |error: forgeai_sandbox::Error| match error {
        forgeai_sandbox::Error::Gone { .. } => gone(),
        other => ApiError::BadGateway(format!("cannot read the project's sandbox: {other}")),
    };
    let prune: Vec<String> = NOT_EXPORTED.iter().map(|d| format!("-path ./{d}")).collect();
    let listing = sandboxes
        .run_command(
            sandbox_id,
            &format!("find . \\( {} \\) -prune -o -type f -print", prune.join(" -o ")),
            CommandOptions::default(),
        )
        .await
        .map_err(sandbox_error)?;
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for path in listing.stdout.lines().filter_map(|line| line.strip_prefix("./")) {
        let contents = sandboxes.read_file(sandbox_id, path).await.map_err(sandbox_error)?;
        files.insert(path.to_owned(), contents);
    }
    for (path, content) in &latest.files {
        files.insert(path.clone(), content.clone().into_bytes());
    }
    let zip = tokio::task::spawn_blocking(move || zip_files(&files))
        .await
        .map_err(|e| ApiError::Internal(format!("zip task: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot write the zip: {e}")))?;
    let name: String = project
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "project" } else { name };
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.zip\""),
            ),
        ],
        zip,
    )
        .into_response())
}

fn zip_files(files: &BTreeMap<String, Vec<u8>>) -> zip::result::ZipResult<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (path, contents) in files {
        writer.start_file(path.as_str(), options)?;
        writer.write_all(contents)?;
    }
    Ok(writer.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_added_modified_and_removed_files() {
        let before = BTreeMap::from([("a".to_owned(), "1".to_owned()), ("b".to_owned(), "2".to_owned())]);
        let after = BTreeMap::from([("b".to_owned(), "3".to_owned()), ("c".to_owned(), "4".to_owned())]);
        assert_eq!(
            changes(&before, &after),
            vec![
                ("a".to_owned(), FileChange::Removed),
                ("b".to_owned(), FileChange::Modified),
                ("c".to_owned(), FileChange::Added),
            ]
        );
    }
}
