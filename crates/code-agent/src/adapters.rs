//! The sandbox and Unsplash behind the agent's `ProjectWorkspace` and `ImageProvider` traits.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use forgeai_agent::{
    CommandOutput, DevOutput, ImageError, ImageProvider, ProjectWorkspace, RouteResponse, SavedImage,
    UnsplashImageArgs, WorkspaceError,
};
use forgeai_sandbox::{CommandOptions, Error as SandboxError, SandboxProvider};

use crate::unsplash::{Unsplash, UnsplashError};

/// Exit code reported for a command killed by its timeout, as `timeout(1)` does.
const TIMED_OUT_EXIT_CODE: i32 = 124;
const IMAGE_DIR: &str = "public/assets/unsplash";
/// The port of the template's dev server.
const DEV_SERVER_PORT: u16 = 3000;
/// How long the dev server may take to answer one route: the first request of a route compiles
/// it, which takes tens of seconds for a big page on a busy machine.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a dev server that is not listening (it is starting or restarting) is waited for.
const DEV_SERVER_START_WAIT: Duration = Duration::from_secs(60);
/// How long before a server error is asked for again (see [`settled`]).
const STALE_ANSWER_RECHECK: Duration = Duration::from_secs(1);

/// The client of route checks, shared: building one loads the TLS roots.
fn route_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(reqwest::Client::new);
    &CLIENT
}

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

#[async_trait]
impl ProjectWorkspace for SandboxWorkspace {
    async fn run_command(&self, command: &str) -> Result<CommandOutput, WorkspaceError> {
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
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), WorkspaceError> {
        self.sandboxes
            .write_file(&self.sandbox_id, path, content.as_bytes())
            .await
            .map_err(workspace_error)
    }

    async fn read_file(&self, path: &str) -> Result<String, WorkspaceError> {
        let bytes = self
            .sandboxes
            .read_file(&self.sandbox_id, path)
            .await
            .map_err(workspace_error)?;
        String::from_utf8(bytes).map_err(|_| WorkspaceError::Failed(format!("`{path}` is not a text file")))
    }

    /// A GET from the host to the sandbox's dev server, where the provider says the port is
    /// reached (the sandbox's own address, or a cloud provider's proxy); the sandbox is resumed
    /// first if it was paused. (Running curl inside the sandbox cost a sandboxed process per
    /// check, the largest share of CPU when many projects run at once.)
    async fn fetch_route(&self, route: &str) -> Result<RouteResponse, WorkspaceError> {
        settled(|| self.get_route(route), STALE_ANSWER_RECHECK).await
    }

    async fn dev_server_output(&self, from: u64) -> Result<Option<DevOutput>, WorkspaceError> {
        let output = self
            .sandboxes
            .dev_server_output(&self.sandbox_id, from)
            .await
            .map_err(workspace_error)?;
        Ok(output.map(|output| DevOutput {
            text: output.text,
            end: output.end,
        }))
    }
}

/// A server error answered right after files were written may predate them: Next.js keeps
/// answering "Module not found" for a file written a moment ago until its watcher has seen it.
/// Such an answer is asked for again once, after `wait`, and the second answer counts.
async fn settled<F, Fut>(fetch: F, wait: Duration) -> Result<RouteResponse, WorkspaceError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<RouteResponse, WorkspaceError>>,
{
    let first = fetch().await?;
    if first.status.is_some_and(|status| status >= 500) {
        tokio::time::sleep(wait).await;
        return fetch().await;
    }
    Ok(first)
}

impl SandboxWorkspace {
    /// One GET of `route`, waiting for a dev server that is not listening yet.
    async fn get_route(&self, route: &str) -> Result<RouteResponse, WorkspaceError> {
        let failed = |failure: String| RouteResponse {
            status: None,
            body: String::new(),
            failure: Some(failure),
        };
        let deadline = tokio::time::Instant::now() + DEV_SERVER_START_WAIT;
        loop {
            let upstream = self
                .sandboxes
                .upstream(&self.sandbox_id, DEV_SERVER_PORT)
                .await
                .map_err(workspace_error)?;
            let mut request = route_client()
                .get(format!("{}{}", upstream.origin, encode_route(route)))
                .headers(upstream.headers.clone())
                .timeout(ROUTE_TIMEOUT);
            if let Some(host) = &upstream.host {
                request = request.header(reqwest::header::HOST, host);
            }
            match request.send().await {
                // A cloud provider's proxy answers 502 while nothing listens on the port yet.
                Ok(response) if upstream.is_remote() && response.status() == reqwest::StatusCode::BAD_GATEWAY => {}
                Ok(response) => {
                    let status = response.status().as_u16();
                    return match response.bytes().await {
                        Ok(body) => Ok(RouteResponse {
                            status: Some(status),
                            body: String::from_utf8_lossy(&body).into_owned(),
                            failure: None,
                        }),
                        Err(e) if e.is_timeout() => {
                            Ok(failed(format!("no answer within {}s", ROUTE_TIMEOUT.as_secs())))
                        }
                        Err(e) => Ok(failed(format!("the answer broke off: {e}"))),
                    };
                }
                Err(e) if e.is_connect() => {}
                Err(e) if e.is_timeout() => {
                    return Ok(failed(format!("no answer within {}s", ROUTE_TIMEOUT.as_secs())));
                }
                Err(e) => return Ok(failed(format!("the request failed: {e}"))),
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(failed(format!(
                    "nothing listens on port {DEV_SERVER_PORT} after {}s",
                    DEV_SERVER_START_WAIT.as_secs()
                )));
            }
            drop(upstream);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A route as a URL path safe inside single quotes: every byte but unreserved characters and
/// `/` percent-encoded.
fn encode_route(route: &str) -> String {
    let mut encoded = String::with_capacity(route.len());
    for byte in route.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
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

#[async_trait]
impl ImageProvider for UnsplashImages {
    async fn save_image(&self, request: &UnsplashImageArgs) -> Result<SavedImage, ImageError> {
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
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use forgeai_agent::RouteResponse;

    use super::{encode_route, file_stem, settled};

    fn answer(status: u16) -> RouteResponse {
        RouteResponse {
            status: Some(status),
            body: format!("answer {status}"),
            failure: None,
        }
    }

    /// Answers the statuses in turn and counts the requests.
    async fn fetch_answering(statuses: &[u16]) -> (RouteResponse, usize) {
        let asked = Mutex::new(0usize);
        let response = settled(
            || {
                let mut asked = asked.lock().unwrap();
                let status = statuses[*asked];
                *asked += 1;
                async move { Ok(answer(status)) }
            },
            Duration::from_millis(1),
        )
        .await
        .unwrap();
        (response, asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_server_error_is_asked_again_and_the_second_answer_counts() {
        // Stale: the file was written a moment before, the second answer has the page.
        assert_eq!(fetch_answering(&[500, 200]).await, (answer(200), 2));
        // A real error stays an error.
        assert_eq!(fetch_answering(&[500, 500]).await, (answer(500), 2));
        // Other answers are taken as they are.
        assert_eq!(fetch_answering(&[200]).await, (answer(200), 1));
        assert_eq!(fetch_answering(&[404]).await, (answer(404), 1));
    }

    #[test]
    fn routes_are_encoded_for_the_shell_and_the_url() {
        assert_eq!(encode_route("/about"), "/about");
        assert_eq!(encode_route("/it's me/ü"), "/it%27s%20me/%C3%BC");
    }

    #[test]
    fn image_file_names_are_safe_slugs() {
        assert_eq!(file_stem("Hero Coffee!", "coffee"), "hero-coffee");
        assert_eq!(file_stem("", "mountain lake"), "mountain-lake");
        assert_eq!(file_stem("../../etc/passwd", "x"), "etc-passwd");
        assert_eq!(file_stem("", "日本"), "image");
    }
}
