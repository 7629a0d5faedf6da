//! `editFile`: exact search-and-replace edits in one file, so a small change does not resend
//! the whole file.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;

use super::workspace::{ProjectWorkspace, WorkspaceError, normalize_project_path};
use crate::activity::CallReport;
use crate::error::ToolError;
use crate::limits::{SizeLimits, format_bytes};
use crate::tool::{Tool, ToolContext};

/// One replacement.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct TextEdit {
    /// Text to replace, copied exactly from the file (whitespace included); it must occur
    /// exactly once, so include enough surrounding lines to make it unique.
    pub old: String,
    /// The text that replaces it.
    pub new: String,
}

/// Arguments of `editFile`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
pub struct EditFileArgs {
    /// Path relative to the project root, e.g. `app/page.tsx`.
    pub path: String,
    /// The replacements, applied in order, each to the result of the ones before.
    pub edits: Vec<TextEdit>,
}

/// `editFile`: applies every edit or none.
#[derive(Clone)]
pub struct EditFileTool {
    workspace: Arc<dyn ProjectWorkspace>,
    max_file_bytes: usize,
}

impl EditFileTool {
    /// The tool, editing files of `workspace` up to the default [`SizeLimits::max_file_bytes`].
    pub fn new(workspace: Arc<dyn ProjectWorkspace>) -> Self {
        Self {
            workspace,
            max_file_bytes: SizeLimits::default().max_file_bytes,
        }
    }

    /// Refuses an edit that would make the file larger than `bytes`.
    pub fn max_file_bytes(mut self, bytes: usize) -> Self {
        self.max_file_bytes = bytes;
        self
    }
}

/// The file's content after `edits`, or why no edit was made.
pub fn apply_edits(path: &str, content: &str, edits: &[TextEdit]) -> Result<String, String> {
    let mut edited = content.to_owned();
    for (index, edit) in edits.iter().enumerate() {
        let number = index + 1;
        if edit.old.is_empty() {
            return Err(format!(
                "edit {number}: `old` is empty; give the exact text to replace (to write a whole file, use createOrUpdateFiles)"
            ));
        }
        match edited.matches(edit.old.as_str()).count() {
            1 => edited = edited.replacen(edit.old.as_str(), &edit.new, 1),
            0 => {
                return Err(format!(
                    "edit {number}: `old` was not found in `{path}`{}; read the file again and copy the text exactly, whitespace included",
                    if index > 0 { " after the edits before it" } else { "" }
                ));
            }
            count => {
                return Err(format!(
                    "edit {number}: `old` occurs {count} times in `{path}`; include more of the surrounding lines so it occurs exactly once"
                ));
            }
        }
    }
    Ok(edited)
}

#[async_trait]
impl Tool for EditFileTool {
    type Args = EditFileArgs;

    fn name(&self) -> &str {
        "editFile"
    }

    fn description(&self) -> &str {
        "Edit one existing file with exact search-and-replace edits: each `old` must occur exactly once in the file (whitespace included) and is replaced by `new`, in order. Either every edit is made or none."
    }

    fn status(&self, _args: &EditFileArgs) -> Option<String> {
        Some("Editing project files...".into())
    }

    fn activity(&self, args: &EditFileArgs, report: &CallReport<'_>) -> String {
        if report.is_error {
            format!("Could not edit {}", args.path)
        } else {
            format!("Edited {}", args.path)
        }
    }

    async fn call(&self, args: EditFileArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        let path = normalize_project_path(&args.path).map_err(ToolError::InvalidArguments)?;
        if args.edits.is_empty() {
            return Err(ToolError::InvalidArguments("`edits` is empty".into()));
        }
        let content = match self.workspace.read_file(&path).await {
            Ok(content) => content,
            Err(error @ WorkspaceError::Unavailable(_)) => return Err(error.into()),
            Err(WorkspaceError::NotFound { .. }) => {
                return Err(ToolError::Failed(format!(
                    "`{path}` does not exist; create it with createOrUpdateFiles"
                )));
            }
            Err(error) => return Err(ToolError::Failed(format!("could not read `{path}`: {error}"))),
        };
        let edited = apply_edits(&path, &content, &args.edits)
            .map_err(|problem| ToolError::Failed(format!("{problem}. `{path}` was left as it was.")))?;
        if edited.len() > self.max_file_bytes {
            return Err(ToolError::InvalidArguments(format!(
                "after the edits `{path}` would have {}, more than the {} a file may have; `{path}` was left as it was",
                format_bytes(edited.len()),
                format_bytes(self.max_file_bytes)
            )));
        }
        self.workspace.write_file(&path, &edited).await?;
        ctx.record_file(path.clone(), edited);
        let count = args.edits.len();
        Ok(format!(
            "Edited `{path}` ({count} edit{})",
            if count == 1 { "" } else { "s" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(old: &str, new: &str) -> TextEdit {
        TextEdit {
            old: old.into(),
            new: new.into(),
        }
    }

    #[test]
    fn edits_apply_in_order_when_each_matches_once() {
        let content = "<h1>Hello</h1>\n<p>World</p>\n";
        let edited = apply_edits(
            "app/page.tsx",
            content,
            &[edit("Hello", "Hi"), edit("<p>World", "<p>Everyone")],
        );
        assert_eq!(edited.unwrap(), "<h1>Hi</h1>\n<p>Everyone</p>\n");
    }

    #[test]
    fn a_missing_or_ambiguous_match_changes_nothing() {
        let content = "a\nb\na\n";
        let missing = apply_edits("f.ts", content, &[edit("b", "B"), edit("c", "C")]).unwrap_err();
        assert!(
            missing.starts_with("edit 2: `old` was not found in `f.ts` after the edits before it"),
            "{missing}"
        );
        let ambiguous = apply_edits("f.ts", content, &[edit("a", "A")]).unwrap_err();
        assert!(ambiguous.contains("occurs 2 times"), "{ambiguous}");
        let empty = apply_edits("f.ts", content, &[edit("", "x")]).unwrap_err();
        assert!(empty.contains("`old` is empty"), "{empty}");
    }
}
