//! The engine's share of a code-agent run, and how many projects run at once.
//!
//! `cargo bench -p forgeai-code-agent` (as root: it makes real sandboxes from the `static`
//! template) prints the figures quoted in the README.

use std::sync::Arc;
use std::time::{Duration, Instant};

use forgeai_code_agent::{CODE_AGENT_EVENT, CodeAgent, CodeAgentConfig, CodeAgentRequest, Unsplash};
use forgeai_engine::{Engine, EngineConfig, NewEvent, RunStatus};
use forgeai_llm::{ChatRequest, LlmClient, LlmConfig, Message};
use forgeai_sandbox::{CreateOptions, LocalConfig, LocalProvider, SandboxProvider};
use forgeai_store::Store;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

const ITERATIONS: usize = 20;
const CONCURRENT_RUNS: usize = 200;
const SLOW_MODEL: Duration = Duration::from_secs(1);

fn is_naming(body: &Value) -> bool {
    body["messages"][0]["content"]
        .as_str()
        .is_some_and(|prompt| prompt.starts_with("You name web app projects"))
}

fn assistant_turns(body: &Value) -> usize {
    body["messages"].as_array().map_or(0, |messages| {
        messages.iter().filter(|m| m["role"] == "assistant").count()
    })
}

/// Writes a small file in every iteration but the last, which ends the task.
fn model_reply(body: &Value, iterations: usize) -> MockReply {
    if is_naming(body) {
        return MockReply::text("Bench Page");
    }
    let turn = assistant_turns(body);
    if turn + 1 < iterations {
        MockReply::tool_call(
            format!("call-{turn}"),
            "createOrUpdateFiles",
            json!({"files": [{"path": format!("page-{turn}.html"), "content": "<p>bench</p>"}]}),
        )
    } else {
        MockReply::text("<task_summary>Done.</task_summary>")
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Store,
    engine: Engine,
    sandboxes: Arc<LocalProvider>,
    llm: LlmClient,
    user_id: String,
}

async fn setup(model: &MockOpenAi) -> Setup {
    let dir = tempfile::TempDir::new().expect("temp dir");
    forgeai_sandbox::build_template("static", dir.path())
        .await
        .expect("static template");
    let store = Store::open_default(dir.path()).await.expect("store");
    let sandboxes = Arc::new(
        LocalProvider::new(LocalConfig::new(dir.path()))
            .await
            .expect("sandbox provider (run as root)"),
    );
    let llm = LlmClient::new(LlmConfig::new(model.base_url(), None).with_max_retries(0)).expect("llm client");
    let mut config = CodeAgentConfig::new(dir.path());
    config.template = "static".into();
    let agent = CodeAgent::new(
        store.clone(),
        sandboxes.clone(),
        llm.clone(),
        Unsplash::new("http://127.0.0.1:9", None),
        config,
    );
    let engine = Engine::builder(EngineConfig::new(dir.path().join("engine")))
        .function(agent.function())
        .start()
        .await
        .expect("engine");
    let (user, _) = store.create_user("bench").await.expect("user");
    Setup {
        _dir: dir,
        store,
        engine,
        sandboxes,
        llm,
        user_id: user.id,
    }
}

async fn start_run(setup: &Setup, prompt: &str) -> String {
    let (project, message) = setup
        .store
        .create_project(&setup.user_id, prompt, None)
        .await
        .expect("project");
    let request = CodeAgentRequest {
        project_id: project.id,
        message: prompt.into(),
        image_url: None,
        user_id: setup.user_id.clone(),
        message_id: Some(message.id),
    };
    let sent = setup
        .engine
        .send(NewEvent::new(
            CODE_AGENT_EVENT,
            serde_json::to_value(request).expect("json"),
        ))
        .await
        .expect("send");
    sent.run_ids[0].clone()
}

async fn wait_all(setup: &Setup, run_ids: &[String]) {
    for run_id in run_ids {
        loop {
            let detail = setup.engine.run(run_id).await.expect("journal").expect("run");
            if detail.run.status.is_finished() {
                assert_eq!(detail.run.status, RunStatus::Completed, "{:?}", detail.run.error);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn engine_share_per_iteration() {
    let model = MockOpenAi::with_responder(|body| model_reply(body, ITERATIONS)).await;
    let setup = setup(&model).await;
    let run_id = start_run(&setup, "bench").await;
    wait_all(&setup, std::slice::from_ref(&run_id)).await;
    let steps = setup.engine.run(&run_id).await.expect("journal").expect("run").steps;
    let network: Vec<_> = steps
        .iter()
        .filter(|step| step.name.starts_with("code-agent/"))
        .collect();
    let span_ms = network.iter().filter_map(|step| step.ended_at).max().unwrap_or(0)
        - network.iter().map(|step| step.started_at).min().unwrap_or(0);
    let per_iteration = Duration::from_micros((span_ms as u64 * 1000) / ITERATIONS as u64);

    // The same model call and the same tool work, without the engine around them.
    let calls = 100;
    let request = ChatRequest::new("bench", vec![Message::system("x"), Message::user("bench")]);
    let started = Instant::now();
    for _ in 0..calls {
        setup.llm.chat(&request).await.expect("model call");
    }
    let model_call = started.elapsed() / calls;
    let sandbox = setup
        .sandboxes
        .create("static", CreateOptions::default())
        .await
        .expect("sandbox");
    let started = Instant::now();
    for n in 0..calls {
        setup
            .sandboxes
            .write_file(&sandbox.id, &format!("page-{n}.html"), b"<p>bench</p>")
            .await
            .expect("write");
    }
    let tool_call = started.elapsed() / calls;
    let engine = per_iteration.saturating_sub(model_call + tool_call);
    println!(
        "agent iteration ({ITERATIONS} iterations, instant model, static template): {per_iteration:?} per iteration = \
         model call {model_call:?} + tool {tool_call:?} + engine and agent {engine:?} (target < 2 ms)"
    );
    setup.sandboxes.kill_all().await.expect("cleanup");
    setup.sandboxes.shutdown().await;
}

async fn concurrent_projects() {
    let model = MockOpenAi::with_responder(|body| model_reply(body, 2).delay(SLOW_MODEL)).await;
    let setup = setup(&model).await;
    let started = Instant::now();
    let one = start_run(&setup, "alone").await;
    wait_all(&setup, &[one]).await;
    let alone = started.elapsed();

    // The sandboxes alone, for comparison: what starting 200 of them at once costs.
    let started = Instant::now();
    let created = futures::future::join_all(
        (0..CONCURRENT_RUNS).map(|_| setup.sandboxes.create("static", CreateOptions::default())),
    )
    .await;
    let sandboxes_alone = started.elapsed();
    for sandbox in created {
        setup.sandboxes.kill(&sandbox.expect("sandbox").id).await.expect("kill");
    }
    println!("{CONCURRENT_RUNS} sandboxes created at once, without runs: {sandboxes_alone:.2?}");

    let started = Instant::now();
    let mut run_ids = Vec::with_capacity(CONCURRENT_RUNS);
    for n in 0..CONCURRENT_RUNS {
        run_ids.push(start_run(&setup, &format!("project {n}")).await);
    }
    wait_all(&setup, &run_ids).await;
    let together = started.elapsed();
    let mut sandbox_ms = Vec::with_capacity(run_ids.len());
    for run_id in &run_ids {
        let steps = setup.engine.run(run_id).await.expect("journal").expect("run").steps;
        if let Some(step) = steps.iter().find(|step| step.name == "get-or-create-sandbox") {
            sandbox_ms.push(step.ended_at.unwrap_or(step.started_at) - step.started_at);
        }
    }
    sandbox_ms.sort_unstable();
    println!(
        "  sandbox creation inside those runs: p50 {} ms, max {} ms",
        sandbox_ms[sandbox_ms.len() / 2],
        sandbox_ms[sandbox_ms.len() - 1]
    );
    println!(
        "{CONCURRENT_RUNS} projects at once (model answers after {SLOW_MODEL:?}): {together:.2?} vs {alone:.2?} for one \
         run = {:.2}x (target <= 2x)",
        together.as_secs_f64() / alone.as_secs_f64()
    );
    setup.sandboxes.kill_all().await.expect("cleanup");
    setup.sandboxes.shutdown().await;
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        engine_share_per_iteration().await;
        concurrent_projects().await;
    });
}
