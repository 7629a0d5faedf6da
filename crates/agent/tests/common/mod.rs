//! Shared helpers: an in-memory workspace, a recording image provider, and a
//! real engine that runs a network as a function.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use forgeai_agent::{
    CommandOutput, DevOutput, ImageAttribution, ImageError, ImageProvider, Network, NetworkInput, NetworkResult,
    ProjectWorkspace, RouteResponse, SavedImage, UnsplashImageArgs, WorkspaceError,
};
use forgeai_engine::{Engine, EngineConfig, Function, NewEvent, RealtimeMessage, RetryPolicy, RunDetail};
use forgeai_llm::{LlmClient, LlmConfig};
use forgeai_test_support::MockOpenAi;
use futures::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const CODER_MODEL: &str = "mock-coder";
pub const VISION_MODEL: &str = "mock-vision";
pub const NAMER_MODEL: &str = "mock-namer";

/// A client for the mock with fast retries and distinguishable model names.
pub fn llm_for(mock: &MockOpenAi) -> LlmClient {
    llm_with(mock, |_| {})
}

pub fn llm_with(mock: &MockOpenAi, adjust: impl FnOnce(&mut LlmConfig)) -> LlmClient {
    let mut config = LlmConfig::new(mock.base_url(), Some("test-key".into())).with_base_delay(Duration::from_millis(5));
    config.coder_model = CODER_MODEL.into();
    config.vision_model = VISION_MODEL.into();
    config.namer_model = NAMER_MODEL.into();
    adjust(&mut config);
    LlmClient::new(config).expect("client builds")
}

type CommandHandler = dyn Fn(&str) -> Result<CommandOutput, WorkspaceError> + Send + Sync;

/// A project held in memory; records commands and writes.
pub struct MemoryWorkspace {
    pub files: Mutex<BTreeMap<String, String>>,
    pub commands: Mutex<Vec<String>>,
    pub writes: Mutex<Vec<String>>,
    command_handler: Box<CommandHandler>,
    /// Failures handed out by `write_file` before it succeeds, in order.
    pub write_failures: Mutex<Vec<WorkspaceError>>,
    /// Routes the app check asked for.
    pub fetched: Mutex<Vec<String>>,
    /// Answers for the app check, in order, each with what the dev server prints while
    /// answering it; a fine page once they are used up.
    pub pages: Mutex<Vec<(RouteResponse, String)>>,
    /// The dev server's output.
    pub dev_log: Mutex<String>,
}

impl MemoryWorkspace {
    pub fn new() -> Arc<Self> {
        Self::with_commands(|command| {
            Ok(CommandOutput {
                stdout: format!("ran: {command}"),
                stderr: String::new(),
                exit_code: 0,
            })
        })
    }

    pub fn with_commands(
        handler: impl Fn(&str) -> Result<CommandOutput, WorkspaceError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            files: Mutex::new(BTreeMap::new()),
            commands: Mutex::new(Vec::new()),
            writes: Mutex::new(Vec::new()),
            command_handler: Box::new(handler),
            write_failures: Mutex::new(Vec::new()),
            fetched: Mutex::new(Vec::new()),
            pages: Mutex::new(Vec::new()),
            dev_log: Mutex::new(String::new()),
        })
    }

    pub fn seed(&self, path: &str, content: &str) {
        self.files.lock().unwrap().insert(path.into(), content.into());
    }

    pub fn files(&self) -> BTreeMap<String, String> {
        self.files.lock().unwrap().clone()
    }
}

#[async_trait]
impl ProjectWorkspace for MemoryWorkspace {
    async fn run_command(&self, command: &str) -> Result<CommandOutput, WorkspaceError> {
        self.commands.lock().unwrap().push(command.to_owned());
        (self.command_handler)(command)
    }

    async fn write_file(&self, path: &str, content: &str) -> Result<(), WorkspaceError> {
        let failure = {
            let mut failures = self.write_failures.lock().unwrap();
            (!failures.is_empty()).then(|| failures.remove(0))
        };
        if let Some(failure) = failure {
            return Err(failure);
        }
        self.writes.lock().unwrap().push(path.to_owned());
        self.files.lock().unwrap().insert(path.to_owned(), content.to_owned());
        Ok(())
    }

    async fn read_file(&self, path: &str) -> Result<String, WorkspaceError> {
        let files = self.files.lock().unwrap();
        if let Some(content) = files.get(path) {
            return Ok(content.clone());
        }
        let prefix = format!("{path}/");
        if files.keys().any(|file| file.starts_with(&prefix)) {
            return Err(WorkspaceError::Failed(format!("`{path}` is a directory")));
        }
        Err(WorkspaceError::NotFound { path: path.to_owned() })
    }

    async fn fetch_route(&self, route: &str) -> Result<RouteResponse, WorkspaceError> {
        self.fetched.lock().unwrap().push(route.to_owned());
        let mut pages = self.pages.lock().unwrap();
        if pages.is_empty() {
            return Ok(RouteResponse {
                status: Some(200),
                body: "<h1>ok</h1>".into(),
                failure: None,
            });
        }
        let (page, printed) = pages.remove(0);
        self.dev_log.lock().unwrap().push_str(&printed);
        Ok(page)
    }

    async fn dev_server_output(&self, from: u64) -> Result<Option<DevOutput>, WorkspaceError> {
        let log = self.dev_log.lock().unwrap();
        let start = (from as usize).min(log.len());
        Ok(Some(DevOutput {
            text: log[start..].to_owned(),
            end: log.len() as u64,
        }))
    }
}

/// Saves nothing, answers with a fixed photo, and remembers the requests.
#[derive(Default)]
pub struct RecordingImages {
    pub requests: Mutex<Vec<UnsplashImageArgs>>,
}

#[async_trait]
impl ImageProvider for RecordingImages {
    async fn save_image(&self, request: &UnsplashImageArgs) -> Result<SavedImage, ImageError> {
        self.requests.lock().unwrap().push(request.clone());
        let name = if request.filename_hint.is_empty() {
            "photo"
        } else {
            &request.filename_hint
        };
        Ok(SavedImage {
            public_path: format!("/assets/unsplash/{name}.jpg"),
            local_file: format!("public/assets/unsplash/{name}.jpg"),
            attribution: ImageAttribution {
                photographer_name: "Jane Doe".into(),
                photographer_username: "janedoe".into(),
                photo_url: "https://unsplash.com/photos/abc".into(),
                attribution_url: "https://unsplash.com/photos/abc?utm_source=forgeai&utm_medium=referral".into(),
            },
        })
    }
}

/// The event every harness function is triggered by.
pub const TRIGGER: &str = "test/network.run";

pub const FAST_RETRY: RetryPolicy = RetryPolicy {
    retries: 3,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(200),
};

/// A real engine (journal in a temp dir) serving one function that runs
/// `network` on `input`.
pub struct Harness {
    pub engine: Engine,
    _dir: TempDir,
}

impl Harness {
    pub async fn start(network: Network, input: NetworkInput) -> Self {
        let network = Arc::new(network);
        let function = Function::new("network-test", TRIGGER, move |ctx, _event| {
            let (network, input) = (network.clone(), input.clone());
            async move { network.run(&ctx, input).await }
        })
        .retry_policy(FAST_RETRY);
        Self::with_function(function).await
    }

    pub async fn with_function(function: Function) -> Self {
        let dir = TempDir::new().expect("temp dir");
        let engine = Engine::builder(EngineConfig::new(dir.path()))
            .function(function)
            .start()
            .await
            .expect("engine starts");
        Self { engine, _dir: dir }
    }

    /// Sends the trigger and waits for the run to end.
    pub async fn run(&self, data: Value) -> RunDetail {
        let outcome = self
            .engine
            .send(NewEvent::new(TRIGGER, data))
            .await
            .expect("event accepted");
        let run_id = outcome.run_ids.first().cloned().expect("one run");
        self.finished(&run_id).await
    }

    pub async fn finished(&self, run_id: &str) -> RunDetail {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let detail = self
                .engine
                .run(run_id)
                .await
                .expect("journal readable")
                .expect("run exists");
            if detail.run.status.is_finished() {
                return detail;
            }
            assert!(Instant::now() < deadline, "run did not finish: {detail:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Everything published on `channel` so far.
    pub async fn published(&self, channel: &str) -> Vec<RealtimeMessage> {
        let mut stream = self.engine.subscribe(channel, Some(0));
        let mut messages = Vec::new();
        while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
            messages.push(message);
        }
        messages
    }
}

/// The network result stored as the run's output.
pub fn network_result(detail: &RunDetail) -> NetworkResult {
    assert_eq!(
        detail.run.status,
        forgeai_engine::RunStatus::Completed,
        "run failed: {:?}",
        detail.run.error
    );
    serde_json::from_value(detail.run.output.clone().unwrap_or(Value::Null)).expect("output is a NetworkResult")
}

/// Ids of the run's steps other than publishes, in order.
pub fn step_ids(detail: &RunDetail) -> Vec<String> {
    detail
        .steps
        .iter()
        .filter(|step| !step.id.starts_with("$publish"))
        .map(|step| step.id.clone())
        .collect()
}

/// The messages of a recorded chat request.
pub fn messages(request: &Value) -> Vec<Value> {
    request["messages"].as_array().cloned().unwrap_or_default()
}

/// The tool messages of a recorded request, as (tool_call_id, content).
pub fn tool_messages(request: &Value) -> Vec<(String, String)> {
    messages(request)
        .into_iter()
        .filter(|message| message["role"] == "tool")
        .map(|message| {
            (
                message["tool_call_id"].as_str().unwrap_or_default().to_owned(),
                message["content"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

pub fn files_args(files: &[(&str, &str)]) -> Value {
    json!({"files": files.iter().map(|(path, content)| json!({"path": path, "content": content})).collect::<Vec<_>>()})
}
