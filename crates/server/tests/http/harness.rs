//! A real forgeai server on a loopback port for each test: the router served by `axum::serve`,
//! a store on SQLite or PostgreSQL, and an engine running a stand-in `code-agent` function that
//! publishes a few statuses, so tests can watch runs start without a model or a sandbox.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forgeai_code_agent::{CODE_AGENT_EVENT, CODE_AGENT_FUNCTION, CodeAgentRequest, STATUS_TOPIC, project_channel};
use forgeai_engine::{Engine, EngineConfig, Function, RealtimeFeed, RunDetail, RunFilter, StepError};
use forgeai_preview::{PreviewConfig, PreviewProxy};
use forgeai_sandbox::{PreviewTarget, Upstream};
use forgeai_server::{AppState, PreviewGate, ServerConfig};
use forgeai_store::testing::TestPostgres;
use forgeai_store::{AssistantReply, MessageWithFragment, NewFragment, PgRealtime, PgRealtimeConfig, Store};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;

/// The statuses the stand-in code agent publishes, in order.
pub const STATUSES: [&str; 3] = ["Generating sandbox url...", "Saving to db...", "Demo is ready"];

/// How long a test waits for something asynchronous (a run finishing, an SSE message).
pub const PATIENCE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub url: String,
    pub port: u16,
    pub backend: Backend,
    /// Where the preview gate sends what it lets through.
    pub sandboxes: Arc<EchoSandboxes>,
    pub store: Store,
    pub engine: Engine,
    pub http: reqwest::Client,
    pub data_dir: PathBuf,
    db_url: String,
    server: tokio::task::JoinHandle<()>,
    _postgres: Option<TestPostgres>,
    _dir: TempDir,
}

/// A user with its API token.
pub struct TestUser {
    pub id: String,
    pub token: String,
}

/// The stand-in for the real code agent: same id, trigger and concurrency key; it publishes
/// [`STATUSES`] on the project's channel, runs one step, and returns the event data it got.
fn stand_in_code_agent() -> Function {
    Function::new(CODE_AGENT_FUNCTION, CODE_AGENT_EVENT, |ctx, event| async move {
        let request: CodeAgentRequest = serde_json::from_value(event.data)
            .map_err(|error| StepError::non_retriable(format!("bad event data: {error}")))?;
        let channel = project_channel(&request.project_id);
        let message = ctx
            .step("get-prev-messages", || {
                let message = request.message.clone();
                async move { Ok::<_, StepError>(message) }
            })
            .await?;
        for status in STATUSES {
            ctx.publish(&channel, STATUS_TOPIC, json!(status)).await?;
        }
        Ok(CodeAgentRequest { message, ..request })
    })
    .concurrency_key("projectId")
}

/// The bearer token `/metrics` wants on test servers.
pub const METRICS_TOKEN: &str = "metrics-test-token";

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// A server whose config `configure` changed from the test default.
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data_dir = dir.path().to_path_buf();
        let (store, db_url, postgres) = match backend {
            Backend::Sqlite => {
                let store = Store::open_default(&data_dir).await.expect("SQLite store opens");
                let url = format!("sqlite://{}", data_dir.join(forgeai_store::DEFAULT_DB_FILE).display());
                (store, url, None)
            }
            Backend::Postgres => {
                let postgres = TestPostgres::start().await;
                let store = Store::connect(postgres.url()).await.expect("PostgreSQL store opens");
                (store, postgres.url().to_owned(), Some(postgres))
            }
        };
        Self::launch(backend, dir, store, db_url, postgres, configure, None).await
    }

    /// One node of a cluster: a server on the PostgreSQL database at `db_url` (shared with
    /// other nodes) whose realtime channels are a `PgRealtime` of its own, also answered for
    /// publishing as another engine would.
    pub async fn start_node(db_url: &str) -> (TestServer, PgRealtime) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::connect(db_url).await.expect("PostgreSQL store opens");
        let feed = PgRealtime::start(&store, PgRealtimeConfig::default())
            .await
            .expect("realtime on PostgreSQL starts");
        let realtime: Arc<dyn RealtimeFeed> = Arc::new(feed.clone());
        let server = Self::launch(
            Backend::Postgres,
            dir,
            store,
            db_url.to_owned(),
            None,
            |_| {},
            Some(realtime),
        )
        .await;
        (server, feed)
    }

    async fn launch(
        backend: Backend,
        dir: TempDir,
        store: Store,
        db_url: String,
        postgres: Option<TestPostgres>,
        configure: impl FnOnce(&mut ServerConfig),
        realtime: Option<Arc<dyn RealtimeFeed>>,
    ) -> TestServer {
        let data_dir = dir.path().to_path_buf();
        let engine = Engine::builder(EngineConfig::new(data_dir.join("engine")))
            .function(stand_in_code_agent())
            .start()
            .await
            .expect("engine starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("bound address").port();
        let url = format!("http://127.0.0.1:{port}");
        let mut config = ServerConfig::new(&data_dir);
        config.metrics_token = Some(METRICS_TOKEN.into());
        config.preview_port = Some(port);
        configure(&mut config);
        let mut state = AppState::new(store.clone(), engine.clone(), config);
        if let Some(realtime) = realtime {
            state = state.with_realtime(realtime);
        }
        let sandboxes = EchoSandboxes::start().await;
        let gate = PreviewGate::new(
            state.clone(),
            PreviewProxy::new(sandboxes.clone(), PreviewConfig::default()),
        );
        let api = forgeai_server::router(state);
        // As `forgeai serve` dispatches: preview hosts to the gate, the rest to the API.
        let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (gate, api) = (gate.clone(), api.clone());
            async move {
                if gate.matches(request.headers(), request.uri()) {
                    gate.handle(request).await
                } else {
                    tower::ServiceExt::oneshot(api, request)
                        .await
                        .unwrap_or_else(|never| match never {})
                }
            }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("server runs");
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        TestServer {
            url,
            port,
            backend,
            sandboxes,
            store,
            engine,
            http,
            data_dir,
            db_url,
            server,
            _postgres: postgres,
            _dir: dir,
        }
    }

    pub async fn user(&self, name: &str) -> TestUser {
        let (user, token) = self.store.create_user(name).await.expect("user created");
        TestUser { id: user.id, token }
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.url));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a request with an optional JSON body and answers the status and the JSON body
    /// (`Null` for an empty body). Panics on a body that is not JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.request(method, path, token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read_json(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// Creates a project through the API and answers its id.
    pub async fn create_project(&self, token: &str, message: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/projects",
                Some(token),
                Some(json!({ "message": message })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("project id").to_owned()
    }

    /// Stores an ASSISTANT result with a fragment, as the code agent does at the end of a run.
    pub async fn add_fragment(&self, user: &TestUser, project_id: &str, files: &[(&str, &str)]) -> MessageWithFragment {
        let reply = AssistantReply::Result {
            content: "Built a counter app.".into(),
            fragment: NewFragment {
                sandbox_url: "http://3000-sbx.localhost:4000/".into(),
                sandbox_id: Some("sbx".into()),
                title: "Counter app".into(),
                files: files
                    .iter()
                    .map(|(path, content)| ((*path).to_owned(), (*content).to_owned()))
                    .collect(),
                image_url: None,
                design_spec: Some(json!({ "meta": { "title": "Counter" } })),
                app_errors: None,
            },
        };
        self.store
            .add_assistant_message(&user.id, project_id, reply)
            .await
            .expect("assistant message stored")
            .expect("the project exists")
    }

    /// The code-agent runs of a project as the API lists them, once `count` of them exist and
    /// all have finished.
    pub async fn finished_runs(&self, token: &str, project_id: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, body) = self.get(&format!("/api/projects/{project_id}/runs"), token).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let runs = body.as_array().expect("a list of runs").clone();
            assert!(runs.len() <= count, "more runs than expected: {body}");
            if runs.len() == count
                && runs
                    .iter()
                    .all(|run| run["status"] != "queued" && run["status"] != "running")
            {
                return runs;
            }
            assert!(Instant::now() < deadline, "runs did not finish: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A run as the engine has it (with its output, which the API does not show).
    pub async fn engine_run(&self, run_id: &str) -> RunDetail {
        self.engine
            .run(run_id)
            .await
            .expect("journal readable")
            .expect("run exists")
    }

    /// Rows of every table plus events and uploads: what "stores nothing" is checked against.
    pub async fn stored(&self) -> Stored {
        let mut rows = Vec::new();
        for table in ["users", "projects", "messages", "fragments"] {
            rows.push(self.count(table).await);
        }
        let runs = self
            .engine
            .runs(&RunFilter::default())
            .await
            .expect("journal readable")
            .len();
        Stored {
            rows,
            runs,
            uploads: count_files(&self.data_dir.join("uploads")),
            fragment_files: self.fragment_files().await,
        }
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.db_url.starts_with("postgres") {
            let mut conn = PgConnection::connect(&self.db_url)
                .await
                .expect("connect to PostgreSQL");
            let count = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.expect("count rows");
            let _ = conn.close().await;
            count
        } else {
            let mut conn = SqliteConnection::connect(&self.db_url)
                .await
                .expect("connect to SQLite");
            sqlx::query_scalar(&sql).fetch_one(&mut conn).await.expect("count rows")
        }
    }

    async fn fragment_files(&self) -> Vec<String> {
        let sql = "SELECT CAST(files AS TEXT) FROM fragments ORDER BY id";
        if self.db_url.starts_with("postgres") {
            let mut conn = PgConnection::connect(&self.db_url)
                .await
                .expect("connect to PostgreSQL");
            let files = sqlx::query_scalar(sql)
                .fetch_all(&mut conn)
                .await
                .expect("read fragments");
            let _ = conn.close().await;
            files
        } else {
            let mut conn = SqliteConnection::connect(&self.db_url)
                .await
                .expect("connect to SQLite");
            sqlx::query_scalar(sql)
                .fetch_all(&mut conn)
                .await
                .expect("read fragments")
        }
    }

    /// Opens the project's realtime stream; panics unless it answers 200 with SSE.
    pub async fn subscribe(&self, token: &str, project_id: &str, last_event_id: LastEventId<'_>) -> SseClient {
        let response = self.open_realtime(token, project_id, last_event_id).await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            content_type.starts_with("text/event-stream"),
            "content type {content_type}"
        );
        SseClient::from_response(response)
    }

    pub async fn open_realtime(
        &self,
        token: &str,
        project_id: &str,
        last_event_id: LastEventId<'_>,
    ) -> reqwest::Response {
        let mut path = format!("/api/projects/{project_id}/realtime");
        if let LastEventId::Query(id) = last_event_id {
            path.push_str(&format!("?lastEventId={id}"));
        }
        let mut request = self.request(Method::GET, &path, Some(token));
        if let LastEventId::Header(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        request.send().await.expect("realtime request sent")
    }
}

/// Stands in for the sandboxes behind the preview proxy: every sandbox's port is one server
/// that answers with the request it got (method, URI, headers) as JSON, and sets a cookie of
/// its own and one named like forgeai's. Counts the requests that reached a sandbox.
pub struct EchoSandboxes {
    addr: std::net::SocketAddr,
    /// `<port>-<sandbox>` of every request the proxy was asked to reach a sandbox for.
    pub woken: std::sync::Mutex<Vec<String>>,
    server: tokio::task::JoinHandle<()>,
}

impl EchoSandboxes {
    async fn start() -> Arc<EchoSandboxes> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the echo server");
        let addr = listener.local_addr().expect("bound address");
        let echo = axum::Router::new().fallback(|request: axum::extract::Request| async move {
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect();
            let body = json!({
                "method": request.method().as_str(),
                "uri": request.uri().to_string(),
                "headers": headers,
            });
            (
                axum::response::AppendHeaders([
                    ("set-cookie", "app_cookie=1; Path=/"),
                    ("set-cookie", "forgeai_preview=set-by-the-app; Path=/"),
                ]),
                axum::Json(body),
            )
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, echo).await.expect("echo server runs");
        });
        Arc::new(EchoSandboxes {
            addr,
            woken: std::sync::Mutex::new(Vec::new()),
            server,
        })
    }

    pub fn woken(&self) -> Vec<String> {
        self.woken.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl PreviewTarget for EchoSandboxes {
    async fn upstream(&self, id: &str, port: u16) -> forgeai_sandbox::Result<Upstream> {
        self.woken.lock().unwrap().push(format!("{port}-{id}"));
        Ok(Upstream::local(self.addr, None))
    }
}

impl Drop for EchoSandboxes {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    rows: Vec<i64>,
    runs: usize,
    uploads: usize,
    fragment_files: Vec<String>,
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|entries| entries.count()).unwrap_or(0)
}

#[derive(Clone, Copy)]
pub enum LastEventId<'a> {
    None,
    Header(&'a str),
    Query(&'a str),
}

pub async fn read_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("response body");
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        panic!(
            "{status}: body is not JSON ({error}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, body)
}

/// Asserts an error answer: `status`, a JSON content type and an `{error: "..."}` body that
/// says something. Answers the message.
pub async fn expect_error(response: reqwest::Response, status: StatusCode) -> String {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (got, body) = read_json(response).await;
    assert_eq!(got, status, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content type {content_type:?}"
    );
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    assert_eq!(object.len(), 1, "error body has only `error`: {body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(!message.is_empty());
    message.to_owned()
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

impl SseEvent {
    /// The status string a `projectInfo` event carries.
    pub fn status(&self) -> String {
        assert_eq!(self.event.as_deref(), Some(STATUS_TOPIC), "{self:?}");
        serde_json::from_str(&self.data).unwrap_or_else(|error| panic!("data is not a JSON string ({error}): {self:?}"))
    }

    pub fn id(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no numeric id: {self:?}"))
    }
}

/// A minimal SSE reader (per the WHATWG event-stream format) over a streamed response body.
pub struct SseClient {
    body: futures::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buffer: String,
    /// Everything received, to check the wire format.
    pub raw: String,
}

impl SseClient {
    pub fn from_response(response: reqwest::Response) -> Self {
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
            raw: String::new(),
        }
    }

    /// The next event, or `None` if none arrives within `wait` (or the stream ends).
    pub async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next()).await.ok()??;
            let chunk = chunk.expect("SSE stream readable");
            let text = std::str::from_utf8(&chunk).expect("SSE stream is UTF-8");
            self.raw.push_str(text);
            self.buffer.push_str(&text.replace("\r\n", "\n").replace('\r', "\n"));
        }
    }

    pub async fn next(&mut self) -> SseEvent {
        self.next_within(PATIENCE)
            .await
            .expect("an SSE event within the patience")
    }

    /// Parses the first complete block of the buffer; comment-only blocks (keep-alives) are skipped.
    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = SseEvent {
                event: None,
                data: String::new(),
                id: None,
            };
            let mut has_data = false;
            for line in block.lines() {
                if line.is_empty() || line.starts_with(':') {
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event.event = Some(value.to_owned()),
                    "id" => event.id = Some(value.to_owned()),
                    "data" => {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            if has_data {
                return Some(event);
            }
        }
    }
}

/// Checks the data of a code-agent event as the stand-in function got it (its run output).
pub fn assert_code_agent_event(data: &Value, project_id: &str, message: &str, user_id: &str) {
    assert_eq!(data["projectId"], project_id, "{data}");
    assert_eq!(data["message"], message, "{data}");
    assert_eq!(data["userId"], user_id, "{data}");
    assert_eq!(data.get("imageUrl"), None, "{data}");
}
