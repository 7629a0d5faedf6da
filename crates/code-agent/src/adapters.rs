//! The sandbox and Unsplash behind the agent's `ProjectWorkspace` and `ImageProvider` traits.

use std::sync::Arc;
use std::time::Duration;

use forgeai_agent::{
    CommandOutput, ImageError, ImageProvider, ProjectWorkspace, SavedImage, UnsplashImageArgs, WorkspaceError,
};
use forgeai_sandbox::{CommandOptions, Error as SandboxError, SandboxProvider};
use futures::future::BoxFuture;

use crate::unsplash::{Unsplash, UnsplashError};

/// Exit code reported for a command killed by its timeout, as `timeout(1)` does.
const TIMED_OUT_EXIT_CODE: i32 = 124;
const IMAGE_DIR: &str = "public/assets/unsplash";

fn workspace_error(error: SandboxError) -> WorkspaceError {
    match error {
        SandboxError::NotFound { path } => WorkspaceError::NotFound { path },
        SandboxError::Gone { .. } => WorkspaceError::Unavailable(error.to_string()),
        other => WorkspaceError::Failed(other.to_string()),
    }
}

pub(crate) struct SandboxWorkspace {
    sandboxes: Arc<dyn SandboxProvider>,
    sandbox_id: String,
    command_timeout: Duration,
}

impl SandboxWorkspace {
    pub fn new(sandboxes: Arc<dyn SandboxProvider>, sandbox_id: &str, command_timeout: Duration) -> Self {
        Self {
            sandboxes,
            sandbox_id: sandbox_id.to_owned(),
            command_timeout,
        }
    }
}

impl ProjectWorkspace for SandboxWorkspace {
    fn run_command<'a>(&'a self, command: &'a str) -> BoxFuture<'a, Result<CommandOutput, WorkspaceError>> {
        Box::pin(async move {
            let options = CommandOptions::default().with_timeout(self.command_timeout);
            match self.sandboxes.run_command(&self.sandbox_id, command, options).await {
                Ok(result) => Ok(CommandOutput {
                    stdout: result.stdout,
                    stderr: result.stderr,
                    exit_code: result.exit_code,
                }),
                // The model should learn what the command printed before it was stopped.
                Err(SandboxError::CommandTimeout { after, stdout, stderr }) => Ok(CommandOutput {
                    stdout,
                    stderr: format!("{stderr}\ncommand killed after {after:?}: it ran past its time limit"),
                    exit_code: TIMED_OUT_EXIT_CODE,
                }),
                Err(error) => Err(workspace_error(error)),
            }
        })
    }

    fn write_file<'a>(&'a self, path: &'a str, content: &'a str) -> BoxFuture<'a, Result<(), WorkspaceError>> {
        Box::pin(async move {
            self.sandboxes
                .write_file(&self.sandbox_id, path, content.as_bytes())
                .await
                .map_err(workspace_error)
        })
    }

    fn read_file<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<String, WorkspaceError>> {
        Box::pin(async move {
            let bytes = self
                .sandboxes
                .read_file(&self.sandbox_id, path)
                .await
                .map_err(workspace_error)?;
            String::from_utf8(bytes).map_err(|_| WorkspaceError::Failed(format!("`{path}` is not a text file")))
        })
    }
}

pub(crate) struct UnsplashImages {
    unsplash: Unsplash,
    sandboxes: Arc<dyn SandboxProvider>,
    sandbox_id: String,
}

impl UnsplashImages {
    pub fn new(unsplash: Unsplash, sandboxes: Arc<dyn SandboxProvider>, sandbox_id: &str) -> Self {
        Self {
            unsplash,
            sandboxes,
            sandbox_id: sandbox_id.to_owned(),
        }
    }
}

fn image_error(error: UnsplashError) -> ImageError {
    match error {
        UnsplashError::NoResults(query) => ImageError::NoResult { query },
        error if error.is_retriable() => ImageError::Unavailable(error.to_string()),
        error => ImageError::Failed(error.to_string()),
    }
}

/// A safe file name from the model's hint (or the query): lowercase letters, digits and dashes.
fn file_stem(hint: &str, query: &str) -> String {
    let source = if hint.trim().is_empty() { query } else { hint };
    let mut stem = String::new();
    for character in source.chars().flat_map(char::to_lowercase) {
        if character.is_ascii_alphanumeric() {
            stem.push(character);
        } else if !stem.ends_with('-') && !stem.is_empty() {
            stem.push('-');
        }
        if stem.len() >= 48 {
            break;
        }
    }
    let stem = stem.trim_end_matches('-');
    if stem.is_empty() {
        "image".to_owned()
    } else {
        stem.to_owned()
    }
}

impl ImageProvider for UnsplashImages {
    fn save_image<'a>(&'a self, request: &'a UnsplashImageArgs) -> BoxFuture<'a, Result<SavedImage, ImageError>> {
        Box::pin(async move {
            let orientation = serde_json::to_value(request.orientation)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_else(|| "landscape".to_owned());
            let photo = self
                .unsplash
                .search(&request.query, &orientation)
                .await
                .map_err(image_error)?;
            let bytes = self.unsplash.download(&photo).await.map_err(image_error)?;
            let file = format!("{}.jpg", file_stem(&request.filename_hint, &request.query));
            let local_file = format!("{IMAGE_DIR}/{file}");
            self.sandboxes
                .write_file(&self.sandbox_id, &local_file, &bytes)
                .await
                .map_err(|error| match error {
                    SandboxError::Gone { .. } => ImageError::Unavailable(error.to_string()),
                    other => ImageError::Failed(other.to_string()),
                })?;
            Ok(SavedImage {
                public_path: format!("/assets/unsplash/{file}"),
                local_file,
                attribution: photo.attribution,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn image_file_names_are_safe_slugs() {
        assert_eq!(file_stem("Hero Coffee!", "coffee"), "hero-coffee");
        assert_eq!(file_stem("", "mountain lake"), "mountain-lake");
        assert_eq!(file_stem("../../etc/passwd", "x"), "etc-passwd");
        assert_eq!(file_stem("", "日本"), "image");
    }
}
