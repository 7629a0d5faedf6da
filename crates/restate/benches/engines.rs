//! The embedded engine and Restate side by side, running the same kind of function through the
//! same `DurableContext` seam the code-agent uses.
//!
//! `cargo bench -p forgeai-restate` starts a throwaway restate-server (installed by
//! `scripts/setup.sh`) and prints, per engine:
//! - the overhead of one agent iteration (two journaled steps: a model call and a tool call,
//!   both no-ops here), p50/p99 over 500 iterations of one run;
//! - runs per second for 1000 runs of 8 no-op steps over 100 keys (projects), one after another
//!   (each started once the previous one finished) and in 10 waves of 100 concurrent runs (a
//!   wave starts once the previous one finished);
//! - the peak RSS of this process at the end (the forgeai side; restate-server is another
//!   process).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use forgeai_engine::{
    DurableContext, DurableContextExt, Engine, EngineConfig, Function, NewEvent, RunStatus, StepError,
};
use forgeai_restate::RestateContext;
use forgeai_test_support::TestRestate;
use futures::future::join_all;
use restate_sdk::prelude::*;
use serde_json::{Value, json};

const ITERATIONS: usize = 500;
const RUNS: usize = 1000;
const KEYS: usize = 100;
const STEPS_PER_RUN: usize = 8;

/// The function both engines run: `iterations` agent iterations of two no-op steps, or `steps`
/// no-op steps, whichever the input asks for.
async fn work(ctx: &dyn DurableContext, input: &Value) -> Result<Vec<f64>, StepError> {
    let mut iteration_ms = Vec::new();
    for iteration in 0..input["iterations"].as_u64().unwrap_or(0) {
        let started = Instant::now();
        ctx.step(&format!("iter-{iteration}/model"), || async { Ok::<_, StepError>(1) })
            .await?;
        ctx.step(&format!("iter-{iteration}/tool"), || async { Ok::<_, StepError>(2) })
            .await?;
        iteration_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    for step in 0..input["steps"].as_u64().unwrap_or(0) {
        ctx.step(&format!("step-{step}"), || async { Ok::<_, StepError>(step) })
            .await?;
    }
    Ok(iteration_ms)
}

struct Bench;

#[restate_sdk::object(name = "Bench")]
impl Bench {
    #[handler]
    async fn run(&self, ctx: ObjectContext<'_>, Json(input): Json<Value>) -> Result<Json<Vec<f64>>, HandlerError> {
        let feed: Arc<dyn forgeai_engine::RealtimeFeed> = Arc::new(NoFeed);
        let durable = RestateContext::new(ctx, feed);
        work(&durable, &input)
            .await
            .map(Json)
            .map_err(|error| TerminalError::new(error.message()).into())
    }
}

/// The bench publishes nothing.
struct NoFeed;

#[async_trait::async_trait]
impl forgeai_engine::RealtimeFeed for NoFeed {
    async fn publish(
        &self,
        _channel: &str,
        _topic: &str,
        _data: &Value,
    ) -> Result<forgeai_engine::RealtimeMessage, forgeai_engine::FeedError> {
        unreachable!("the bench publishes nothing")
    }

    fn subscribe(
        &self,
        _channel: &str,
        _after_id: Option<i64>,
    ) -> futures::stream::BoxStream<'static, Result<forgeai_engine::RealtimeMessage, forgeai_engine::FeedError>> {
        Box::pin(futures::stream::empty())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut iteration_ms: Vec<f64>) -> String {
    iteration_ms.sort_by(f64::total_cmp);
    format!(
        "{:.3} / {:.3} ms",
        percentile(&iteration_ms, 0.5),
        percentile(&iteration_ms, 0.99)
    )
}

/// The embedded engine: results of runs, waited for through its journal.
struct Embedded {
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Embedded {
    async fn start() -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let function = Function::new("bench", "bench/run", |ctx, event| async move {
            work(&ctx, &event.data).await
        })
        .concurrency_key("key");
        let engine = Engine::builder(EngineConfig::new(dir.path().join("engine")))
            .function(function)
            .start()
            .await
            .unwrap();
        Embedded { engine, _dir: dir }
    }

    async fn run(&self, key: usize, input: Value) -> Value {
        let mut data = input;
        data["key"] = json!(format!("k{key}"));
        let sent = self.engine.send(NewEvent::new("bench/run", data)).await.unwrap();
        let run_id = sent.run_ids[0].clone();
        loop {
            let detail = self.engine.run(&run_id).await.unwrap().unwrap();
            if detail.run.status.is_finished() {
                assert_eq!(detail.run.status, RunStatus::Completed, "{:?}", detail.run.error);
                return detail.run.output.unwrap_or(Value::Null);
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

/// Restate: runs called through the ingress, which answers when the run is done.
struct Restated {
    http: reqwest::Client,
    ingress: String,
}

impl Restated {
    async fn run(&self, key: usize, input: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/Bench/k{key}/run", self.ingress))
            .json(&input)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Runs the workloads on one engine (`run` starts a run on a key and waits for its output) and
/// prints its line.
async fn measure<F, Fut>(engine: &str, run: F)
where
    F: Fn(usize, Value) -> Fut,
    Fut: Future<Output = Value>,
{
    let one = run(0, json!({ "iterations": ITERATIONS })).await;
    let iterations: Vec<f64> = serde_json::from_value(one).unwrap();
    let started = Instant::now();
    for n in 0..RUNS {
        run(n % KEYS, json!({ "steps": STEPS_PER_RUN })).await;
    }
    let sequential = RUNS as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for wave in 0..RUNS / KEYS {
        join_all((0..KEYS).map(|key| run(wave * KEYS + key, json!({ "steps": STEPS_PER_RUN })))).await;
    }
    let waves = RUNS as f64 / started.elapsed().as_secs_f64();
    println!(
        "{engine:<10} {:>26} {sequential:>12.0} {waves:>12.0}",
        summary(iterations)
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "{:<10} {:>26} {:>12} {:>12}",
            "engine", "iteration p50 / p99", "seq runs/s", "waves runs/s"
        );

        let embedded = Embedded::start().await;
        measure("embedded", |key, input| embedded.run(key, input)).await;
        let embedded_rss = peak_rss_mib();

        let restate = TestRestate::start().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        drop(listener);
        tokio::spawn(HttpServer::new(Endpoint::builder().bind(Bench).build()).listen_and_serve(address));
        let config = forgeai_restate::RestateConfig {
            ingress_url: restate.ingress_url(),
            admin_url: restate.admin_url(),
        };
        while forgeai_restate::register_deployment(&config, &format!("http://{address}"))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let restated = Restated {
            http: reqwest::Client::new(),
            ingress: restate.ingress_url(),
        };
        measure("restate", |key, input| restated.run(key, input)).await;
        println!(
            "peak RSS of this process: {embedded_rss:.0} MiB after the embedded runs, {:.0} MiB at the end",
            peak_rss_mib()
        );
    });
}
