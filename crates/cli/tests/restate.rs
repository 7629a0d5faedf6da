//! `FORGEAI_ENGINE=restate` end to end: two `forgeai serve` nodes on one PostgreSQL and one
//! restate-server. A prompt sent through node A runs on Restate; its statuses, read over SSE
//! from node B, arrive in order and complete; both nodes list the run and its answer.

mod common;

use std::time::Duration;

use common::*;
use forgeai_store::testing::TestPostgres;
use forgeai_test_support::{MockOpenAi, TestRestate};

/// A user in the shared database (created through node A's data dir).
fn add_user_on(data_dir: &std::path::Path, database_url: &str, name: &str) -> String {
    let output = forgeai(data_dir, "http://127.0.0.1:9")
        .env("DATABASE_URL", database_url)
        .args(["users", "add", name])
        .output()
        .expect("users add runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn a_prompt_sent_to_one_node_is_followed_on_another() {
    let _serial = SERIAL.lock().await;
    let restate = TestRestate::start().await;
    let postgres = TestPostgres::start().await;
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let (data_a, data_b) = (DataDir::new(), DataDir::new());
    let token = add_user_on(data_a.path(), postgres.url(), "alice");
    let node = |data: &DataDir, restate_port: u16| {
        let envs = [
            ("FORGEAI_ENGINE".to_owned(), "restate".to_owned()),
            ("DATABASE_URL".to_owned(), postgres.url().to_owned()),
            ("RESTATE_INGRESS_URL".to_owned(), restate.ingress_url()),
            ("RESTATE_ADMIN_URL".to_owned(), restate.admin_url()),
            ("FORGEAI_RESTATE_LISTEN".to_owned(), format!("127.0.0.1:{restate_port}")),
        ];
        let data = data.path().to_owned();
        let model_url = model.base_url();
        async move {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Forgeai::start_with(&data, &model_url, free_port(), &envs).await
        }
    };
    let server_a = node(&data_a, free_port()).await;
    let server_b = node(&data_b, free_port()).await;
    let (api_a, api_b) = (Api::new(&server_a, token.clone()), Api::new(&server_b, token));

    let project_id = api_a.new_project("Build a hello page").await;
    let statuses = api_b.statuses_until(&project_id, "Demo is ready").await;
    assert_eq!(statuses, READY_STATUSES);
    for api in [&api_a, &api_b] {
        let replies = api.replies(&project_id, 1, Duration::from_secs(30)).await;
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0]["type"], "RESULT", "{replies:?}");
        let runs = api.get(&format!("/api/projects/{project_id}/runs")).await;
        let runs = runs.as_array().unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        let run_id = runs[0]["id"].as_str().unwrap();
        assert!(run_id.starts_with("inv_"), "a Restate invocation: {run_id}");
        let detail = api.get(&format!("/api/runs/{run_id}")).await;
        assert_eq!(detail["projectId"], project_id.as_str());
        assert!(
            detail["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|step| step["name"] == "save-to-db"),
            "{detail}"
        );
    }
    // A follow-up through node B continues the project.
    api_b
        .post(
            "/api/messages",
            serde_json::json!({"projectId": project_id, "message": "Add an about page"}),
        )
        .await;
    let replies = api_a.replies(&project_id, 2, Duration::from_secs(60)).await;
    assert_eq!(replies[1]["type"], "RESULT", "{replies:?}");
}

#[tokio::test]
async fn with_restate_down_a_prompt_is_refused_and_nothing_is_kept() {
    let _serial = SERIAL.lock().await;
    let mut restate = TestRestate::start().await;
    let postgres = TestPostgres::start().await;
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let data = DataDir::new();
    let token = add_user_on(data.path(), postgres.url(), "alice");
    let envs = [
        ("FORGEAI_ENGINE", "restate".to_owned()),
        ("DATABASE_URL", postgres.url().to_owned()),
        ("RESTATE_INGRESS_URL", restate.ingress_url()),
        ("RESTATE_ADMIN_URL", restate.admin_url()),
        ("FORGEAI_RESTATE_LISTEN", format!("127.0.0.1:{}", free_port())),
    ];
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Forgeai::start_with(data.path(), &model.base_url(), free_port(), &envs).await;
    let api = Api::new(&server, token);
    restate.kill();

    let response = api
        .http
        .post(format!("{}/api/projects", api.url))
        .bearer_auth(&api.token)
        .json(&serde_json::json!({"message": "Build a hello page"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("Restate") && error.contains("send it again later"),
        "{error}"
    );
    let projects = api.get("/api/projects").await;
    assert_eq!(projects, serde_json::json!([]), "the refused prompt left no project");

    // Back up: the same prompt goes through.
    restate.resume().await;
    let project_id = api.new_project("Build a hello page").await;
    let replies = api.replies(&project_id, 1, Duration::from_secs(60)).await;
    assert_eq!(replies[0]["type"], "RESULT", "{replies:?}");
}
