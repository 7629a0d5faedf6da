//! Size limits: a tool call, a file or a tool result over its limit is answered to the model as
//! a tool error or cut with a note, and the run goes on.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use forgeai_agent::{
    Agent, Network, NetworkInput, SizeLimits, Tool, ToolContext, ToolError, coding_network, coding_network_with_limits,
};
use forgeai_test_support::{MockOpenAi, MockReply};
use serde::Deserialize;
use serde_json::{Value, json};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_fifty_megabyte_file_is_refused_and_the_run_goes_on() {
    let huge = "x".repeat(50 * MIB);
    // (The mock model server, like real ones, takes requests of a few MB only.)
    let too_big = "y".repeat(MIB + MIB / 2);
    let mock = MockOpenAi::start([
        // 50 MB of arguments: over the 4 MiB a tool call may carry.
        MockReply::tool_call("huge", "createOrUpdateFiles", files_args(&[("public/data.txt", &huge)])),
        // Within the call limit, but one file is over the 1 MiB a file may have: nothing is written.
        MockReply::tool_call(
            "big",
            "createOrUpdateFiles",
            files_args(&[("app/small.ts", "export {}"), ("public/big.txt", &too_big)]),
        ),
        MockReply::tool_call("ok", "createOrUpdateFiles", files_args(&[("app/page.tsx", "page")])),
        MockReply::text("<task_summary>Built the page without the data file.</task_summary>"),
    ])
    .await;
    let workspace = MemoryWorkspace::new();
    let network = coding_network(
        llm_for(&mock),
        workspace.clone(),
        Arc::new(RecordingImages::default()),
        "p1",
    );
    let harness = Harness::start(network, NetworkInput::new("Build a page with a data file")).await;

    let detail = harness.run(json!({})).await;
    let result = network_result(&detail);

    assert!(result.completed, "the run went on after the refused calls");
    assert_eq!(result.state.files.keys().collect::<Vec<_>>(), ["app/page.tsx"]);
    assert_eq!(*workspace.writes.lock().unwrap(), ["app/page.tsx"]);

    let requests = mock.requests();
    assert_eq!(requests.len(), 4);
    let answers = tool_messages(&requests[3]);
    let answer = |id: &str| answers.iter().find(|(call, _)| call == id).unwrap().1.clone();
    let huge_answer = answer("huge");
    assert!(
        huge_answer.starts_with("Error:") && huge_answer.contains("50.0 MiB") && huge_answer.contains("at most 4 MiB"),
        "{huge_answer}"
    );
    let big_answer = answer("big");
    assert!(
        big_answer.starts_with("Error:")
            && big_answer.contains("`public/big.txt` has 1.5 MiB")
            && big_answer.contains("at most 1 MiB")
            && big_answer.contains("No file was written"),
        "{big_answer}"
    );
    assert_eq!(answer("ok"), "Wrote 1 file(s): app/page.tsx");
    // The 50 MB arguments are not sent back with every later model call.
    for request in &requests[1..] {
        let size = request.to_string().len();
        assert!(size < 3 * MIB, "a model request of {size} bytes");
    }
    let echoed = &messages(&requests[1])
        .into_iter()
        .find(|message| message["role"] == "assistant")
        .unwrap()["tool_calls"][0]["function"]["arguments"];
    assert!(
        echoed
            .as_str()
            .unwrap()
            .contains("over the limit of 4 MiB per tool call"),
        "{echoed}"
    );
}

#[tokio::test]
async fn limits_come_from_the_configuration() {
    let mock = MockOpenAi::start([
        MockReply::tool_call("w", "createOrUpdateFiles", files_args(&[("a.txt", &"a".repeat(200))])),
        MockReply::tool_call("r", "readFiles", json!({"files": ["seeded.txt", "b.txt"]})),
        MockReply::text("<task_summary>Done.</task_summary>"),
    ])
    .await;
    let workspace = MemoryWorkspace::new();
    workspace.seed("seeded.txt", &format!("BEGIN{}END", "s".repeat(10_000)));
    workspace.seed("b.txt", "short");
    let limits = SizeLimits {
        max_file_bytes: 100,
        max_tool_call_bytes: 100_000,
        max_tool_result_bytes: 2_000,
        max_fragment_bytes: 100_000,
    };
    let network = coding_network_with_limits(
        llm_for(&mock),
        workspace.clone(),
        Arc::new(RecordingImages::default()),
        "p1",
        limits,
    );
    let harness = Harness::start(network, NetworkInput::new("task")).await;
    let result = network_result(&harness.run(json!({})).await);
    assert!(result.completed);
    assert!(workspace.writes.lock().unwrap().is_empty());

    let answers = tool_messages(&mock.requests()[2]);
    assert!(answers[0].1.contains("`a.txt` has 200 bytes") && answers[0].1.contains("at most 100 bytes"));
    // readFiles shortens each file so that its answer stays JSON within the limit.
    let read = &answers[1].1;
    assert!(read.len() <= 2_000, "{} bytes", read.len());
    let read: Value = serde_json::from_str(read).expect("still JSON");
    let seeded = read[0]["content"].as_str().unwrap();
    assert!(seeded.starts_with("BEGIN") && seeded.ends_with("END"), "{seeded}");
    assert!(seeded.contains("bytes left out"), "{seeded}");
    assert_eq!(read[1], json!({"path": "b.txt", "content": "short"}));
}

#[derive(Deserialize, schemars::JsonSchema)]
struct NoArgs {}

/// A tool that answers a megabyte.
struct Chatty;

#[async_trait]
impl Tool for Chatty {
    type Args = NoArgs;

    fn name(&self) -> &str {
        "chatty"
    }

    fn description(&self) -> &str {
        "Says a lot."
    }

    async fn call(&self, _args: NoArgs, _ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        Ok(format!("FIRST LINE\n{}\nLAST LINE", "blah ".repeat(200_000)))
    }
}

/// A tool that fails with a megabyte of explanation.
struct Rambling;

#[async_trait]
impl Tool for Rambling {
    type Args = NoArgs;

    fn name(&self) -> &str {
        "rambling"
    }

    fn description(&self) -> &str {
        "Fails verbosely."
    }

    async fn call(&self, _args: NoArgs, _ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        Err(ToolError::Failed(format!(
            "it broke: {}the end",
            "why ".repeat(250_000)
        )))
    }
}

#[tokio::test]
async fn long_tool_results_are_cut_with_a_note() {
    let mock = MockOpenAi::start([
        MockReply::tool_call("c", "chatty", json!({})).with_tool_call("r", "rambling", json!({})),
        MockReply::text("<task_summary>Done.</task_summary>"),
    ])
    .await;
    let agent = Agent::new("plain", "You are terse.", "plain-model")
        .tool(Chatty)
        .tool(Rambling);
    let network = Network::new(llm_for(&mock), agent);
    let harness = Harness::start(network, NetworkInput::new("task")).await;
    let result = network_result(&harness.run(json!({})).await);
    assert!(result.completed);

    let limit = SizeLimits::default().max_tool_result_bytes;
    let answers = tool_messages(&mock.requests()[1]);
    let (chatty, rambling) = (&answers[0].1, &answers[1].1);
    for answer in [chatty, rambling] {
        assert!(answer.len() <= limit + 200, "{} bytes", answer.len());
        assert!(answer.contains("bytes left out: a tool result sent back is at most 64 KiB"));
    }
    assert!(chatty.starts_with("FIRST LINE") && chatty.ends_with("LAST LINE"));
    assert!(rambling.starts_with("Error: it broke") && rambling.ends_with("the end"));
}
