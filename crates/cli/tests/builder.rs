//! The builder features of a running forgeai, over real HTTP: the agent's `editFile` tool.

mod common;

use std::time::Duration;

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

const FIRST: &str = "<h1>Hello</h1>\n<p>Hello world</p>\n";

/// The tool answers the model got, in order.
fn tool_answers(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter(|m| m["role"] == "tool")
                .filter_map(|m| m["content"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn editing_model(body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("Hello Page");
    }
    let edit = |id: &str, old: &str, new: &str| {
        MockReply::tool_call(
            id,
            "editFile",
            json!({"path": "index.html", "edits": [{"old": old, "new": new}]}),
        )
    };
    match iteration(body) {
        1 => MockReply::tool_call(
            "c1",
            "createOrUpdateFiles",
            json!({"files": [{"path": "index.html", "content": FIRST}]}),
        ),
        2 => edit("c2", "Hello", "Hi"),
        3 => edit("c3", "Goodbye", "Hi"),
        4 => edit("c4", "<h1>Hello</h1>", "<h1>Hi</h1>"),
        _ => MockReply::text("<task_summary>Built and edited the page.</task_summary>"),
    }
}

#[tokio::test]
async fn edit_file_changes_a_matching_text_once_and_explains_a_miss() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(editing_model).await;
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), free_port()).await;
    let api = Api::new(&server, token.clone());
    let project_id = api.new_project("Build a hello page").await;
    let reply = api.replies(&project_id, 1, Duration::from_secs(60)).await[0].clone();
    assert_eq!(reply["type"], "RESULT", "{reply}");

    let last = model
        .requests()
        .into_iter()
        .filter(|body| !is_naming(body))
        .max_by_key(iteration)
        .unwrap();
    let answers = tool_answers(&last);
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(
        answers[1].contains("occurs 2 times") && answers[1].contains("left as it was"),
        "{}",
        answers[1]
    );
    assert!(
        answers[2].contains("was not found") && answers[2].contains("left as it was"),
        "{}",
        answers[2]
    );
    assert!(answers[3].contains("Edited `index.html` (1 edit)"), "{}", answers[3]);

    let fragment = api
        .get(&format!(
            "/api/fragments/{}",
            reply["codeFragment"]["id"].as_str().unwrap()
        ))
        .await;
    let edited = FIRST.replacen("<h1>Hello</h1>", "<h1>Hi</h1>", 1);
    assert_eq!(fragment["files"]["index.html"], edited.as_str(), "{fragment}");
    let url = reply["codeFragment"]["sandboxUrl"].as_str().unwrap();
    assert_eq!(preview_as(&server, &token, url, "/").await, (200, edited));
}
