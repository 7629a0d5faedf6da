//! Engine overhead: per-step latency with durable commits, and run throughput.
//!
//! `cargo bench -p forgeai-engine` prints the figures quoted in the README.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forgeai_engine::{Engine, EngineConfig, Function, NewEvent, RunFilter, RunStatus, StepError};
use serde_json::json;

const LATENCY_STEPS: usize = 2000;
const RUNS: usize = 1000;
const KEYS: usize = 100;
const STEPS_PER_RUN: usize = 8;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

async fn wait_until_completed(engine: &Engine, expected: usize) {
    loop {
        let runs = engine.runs(&RunFilter::default()).await.expect("journal readable");
        let completed = runs.iter().filter(|run| run.status == RunStatus::Completed).count();
        assert!(runs.iter().all(|run| run.status != RunStatus::Failed), "a run failed");
        if completed == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn step_latency() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let samples = Arc::new(Mutex::new(Vec::with_capacity(LATENCY_STEPS)));
    let samples_in = samples.clone();
    let function = Function::new("latency", "bench/latency", move |ctx, _| {
        let samples = samples_in.clone();
        async move {
            for _ in 0..LATENCY_STEPS {
                let started = Instant::now();
                ctx.step("noop", || async { Ok::<_, StepError>(()) }).await?;
                samples.lock().expect("samples").push(started.elapsed());
            }
            Ok(())
        }
    });
    let engine = Engine::builder(EngineConfig::new(dir.path()))
        .function(function)
        .start()
        .await
        .expect("engine");
    engine
        .send(NewEvent::new("bench/latency", json!({})))
        .await
        .expect("send");
    wait_until_completed(&engine, 1).await;
    let mut samples = samples.lock().expect("samples").clone();
    samples.sort_unstable();
    println!(
        "step overhead ({LATENCY_STEPS} no-op steps, each committed to the SQLite journal): p50 {:?}, p99 {:?}, max {:?}",
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
    );
}

async fn run_throughput() {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let function = Function::new("eight-steps", "bench/run", |ctx, _| async move {
        for _ in 0..STEPS_PER_RUN {
            ctx.step("noop", || async { Ok::<_, StepError>(()) }).await?;
        }
        Ok(())
    })
    .concurrency_key("key");
    let engine = Engine::builder(EngineConfig::new(dir.path()))
        .function(function)
        .start()
        .await
        .expect("engine");
    let started = Instant::now();
    for n in 0..RUNS {
        engine
            .send(NewEvent::new("bench/run", json!({"key": format!("k{}", n % KEYS)})))
            .await
            .expect("send");
    }
    wait_until_completed(&engine, RUNS).await;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "throughput ({RUNS} runs of {STEPS_PER_RUN} no-op steps on {KEYS} keys): {elapsed:.2} s, {:.0} runs/s, {:.0} steps/s",
        RUNS as f64 / elapsed,
        (RUNS * STEPS_PER_RUN) as f64 / elapsed,
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        step_latency().await;
        run_throughput().await;
    });
}
