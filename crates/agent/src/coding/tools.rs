//! The coding agent's file and terminal tools.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::workspace::{ProjectWorkspace, WorkspaceError, normalize_project_path};
use crate::activity::{CallReport, format_elapsed};
use crate::error::ToolError;
use crate::limits::{SizeLimits, format_bytes, truncate_middle};
use crate::tool::{Tool, ToolContext};

/// Most characters of each command stream returned to the model. Build and
/// install logs can run to megabytes; past this they would crowd the context
/// window and the journal while the useful part (the error) is at the end.
const MAX_STREAM_CHARS: usize = 12_000;

impl From<WorkspaceError> for ToolError {
    fn from(error: WorkspaceError) -> Self {
        match error {
            WorkspaceError::Unavailable(message) => ToolError::Unavailable(message),
            other => ToolError::Failed(other.to_string()),
        }
    }
}

/// Arguments of `terminal`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct TerminalArgs {
    /// The shell command to run in the project directory, e.g. `npm install date-fns --yes`.
    pub command: String,
}

/// `terminal`: runs a command in the project.
#[derive(Clone)]
pub struct TerminalTool {
    workspace: Arc<dyn ProjectWorkspace>,
}

impl TerminalTool {
    /// The tool, running commands in `workspace`.
    pub fn new(workspace: Arc<dyn ProjectWorkspace>) -> Self {
        Self { workspace }
    }
}

#[async_trait]
impl Tool for TerminalTool {
    type Args = TerminalArgs;

    fn name(&self) -> &str {
        "terminal"
    }

    fn description(&self) -> &str {
        "Run a shell command in the project directory (/home/user/project), e.g. to install packages with `npm install <package> --yes`. Never start, build or stop the dev server."
    }

    fn status(&self, _args: &TerminalArgs) -> Option<String> {
        Some("Installing packages...".into())
    }

    fn activity(&self, args: &TerminalArgs, report: &CallReport<'_>) -> String {
        let command = short(args.command.trim(), 80);
        let elapsed = format_elapsed(report.elapsed);
        if report.is_error {
            return format!("Ran `{command}` (failed, {elapsed})");
        }
        let exit = report
            .output
            .strip_prefix("Command failed with exit code ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("0");
        format!("Ran `{command}` (exit {exit}, {elapsed})")
    }

    async fn call(&self, args: TerminalArgs, _ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        let command = args.command.trim();
        if command.is_empty() {
            return Err(ToolError::InvalidArguments("`command` is empty".into()));
        }
        let output = self.workspace.run_command(command).await?;
        if output.exit_code == 0 {
            return Ok(keep_tail(&output.stdout));
        }
        Ok(format!(
            "Command failed with exit code {}\nstdout:\n{}\nstderr:\n{}",
            output.exit_code,
            keep_tail(&output.stdout),
            keep_tail(&output.stderr)
        ))
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
pub(crate) fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}…")
}

/// At most five paths, comma-separated, with an ellipsis for the rest.
pub(crate) fn listed(paths: &[&str]) -> String {
    let mut shown = paths.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        shown.push_str(", …");
    }
    shown
}

/// The last [`MAX_STREAM_CHARS`] characters of `text`, saying how much was cut.
fn keep_tail(text: &str) -> String {
    let total = text.chars().count();
    if total <= MAX_STREAM_CHARS {
        return text.to_owned();
    }
    let omitted = total - MAX_STREAM_CHARS;
    let tail: String = text.chars().skip(omitted).collect();
    format!("[… {omitted} earlier characters omitted]\n{tail}")
}

/// One file for `createOrUpdateFiles`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct FileToWrite {
    /// Path relative to the project root, e.g. `app/page.tsx`.
    pub path: String,
    /// The complete new content of the file.
    pub content: String,
}

/// Arguments of `createOrUpdateFiles`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct CreateOrUpdateFilesArgs {
    /// The files to create or replace.
    pub files: Vec<FileToWrite>,
}

/// `createOrUpdateFiles`: writes whole files and records them in the
/// network's `files`.
#[derive(Clone)]
pub struct CreateOrUpdateFilesTool {
    workspace: Arc<dyn ProjectWorkspace>,
    max_file_bytes: usize,
}

impl CreateOrUpdateFilesTool {
    /// The tool, writing into `workspace` files of at most the default
    /// [`SizeLimits::max_file_bytes`].
    pub fn new(workspace: Arc<dyn ProjectWorkspace>) -> Self {
        Self {
            workspace,
            max_file_bytes: SizeLimits::default().max_file_bytes,
        }
    }

    /// Refuses files of more than `bytes`.
    pub fn max_file_bytes(mut self, bytes: usize) -> Self {
        self.max_file_bytes = bytes;
        self
    }
}

#[async_trait]
impl Tool for CreateOrUpdateFilesTool {
    type Args = CreateOrUpdateFilesArgs;

    fn name(&self) -> &str {
        "createOrUpdateFiles"
    }

    fn description(&self) -> &str {
        "Create or overwrite files in the project. Paths are relative to the project root (e.g. `app/page.tsx`); give each file's complete content."
    }

    fn status(&self, _args: &CreateOrUpdateFilesArgs) -> Option<String> {
        Some("Generating project files...".into())
    }

    fn activity(&self, args: &CreateOrUpdateFilesArgs, report: &CallReport<'_>) -> String {
        let paths: Vec<&str> = args.files.iter().map(|f| f.path.as_str()).collect();
        let verb = if report.is_error { "Could not write" } else { "Wrote" };
        match paths.as_slice() {
            [one] => format!("{verb} {one}"),
            many => format!("{verb} {} files: {}", many.len(), listed(many)),
        }
    }

    async fn call(&self, args: CreateOrUpdateFilesArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        if args.files.is_empty() {
            return Err(ToolError::InvalidArguments("`files` is empty".into()));
        }
        // Check every path before writing anything, so a bad path does not
        // leave the project half-updated.
        let mut files = Vec::with_capacity(args.files.len());
        for file in args.files {
            let path = normalize_project_path(&file.path).map_err(ToolError::InvalidArguments)?;
            files.push((path, file.content));
        }
        // And every size, for the same reason.
        let too_big: Vec<String> = files
            .iter()
            .filter(|(_, content)| content.len() > self.max_file_bytes)
            .map(|(path, content)| format!("`{path}` has {}", format_bytes(content.len())))
            .collect();
        if !too_big.is_empty() {
            return Err(ToolError::InvalidArguments(format!(
                "{}; a file written by this tool may have at most {}. No file was written. Keep files \
                 small: split big modules, and load big data or media at run time instead of writing it \
                 into the project.",
                too_big.join(", "),
                format_bytes(self.max_file_bytes)
            )));
        }
        let mut written = Vec::with_capacity(files.len());
        for (path, content) in files {
            if let Err(error) = self.workspace.write_file(&path, &content).await {
                if let WorkspaceError::Unavailable(_) = error {
                    return Err(error.into());
                }
                let done = if written.is_empty() {
                    "no files were written".to_owned()
                } else {
                    format!("written before it: {}", written.join(", "))
                };
                return Err(ToolError::Failed(format!("could not write `{path}`: {error} ({done})")));
            }
            ctx.record_file(path.clone(), content);
            written.push(path);
        }
        Ok(format!("Wrote {} file(s): {}", written.len(), written.join(", ")))
    }
}

/// Arguments of `readFiles`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct ReadFilesArgs {
    /// Paths relative to the project root, e.g. `app/page.tsx` or `components/ui/button.jsx`.
    pub files: Vec<String>,
}

/// One entry of `readFiles`' answer: the file's content, or why it could not be read.
#[derive(Debug, Serialize)]
struct FileContent {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Extensions a module may have; a model that asks for `button.tsx` where `button.jsx` exists is
/// told so.
const MODULE_EXTENSIONS: &[&str] = &[".tsx", ".ts", ".jsx", ".js", ".d.ts", ".mjs"];

/// `readFiles`: reads files from the project.
#[derive(Clone)]
pub struct ReadFilesTool {
    workspace: Arc<dyn ProjectWorkspace>,
    max_result_bytes: usize,
}

impl ReadFilesTool {
    /// The tool, reading from `workspace`, answering at most the default
    /// [`SizeLimits::max_tool_result_bytes`].
    pub fn new(workspace: Arc<dyn ProjectWorkspace>) -> Self {
        Self {
            workspace,
            max_result_bytes: SizeLimits::default().max_tool_result_bytes,
        }
    }

    /// Shortens the files it answers so that the whole answer stays within `bytes`.
    pub fn max_result_bytes(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }
}

#[async_trait]
impl Tool for ReadFilesTool {
    type Args = ReadFilesArgs;

    fn name(&self) -> &str {
        "readFiles"
    }

    fn description(&self) -> &str {
        "Read files of the project. Paths are relative to the project root (e.g. `app/page.tsx`, `components/ui/button.jsx`). Returns a JSON list with one entry per path: {path, content}, or {path, error} for a file that could not be read."
    }

    fn status(&self, _args: &ReadFilesArgs) -> Option<String> {
        Some("Reading project files...".into())
    }

    fn activity(&self, args: &ReadFilesArgs, _report: &CallReport<'_>) -> String {
        match args.files.as_slice() {
            [one] => format!("Read {one}"),
            many => format!("Read {} files", many.len()),
        }
    }

    async fn call(&self, args: ReadFilesArgs, _ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        if args.files.is_empty() {
            return Err(ToolError::InvalidArguments("`files` is empty".into()));
        }
        let mut contents = Vec::with_capacity(args.files.len());
        for requested in args.files {
            let entry = match normalize_project_path(&requested) {
                Err(problem) => FileContent {
                    path: requested,
                    content: None,
                    error: Some(problem),
                },
                Ok(path) => match self.workspace.read_file(&path).await {
                    Ok(content) => FileContent {
                        path,
                        content: Some(content),
                        error: None,
                    },
                    // The sandbox is gone: the whole call is retried, not answered.
                    Err(error @ WorkspaceError::Unavailable(_)) => return Err(error.into()),
                    Err(error @ WorkspaceError::NotFound { .. }) => {
                        let error = match self.existing_alternative(&path).await {
                            Some(other) => format!("{error}; `{other}` exists"),
                            None => error.to_string(),
                        };
                        FileContent {
                            path,
                            content: None,
                            error: Some(error),
                        }
                    }
                    Err(error) => FileContent {
                        path,
                        content: None,
                        error: Some(error.to_string()),
                    },
                },
            };
            contents.push(entry);
        }
        // Each file gets an equal share of the answer (with room for JSON escaping), so the
        // answer stays valid JSON instead of being cut by the network's own limit.
        let share = self.max_result_bytes * 3 / 4 / contents.len().max(1);
        for file in &mut contents {
            if let Some(content) = &mut file.content {
                *content = truncate_middle(content, share);
            }
        }
        serde_json::to_string(&contents)
            .map_err(|error| ToolError::Failed(format!("could not encode the file contents: {error}")))
    }
}

impl ReadFilesTool {
    /// The same module under another extension (`button.jsx` for `button.tsx`), if it exists.
    async fn existing_alternative(&self, path: &str) -> Option<String> {
        let stem = MODULE_EXTENSIONS
            .iter()
            .filter_map(|extension| path.strip_suffix(extension))
            .min_by_key(|stem| stem.len())?;
        for extension in MODULE_EXTENSIONS {
            let candidate = format!("{stem}{extension}");
            if candidate != path && self.workspace.read_file(&candidate).await.is_ok() {
                return Some(candidate);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_its_end() {
        let text = "x".repeat(MAX_STREAM_CHARS) + "THE END";
        let kept = keep_tail(&text);
        assert!(kept.starts_with("[… 7 earlier characters omitted]"));
        assert!(kept.ends_with("THE END"));
        assert_eq!(keep_tail("short"), "short");
    }
}
