//! The main job end to end: a real `forgeai serve` process over HTTP, a real sandbox from the
//! `static` template, and the mock model API in place of a hosted model.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::json;

#[tokio::test]
async fn a_prompt_builds_a_page_and_a_follow_up_continues_it() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let port = free_port();
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let api = Api::new(&server, token);

    let project_id = api.new_project("Build a hello page").await;
    let statuses = api.statuses_until(&project_id, "Demo is ready").await;
    assert_eq!(
        statuses,
        [
            "Generating project files...",
            "Generating sandbox url...",
            "Generating project name...",
            "Saving to db...",
            "Demo is ready"
        ]
    );
    let replies = api.replies(&project_id, 1, Duration::from_secs(30)).await;
    assert_eq!(replies[0]["type"], "RESULT");
    assert_eq!(replies[0]["content"], "Built the hello page.");
    let fragment = &replies[0]["codeFragment"];
    assert_eq!(fragment["title"], "Hello Page");
    assert_eq!(fragment["files"]["index.html"], PAGE);
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
    assert_eq!(
        second["files"]["index.html"], PAGE,
        "the follow-up starts from the previous files"
    );
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

#[tokio::test]
async fn prompts_sent_at_once_to_one_project_run_one_after_another() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    // A model slow enough that all three prompts are waiting while the first is answered.
    let build = builder_model("index.html", PAGE);
    let model = MockOpenAi::with_responder(move |body| build(body).delay(Duration::from_millis(300))).await;
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), free_port()).await;
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
    let runs = api.get(&format!("/api/projects/{project_id}/runs")).await;
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

#[tokio::test]
async fn a_model_that_keeps_failing_ends_in_an_error_and_the_project_goes_on() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(|_| MockReply::error(500, "the model is down")).await;
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), free_port()).await;
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
    let runs = api.get(&format!("/api/projects/{project_id}/runs")).await;
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

#[tokio::test]
async fn a_server_killed_during_the_network_resumes_without_repeating_model_calls() {
    let _serial = SERIAL.lock().await;
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
    let token = add_user(data.path(), "alice");
    let port = free_port();
    let mut server = Forgeai::start(data.path(), &model.base_url(), port).await;
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

    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
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

#[tokio::test]
async fn forgeai_run_does_the_main_job_from_a_terminal() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let port = free_port();
    let run = |args: Vec<String>| {
        let mut command = forgeai(data.path(), &model.base_url());
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
    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Add an about page"}),
    )
    .await;
    let second = api.replies(&project_id, 2, Duration::from_secs(60)).await[1].clone();
    assert_eq!(second["type"], "RESULT", "{second}");
    let fragment = &second["codeFragment"];
    assert_ne!(
        fragment["sandboxId"].as_str().unwrap(),
        old_sandbox,
        "a new sandbox was made"
    );
    let url = fragment["sandboxUrl"].as_str().unwrap();
    let (_, page) = fetch_preview(&server, url, "/").await;
    assert_eq!(page, PAGE, "the previous fragment's files were restored into it");
    let (_, about) = fetch_preview(&server, url, "/about.html").await;
    assert_eq!(about, "<p>About</p>");
}
