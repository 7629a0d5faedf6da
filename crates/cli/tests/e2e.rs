//! The main job end to end: a real `forgeai serve` process over HTTP, a real sandbox from the
//! `static` template, and the mock model API in place of a hosted model.

mod common;

on_both_engines!(
    a_prompt_builds_a_page_and_a_follow_up_continues_it,
    prompts_sent_at_once_to_one_project_run_one_after_another,
    a_model_that_keeps_failing_ends_in_an_error_and_the_project_goes_on,
    a_server_killed_during_the_network_resumes_without_repeating_model_calls,
    forgeai_run_does_the_main_job_from_a_terminal,
    one_event_sent_twice_with_one_id_starts_one_run,
);

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use forgeai_code_agent::FAILED_STATUS;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::json;

async fn a_prompt_builds_a_page_and_a_follow_up_continues_it(backend: Backend) {
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let port = free_port();
    let token = backend.add_user(data.path(), "alice");
    let server = backend.start(data.path(), &model.base_url(), port).await;
    let api = Api::new(&server, token);

    let project_id = api.new_project("Build a hello page").await;
    let statuses = api.statuses_until(&project_id, "Demo is ready").await;
    assert_eq!(statuses, READY_STATUSES);
    let replies = api.replies(&project_id, 1, Duration::from_secs(30)).await;
    assert_eq!(replies[0]["type"], "RESULT");
    assert_eq!(replies[0]["content"], "Built the hello page.");
    let fragment = &replies[0]["codeFragment"];
    assert_eq!(fragment["title"], "Hello Page");
    assert_eq!(fragment["fileSizes"], json!({"index.html": PAGE.len()}));
    assert_eq!(api.fragment_files(fragment).await["index.html"], PAGE);
    let (status, page) = fetch_preview(&server, fragment["sandboxUrl"].as_str().unwrap(), "/").await;
    assert_eq!(
        (status, page.as_str()),
        (200, PAGE),
        "the preview serves what the agent wrote"
    );
    assert_eq!(
        api.get(&format!("/api/projects/{project_id}")).await["name"],
        "Hello Page"
    );

    // An edit saved through the API shows in the preview.
    let edited = api
        .http
        .patch(format!(
            "{}/api/fragments/{}",
            server.url,
            fragment["id"].as_str().unwrap()
        ))
        .bearer_auth(&api.token)
        .json(&json!({"files": {"index.html": "<h1>Edited</h1>"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    let (_, page) = fetch_preview(&server, fragment["sandboxUrl"].as_str().unwrap(), "/").await;
    assert_eq!(page, "<h1>Edited</h1>");
    api.http
        .patch(format!(
            "{}/api/fragments/{}",
            server.url,
            fragment["id"].as_str().unwrap()
        ))
        .bearer_auth(&api.token)
        .json(&json!({"files": {"index.html": PAGE}}))
        .send()
        .await
        .unwrap();

    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Add an about page"}),
    )
    .await;
    let replies = api.replies(&project_id, 2, Duration::from_secs(60)).await;
    let second = &replies[1]["codeFragment"];
    let second_files = api.fragment_files(second).await;
    assert_eq!(
        second_files["index.html"], PAGE,
        "the follow-up starts from the previous files"
    );
    assert_eq!(second_files["about.html"], "<p>About</p>");
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
    assert!(
        history.iter().any(|text| text == "Build a hello page"),
        "history has the first prompt: {history:?}"
    );
    assert!(
        history.iter().any(|text| text == "Built the hello page."),
        "history has the first answer"
    );
    let read_result = model
        .requests()
        .into_iter()
        .filter(|body| last_user_text(body).contains("about page") && iteration(body) == 2)
        .map(|body| body.to_string())
        .next()
        .unwrap();
    assert!(
        read_result.contains("Hello from forgeai"),
        "readFiles saw the file in the sandbox"
    );
    let (status, about) = fetch_preview(&server, second["sandboxUrl"].as_str().unwrap(), "/about.html").await;
    assert_eq!((status, about.as_str()), (200, "<p>About</p>"));

    // Deleting the project removes its sandbox: the preview is gone too.
    let deleted = api
        .http
        .delete(format!("{}/api/projects/{project_id}", server.url))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let sandbox_dir = data
        .path()
        .join("sandboxes")
        .join(second["sandboxId"].as_str().unwrap());
    assert!(!sandbox_dir.exists(), "the sandbox's files were removed");
    let (status, _) = fetch_preview(&server, second["sandboxUrl"].as_str().unwrap(), "/").await;
    assert!(status >= 400, "the preview of a deleted project answers {status}");
    drop(server);
}

async fn prompts_sent_at_once_to_one_project_run_one_after_another(backend: Backend) {
    let data = DataDir::new();
    // A model slow enough that all three prompts are waiting while the first is answered.
    let build = builder_model("index.html", PAGE);
    let model = MockOpenAi::with_responder(move |body| build(body).delay(Duration::from_millis(300))).await;
    let token = backend.add_user(data.path(), "alice");
    let server = backend.start(data.path(), &model.base_url(), free_port()).await;
    let api = Api::new(&server, token);
    let project_id = api.new_project("prompt 1").await;
    let (second, third) = tokio::join!(
        api.post("/api/messages", json!({"projectId": project_id, "message": "prompt 2"})),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            api.post("/api/messages", json!({"projectId": project_id, "message": "prompt 3"}))
                .await
        },
    );
    assert!(second["id"].is_string() && third["id"].is_string());
    api.replies(&project_id, 3, Duration::from_secs(120)).await;
    let runs = api.runs_when_finished(&project_id).await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for pair in runs.windows(2) {
        assert!(
            pair[0]["endedAt"].as_str() <= pair[1]["startedAt"].as_str(),
            "runs overlapped: {runs:?}"
        );
    }
    let answered: Vec<String> = model
        .requests()
        .into_iter()
        .filter(|body| !is_naming(body) && iteration(body) == 1)
        .map(|body| last_user_text(&body))
        .collect();
    assert_eq!(answered, ["prompt 1", "prompt 2", "prompt 3"], "runs in send order");
    let messages = api.messages(&project_id).await;
    let roles: Vec<&str> = messages
        .iter()
        .map(|message| message["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["USER", "USER", "USER", "ASSISTANT", "ASSISTANT", "ASSISTANT"]);
    drop(server);
}

async fn a_model_that_keeps_failing_ends_in_an_error_and_the_project_goes_on(backend: Backend) {
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(|_| MockReply::error(500, "the model is down")).await;
    let token = backend.add_user(data.path(), "alice");
    let server = backend.start(data.path(), &model.base_url(), free_port()).await;
    let api = Api::new(&server, token);
    let project_id = api.new_project("Build something").await;
    let statuses = api
        .statuses_until(&project_id, "Something went wrong. Please try again.")
        .await;
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("Something went wrong. Please try again.")
    );
    let replies = api.replies(&project_id, 1, Duration::from_secs(60)).await;
    assert_eq!(replies[0]["type"], "ERROR");
    assert!(replies[0]["codeFragment"].is_null());
    // The run ends a moment after its ERROR message is stored (on Restate, when the invocation
    // completes).
    let runs = api.runs_when_finished(&project_id).await;
    assert_eq!(runs[0]["status"], "failed");
    assert!(
        runs[0]["error"].as_str().unwrap().contains("the model is down"),
        "{runs}"
    );

    model.set_responder(builder_model("index.html", PAGE));
    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Try again"}),
    )
    .await;
    let replies = api.replies(&project_id, 2, Duration::from_secs(60)).await;
    assert_eq!(replies[1]["type"], "RESULT");
    drop(server);
}

async fn a_server_killed_during_the_network_resumes_without_repeating_model_calls(backend: Backend) {
    let data = DataDir::new();
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
    let token = backend.add_user(data.path(), "alice");
    let port = free_port();
    let mut server = backend.start(data.path(), &model.base_url(), port).await;
    let api = Api::new(&server, token);
    let project_id = api.new_project("Build a hello page").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !model
        .requests()
        .iter()
        .any(|body| !is_naming(body) && iteration(body) == 2)
    {
        assert!(Instant::now() < deadline, "iteration 2 never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    slow.store(false, std::sync::atomic::Ordering::SeqCst);

    let server = backend.start(data.path(), &model.base_url(), port).await;
    let replies = api.replies(&project_id, 1, Duration::from_secs(120)).await;
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0]["type"], "RESULT");
    let mut calls: HashMap<usize, usize> = HashMap::new();
    for body in model.requests().iter().filter(|body| !is_naming(body)) {
        *calls.entry(iteration(body)).or_default() += 1;
    }
    assert_eq!(
        calls.get(&1),
        Some(&1),
        "iteration 1 was answered before the kill and not asked again"
    );
    assert_eq!(calls.get(&2), Some(&2), "only the unanswered call was repeated");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replies = api.replies(&project_id, 1, Duration::from_secs(5)).await;
    assert_eq!(replies.len(), 1, "exactly one RESULT");
    let fragment = &replies[0]["codeFragment"];
    let (status, page) = fetch_preview(&server, fragment["sandboxUrl"].as_str().unwrap(), "/").await;
    assert_eq!((status, page.as_str()), (200, PAGE));
    drop(server);
}

async fn forgeai_run_does_the_main_job_from_a_terminal(backend: Backend) {
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let port = free_port();
    let run = |args: Vec<String>| {
        let mut command = backend.command(data.path(), &model.base_url());
        command
            .env("FORGEAI_LISTEN", format!("127.0.0.1:{port}"))
            .arg("run")
            .args(args);
        async move {
            tokio::task::spawn_blocking(move || command.output().expect("forgeai run starts"))
                .await
                .unwrap()
        }
    };
    let first = run(vec!["Build a hello page".into()]).await;
    let stdout = String::from_utf8_lossy(&first.stdout).to_string();
    assert!(
        first.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(stdout.contains("Built the hello page."), "{stdout}");
    assert!(
        stdout.contains("Hello Page — files changed (1):\n  index.html"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(".localhost:{port}/")) && stdout.contains("Preview: http://3000-"),
        "{stdout}"
    );
    let project_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Project: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();

    let follow_up = run(vec!["--project".into(), project_id, "Add an about page".into()]).await;
    let stdout = String::from_utf8_lossy(&follow_up.stdout).to_string();
    assert!(
        follow_up.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&follow_up.stderr)
    );
    assert!(
        stdout.contains("files changed (1):\n  about.html"),
        "only the new file changed: {stdout}"
    );

    let empty = run(vec!["  ".into()]).await;
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("the prompt must have 1 to 10000 characters"));
}

#[tokio::test]
async fn a_project_whose_sandbox_is_gone_gets_a_new_one_with_its_files() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let token = add_user(data.path(), "alice");
    let port = free_port();
    let mut server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let api = Api::new(&server, token);
    let project_id = api.new_project("Build a hello page").await;
    let first = api.replies(&project_id, 1, Duration::from_secs(60)).await[0]["codeFragment"].clone();
    let old_sandbox = first["sandboxId"].as_str().unwrap().to_owned();

    // The machine lost the sandbox while forgeai was down.
    server.kill();
    let provider = forgeai_sandbox::LocalProvider::new(forgeai_sandbox::LocalConfig::new(data.path()))
        .await
        .unwrap();
    assert!(
        forgeai_sandbox::SandboxProvider::kill(&provider, &old_sandbox)
            .await
            .unwrap()
    );
    provider.shutdown().await;

    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
    follow_up_in_a_new_sandbox(&api, &server, &project_id, &old_sandbox).await;
}

/// An Inngest client retrying a send (same event id): one run, one answer.
async fn one_event_sent_twice_with_one_id_starts_one_run(backend: Backend) {
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let token = backend.add_user(data.path(), "alice");
    let server = backend.start(data.path(), &model.base_url(), free_port()).await;
    let api = Api::new(&server, token.clone());
    let project_id = api.new_project("Build a hello page").await;
    api.replies(&project_id, 1, Duration::from_secs(60)).await;

    let event = json!({
        "id": "retried-send-1",
        "name": "code-agent/codeAgent.run",
        "data": {"projectId": project_id, "message": "Add an about page"},
    });
    for _ in 0..2 {
        let response = api
            .http
            .post(format!("{}/e/{token}", server.url))
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    api.replies(&project_id, 2, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replies = api.replies(&project_id, 2, Duration::from_secs(5)).await;
    assert_eq!(replies.len(), 2, "one answer to the event sent twice: {replies:?}");
    let answered = model
        .requests()
        .into_iter()
        .filter(|body| !is_naming(body) && iteration(body) == 1 && last_user_text(body).contains("about page"))
        .count();
    assert_eq!(answered, 1, "one run for the event");
}

impl Api {
    /// The project's runs, once none is queued or running any more.
    async fn runs_when_finished(&self, project_id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let runs = self.get(&format!("/api/projects/{project_id}/runs")).await;
            let finished = runs.as_array().is_some_and(|runs| {
                runs.iter()
                    .all(|run| !matches!(run["status"].as_str(), Some("queued" | "running")))
            });
            if finished || Instant::now() > deadline {
                return runs;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The files of a fragment the chat lists (which carries their sizes only).
    async fn fragment_files(&self, fragment: &serde_json::Value) -> serde_json::Value {
        let id = fragment["id"].as_str().expect("fragment id");
        self.get(&format!("/api/fragments/{id}")).await["files"].clone()
    }

    /// The bytes `GET path` answers, with its status.
    async fn get_raw(&self, path: &str, token: &str) -> (u16, Vec<u8>) {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
    }
}

/// The agent says it is done without having written anything: the run stores an ERROR message,
/// and the runs API shows it as failed (with why), not completed.
#[tokio::test]
async fn a_run_that_stores_an_error_message_shows_as_failed() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(|body| {
        if is_naming(body) {
            return MockReply::text("Nothing");
        }
        MockReply::text("<task_summary>Nothing needed doing.</task_summary>")
    })
    .await;
    let token = add_user(data.path(), "alice");
    let port = free_port();
    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let api = Api::new(&server, token);
    let project_id = api.new_project("Do nothing").await;
    let statuses = api.statuses_until(&project_id, FAILED_STATUS).await;
    assert!(!statuses.iter().any(|status| status == "Demo is ready"), "{statuses:?}");
    let replies = api.replies(&project_id, 1, Duration::from_secs(60)).await;
    assert_eq!(replies.len(), 1, "one message, not one per failure handler");
    assert_eq!(replies[0]["type"], "ERROR");
    let runs = api.runs_when_finished(&project_id).await;
    assert_eq!(runs[0]["status"], "failed", "{runs}");
    assert_eq!(runs[0]["id"], replies[0]["id"], "the run's message");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("finished without writing any file"),
        "{runs}"
    );
    let run = api.get(&format!("/api/runs/{}", runs[0]["id"].as_str().unwrap())).await;
    assert_eq!(run["status"], "failed");

    // The project goes on: the next prompt that builds something completes.
    model.set_responder(builder_model("index.html", PAGE));
    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Now build it"}),
    )
    .await;
    let replies = api.replies(&project_id, 2, Duration::from_secs(60)).await;
    assert_eq!(replies[1]["type"], "RESULT");
    let runs = api.runs_when_finished(&project_id).await;
    assert_eq!(runs[1]["status"], "completed", "{runs}");
    drop(server);

    // `forgeai run` says so too, and exits with an error.
    model.set_responder(|body| {
        if is_naming(body) {
            return MockReply::text("Nothing");
        }
        MockReply::text("<task_summary>Nothing needed doing.</task_summary>")
    });
    let mut command = forgeai(data.path(), &model.base_url());
    command
        .env("FORGEAI_LISTEN", format!("127.0.0.1:{port}"))
        .args(["run", "Do nothing again"]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("The run failed: the agent finished without writing any file"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("error: {FAILED_STATUS}")), "{stderr}");
}

/// The scenario: the agent writes a 50 MB file. The call gets a tool error naming the
/// limit, so does a file over the per-file limit, the run goes on, and the fragment holds only
/// the small text files (no `node_modules` or `.next`), so listing the chat stays small.
#[tokio::test]
async fn a_fifty_megabyte_file_gets_a_tool_error_and_the_run_goes_on() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let huge = std::sync::Arc::new("x".repeat(50 * 1024 * 1024));
    let model = MockOpenAi::with_responder(move |body| {
        if is_naming(body) {
            return MockReply::text("Data Page");
        }
        match iteration(body) {
            1 => MockReply::tool_call(
                "huge",
                "createOrUpdateFiles",
                json!({"files": [{"path": "public/data.json", "content": huge.as_str()}]}),
            ),
            2 => MockReply::tool_call(
                "big",
                "createOrUpdateFiles",
                json!({"files": [{"path": "public/data.json", "content": "y".repeat(1536 * 1024)}]}),
            ),
            3 => MockReply::tool_call(
                "small",
                "createOrUpdateFiles",
                json!({"files": [
                    {"path": "index.html", "content": PAGE},
                    {"path": "node_modules/left-pad/index.js", "content": "module.exports = 1"},
                    {"path": ".next/cache/build.txt", "content": "cache"},
                ]}),
            ),
            _ => MockReply::text("<task_summary>Built the page without the data file.</task_summary>"),
        }
    })
    .await;
    let token = add_user(data.path(), "alice");
    let other = add_user(data.path(), "bob");
    let server = Forgeai::start(data.path(), &model.base_url(), free_port()).await;
    let api = Api::new(&server, token.clone());
    let project_id = api.new_project("Build a page with a big data file").await;
    let replies = api.replies(&project_id, 1, Duration::from_secs(120)).await;
    assert_eq!(replies[0]["type"], "RESULT", "the run went on: {}", replies[0]);
    let content = replies[0]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Built the page without the data file."),
        "{content}"
    );
    assert!(
        content.contains("Not kept in this saved version")
            && content.contains("`node_modules/left-pad/index.js` (installed packages or build output)"),
        "{content}"
    );

    let requests: Vec<serde_json::Value> = model.requests().into_iter().filter(|body| !is_naming(body)).collect();
    let answer = |request: &serde_json::Value, id: &str| {
        request["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|message| message["role"] == "tool" && message["tool_call_id"] == id)
            .and_then(|message| message["content"].as_str())
            .unwrap()
            .to_owned()
    };
    let huge_answer = answer(&requests[1], "huge");
    assert!(
        huge_answer.starts_with("Error:") && huge_answer.contains("at most 4 MiB"),
        "{huge_answer}"
    );
    let big_answer = answer(&requests[2], "big");
    assert!(
        big_answer.contains("`public/data.json` has 1.5 MiB; a file written by this tool may have at most 1 MiB"),
        "{big_answer}"
    );
    for request in &requests[1..] {
        let size = request.to_string().len();
        assert!(size < 2 * 1024 * 1024, "the 50 MB went back to the model: {size} bytes");
    }

    let fragment = &replies[0]["codeFragment"];
    assert_eq!(fragment["fileSizes"], json!({"index.html": PAGE.len()}));
    assert_eq!(api.fragment_files(fragment).await, json!({"index.html": PAGE}));
    let (status, body) = api
        .get_raw(&format!("/api/messages?projectId={project_id}"), &token)
        .await;
    assert_eq!(status, 200);
    assert!(body.len() < 4096, "GET /api/messages answered {} bytes", body.len());
    let fragment_path = format!("/api/fragments/{}", fragment["id"].as_str().unwrap());
    assert_eq!(
        api.get_raw(&fragment_path, &other).await.0,
        404,
        "only the owner gets the files"
    );
    drop(server);
}
