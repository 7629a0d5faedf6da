//! The network loop inside a real engine run, against the mock model server.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use forgeai_agent::{
    Agent, CommandOutput, ImageOrientation, ImagePurpose, Network, NetworkInput, NetworkState, RouteResponse,
    WorkspaceError, coding_network,
};
use forgeai_engine::{RunStatus, StepStatus};
use forgeai_llm::{Message, Usage};
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

fn plain_network(mock: &MockOpenAi) -> Network {
    Network::new(llm_for(mock), Agent::new("plain", "You are terse.", "plain-model"))
}

#[tokio::test]
async fn the_loop_runs_tools_until_the_task_summary_and_records_the_files() {
    let mock = MockOpenAi::start([
        MockReply::tool_call(
            "call-1",
            "createOrUpdateFiles",
            files_args(&[
                ("app/page.tsx", "export default 1"),
                ("/home/user/project/lib/util.ts", "export const x = 1"),
            ]),
        )
        .with_tool_call("call-2", "terminal", json!({"command": "npm install zod --yes"}))
        .usage(100, 10),
        MockReply::tool_call("call-3", "readFiles", json!({"files": ["app/page.tsx", "README.md"]})).usage(200, 20),
        MockReply::text("All done.\n<task_summary>\nBuilt the page.\n</task_summary>").usage(300, 30),
    ])
    .await;
    let workspace = MemoryWorkspace::new();
    workspace.seed("README.md", "seeded");
    let network = coding_network(
        llm_for(&mock),
        workspace.clone(),
        Arc::new(RecordingImages::default()),
        "p1",
    );
    let input = NetworkInput::new("Build a page")
        .with_history(vec![
            Message::user("earlier question"),
            Message::assistant("earlier answer"),
        ])
        .with_state(NetworkState::with_files(BTreeMap::from([(
            "README.md".into(),
            "seeded".into(),
        )])));
    let harness = Harness::start(network, input).await;

    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert!(result.completed);
    assert_eq!(result.iterations, 3);
    assert_eq!(result.state.summary, "Built the page.");
    let expected_files = BTreeMap::from([
        ("README.md".to_owned(), "seeded".to_owned()),
        ("app/page.tsx".to_owned(), "export default 1".to_owned()),
        ("lib/util.ts".to_owned(), "export const x = 1".to_owned()),
    ]);
    assert_eq!(
        result.state.files, expected_files,
        "seeded files are kept, writes are added"
    );
    assert_eq!(workspace.files(), expected_files);
    assert_eq!(*workspace.commands.lock().unwrap(), ["npm install zod --yes"]);
    assert_eq!(
        result.usage,
        Usage {
            prompt_tokens: 600,
            completion_tokens: 60,
            total_tokens: 660
        }
    );
    assert_eq!(
        step_ids(&detail),
        [
            "code-agent/iter-1/model",
            "code-agent/iter-1/tool-0-createOrUpdateFiles",
            "code-agent/iter-1/tool-1-terminal",
            "code-agent/iter-2/model",
            "code-agent/iter-2/tool-0-readFiles",
            "code-agent/iter-3/model",
            "code-agent/iter-3/check",
        ]
    );

    let requests = mock.requests();
    assert_eq!(
        requests.len(),
        3,
        "no model call after the summary and the passed check"
    );
    let first = messages(&requests[0]);
    assert_eq!(requests[0]["model"], CODER_MODEL);
    assert_eq!(first[0]["role"], "system");
    assert!(
        first[0]["content"]
            .as_str()
            .unwrap_or_default()
            .contains("<task_summary>")
    );
    assert_eq!(first[1], json!({"role": "user", "content": "earlier question"}));
    assert_eq!(first[2], json!({"role": "assistant", "content": "earlier answer"}));
    assert_eq!(first[3], json!({"role": "user", "content": "Build a page"}));
    let tool_names: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tool_names,
        [
            "terminal",
            "createOrUpdateFiles",
            "editFile",
            "readFiles",
            "unsplashImage"
        ]
    );
    assert_eq!(
        requests[0]["tools"][1]["function"]["parameters"]["properties"]["files"]["items"]["required"],
        json!(["path", "content"])
    );

    assert_eq!(
        tool_messages(&requests[1]),
        [
            (
                "call-1".to_owned(),
                "Wrote 2 file(s): app/page.tsx, lib/util.ts".to_owned()
            ),
            ("call-2".to_owned(), "ran: npm install zod --yes".to_owned()),
        ]
    );
    let read = tool_messages(&requests[2]);
    assert_eq!(read[2].0, "call-3");
    let read: Value = serde_json::from_str(&read[2].1).expect("readFiles answers JSON");
    assert_eq!(
        read,
        json!([
            {"path": "app/page.tsx", "content": "export default 1"},
            {"path": "README.md", "content": "seeded"},
        ])
    );
}

#[tokio::test]
async fn the_coding_network_stops_after_twenty_iterations() {
    let mock = MockOpenAi::with_responder(|_| {
        MockReply::tool_call("call", "readFiles", json!({"files": ["README.md"]})).usage(1, 1)
    })
    .await;
    let workspace = MemoryWorkspace::new();
    workspace.seed("README.md", "hi");
    let network = coding_network(llm_for(&mock), workspace, Arc::new(RecordingImages::default()), "p1");
    let harness = Harness::start(network, NetworkInput::new("never finishes")).await;

    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert!(!result.completed);
    assert_eq!(result.iterations, 20);
    assert_eq!(result.state.summary, "");
    assert_eq!(mock.request_count(), 20);
    assert_eq!(result.usage.total_tokens, 40);
    let steps = step_ids(&detail);
    assert_eq!(steps.len(), 40);
    assert_eq!(steps[38], "code-agent/iter-20/model");
    assert_eq!(steps[39], "code-agent/iter-20/tool-0-readFiles");
}

#[tokio::test]
async fn answers_without_tools_or_summary_are_followed_by_a_nudge() {
    let mock = MockOpenAi::with_responder(|_| MockReply::text("Thinking about it.")).await;
    let harness = Harness::start(plain_network(&mock).max_iter(3), NetworkInput::new("task")).await;

    let result = network_result(&harness.run(json!({})).await);

    assert!(!result.completed);
    assert_eq!(result.iterations, 3);
    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0]["model"], "plain-model");
    assert!(requests[0].get("tools").is_none(), "an agent without tools sends none");
    let last = messages(&requests[2]);
    assert_eq!(last.len(), 6, "system, input, then (answer, nudge) twice: {last:?}");
    assert_eq!(last[2], json!({"role": "assistant", "content": "Thinking about it."}));
    assert_eq!(last[3]["role"], "user");
    assert!(last[3]["content"].as_str().unwrap().contains("<task_summary>"));
}

#[tokio::test]
async fn bad_tool_calls_reach_the_model_as_tool_errors() {
    let mock = MockOpenAi::start([
        // Cut-off JSON, sent verbatim.
        MockReply::tool_call("bad-json", "createOrUpdateFiles", "{\"files\": [{\"path\": \"a.txt\""),
        MockReply::tool_call(
            "bad-shape",
            "createOrUpdateFiles",
            json!({"files": [{"path": "a.txt"}]}),
        )
        .with_tool_call(
            "bad-enum",
            "unsplashImage",
            json!({"query": "coffee", "orientation": "diagonal"}),
        ),
        MockReply::tool_call("unknown", "deleteEverything", json!({})),
        MockReply::tool_call(
            "escape",
            "createOrUpdateFiles",
            files_args(&[("../../etc/passwd", "x")]),
        )
        .with_tool_call("missing", "readFiles", json!({"files": ["nope.ts"]}))
        .with_tool_call("short", "unsplashImage", json!({"query": " a "})),
        MockReply::text("<task_summary>Could not do it.</task_summary>"),
    ])
    .await;
    let workspace = MemoryWorkspace::new();
    let images = Arc::new(RecordingImages::default());
    let network = coding_network(llm_for(&mock), workspace.clone(), images.clone(), "p1");
    let harness = Harness::start(network, NetworkInput::new("task")).await;

    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert!(result.completed, "bad calls never crash the run");
    assert!(result.state.files.is_empty());
    assert!(workspace.writes.lock().unwrap().is_empty());
    assert!(images.requests.lock().unwrap().is_empty());

    let requests = mock.requests();
    assert_eq!(requests.len(), 5);
    let last_tool_answers = |request: usize, count: usize| {
        let answers = tool_messages(&requests[request]);
        answers[answers.len() - count..].to_vec()
    };

    let [(id, text)] = last_tool_answers(1, 1).try_into().unwrap();
    assert_eq!(id, "bad-json");
    assert!(text.starts_with("Error: the arguments are not valid JSON"), "{text}");
    assert!(text.contains("\"files\""), "the schema is shown: {text}");

    let [(id, shape), (enum_id, variant)] = last_tool_answers(2, 2).try_into().unwrap();
    assert_eq!((id.as_str(), enum_id.as_str()), ("bad-shape", "bad-enum"));
    assert!(
        shape.contains("at `files[0]`") && shape.contains("missing field `content`"),
        "{shape}"
    );
    assert!(variant.contains("unknown variant `diagonal`"), "{variant}");

    let [(id, unknown)] = last_tool_answers(3, 1).try_into().unwrap();
    assert_eq!(id, "unknown");
    assert!(unknown.contains("no tool named `deleteEverything`"), "{unknown}");
    assert!(
        unknown.contains("terminal, createOrUpdateFiles, editFile, readFiles, unsplashImage"),
        "{unknown}"
    );

    let [(_, escape), (_, missing), (_, short)] = last_tool_answers(4, 3).try_into().unwrap();
    assert!(
        escape.starts_with("Error: invalid arguments") && escape.contains("leaves the project"),
        "{escape}"
    );
    let missing: Value = serde_json::from_str(&missing).expect("readFiles answers JSON");
    assert_eq!(
        missing,
        json!([{"path": "nope.ts", "error": "`nope.ts` does not exist"}])
    );
    assert!(short.contains("at least 2 characters"), "{short}");

    // Calls that could not start have no step; the others do.
    assert_eq!(
        step_ids(&detail),
        [
            "code-agent/iter-1/model",
            "code-agent/iter-2/model",
            "code-agent/iter-3/model",
            "code-agent/iter-4/model",
            "code-agent/iter-4/tool-0-createOrUpdateFiles",
            "code-agent/iter-4/tool-1-readFiles",
            "code-agent/iter-4/tool-2-unsplashImage",
            "code-agent/iter-5/model",
        ]
    );
}

#[tokio::test]
async fn tools_publish_their_status_on_the_project_channel() {
    let mock = MockOpenAi::start([
        MockReply::tool_call("t", "terminal", json!({"command": "npm install nope --yes"})).with_tool_call(
            "w",
            "createOrUpdateFiles",
            files_args(&[("app/page.tsx", "page")]),
        ),
        MockReply::tool_call("r", "readFiles", json!({"files": ["app/page.tsx"]})).with_tool_call(
            "i",
            "unsplashImage",
            json!({"query": "coffee shop", "purpose": "hero", "filenameHint": "hero"}),
        ),
        // Calls that cannot start publish nothing.
        MockReply::tool_call("x", "unknownTool", json!({})),
        MockReply::text("<task_summary>Done.</task_summary>"),
    ])
    .await;
    let workspace = MemoryWorkspace::with_commands(|_| {
        Ok(CommandOutput {
            stdout: "resolving…".into(),
            stderr: "npm ERR! 404 'nope' is not in this registry".into(),
            exit_code: 1,
        })
    });
    let images = Arc::new(RecordingImages::default());
    let network = coding_network(llm_for(&mock), workspace, images.clone(), "p1");
    let harness = Harness::start(network, NetworkInput::new("task")).await;

    let result = network_result(&harness.run(json!({})).await);
    assert!(result.completed);

    let published = harness.published("Project:p1").await;
    let statuses: Vec<&Value> = published
        .iter()
        .filter(|message| message.topic == "projectInfo")
        .map(|message| &message.data)
        .collect();
    // The activity log has a line a person reads for each tool call, in order.
    let activity: Vec<String> = published
        .iter()
        .filter(|message| message.topic == "agentActivity")
        .map(|message| match message.data["type"].as_str() {
            Some("toolCall") => format!(
                "{} [{}]",
                message.data["summary"].as_str().unwrap(),
                message.data["outcome"].as_str().unwrap()
            ),
            other => other.unwrap().to_owned(),
        })
        .collect();
    assert_eq!(activity.len(), 6, "{activity:?}");
    assert!(
        activity[0].starts_with("Ran `npm install nope --yes` (exit 1, ") && activity[0].ends_with(" [ok]"),
        "{activity:?}"
    );
    assert_eq!(
        activity[1..],
        [
            "Wrote app/page.tsx [ok]",
            "Read app/page.tsx [ok]",
            "Fetched an Unsplash photo of “coffee shop” [ok]",
            "modelText",
            "appChecked"
        ]
    );
    assert_eq!(
        statuses,
        [
            &json!("Installing packages..."),
            &json!("Generating project files..."),
            &json!("Reading project files..."),
            &json!("Downloading images..."),
            &json!("Checking the app..."),
        ]
    );
    assert!(
        published
            .iter()
            .all(|m| m.topic == "projectInfo" || m.topic == "agentActivity")
    );

    let requests = mock.requests();
    let failed = &tool_messages(&requests[1])[0].1;
    assert_eq!(
        failed,
        "Command failed with exit code 1\nstdout:\nresolving…\nstderr:\nnpm ERR! 404 'nope' is not in this registry"
    );
    let image: Value = serde_json::from_str(&tool_messages(&requests[2])[3].1).expect("image answer is JSON");
    assert_eq!(image["publicPath"], "/assets/unsplash/hero.jpg");
    assert_eq!(image["localFile"], "public/assets/unsplash/hero.jpg");
    assert_eq!(image["attribution"]["photographerName"], "Jane Doe");
    assert!(
        image["attribution"]["attributionUrl"]
            .as_str()
            .unwrap()
            .contains("utm_source")
    );
    let asked = images.requests.lock().unwrap()[0].clone();
    assert_eq!(asked.query, "coffee shop");
    assert_eq!(
        asked.orientation,
        ImageOrientation::Landscape,
        "the default orientation"
    );
    assert_eq!(asked.purpose, ImagePurpose::Hero);
}

#[tokio::test]
async fn a_rate_limited_model_call_is_retried_after_retry_after() {
    let mock = MockOpenAi::start([
        MockReply::error(429, "slow down").retry_after("1"),
        MockReply::text("<task_summary>ok</task_summary>"),
    ])
    .await;
    let harness = Harness::start(plain_network(&mock), NetworkInput::new("task")).await;

    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert!(result.completed);
    assert_eq!(result.state.summary, "ok");
    let recorded = mock.recorded();
    assert_eq!(recorded.len(), 2);
    let waited = recorded[1].received_at - recorded[0].received_at;
    assert!(waited >= Duration::from_millis(950), "waited only {waited:?}");
    assert_eq!(detail.steps[0].attempts, 1, "the client retried within the step");
}

#[tokio::test]
async fn a_retriable_model_failure_makes_the_engine_retry_the_step() {
    let mock = MockOpenAi::start([
        MockReply::error(503, "overloaded"),
        MockReply::text("<task_summary>ok</task_summary>"),
    ])
    .await;
    // No retries in the client, so the 503 reaches the engine.
    let llm = llm_with(&mock, |config| config.max_retries = 0);
    let network = Network::new(llm, Agent::new("plain", "You are terse.", "plain-model"));
    let harness = Harness::start(network, NetworkInput::new("task")).await;

    let detail = harness.run(json!({})).await;

    assert!(network_result(&detail).completed);
    assert_eq!(mock.request_count(), 2);
    let model_step = &detail.steps[0];
    assert_eq!(model_step.id, "plain/iter-1/model");
    assert_eq!(model_step.attempts, 2);
    assert_eq!(model_step.status, StepStatus::Completed);
}

#[tokio::test]
async fn a_non_retriable_model_failure_fails_the_run_at_once() {
    let mock = MockOpenAi::start([MockReply::error(400, "model `plain-model` does not exist")]).await;
    let harness = Harness::start(plain_network(&mock), NetworkInput::new("task")).await;

    let detail = harness.run(json!({})).await;

    assert_eq!(detail.run.status, RunStatus::Failed);
    let error = detail.run.error.unwrap_or_default();
    assert!(error.contains("400") && error.contains("does not exist"), "{error}");
    assert_eq!(mock.request_count(), 1, "neither the client nor the engine retried");
    assert_eq!(detail.steps[0].attempts, 1);
}

#[tokio::test]
async fn an_unreachable_workspace_fails_the_tool_step_which_the_engine_retries() {
    let mock = MockOpenAi::start([
        MockReply::tool_call("w", "createOrUpdateFiles", files_args(&[("app/page.tsx", "page")])),
        MockReply::text("<task_summary>Done.</task_summary>"),
    ])
    .await;
    let workspace = MemoryWorkspace::new();
    workspace
        .write_failures
        .lock()
        .unwrap()
        .push(WorkspaceError::Unavailable("sandbox is restarting".into()));
    let network = coding_network(
        llm_for(&mock),
        workspace.clone(),
        Arc::new(RecordingImages::default()),
        "p1",
    );
    let harness = Harness::start(network, NetworkInput::new("task")).await;

    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert_eq!(result.state.files["app/page.tsx"], "page");
    assert_eq!(mock.request_count(), 2, "the model was not asked again");
    let tool_step = detail
        .steps
        .iter()
        .find(|step| step.id == "code-agent/iter-1/tool-0-createOrUpdateFiles")
        .unwrap();
    assert_eq!(tool_step.attempts, 2);
    assert_eq!(tool_messages(&mock.requests()[1])[0].1, "Wrote 1 file(s): app/page.tsx");
}

/// Runs the same scripted conversation with the coding agent, streaming or not.
async fn scripted_run(stream: bool) -> (forgeai_agent::NetworkResult, Vec<Value>) {
    let mock = MockOpenAi::start([
        MockReply::tool_call(
            "w",
            "createOrUpdateFiles",
            files_args(&[(
                "app/page.tsx",
                "\"use client\";\nexport default function Page() { return <main>Hé ✨</main>; }",
            )]),
        )
        .with_tool_call("t", "terminal", json!({"command": "npm install clsx --yes"}))
        .with_text("Writing the page.")
        .usage(50, 5),
        MockReply::text("Finished.\n<task_summary>A page with a greeting.</task_summary>").usage(70, 7),
    ])
    .await;
    let workspace = MemoryWorkspace::new();
    let agent = forgeai_agent::coding_agent(workspace, Arc::new(RecordingImages::default())).stream(stream);
    let network = Network::new(llm_for(&mock), agent).max_iter(20);
    let harness = Harness::start(network, NetworkInput::new("greet")).await;
    let result = network_result(&harness.run(json!({})).await);
    (result, mock.requests())
}

#[tokio::test]
async fn streaming_and_non_streaming_give_the_same_result() {
    let (streamed, streamed_requests) = scripted_run(true).await;
    let (plain, plain_requests) = scripted_run(false).await;

    assert_eq!(streamed_requests[0]["stream"], json!(true));
    assert_eq!(plain_requests[0]["stream"], json!(false));
    assert_eq!(streamed, plain);
    assert!(streamed.completed);
    assert_eq!(streamed.usage.total_tokens, 132);
    assert_eq!(streamed.state.files.len(), 1);
    // The conversations sent back to the model are the same too.
    assert_eq!(streamed_requests[1]["messages"], plain_requests[1]["messages"]);
}

#[tokio::test]
async fn read_files_answers_each_path_on_its_own() {
    let mock = MockOpenAi::start([
        MockReply::tool_call(
            "read",
            "readFiles",
            json!({"files": ["app/page.tsx", "components/ui/button.tsx", "../outside.txt", "lib/utils.ts", "docs"]}),
        ),
        MockReply::text("<task_summary>Read.</task_summary>"),
    ])
    .await;
    let workspace = MemoryWorkspace::new();
    workspace.seed("app/page.tsx", "export default function Page() {}");
    workspace.seed("components/ui/button.jsx", "export const Button = 1;");
    workspace.seed("components/ui/button.d.ts", "export declare const Button: number;");
    workspace.seed("docs/readme.md", "a directory, not a file");
    let network = coding_network(llm_for(&mock), workspace, Arc::new(RecordingImages::default()), "p1");
    let harness = Harness::start(network, NetworkInput::new("task")).await;
    harness.run(json!({})).await;

    let [(id, answer)] = tool_messages(&mock.requests()[1]).try_into().unwrap();
    assert_eq!(id, "read");
    let answer: Value = serde_json::from_str(&answer).expect("readFiles answers JSON");
    assert_eq!(
        answer,
        json!([
            {"path": "app/page.tsx", "content": "export default function Page() {}"},
            {"path": "components/ui/button.tsx", "error": "`components/ui/button.tsx` does not exist; `components/ui/button.jsx` exists"},
            {"path": "../outside.txt", "error": "`../outside.txt` leaves the project directory; use a path relative to /home/user/project, such as `app/page.tsx`"},
            {"path": "lib/utils.ts", "error": "`lib/utils.ts` does not exist"},
            {"path": "docs", "error": "`docs` is a directory"},
        ])
    );
}

/// A page that does not build, as Next.js answers it, and what its dev server prints.
fn broken_page() -> (RouteResponse, String) {
    let body = r#"<html><body><script id="__NEXT_DATA__" type="application/json">{"page":"/_error","err":{"name":"Error","message":"./app/page.tsx:1:1\nModule not found: Can't resolve '@/components/hero'"}}</script></body></html>"#;
    let printed = " ○ Compiling / ...\n \u{1b}[31m⨯\u{1b}[39m ./app/page.tsx:1:1\nModule not found: Can't resolve '@/components/hero'\n> 1 | import { Hero } from \"@/components/hero\";\n GET / 500 in 2456ms\n";
    (
        RouteResponse {
            status: Some(500),
            body: body.into(),
            failure: None,
        },
        printed.into(),
    )
}

/// The coding network on `script`, its app check finding `broken` broken pages before fine ones.
async fn with_broken_pages(script: Vec<MockReply>, broken: usize) -> (MockOpenAi, Arc<MemoryWorkspace>, Harness) {
    let mock = MockOpenAi::start(script).await;
    let workspace = MemoryWorkspace::new();
    workspace
        .pages
        .lock()
        .unwrap()
        .extend((0..broken).map(|_| broken_page()));
    let network = coding_network(
        llm_for(&mock),
        workspace.clone(),
        Arc::new(RecordingImages::default()),
        "p1",
    );
    let harness = Harness::start(network, NetworkInput::new("task")).await;
    (mock, workspace, harness)
}

#[tokio::test]
async fn a_build_error_found_by_the_check_goes_back_to_the_agent_which_fixes_it() {
    let page = json!({"files": [{"path": "app/page.tsx", "content": "import { Hero } from \"@/components/hero\";"}]});
    let fix = json!({"files": [{"path": "components/hero.tsx", "content": "export function Hero() { return null; }"}]});
    let script = vec![
        MockReply::tool_call("write", "createOrUpdateFiles", page),
        MockReply::text("<task_summary>Built the page.</task_summary>"),
        MockReply::tool_call("fix", "createOrUpdateFiles", fix),
        MockReply::text("<task_summary>Built the page and its hero.</task_summary>"),
    ];
    let (mock, workspace, harness) = with_broken_pages(script, 1).await;
    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert!(result.completed);
    assert_eq!(result.problems, None, "the second check passed");
    assert_eq!(result.checks, 2);
    assert_eq!(result.state.summary, "Built the page and its hero.");
    assert_eq!(*workspace.fetched.lock().unwrap(), ["/", "/"]);
    assert_eq!(
        step_ids(&detail),
        [
            "code-agent/iter-1/model",
            "code-agent/iter-1/tool-0-createOrUpdateFiles",
            "code-agent/iter-2/model",
            "code-agent/iter-2/check",
            "code-agent/iter-3/model",
            "code-agent/iter-3/tool-0-createOrUpdateFiles",
            "code-agent/iter-4/model",
            "code-agent/iter-4/check",
        ]
    );
    // The agent was told what failed, with the file and line, from the page and the dev server.
    let requests = mock.requests();
    let told = messages(&requests[2]).last().cloned().unwrap();
    assert_eq!(told["role"], "user");
    let told = told["content"].as_str().unwrap();
    assert!(told.contains("check 1 of 3"), "{told}");
    assert!(
        told.contains(
            "GET / answered HTTP 500:\nError: ./app/page.tsx:1:1\nModule not found: Can't resolve '@/components/hero'"
        ),
        "{told}"
    );
    assert!(
        told.contains("The dev server printed:\n./app/page.tsx:1:1\nModule not found"),
        "{told}"
    );
    assert!(!told.contains('\u{1b}'), "no terminal colours: {told:?}");
}

#[tokio::test]
async fn an_app_that_stays_broken_ends_with_its_errors_after_three_rounds() {
    let page = json!({"files": [{"path": "app/page.tsx", "content": "broken"}]});
    let mut script = vec![MockReply::tool_call("write", "createOrUpdateFiles", page.clone())];
    for round in 0..4 {
        script.push(MockReply::text(format!(
            "<task_summary>Done, take {round}.</task_summary>"
        )));
        if round < 3 {
            script.push(MockReply::tool_call("write", "createOrUpdateFiles", page.clone()));
        }
    }
    let (mock, _, harness) = with_broken_pages(script, 4).await;
    let result = network_result(&harness.run(json!({})).await);

    assert!(result.completed, "the agent gave its summary");
    assert_eq!(
        result.checks, 4,
        "the first check and one after each of three rounds of fixes"
    );
    assert_eq!(mock.remaining(), 0);
    assert_eq!(mock.requests().len(), 8, "no fourth round");
    let problems = result.problems.expect("the errors are the outcome");
    assert!(
        problems.contains("Module not found: Can't resolve '@/components/hero'"),
        "{problems}"
    );
}

#[tokio::test]
async fn an_agent_out_of_iterations_while_fixing_is_judged_by_a_final_check() {
    let page = json!({"files": [{"path": "app/page.tsx", "content": "v"}]});
    let mut script = vec![
        MockReply::tool_call("write", "createOrUpdateFiles", page.clone()),
        MockReply::text("<task_summary>Done.</task_summary>"),
    ];
    // Fixes until the iteration limit, never finishing again.
    script.extend((0..18).map(|_| MockReply::tool_call("write", "createOrUpdateFiles", page.clone())));
    let (_mock, _, harness) = with_broken_pages(script, 1).await;
    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert_eq!(result.iterations, 20);
    assert_eq!(result.checks, 2);
    assert_eq!(result.problems, None, "the final check found the app fixed");
    assert_eq!(
        step_ids(&detail).last().map(String::as_str),
        Some("code-agent/final-check")
    );
}
