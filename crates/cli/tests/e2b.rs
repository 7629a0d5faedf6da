//! `FORGEAI_SANDBOX_PROVIDER=e2b` end to end against the mock E2B: a project's prompts run in
//! E2B sandboxes, the preview goes through forgeai's proxy to E2B's, a sandbox E2B stopped
//! between two prompts is recreated with the project's files, and with Restate a second node
//! takes over a project from a stopped first one (nodes keep no sandbox state).

mod common;

use std::time::Duration;

use common::*;
use forgeai_store::testing::TestPostgres;
use forgeai_test_support::{MockOpenAi, TestRestate};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_e2b_a_stopped_sandbox_is_recreated_with_the_projects_files() {
    let _serial = SERIAL.lock().await;
    let e2b = E2bSandboxes::start().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let token = add_user_with(data.path(), "alice", &e2b.envs());
    let server = Forgeai::start_with(data.path(), &model.base_url(), free_port(), &e2b.envs()).await;
    let api = Api::new(&server, token.clone());

    let project_id = api.new_project("Build a hello page").await;
    let statuses = api.statuses_until(&project_id, "Demo is ready").await;
    assert_eq!(statuses, READY_STATUSES);
    let first = api.replies(&project_id, 1, Duration::from_secs(60)).await[0].clone();
    assert_eq!(first["type"], "RESULT", "{first}");
    let sandbox = first["codeFragment"]["sandboxId"].as_str().unwrap().to_owned();
    assert_eq!(e2b.mock.sandbox_ids(), vec![sandbox.clone()], "the sandbox is E2B's");
    let url = first["codeFragment"]["sandboxUrl"].as_str().unwrap().to_owned();
    assert_eq!(preview_as(&server, &token, &url, "/").await, (200, PAGE.to_owned()));
    // Through E2B's proxy, on the routing headers, as an E2B client reaches a sandbox port.
    assert!(
        e2b.mock
            .requests()
            .iter()
            .any(|r| r.headers.get("e2b-sandbox-port").is_some_and(|port| port == "3000"))
    );
    assert!(
        !data.path().join("sandboxes").exists(),
        "a node on E2B keeps no sandbox of its own"
    );

    // E2B stopped the sandbox between two prompts (its timeout ran out).
    e2b.mock.expire(&sandbox).await;
    let url = follow_up_in_a_new_sandbox(&api, &server, &project_id, &sandbox).await;
    // The preview stays the owner's: without credentials it is not served.
    let anonymous = reqwest::Client::new()
        .get(format!("{}/", server.url))
        .header(
            "Host",
            url.trim_start_matches("http://").trim_end_matches('/').to_owned(),
        )
        .send()
        .await
        .unwrap();
    assert_ne!(anonymous.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_restate_and_e2b_a_second_node_takes_over_a_project() {
    let _serial = SERIAL.lock().await;
    let e2b = E2bSandboxes::start().await;
    let restate = TestRestate::start().await;
    let postgres = TestPostgres::start().await;
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let restate_listen = format!("127.0.0.1:{}", free_port());
    let mut envs = e2b.envs();
    envs.extend([
        ("FORGEAI_ENGINE", "restate"),
        ("DATABASE_URL", postgres.url()),
        ("FORGEAI_RESTATE_LISTEN", restate_listen.as_str()),
    ]);
    let (ingress, admin) = (restate.ingress_url(), restate.admin_url());
    envs.extend([
        ("RESTATE_INGRESS_URL", ingress.as_str()),
        ("RESTATE_ADMIN_URL", admin.as_str()),
    ]);
    let token = add_user_with(data_a.path(), "alice", &envs);

    let mut node_a = Forgeai::start_with(data_a.path(), &model.base_url(), free_port(), &envs).await;
    let api_a = Api::new(&node_a, token.clone());
    let project_id = api_a.new_project("Build a hello page").await;
    let first = api_a.replies(&project_id, 1, Duration::from_secs(60)).await[0].clone();
    assert_eq!(first["type"], "RESULT", "{first}");
    node_a.kill();

    // Node B serves Restate's endpoint at the same address, as a replacement node would.
    let node_b = Forgeai::start_with(data_b.path(), &model.base_url(), free_port(), &envs).await;
    let api_b = Api::new(&node_b, token.clone());
    api_b
        .post(
            "/api/messages",
            json!({"projectId": project_id, "message": "Add an about page"}),
        )
        .await;
    let replies = api_b.replies(&project_id, 2, Duration::from_secs(90)).await;
    assert_eq!(replies[1]["type"], "RESULT", "{replies:?}");
    let messages = api_b.messages(&project_id).await;
    assert_eq!(messages.len(), 4, "both prompts and both answers: {messages:?}");
    let url = replies[1]["codeFragment"]["sandboxUrl"].as_str().unwrap().to_owned();
    assert_eq!(
        replies[1]["codeFragment"]["sandboxId"], first["codeFragment"]["sandboxId"],
        "node B reconnected to the project's E2B sandbox"
    );
    let (status, page) = preview_as(&node_b, &token, &url, "/").await;
    assert_eq!(
        (status, page.as_str()),
        (200, PAGE),
        "node A's files, served through node B"
    );
    assert_eq!(preview_as(&node_b, &token, &url, "/about.html").await.1, "<p>About</p>");
}

#[tokio::test]
async fn without_an_api_key_the_e2b_provider_says_what_to_set() {
    let data = DataDir::new();
    let output = forgeai(data.path(), "http://127.0.0.1:9")
        .env("FORGEAI_SANDBOX_PROVIDER", "e2b")
        .env_remove("E2B_API_KEY")
        .env("FORGEAI_LISTEN", format!("127.0.0.1:{}", free_port()))
        .arg("serve")
        .output()
        .expect("forgeai runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("E2B_API_KEY"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}
