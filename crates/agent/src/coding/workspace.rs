//! The project a coding agent works on, as a trait the sandbox implements.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where the project lives inside the sandbox.
pub const PROJECT_ROOT: &str = "/home/user/project";

/// The outcome of a command that ran to its end (whatever its exit code).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit code; `0` is success.
    pub exit_code: i32,
}

/// The dev server's answer to a request for one route of the app.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteResponse {
    /// The HTTP status; `None` when the dev server gave no answer (see `failure`).
    pub status: Option<u16>,
    /// The body (HTML, or the error page).
    pub body: String,
    /// Why there is no answer: not listening, timed out, …
    pub failure: Option<String>,
}

/// Part of the dev server's output (see [`ProjectWorkspace::dev_server_output`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevOutput {
    /// The text.
    pub text: String,
    /// Where it ended: the `from` of the next read.
    pub end: u64,
}

/// Why a workspace operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkspaceError {
    /// The file does not exist.
    #[error("`{path}` does not exist")]
    NotFound {
        /// The project-relative path.
        path: String,
    },
    /// The operation ran and failed (a timeout of the command, a directory
    /// where a file was expected, …); told to the model.
    #[error("{0}")]
    Failed(String),
    /// The sandbox could not be reached; the tool step is retried.
    #[error("the sandbox is unavailable: {0}")]
    Unavailable(String),
}

/// A project directory the coding agent's tools work on: the sandbox.
///
/// Paths are relative to [`PROJECT_ROOT`] and already checked by the tools
/// (see [`normalize_project_path`]): no leading `/`, no `..`, no empty parts.
/// Implementations are shared between concurrent runs of different projects,
/// hence `Send + Sync`; the methods are `#[async_trait]` so the trait can be used as
/// `Arc<dyn ProjectWorkspace>`.
#[async_trait]
pub trait ProjectWorkspace: Send + Sync {
    /// Runs `command` with a shell in [`PROJECT_ROOT`] and waits for it. A
    /// non-zero exit is an `Ok` with that exit code, not an error.
    async fn run_command(&self, command: &str) -> Result<CommandOutput, WorkspaceError>;

    /// Creates or replaces a file (and its missing parent directories).
    async fn write_file(&self, path: &str, content: &str) -> Result<(), WorkspaceError>;

    /// Reads a text file.
    async fn read_file(&self, path: &str) -> Result<String, WorkspaceError>;

    /// Asks the app's dev server, from inside the sandbox, for `route` (e.g. `/`, `/about`),
    /// waiting for it to compile the route.
    async fn fetch_route(&self, route: &str) -> Result<RouteResponse, WorkspaceError>;

    /// What the dev server printed from byte `from` of its output on; `None` when the sandbox
    /// keeps no such output.
    async fn dev_server_output(&self, from: u64) -> Result<Option<DevOutput>, WorkspaceError>;
}

/// A path the model gave, made relative to [`PROJECT_ROOT`]: `./` and `.`
/// parts are dropped, `a/../b` is resolved, and the absolute form
/// `/home/user/project/...` is accepted because models use it despite being
/// told not to. Anything that would leave the project is refused, with the
/// reason as the error.
pub fn normalize_project_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim();
    if trimmed.is_empty() {
        return Err("the path is empty".into());
    }
    if trimmed.contains('\0') {
        return Err(format!("`{trimmed}` contains a NUL character"));
    }
    let relative = if let Some(rest) = trimmed.strip_prefix(PROJECT_ROOT) {
        match rest.strip_prefix('/') {
            Some(rest) => rest,
            None if rest.is_empty() => rest,
            // `/home/user/projectX/...` is another directory, not the project.
            None => return Err(outside(trimmed)),
        }
    } else if trimmed.starts_with('/') || trimmed.starts_with('~') {
        return Err(outside(trimmed));
    } else {
        trimmed
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(outside(trimmed));
                }
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{trimmed}` is the project directory itself, not a file"));
    }
    Ok(parts.join("/"))
}

fn outside(path: &str) -> String {
    format!("`{path}` leaves the project directory; use a path relative to {PROJECT_ROOT}, such as `app/page.tsx`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_relative_to_the_project() {
        assert_eq!(normalize_project_path("app/page.tsx").as_deref(), Ok("app/page.tsx"));
        assert_eq!(
            normalize_project_path(" ./app//page.tsx ").as_deref(),
            Ok("app/page.tsx")
        );
        assert_eq!(
            normalize_project_path("/home/user/project/components/a.tsx").as_deref(),
            Ok("components/a.tsx")
        );
        assert_eq!(normalize_project_path("a/../b.ts").as_deref(), Ok("b.ts"));
    }

    #[test]
    fn paths_leaving_the_project_are_refused() {
        for path in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "~/.ssh/id",
            "/home/user/projectX/a",
            "",
            ".",
            "/home/user/project",
        ] {
            assert!(normalize_project_path(path).is_err(), "{path:?}");
        }
        let error = normalize_project_path("../../etc/passwd").unwrap_err();
        assert!(error.contains("leaves the project"), "{error}");
    }
}
