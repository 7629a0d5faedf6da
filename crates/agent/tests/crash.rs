//! A process running a coding network is killed with SIGKILL twice in
//! iteration 3 — once while its model call is in flight, once while its tool
//! call runs — and the run still finishes with the same state, without any
//! completed model call being sent again.
//!
//! The child is this same test binary, re-run with `CRASH_CHILD_DIR` set; the
//! mock model server lives in the parent, so it survives the child's deaths
//! and sees every request any incarnation sends.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use forgeai_agent::{
    CommandOutput, DevOutput, NetworkInput, NetworkResult, ProjectWorkspace, RouteResponse, UnconfiguredImages,
    WorkspaceError, coding_network,
};
use forgeai_engine::{Engine, EngineConfig, Function, NewEvent, RunFilter};
use forgeai_llm::{LlmClient, LlmConfig};
use forgeai_test_support::{MockOpenAi, MockReply};
use futures::StreamExt;
use serde_json::{Value, json};

const CHILD_DIR_VAR: &str = "CRASH_CHILD_DIR";
const MOCK_URL_VAR: &str = "CRASH_MOCK_URL";
const ITERATIONS: usize = 5;
/// Printed by the child when the tool of iteration 3 starts writing.
const TOOL_MARKER: &str = "WRITING src/file-3.ts";

/// The project directory of the child: files on disk survive its deaths, as
/// a sandbox's would. Every write is logged to `effects.log`.
struct DiskWorkspace {
    root: PathBuf,
    effects: PathBuf,
}

impl DiskWorkspace {
    fn append_effect(&self, line: &str) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.effects)?;
        writeln!(file, "{line}")
    }
}

fn failed(error: std::io::Error) -> WorkspaceError {
    WorkspaceError::Failed(error.to_string())
}

#[async_trait]
impl ProjectWorkspace for DiskWorkspace {
    async fn run_command(&self, _command: &str) -> Result<CommandOutput, WorkspaceError> {
        Ok(CommandOutput::default())
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), WorkspaceError> {
        if path == "src/file-3.ts" {
            // The parent may kill us here: inside the tool step, before its effect.
            println!("WRITING {path}");
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let target = self.root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(failed)?;
        }
        std::fs::write(&target, content).map_err(failed)?;
        self.append_effect(&format!("write {path}")).map_err(failed)
    }

    async fn read_file(&self, path: &str) -> Result<String, WorkspaceError> {
        std::fs::read_to_string(self.root.join(path)).map_err(|_| WorkspaceError::NotFound { path: path.to_owned() })
    }

    async fn fetch_route(&self, route: &str) -> Result<RouteResponse, WorkspaceError> {
        self.append_effect(&format!("fetch {route}")).map_err(failed)?;
        Ok(RouteResponse {
            status: Some(200),
            body: "<h1>ok</h1>".into(),
            failure: None,
        })
    }

    async fn dev_server_output(&self, _from: u64) -> Result<Option<DevOutput>, WorkspaceError> {
        Ok(None)
    }
}

/// Runs in the child process only; returns at once in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR).map(PathBuf::from) else {
        return;
    };
    let mock_url = std::env::var(MOCK_URL_VAR).expect("mock URL");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let mut config = LlmConfig::new(mock_url, None).with_base_delay(Duration::from_millis(5));
        config.coder_model = common::CODER_MODEL.into();
        let llm = LlmClient::new(config).expect("client");
        let workspace = Arc::new(DiskWorkspace {
            root: dir.join("project"),
            effects: dir.join("effects.log"),
        });
        let network = Arc::new(coding_network(llm, workspace, Arc::new(UnconfiguredImages), "crash"));
        let function = Function::new("crash-network", "crash/network.run", move |ctx, _event| {
            let network = network.clone();
            async move { network.run(&ctx, NetworkInput::new("Write five files")).await }
        });
        let engine = Engine::builder(EngineConfig::new(dir.join("engine")))
            .function(function)
            .start()
            .await
            .expect("engine starts");
        // Every incarnation sends the event again; its id makes repeats harmless.
        engine
            .send(NewEvent::new("crash/network.run", json!({})).with_id("the-run"))
            .await
            .expect("event accepted");
        loop {
            let runs = engine.runs(&RunFilter::default()).await.expect("journal readable");
            if let Some(run) = runs.first().filter(|run| run.status.is_finished()) {
                println!(
                    "RESULT {}",
                    json!({"status": run.status, "error": run.error, "output": run.output})
                );
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// The iteration a request belongs to: one more than the assistant turns in it.
fn iteration_of(request: &Value) -> usize {
    let messages = request["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
    1 + messages.iter().filter(|message| message["role"] == "assistant").count()
}

/// Iterations 1–4 each write one file; iteration 5 finishes. The first model
/// request of iteration 3 is never answered in time: the child dies waiting.
async fn start_mock() -> MockOpenAi {
    let third_seen = AtomicUsize::new(0);
    MockOpenAi::with_responder(move |request| {
        let iteration = iteration_of(request);
        if iteration == ITERATIONS {
            return MockReply::text("<task_summary>Wrote four files.</task_summary>").usage(10, 1);
        }
        let reply = MockReply::tool_call(
            format!("call-{iteration}"),
            "createOrUpdateFiles",
            json!({"files": [{"path": format!("src/file-{iteration}.ts"), "content": format!("export const n = {iteration};")}]}),
        )
        .usage(10, 1);
        if iteration == 3 && third_seen.fetch_add(1, Ordering::SeqCst) == 0 {
            return reply.delay(Duration::from_secs(60));
        }
        reply
    })
    .await
}

struct ChildProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn_child(dir: &Path, mock_url: &str) -> ChildProcess {
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .env(MOCK_URL_VAR, mock_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    // A thread reads the child's output so the async test can poll it without
    // blocking the runtime the mock server runs on.
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    ChildProcess { child, lines }
}

impl ChildProcess {
    /// Waits until `ready` says so (given the next output line, if any), then
    /// kills the child with SIGKILL.
    async fn kill_when(mut self, what: &str, mut ready: impl FnMut(Option<&str>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let line = self.lines.try_recv().ok();
            if ready(line.as_deref()) {
                break;
            }
            seen.extend(line.clone());
            if let Ok(Some(status)) = self.child.try_wait() {
                seen.extend(self.lines.try_iter());
                panic!("the child exited ({status}) before {what}; it printed {seen:#?}");
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            if line.is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.child.kill().expect("SIGKILL delivered");
        self.child.wait().expect("child reaped");
    }

    /// Waits for the child to print its result and exit.
    async fn result(mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(line) = self.lines.try_recv() {
                if let Some((_, result)) = line.split_once("RESULT ") {
                    let status = self.child.wait().expect("child reaped");
                    assert!(status.success(), "child exited with {status}");
                    return serde_json::from_str(result).expect("result JSON");
                }
                continue;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Drain what it printed before exiting.
                if let Some(line) = self.lines.try_iter().find(|line| line.contains("RESULT ")) {
                    let (_, result) = line.split_once("RESULT ").unwrap_or_default();
                    return serde_json::from_str(result).expect("result JSON");
                }
                panic!("the child exited ({status}) without a result");
            }
            assert!(Instant::now() < deadline, "timed out waiting for the result");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_killed_in_iteration_three_resumes_without_repeating_model_calls() {
    if std::env::var_os(CHILD_DIR_VAR).is_some() {
        return;
    }
    let dir = tempfile::TempDir::new().expect("temp dir");
    let mock = start_mock().await;

    // 1: killed while the model call of iteration 3 is in flight.
    spawn_child(dir.path(), &mock.base_url())
        .kill_when("the third model request", |_| mock.request_count() >= 3)
        .await;
    assert_eq!(mock.request_count(), 3);

    // 2: killed while the tool of iteration 3 runs (its model call is journaled).
    spawn_child(dir.path(), &mock.base_url())
        .kill_when("the tool of iteration 3", |line| {
            // The test harness prints `test crash_child ... ` without a line
            // break, so the marker may share its line.
            line.is_some_and(|line| line.ends_with(TOOL_MARKER))
        })
        .await;

    // 3: runs to the end.
    let outcome = spawn_child(dir.path(), &mock.base_url()).result().await;
    assert_eq!(outcome["status"], "completed", "{outcome}");
    let result: NetworkResult = serde_json::from_value(outcome["output"].clone()).expect("a NetworkResult");

    // Each model call was answered exactly once; only the one that never got
    // its answer (iteration 3, first incarnation) was sent twice.
    let mut per_iteration = BTreeMap::new();
    for request in mock.requests() {
        *per_iteration.entry(iteration_of(&request)).or_insert(0) += 1;
    }
    assert_eq!(per_iteration, BTreeMap::from([(1, 1), (2, 1), (3, 2), (4, 1), (5, 1)]));

    // The state was rebuilt from the journal: every file, and the summary.
    assert!(result.completed);
    assert_eq!(result.iterations, 5);
    assert_eq!(result.state.summary, "Wrote four files.");
    let expected: BTreeMap<String, String> = (1..=4)
        .map(|n| (format!("src/file-{n}.ts"), format!("export const n = {n};")))
        .collect();
    assert_eq!(result.state.files, expected);
    // Replayed calls count too: they were paid for.
    assert_eq!(result.usage.total_tokens, 55);

    // Every tool effect happened once (the killed write never happened), and so did the app
    // check after the summary.
    let effects = std::fs::read_to_string(dir.path().join("effects.log")).expect("effects log");
    let effects: Vec<&str> = effects.lines().collect();
    assert_eq!(
        effects,
        [
            "write src/file-1.ts",
            "write src/file-2.ts",
            "write src/file-3.ts",
            "write src/file-4.ts",
            "fetch /"
        ]
    );
    assert_eq!(result.checks, 1);
    assert_eq!(result.problems, None);

    // Statuses and activity events were published once per tool call and check, replays
    // included.
    let engine = Engine::builder(EngineConfig::new(dir.path().join("engine")))
        .start()
        .await
        .expect("engine opens");
    let mut stream = engine.subscribe("Project:crash", Some(0));
    let (mut statuses, mut activity) = (Vec::new(), Vec::new());
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        match message.topic.as_str() {
            "agentActivity" => activity.push(message.data),
            _ => statuses.push(message.data),
        }
    }
    let mut expected = vec![json!("Generating project files..."); 4];
    expected.push(json!("Checking the app..."));
    assert_eq!(statuses, expected);
    let lines: Vec<String> = activity
        .iter()
        .map(|event| match event["type"].as_str() {
            Some("toolCall") => event["summary"].as_str().unwrap_or_default().to_owned(),
            other => other.unwrap_or_default().to_owned(),
        })
        .collect();
    assert_eq!(
        lines,
        [
            "Wrote src/file-1.ts",
            "Wrote src/file-2.ts",
            "Wrote src/file-3.ts",
            "Wrote src/file-4.ts",
            "modelText",
            "appChecked"
        ]
    );
}
