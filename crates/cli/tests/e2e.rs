//! The main job end to end: a real `forgeai serve` process over HTTP, a real sandbox from the
//! `static` template, and the mock model API in place of a hosted model.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forgeai_test_support::{MockOpenAi, MockReply};
use futures::StreamExt;
use serde_json::{Value, json};

/// The tests share sandbox resources of this machine; one at a time keeps failures readable.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const PAGE: &str = "<h1>Hello from forgeai</h1>";

/// What kind of model call a request is, judged from its system prompt.
fn is_naming(body: &Value) -> bool {
    body["messages"][0]["content"].as_str().is_some_and(|prompt| prompt.starts_with("You name web app projects"))
}

/// The coding iteration a request belongs to: 1 + the assistant turns since the user's input.
fn iteration(body: &Value) -> usize {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages.iter().rposition(|message| message["role"] == "user").unwrap_or(0);
    1 + messages[last_user..].iter().filter(|message| message["role"] == "assistant").count()
}

fn last_user_text(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    messages
        .iter()
        .rev()
        .find(|message| message["role"] == "user")
        .and_then(|message| message["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A model that writes `file` with `content` in iteration 1 and finishes in iteration 2.
fn builder_model(file: &'static str, content: &'static str) -> impl Fn(&Value) -> MockReply + Send + Sync + 'static {
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

struct Forgeai {
    child: Child,
    url: String,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn forgeai(data_dir: &Path, model_url: &str) -> Command {
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
    async fn start(data_dir: &Path, model_url: &str, port: u16) -> Forgeai {
        let child = forgeai(data_dir, model_url)
            .arg("serve")
            .env("FORGEAI_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("forgeai serve starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(format!("{url}/healthz")).await.is_ok_and(|response| response.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "forgeai serve did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Forgeai { child, url, port }
    }

    fn kill(&mut self) {
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

fn add_user(data_dir: &Path, name: &str) -> String {
    let output = forgeai(data_dir, "http://127.0.0.1:9").args(["users", "add", name]).output().expect("users add runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().last().unwrap().trim().to_owned()
}

/// Kills the sandboxes a test made (they outlive `forgeai serve` by design).
async fn remove_sandboxes(data_dir: &Path) {
    let provider = forgeai_sandbox::LocalProvider::new(forgeai_sandbox::LocalConfig::new(data_dir)).await.unwrap();
    provider.kill_all().await.unwrap();
    provider.shutdown().await;
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.token).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 201, "POST {path}");
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.token).send().await.unwrap();
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.json().await.unwrap()
    }

    async fn messages(&self, project_id: &str) -> Vec<Value> {
        self.get(&format!("/api/messages?projectId={project_id}")).await.as_array().cloned().unwrap()
    }

    /// Waits until the project has `count` ASSISTANT messages.
    async fn replies(&self, project_id: &str, count: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let replies: Vec<Value> =
                self.messages(project_id).await.into_iter().filter(|message| message["role"] == "ASSISTANT").collect();
            if replies.len() >= count {
                return replies;
            }
            assert!(Instant::now() < deadline, "only {} of {count} replies", replies.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The statuses of a project's channel from the start, until `last` arrives.
    async fn statuses_until(&self, project_id: &str, last: &str) -> Vec<String> {
        let response = self
            .http
            .get(format!("{}/api/projects/{project_id}/realtime", self.url))
            .bearer_auth(&self.token)
            .header("Last-Event-ID", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut statuses = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let chunk = tokio::time::timeout(Duration::from_secs(120), body.next()).await.unwrap().unwrap().unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|line| line.strip_prefix("data: ")) {
                    let status: String = serde_json::from_str(data).unwrap();
                    let done = status == last;
                    statuses.push(status);
                    if done {
                        return statuses;
                    }
                }
            }
        }
        panic!("`{last}` never came; got {statuses:?}");
    }
}

/// Fetches a preview URL through the server's proxy (no DNS for `*.localhost` here).
async fn fetch_preview(server: &Forgeai, sandbox_url: &str, path: &str) -> (u16, String) {
    let host = sandbox_url.trim_start_matches("http://").trim_end_matches('/');
    assert!(host.starts_with("3000-") && host.ends_with(&format!(".localhost:{}", server.port)), "{sandbox_url}");
    let response = reqwest::Client::new()
        .get(format!("{}{path}", server.url))
        .header("Host", host)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_prompt_builds_a_page_and_a_follow_up_continues_it() {
    let _serial = SERIAL.lock().await;
    let data = tempfile::TempDir::new().unwrap();
    let model = MockOpenAi::with_responder(|body| {
        if is_naming(body) {
            return MockReply::text("Hello Page");
        }
        let follow_up = last_user_text(body).contains("about page");
        match (follow_up, iteration(body)) {
            (false, 1) => MockReply::tool_call("c1", "createOrUpdateFiles", json!({"files": [{"path": "index.html", "content": PAGE}]})),
            (true, 1) => MockReply::tool_call("c2", "readFiles", json!({"files": ["index.html"]})),
            (true, 2) => MockReply::tool_call("c3", "createOrUpdateFiles", json!({"files": [{"path": "about.html", "content": "<p>About</p>"}]})),
            (false, _) => MockReply::text("<task_summary>Built the hello page.</task_summary>"),
            (true, _) => MockReply::text("<task_summary>Added an about page.</task_summary>"),
        }
    })
    .await;
    let port = free_port();
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let api = Api { http: reqwest::Client::new(), url: server.url.clone(), token };

    let project = api.post("/api/projects", json!({"message": "Build a hello page"})).await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let statuses = api.statuses_until(&project_id, "Demo is ready").await;
    assert_eq!(
        statuses,
        ["Generating project files...", "Generating sandbox url...", "Generating project name...", "Saving to db...", "Demo is ready"]
    );
    let replies = api.replies(&project_id, 1, Duration::from_secs(30)).await;
    assert_eq!(replies[0]["type"], "RESULT");
    assert_eq!(replies[0]["content"], "Built the hello page.");
    let fragment = &replies[0]["codeFragment"];
    assert_eq!(fragment["title"], "Hello Page");
    assert_eq!(fragment["files"]["index.html"], PAGE);
    let (status, page) = fetch_preview(&server, fragment["sandboxUrl"].as_str().unwrap(), "/").await;
    assert_eq!((status, page.as_str()), (200, PAGE), "the preview serves what the agent wrote");
    assert_eq!(api.get(&format!("/api/projects/{project_id}")).await["name"], "Hello Page");

    // An edit saved through the API shows in the preview.
    let edited = api
        .http
        .patch(format!("{}/api/fragments/{}", server.url, fragment["id"].as_str().unwrap()))
        .bearer_auth(&api.token)
        .json(&json!({"files": {"index.html": "<h1>Edited</h1>"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    let (_, page) = fetch_preview(&server, fragment["sandboxUrl"].as_str().unwrap(), "/").await;
    assert_eq!(page, "<h1>Edited</h1>");
    api.http
        .patch(format!("{}/api/fragments/{}", server.url, fragment["id"].as_str().unwrap()))
        .bearer_auth(&api.token)
        .json(&json!({"files": {"index.html": PAGE}}))
        .send()
        .await
        .unwrap();

    api.post("/api/messages", json!({"projectId": project_id, "message": "Add an about page"})).await;
    let replies = api.replies(&project_id, 2, Duration::from_secs(60)).await;
    let second = &replies[1]["codeFragment"];
    assert_eq!(second["files"]["index.html"], PAGE, "the follow-up starts from the previous files");
    assert_eq!(second["files"]["about.html"], "<p>About</p>");
    assert_eq!(second["sandboxId"], fragment["sandboxId"], "the same sandbox is reused");
    let follow_up_request = model
        .requests()
        .into_iter()
        .find(|body| !is_naming(body) && last_user_text(body).contains("about page"))
        .unwrap();
    let history: Vec<String> = follow_up_request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|message| message["content"].as_str().map(str::to_owned))
        .collect();
    assert!(history.iter().any(|text| text == "Build a hello page"), "history has the first prompt: {history:?}");
    assert!(history.iter().any(|text| text == "Built the hello page."), "history has the first answer");
    let read_result = model
        .requests()
        .into_iter()
        .filter(|body| last_user_text(body).contains("about page") && iteration(body) == 2)
        .map(|body| body.to_string())
        .next()
        .unwrap();
    assert!(read_result.contains("Hello from forgeai"), "readFiles saw the file in the sandbox");
    let (status, about) = fetch_preview(&server, second["sandboxUrl"].as_str().unwrap(), "/about.html").await;
    assert_eq!((status, about.as_str()), (200, "<p>About</p>"));
    drop(server);
    remove_sandboxes(data.path()).await;
}

#[tokio::test]
async fn prompts_sent_at_once_to_one_project_run_one_after_another() {
    let _serial = SERIAL.lock().await;
    let data = tempfile::TempDir::new().unwrap();
    // A model slow enough that all three prompts are waiting while the first is answered.
    let build = builder_model("index.html", PAGE);
    let model = MockOpenAi::with_responder(move |body| build(body).delay(Duration::from_millis(300))).await;
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), free_port()).await;
    let api = Api { http: reqwest::Client::new(), url: server.url.clone(), token };
    let project = api.post("/api/projects", json!({"message": "prompt 1"})).await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let (second, third) = tokio::join!(
        api.post("/api/messages", json!({"projectId": project_id, "message": "prompt 2"})),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            api.post("/api/messages", json!({"projectId": project_id, "message": "prompt 3"})).await
        },
    );
    assert!(second["id"].is_string() && third["id"].is_string());
    api.replies(&project_id, 3, Duration::from_secs(120)).await;
    let runs = api.get(&format!("/api/projects/{project_id}/runs")).await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for pair in runs.windows(2) {
        assert!(pair[0]["endedAt"].as_str() <= pair[1]["startedAt"].as_str(), "runs overlapped: {runs:?}");
    }
    let answered: Vec<String> = model
        .requests()
        .into_iter()
        .filter(|body| !is_naming(body) && iteration(body) == 1)
        .map(|body| last_user_text(&body))
        .collect();
    assert_eq!(answered, ["prompt 1", "prompt 2", "prompt 3"], "runs in send order");
    let messages = api.messages(&project_id).await;
    let roles: Vec<&str> = messages.iter().map(|message| message["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["USER", "USER", "USER", "ASSISTANT", "ASSISTANT", "ASSISTANT"]);
    drop(server);
    remove_sandboxes(data.path()).await;
}

#[tokio::test]
async fn a_model_that_keeps_failing_ends_in_an_error_and_the_project_goes_on() {
    let _serial = SERIAL.lock().await;
    let data = tempfile::TempDir::new().unwrap();
    let model = MockOpenAi::with_responder(|_| MockReply::error(500, "the model is down")).await;
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), free_port()).await;
    let api = Api { http: reqwest::Client::new(), url: server.url.clone(), token };
    let project = api.post("/api/projects", json!({"message": "Build something"})).await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let statuses = api.statuses_until(&project_id, "Something went wrong. Please try again.").await;
    assert_eq!(statuses.last().map(String::as_str), Some("Something went wrong. Please try again."));
    let replies = api.replies(&project_id, 1, Duration::from_secs(60)).await;
    assert_eq!(replies[0]["type"], "ERROR");
    assert!(replies[0]["codeFragment"].is_null());
    let runs = api.get(&format!("/api/projects/{project_id}/runs")).await;
    assert_eq!(runs[0]["status"], "failed");
    assert!(runs[0]["error"].as_str().unwrap().contains("the model is down"), "{runs}");

    model.set_responder(builder_model("index.html", PAGE));
    api.post("/api/messages", json!({"projectId": project_id, "message": "Try again"})).await;
    let replies = api.replies(&project_id, 2, Duration::from_secs(60)).await;
    assert_eq!(replies[1]["type"], "RESULT");
    drop(server);
    remove_sandboxes(data.path()).await;
}

#[tokio::test]
async fn a_server_killed_during_the_network_resumes_without_repeating_model_calls() {
    let _serial = SERIAL.lock().await;
    let data = tempfile::TempDir::new().unwrap();
    // Iteration 2 answers slowly, so the server can be killed while it waits for it.
    let slow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let slow_in = slow.clone();
    let model = MockOpenAi::with_responder(move |body| {
        let reply = builder_model("index.html", PAGE)(body);
        if !is_naming(body) && iteration(body) == 2 && slow_in.load(std::sync::atomic::Ordering::SeqCst) {
            return reply.delay(Duration::from_secs(30));
        }
        reply
    })
    .await;
    let token = add_user(data.path(), "alice");
    let port = free_port();
    let mut server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let api = Api { http: reqwest::Client::new(), url: server.url.clone(), token };
    let project = api.post("/api/projects", json!({"message": "Build a hello page"})).await;
    let project_id = project["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !model.requests().iter().any(|body| !is_naming(body) && iteration(body) == 2) {
        assert!(Instant::now() < deadline, "iteration 2 never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    slow.store(false, std::sync::atomic::Ordering::SeqCst);

    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let replies = api.replies(&project_id, 1, Duration::from_secs(120)).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["type"], "RESULT");
    let mut calls: HashMap<usize, usize> = HashMap::new();
    for body in model.requests().iter().filter(|body| !is_naming(body)) {
        *calls.entry(iteration(body)).or_default() += 1;
    }
    assert_eq!(calls.get(&1), Some(&1), "iteration 1 was answered before the kill and not asked again");
    assert_eq!(calls.get(&2), Some(&2), "only the unanswered call was repeated");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replies = api.replies(&project_id, 1, Duration::from_secs(5)).await;
    assert_eq!(replies.len(), 1, "exactly one RESULT");
    let fragment = &replies[0]["codeFragment"];
    let (status, page) = fetch_preview(&server, fragment["sandboxUrl"].as_str().unwrap(), "/").await;
    assert_eq!((status, page.as_str()), (200, PAGE));
    drop(server);
    remove_sandboxes(data.path()).await;
}
