//! The code-agent on a real restate-server: a prompt sent through the ingress runs as the
//! project's virtual object, every step journaled by Restate, and ends with one RESULT; the
//! same prompt sent again (same idempotency key) starts no second run; a restate-server killed
//! with SIGKILL during the run finishes it after its restart without repeating a completed
//! model call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use forgeai_code_agent::{
    CodeAgent, CodeAgentConfig, CodeAgentRequest, CodeAgentRuns, PromptTarget, RunStarter, SubmitError, Submitted,
    Unsplash, submit_prompt,
};
use forgeai_engine::{Engine, EngineConfig, RealtimeFeed, RunStatus};
use forgeai_llm::{LlmClient, LlmConfig};
use forgeai_restate::{CodeAgentObject, RestateConfig, RestateRuns, register_deployment, serve};
use forgeai_sandbox::{LocalConfig, LocalProvider, Templates};
use forgeai_store::{MessageRole, MessageType, Store};
use forgeai_test_support::{MockOpenAi, MockReply, TestRestate};
use serde_json::{Value, json};

const PAGE: &str = "<h1>Hello from Restate</h1>";

fn is_naming(body: &Value) -> bool {
    body["messages"][0]["content"]
        .as_str()
        .is_some_and(|prompt| prompt.starts_with("You name web app projects"))
}

/// The coding iteration of a request: 1 + the assistant turns since the prompt.
fn iteration(body: &Value) -> usize {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let input = messages.iter().rposition(|m| m["role"] == "user").unwrap_or(0);
    1 + messages[input..].iter().filter(|m| m["role"] == "assistant").count()
}

struct Setup {
    _dir: tempfile::TempDir,
    restate: TestRestate,
    object: CodeAgentObject,
    address: std::net::SocketAddr,
    endpoint: tokio::task::JoinHandle<()>,
    store: Store,
    engine: Engine,
    user_id: String,
    runs: RestateRuns,
    sandboxes: Arc<LocalProvider>,
}

async fn setup(model: &MockOpenAi) -> Setup {
    let restate = TestRestate::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_default(dir.path()).await.unwrap();
    let (user, _) = store.create_user("alice").await.unwrap();
    let engine = Engine::builder(EngineConfig::new(dir.path().join("engine")))
        .start()
        .await
        .unwrap();
    Templates::ensure_static(dir.path()).unwrap();
    let sandboxes = Arc::new(
        LocalProvider::new(LocalConfig::new(dir.path()))
            .await
            .expect("sandboxes (run as root)"),
    );
    let llm = LlmClient::new(LlmConfig::new(model.base_url(), None).with_max_retries(0)).unwrap();
    let mut config = CodeAgentConfig::new(dir.path());
    config.template = "static".into();
    let agent = CodeAgent::new(
        store.clone(),
        sandboxes.clone(),
        llm,
        Unsplash::new("http://127.0.0.1:9", None),
        config,
    );
    let realtime: Arc<dyn RealtimeFeed> = Arc::new(engine.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let object = CodeAgentObject::new(agent, realtime.clone());
    let endpoint = tokio::spawn(serve(object.clone(), address));
    let config = RestateConfig {
        ingress_url: restate.ingress_url(),
        admin_url: restate.admin_url(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = register_deployment(&config, &format!("http://{address}")).await {
        assert!(Instant::now() < deadline, "registration failed: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Setup {
        _dir: dir,
        restate,
        object,
        address,
        endpoint,
        store,
        engine,
        user_id: user.id,
        runs: RestateRuns::new(config, realtime),
        sandboxes,
    }
}

impl Setup {
    /// Submits a prompt of the user, as the HTTP API does.
    async fn submit(&self, target: PromptTarget<'_>, prompt: &str) -> Result<Submitted, SubmitError> {
        submit_prompt(&self.store, &self.runs, &self.user_id, target, prompt, None).await
    }

    /// Stops forgeai's endpoint the way a crash would (its handlers vanish mid-step) and starts
    /// a new one on the same address.
    async fn restart_endpoint(&mut self) {
        self.endpoint.abort();
        let _ = (&mut self.endpoint).await;
        self.endpoint = tokio::spawn(serve(self.object.clone(), self.address));
    }
}

async fn replies(setup: &Setup, project_id: &str, within: Duration) -> Vec<forgeai_store::ListedMessage> {
    let deadline = Instant::now() + within;
    loop {
        let messages = setup
            .store
            .list_messages(&setup.user_id, project_id)
            .await
            .unwrap()
            .unwrap();
        let replies: Vec<_> = messages
            .into_iter()
            .filter(|m| m.message.role == MessageRole::Assistant)
            .collect();
        if !replies.is_empty() || Instant::now() > deadline {
            return replies;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A model that writes the page, then answers its second call slowly the first time it is asked.
async fn slow_second_call_model() -> MockOpenAi {
    let slow_once = Arc::new(AtomicBool::new(true));
    MockOpenAi::with_responder(move |body| {
        if is_naming(body) {
            return MockReply::text("\"Restate Page\"");
        }
        match iteration(body) {
            1 => MockReply::tool_call(
                "call-write",
                "createOrUpdateFiles",
                json!({"files": [{"path": "index.html", "content": PAGE}]}),
            ),
            _ if slow_once.swap(false, Ordering::SeqCst) => {
                MockReply::text("<task_summary>Wrote the page.</task_summary>").delay(Duration::from_secs(3))
            }
            _ => MockReply::text("<task_summary>Wrote the page.</task_summary>"),
        }
    })
    .await
}

/// Waits until the run has asked the model its second coding question.
async fn second_call_in_flight(model: &MockOpenAi) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while model.requests().iter().filter(|body| !is_naming(body)).count() < 2 {
        assert!(Instant::now() < deadline, "the run did not reach its second model call");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_runs_once_on_restate_and_survives_a_restate_crash() {
    // The model answers iteration 2 slowly the first time, so restate-server can be killed while
    // the run waits for it; the test counts every model call.
    let model = slow_second_call_model().await;
    let mut setup = setup(&model).await;

    let submitted = setup
        .submit(PromptTarget::NewProject, "Build a hello page")
        .await
        .expect("the prompt is sent through the ingress");
    let project_id = submitted.project.id.clone();
    // A new project's channel, from its beginning.
    let mut statuses = setup
        .engine
        .subscribe(&forgeai_code_agent::project_channel(&project_id), Some(0));
    // The same prompt again (a retried HTTP request): the same invocation, no second run.
    let request = CodeAgentRequest {
        project_id: project_id.clone(),
        message: "Build a hello page".into(),
        image_url: None,
        user_id: setup.user_id.clone(),
        message_id: Some(submitted.message.id.clone()),
    };
    assert!(
        submitted.run_id.starts_with("inv_"),
        "a Restate invocation id: {}",
        submitted.run_id
    );
    assert_eq!(
        setup
            .runs
            .start_run(&request, Some(&submitted.message.id))
            .await
            .unwrap(),
        submitted.run_id
    );

    // Kill restate-server while the second model call is in flight, then bring it back.
    second_call_in_flight(&model).await;
    setup.restate.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    setup.restate.resume().await;

    let replies = replies(&setup, &project_id, Duration::from_secs(90)).await;
    assert_eq!(replies.len(), 1, "exactly one answer: {replies:?}");
    assert_eq!(replies[0].message.kind, MessageType::Result, "{replies:?}");
    assert_eq!(replies[0].message.content, "Wrote the page.");
    let fragment = replies[0].fragment.as_ref().expect("a fragment");
    assert_eq!(fragment.file_sizes.get("index.html"), Some(&(PAGE.len() as u64)));

    // Completed model calls were not repeated: iteration 1 once; iteration 2 at most twice (the
    // call in flight when restate-server died may be made again); naming once.
    let coding: Vec<usize> = model
        .requests()
        .iter()
        .filter(|b| !is_naming(b))
        .map(iteration)
        .collect();
    assert_eq!(coding.iter().filter(|&&i| i == 1).count(), 1, "{coding:?}");
    assert!(coding.iter().filter(|&&i| i == 2).count() <= 2, "{coding:?}");
    assert_eq!(model.requests().iter().filter(|b| is_naming(b)).count(), 1);
    eprintln!(
        "run {} (Restate invocation); coding calls by iteration: {coding:?}",
        submitted.run_id
    );

    // The runs API's view, from Restate's admin API.
    // (The RESULT is stored a moment before the invocation ends.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let runs = loop {
        // Just after its restart, restate-server may still fail a query now and then.
        let runs = setup.runs.project_runs(&project_id).await;
        match runs {
            Ok(runs) if runs.iter().all(|run| run.status.is_finished()) => break runs,
            Err(error) if Instant::now() > deadline => panic!("the runs cannot be listed: {error}"),
            Ok(runs) if Instant::now() > deadline => break runs,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].id, submitted.run_id);
    assert_eq!(runs[0].status, RunStatus::Completed, "{runs:?}");
    assert_eq!(runs[0].concurrency_key.as_deref(), Some(project_id.as_str()));
    let detail = setup
        .runs
        .run_detail(&submitted.run_id)
        .await
        .unwrap()
        .expect("the run is known");
    let steps: Vec<&str> = detail.steps.iter().map(|step| step.name.as_str()).collect();
    for step in [
        "get-or-create-sandbox",
        "code-agent/iter-1/model",
        "code-agent/iter-1/tool-0-createOrUpdateFiles",
        "save-to-db",
    ] {
        assert!(steps.contains(&step), "no step {step} in {steps:?}");
    }
    assert!(setup.runs.run_detail("inv_unknown").await.unwrap().is_none());
    let mut other = submitted.run_id.clone();
    let last = if other.ends_with('A') { 'B' } else { 'A' };
    other.pop();
    other.push(last);
    assert!(
        setup.runs.run_detail(&other).await.unwrap().is_none(),
        "an unknown invocation"
    );

    // The statuses reached the realtime feed, each once, ending with the ready status.
    let mut seen = Vec::new();
    use futures::StreamExt;
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(500), statuses.next()).await {
        if message.topic == forgeai_code_agent::STATUS_TOPIC {
            seen.push(message.data.as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(
        seen,
        [
            "Generating project files...",
            "Checking the app...",
            "Generating sandbox url...",
            "Generating project name...",
            "Saving to db...",
            "Demo is ready"
        ]
    );
    setup.sandboxes.kill_all().await.unwrap();
}

/// forgeai's endpoint dies while the run waits for its second model call; the run resumes on the
/// endpoint started in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_forgeai_endpoint_dies_resumes_on_the_new_one() {
    let model = slow_second_call_model().await;
    let mut setup = setup(&model).await;
    let submitted = setup
        .submit(PromptTarget::NewProject, "Build a hello page")
        .await
        .unwrap();
    second_call_in_flight(&model).await;
    setup.restart_endpoint().await;

    let replies = replies(&setup, &submitted.project.id, Duration::from_secs(90)).await;
    assert_eq!(replies.len(), 1, "exactly one answer: {replies:?}");
    assert_eq!(replies[0].message.kind, MessageType::Result, "{replies:?}");
    let coding: Vec<usize> = model
        .requests()
        .iter()
        .filter(|b| !is_naming(b))
        .map(iteration)
        .collect();
    assert_eq!(
        coding.iter().filter(|&&i| i == 1).count(),
        1,
        "the completed call is not repeated: {coding:?}"
    );
    setup.sandboxes.kill_all().await.unwrap();
}

/// A model that refuses the first prompt for good: the run stores an ERROR and publishes the
/// failure status, and the project's next prompt runs normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_stores_an_error_and_the_next_prompt_runs() {
    let model = MockOpenAi::with_responder(|body| {
        if is_naming(body) {
            return MockReply::text("\"Restate Page\"");
        }
        let prompt = body["messages"]
            .as_array()
            .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
        if prompt.contains("first") {
            return MockReply::error(400, "this model does not exist");
        }
        match iteration(body) {
            1 => MockReply::tool_call(
                "call-write",
                "createOrUpdateFiles",
                json!({"files": [{"path": "index.html", "content": PAGE}]}),
            ),
            _ => MockReply::text("<task_summary>Wrote the page.</task_summary>"),
        }
    })
    .await;
    let setup = setup(&model).await;
    let first = setup
        .submit(PromptTarget::NewProject, "The first prompt")
        .await
        .unwrap();
    let project_id = first.project.id.clone();
    let mut statuses = setup
        .engine
        .subscribe(&forgeai_code_agent::project_channel(&project_id), Some(0));
    let second = setup
        .submit(PromptTarget::Project(&project_id), "The second prompt")
        .await
        .unwrap();
    assert_ne!(first.run_id, second.run_id);

    let deadline = Instant::now() + Duration::from_secs(90);
    let messages = loop {
        let messages = setup
            .store
            .list_messages(&setup.user_id, &project_id)
            .await
            .unwrap()
            .unwrap();
        if messages
            .iter()
            .filter(|m| m.message.role == MessageRole::Assistant)
            .count()
            == 2
            || Instant::now() > deadline
        {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let kinds: Vec<(MessageRole, MessageType)> = messages.iter().map(|m| (m.message.role, m.message.kind)).collect();
    assert_eq!(
        kinds,
        [
            (MessageRole::User, MessageType::Result),
            (MessageRole::User, MessageType::Result),
            (MessageRole::Assistant, MessageType::Error),
            (MessageRole::Assistant, MessageType::Result),
        ],
        "the first run fails, then the second one answers: {messages:?}"
    );
    use futures::StreamExt;
    let mut seen = Vec::new();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_millis(500), statuses.next()).await {
        if message.topic == forgeai_code_agent::STATUS_TOPIC {
            seen.push(message.data.as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some(forgeai_code_agent::FAILED_STATUS),
        "{seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some(forgeai_code_agent::READY_STATUS),
        "{seen:?}"
    );
    setup.sandboxes.kill_all().await.unwrap();
}
