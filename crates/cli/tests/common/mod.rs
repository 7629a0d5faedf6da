//! What the end-to-end tests share: a real `forgeai serve` process, its users, the HTTP API,
//! and how to read the mock model's requests.
#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forgeai_test_support::MockReply;
use futures::StreamExt;
use serde_json::{Value, json};

/// The tests share sandbox resources of this machine; one at a time keeps failures readable.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub const PAGE: &str = "<h1>Hello from forgeai</h1>";

/// The statuses of a run that writes files and ends well, in order.
pub const READY_STATUSES: [&str; 6] = [
    "Generating project files...",
    "Checking the app...",
    "Generating sandbox url...",
    "Generating project name...",
    "Saving to db...",
    "Demo is ready",
];

/// What kind of model call a request is, judged from its system prompt.
pub fn is_naming(body: &Value) -> bool {
    body["messages"][0]["content"]
        .as_str()
        .is_some_and(|prompt| prompt.starts_with("You name web app projects"))
}

/// The coding iteration a request belongs to: 1 + the assistant turns since the user's input.
pub fn iteration(body: &Value) -> usize {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rposition(|message| message["role"] == "user")
        .unwrap_or(0);
    1 + messages[last_user..]
        .iter()
        .filter(|message| message["role"] == "assistant")
        .count()
}

pub fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    messages
        .iter()
        .rev()
        .find(|message| message["role"] == "user")
        .and_then(|message| message["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A one-time login URL of the web UI for `name` (`forgeai users login`), on the server that
/// listens (or will) on `port`.
pub fn login_url(data_dir: &Path, port: u16, name: &str) -> String {
    let output = forgeai(data_dir, "http://127.0.0.1:9")
        .env("FORGEAI_LISTEN", format!("127.0.0.1:{port}"))
        .args(["users", "login", name])
        .output()
        .expect("users login runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The repository's root.
pub fn repo_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where browser tests leave their screenshots: `target/test-artifacts/<name>`.
pub fn artifacts_dir(name: &str) -> std::path::PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_dir().join("target"), std::path::PathBuf::from);
    target.join("test-artifacts").join(name)
}

/// A data dir whose `forgeai-v1` template is the one of the CI cache (built there first when
/// the cache has none from this recipe); `None`, with a note, when no cache is set.
pub async fn forgeai_v1_data_dir() -> Option<DataDir> {
    let Some(cache) = forgeai_test_support::template_cache() else {
        eprintln!(
            "SKIPPED: {} is not set (CI sets it; see .ci/run)",
            forgeai_test_support::TEMPLATE_CACHE_VAR
        );
        return None;
    };
    let (template, _) = forgeai_test_support::cached_forgeai_v1(&cache).await;
    let data = DataDir::new();
    std::fs::create_dir_all(data.path().join("templates")).unwrap();
    std::os::unix::fs::symlink(&template.dir, data.path().join("templates").join("forgeai-v1")).unwrap();
    Some(data)
}

/// A model that writes `file` with `content` in iteration 1 and finishes in iteration 2.
pub fn builder_model(
    file: &'static str,
    content: &'static str,
) -> impl Fn(&Value) -> MockReply + Send + Sync + 'static {
    move |body| {
        if is_naming(body) {
            return MockReply::text("\"Hello Page\"");
        }
        match iteration(body) {
            1 => MockReply::tool_call(
                "call-write",
                "createOrUpdateFiles",
                json!({"files": [{"path": file, "content": content}]}),
            ),
            _ => MockReply::text(format!("<task_summary>Wrote {file}.</task_summary>")),
        }
    }
}

pub struct Forgeai {
    child: Child,
    pub url: String,
    pub port: u16,
    /// The API token of the data dir's first user (see [`add_user`]): [`fetch_preview`] fetches
    /// previews as their owner, since previews are private.
    pub owner_token: Option<String>,
}

/// The first user's API token of each data dir, as [`add_user`] printed it.
static OWNERS: std::sync::Mutex<Vec<(std::path::PathBuf, String)>> = std::sync::Mutex::new(Vec::new());

fn owner_token(data_dir: &Path) -> Option<String> {
    let owners = OWNERS.lock().unwrap();
    owners
        .iter()
        .find(|(dir, _)| dir == data_dir)
        .map(|(_, token)| token.clone())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn forgeai(data_dir: &Path, model_url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forgeai"));
    command
        .env("FORGEAI_DATA_DIR", data_dir)
        .env("FORGEAI_SANDBOX_TEMPLATE", "static")
        .env("OPENAI_BASE_URL", model_url)
        .env("OPENAI_API_KEY", "test-key")
        .env("FORGEAI_LLM_MAX_RETRIES", "0")
        .env_remove("DATABASE_URL")
        .env_remove("UNSPLASH_ACCESS_KEY");
    command
}

impl Forgeai {
    pub async fn start(data_dir: &Path, model_url: &str, port: u16) -> Forgeai {
        Self::start_with(data_dir, model_url, port, &[]).await
    }

    /// [`Forgeai::start`] with extra environment variables.
    pub async fn start_with(data_dir: &Path, model_url: &str, port: u16, envs: &[(&str, &str)]) -> Forgeai {
        let child = forgeai(data_dir, model_url)
            .envs(envs.iter().copied())
            .arg("serve")
            .env("FORGEAI_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("forgeai serve starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(format!("{url}/healthz"))
                .await
                .is_ok_and(|response| response.status().is_success())
            {
                break;
            }
            assert!(Instant::now() < deadline, "forgeai serve did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Forgeai {
            child,
            url,
            port,
            owner_token: owner_token(data_dir),
        }
    }

    pub fn kill(&mut self) {
        // SIGKILL: no graceful shutdown, as when the machine dies.
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Forgeai {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn add_user(data_dir: &Path, name: &str) -> String {
    add_user_with(data_dir, name, &[])
}

/// [`add_user`] with more environment (e.g. another database).
pub fn add_user_with(data_dir: &Path, name: &str, envs: &[(&str, &str)]) -> String {
    let output = forgeai(data_dir, "http://127.0.0.1:9")
        .envs(envs.iter().copied())
        .args(["users", "add", name])
        .output()
        .expect("users add runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let mut owners = OWNERS.lock().unwrap();
    if !owners.iter().any(|(dir, _)| dir == data_dir) {
        owners.push((data_dir.to_owned(), token.clone()));
    }
    token
}

/// The engine a test runs `forgeai` on: the embedded one, or Restate (a throwaway
/// restate-server and PostgreSQL, with `FORGEAI_ENGINE=restate`). One test list runs on both.
pub struct Backend {
    envs: Vec<(String, String)>,
    pub restate: Option<forgeai_test_support::TestRestate>,
    _postgres: Option<forgeai_store::testing::TestPostgres>,
}

impl Backend {
    pub async fn embedded() -> Backend {
        Backend {
            envs: Vec::new(),
            restate: None,
            _postgres: None,
        }
    }

    pub async fn restate() -> Backend {
        let restate = forgeai_test_support::TestRestate::start().await;
        let postgres = forgeai_store::testing::TestPostgres::start().await;
        let envs = vec![
            ("FORGEAI_ENGINE".to_owned(), "restate".to_owned()),
            ("DATABASE_URL".to_owned(), postgres.url().to_owned()),
            ("RESTATE_INGRESS_URL".to_owned(), restate.ingress_url()),
            ("RESTATE_ADMIN_URL".to_owned(), restate.admin_url()),
            // Fixed for the backend's life, so a restarted forgeai keeps its endpoint's URL.
            (
                "FORGEAI_RESTATE_LISTEN".to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ),
        ];
        Backend {
            envs,
            restate: Some(restate),
            _postgres: Some(postgres),
        }
    }

    /// The environment `forgeai` needs for this engine.
    pub fn envs(&self) -> Vec<(&str, &str)> {
        self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    pub fn add_user(&self, data_dir: &Path, name: &str) -> String {
        add_user_with(data_dir, name, &self.envs())
    }

    pub async fn start(&self, data_dir: &Path, model_url: &str, port: u16) -> Forgeai {
        Forgeai::start_with(data_dir, model_url, port, &self.envs()).await
    }

    /// `forgeai` with this engine's environment.
    pub fn command(&self, data_dir: &Path, model_url: &str) -> Command {
        let mut command = forgeai(data_dir, model_url);
        command.envs(self.envs());
        command
    }
}

/// One async test function per name, run on both engines: `mod embedded` and `mod restate`
/// each get a `#[tokio::test]` calling `super::<name>(backend)`, holding [`SERIAL`] (so the
/// functions must not take it themselves).
#[macro_export]
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                let _serial = $crate::common::SERIAL.lock().await;
                super::$name($crate::common::Backend::embedded().await).await
            })*
        }
        mod restate {
            $(#[tokio::test]
            async fn $name() {
                let _serial = $crate::common::SERIAL.lock().await;
                super::$name($crate::common::Backend::restate().await).await
            })*
        }
    };
}

/// A test's data dir; dropping it kills the sandboxes made in it (they outlive `forgeai serve`
/// by design), also when the test failed, so no mount or network namespace is left behind.
pub struct DataDir(tempfile::TempDir);

impl DataDir {
    pub fn new() -> Self {
        Self(tempfile::TempDir::new().expect("temp dir"))
    }

    /// A data dir inside `parent`.
    pub fn in_dir(parent: &Path) -> Self {
        Self(tempfile::TempDir::new_in(parent).expect("temp dir"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let path = self.0.path().to_owned();
        // A runtime of its own: tests drop this inside theirs, where blocking is not allowed.
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(async {
                let provider = forgeai_sandbox::LocalProvider::new(forgeai_sandbox::LocalConfig::new(&path)).await?;
                provider.kill_all().await?;
                provider.shutdown().await;
                Ok::<_, forgeai_sandbox::Error>(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!(
                "could not remove the sandboxes in {}: {cleaned:?}",
                self.0.path().display()
            );
        }
    }
}

pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Api {
    pub fn new(server: &Forgeai, token: String) -> Self {
        Api {
            http: reqwest::Client::new(),
            url: server.url.clone(),
            token,
        }
    }

    /// Creates a project from `message`; answers its id.
    pub async fn new_project(&self, message: &str) -> String {
        let project = self.post("/api/projects", json!({ "message": message })).await;
        project["id"].as_str().expect("project id").to_owned()
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "POST {path}");
        response.json().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.unwrap()
    }

    pub async fn messages(&self, project_id: &str) -> Vec<Value> {
        self.get(&format!("/api/messages?projectId={project_id}"))
            .await
            .as_array()
            .cloned()
            .unwrap()
    }

    /// Waits until the project has `count` ASSISTANT messages.
    pub async fn replies(&self, project_id: &str, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let replies: Vec<Value> = self
                .messages(project_id)
                .await
                .into_iter()
                .filter(|message| message["role"] == "ASSISTANT")
                .collect();
            if replies.len() >= count {
                return replies;
            }
            assert!(Instant::now() < deadline, "only {} of {count} replies", replies.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The statuses of a project's channel from the start, until `last` arrives.
    pub async fn statuses_until(&self, project_id: &str, last: &str) -> Vec<String> {
        self.events_until(project_id, "projectInfo", "0", |data| data == last)
            .await
            .into_iter()
            .map(|(_, data)| serde_json::from_value(data).unwrap())
            .collect()
    }

    /// The `(id, data)` of a project's realtime messages of `topic` after message
    /// `last_event_id`, until one for which `done` holds.
    pub async fn events_until(
        &self,
        project_id: &str,
        topic: &str,
        last_event_id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Vec<(i64, Value)> {
        let response = self
            .http
            .get(format!("{}/api/projects/{project_id}/realtime?topic={topic}", self.url))
            .bearer_auth(&self.token)
            .header("Last-Event-ID", last_event_id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let chunk = tokio::time::timeout(Duration::from_secs(120), body.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    event
                        .lines()
                        .find_map(|line| line.strip_prefix(name).map(str::to_owned))
                };
                if let (Some(id), Some(data)) = (field("id: "), field("data: ")) {
                    assert_eq!(field("event: ").as_deref(), Some(topic), "{event}");
                    let data: Value = serde_json::from_str(&data).unwrap();
                    let finished = done(&data);
                    events.push((id.parse().unwrap(), data));
                    if finished {
                        return events;
                    }
                }
            }
        }
        panic!("the awaited {topic} message never came; got {events:?}");
    }
}

/// Fetches a preview URL through the server's proxy (no DNS for `*.localhost` here), as the
/// data dir's first user (previews are served to their owner only).
pub async fn fetch_preview(server: &Forgeai, sandbox_url: &str, path: &str) -> (u16, String) {
    let host = sandbox_url.trim_start_matches("http://").trim_end_matches('/');
    assert!(
        host.starts_with("3000-") && host.ends_with(&format!(".localhost:{}", server.port)),
        "{sandbox_url}"
    );
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .header("Host", host);
    if let Some(token) = &server.owner_token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// GETs a preview URL through `server`'s proxy as the holder of `token`.
pub async fn preview_as(server: &Forgeai, token: &str, sandbox_url: &str, path: &str) -> (u16, String) {
    let host = sandbox_url.trim_start_matches("http://").trim_end_matches('/');
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .header("Host", host)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// After the project's sandbox was lost: a follow-up prompt ("Add an about page") is answered
/// from a new sandbox holding the first prompt's page (restored) and the new one. Returns the
/// new fragment's preview URL.
pub async fn follow_up_in_a_new_sandbox(api: &Api, server: &Forgeai, project_id: &str, lost: &str) -> String {
    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Add an about page"}),
    )
    .await;
    let second = api.replies(project_id, 2, Duration::from_secs(60)).await[1].clone();
    assert_eq!(second["type"], "RESULT", "{second}");
    let fragment = &second["codeFragment"];
    assert_ne!(fragment["sandboxId"].as_str().unwrap(), lost, "a new sandbox was made");
    let url = fragment["sandboxUrl"].as_str().unwrap().to_owned();
    let (_, page) = preview_as(server, &api.token, &url, "/").await;
    assert_eq!(page, PAGE, "the previous fragment's files were restored into it");
    let (_, about) = preview_as(server, &api.token, &url, "/about.html").await;
    assert_eq!(about, "<p>About</p>");
    url
}

/// Builds the hello page for a first prompt; for one about an "about page", reads it back and
/// adds `about.html`.
pub fn hello_then_about_model(body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("Hello Page");
    }
    let follow_up = last_user_text(body).contains("about page");
    match (follow_up, iteration(body)) {
        (false, 1) => MockReply::tool_call(
            "c1",
            "createOrUpdateFiles",
            json!({"files": [{"path": "index.html", "content": PAGE}]}),
        ),
        (true, 1) => MockReply::tool_call("c2", "readFiles", json!({"files": ["index.html"]})),
        (true, 2) => MockReply::tool_call(
            "c3",
            "createOrUpdateFiles",
            json!({"files": [{"path": "about.html", "content": "<p>About</p>"}]}),
        ),
        (false, _) => MockReply::text("<task_summary>Built the hello page.</task_summary>"),
        (true, _) => MockReply::text("<task_summary>Added an about page.</task_summary>"),
    }
}

/// Sandboxes on E2B: a mock E2B whose sandboxes are local ones in a data dir of their own, and
/// the environment that points `forgeai` at it (`FORGEAI_SANDBOX_PROVIDER=e2b`).
pub struct E2bSandboxes {
    pub mock: forgeai_test_support::MockE2b,
    envs: Vec<(String, String)>,
    _sandboxes: DataDir,
}

impl E2bSandboxes {
    pub async fn start() -> E2bSandboxes {
        let dir = DataDir::new();
        let local = forgeai_sandbox::LocalProvider::new(forgeai_sandbox::LocalConfig::new(dir.path()))
            .await
            .expect("the mock E2B's local provider");
        local.ensure_static_template().await.expect("static template");
        let mock = forgeai_test_support::MockE2b::start(local, &["static"]).await;
        let mut envs: Vec<(String, String)> = mock.env().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        envs.push(("FORGEAI_SANDBOX_PROVIDER".into(), "e2b".into()));
        E2bSandboxes {
            mock,
            envs,
            _sandboxes: dir,
        }
    }

    pub fn envs(&self) -> Vec<(&str, &str)> {
        self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}
