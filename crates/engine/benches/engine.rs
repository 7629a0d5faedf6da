//! Engine overhead: per-step latency and run throughput, for each way of committing the
//! journal, side by side.
//!
//! `cargo bench -p forgeai-engine` prints one line per mode:
//! - NORMAL: `synchronous=NORMAL` ([`Durability::ProcessCrash`]), safe against a killed
//!   process only; FULL: fsync at every commit ([`Durability::Fsync`], the default), safe
//!   against a power cut;
//! - a commit per write (`group_commit_max = 1`, what the engine did before group commit) or
//!   group commit (the default: the writes that queue up during a commit share the next one).
//!
//! Columns: p50/p99 of the engine's overhead per no-op step (one run, steps one after
//! another); runs per second for 1000 runs of 8 no-op steps over 100 concurrency keys, sent
//! one after another (`sequential`) and in 10 waves of 100 concurrent sends (`waves`, each
//! wave sent once the previous one's sends returned); and the average number of writes per
//! commit during the waves.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forgeai_engine::{Durability, Engine, EngineConfig, Function, NewEvent, RunFilter, RunStatus, StepError};
use futures::future::join_all;
use serde_json::json;

const LATENCY_STEPS: usize = 2000;
const RUNS: usize = 1000;
const KEYS: usize = 100;
const STEPS_PER_RUN: usize = 8;

#[derive(Clone, Copy)]
struct Mode {
    name: &'static str,
    durability: Durability,
    group_commit_max: usize,
}

const MODES: [Mode; 4] = [
    Mode {
        name: "NORMAL, a commit per write",
        durability: Durability::ProcessCrash,
        group_commit_max: 1,
    },
    Mode {
        name: "NORMAL, group commit",
        durability: Durability::ProcessCrash,
        group_commit_max: 1024,
    },
    Mode {
        name: "FULL (fsync), a commit per write",
        durability: Durability::Fsync,
        group_commit_max: 1,
    },
    Mode {
        name: "FULL (fsync), group commit",
        durability: Durability::Fsync,
        group_commit_max: 1024,
    },
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sending {
    Sequential,
    Waves,
}

fn config(mode: Mode, dir: &tempfile::TempDir) -> EngineConfig {
    let mut config = EngineConfig::new(dir.path());
    config.durability = mode.durability;
    config.group_commit_max = mode.group_commit_max;
    config
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn wait_until_completed(engine: &Engine, expected: usize) {
    loop {
        let runs = engine.runs(&RunFilter::default()).await.expect("journal readable");
        let completed = runs.iter().filter(|run| run.status == RunStatus::Completed).count();
        assert!(runs.iter().all(|run| run.status != RunStatus::Failed), "a run failed");
        if completed == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// p50 and p99 of a no-op step, as seen by the function (from calling `step` to its return,
/// which includes the journal commit).
async fn step_latency(mode: Mode) -> (Duration, Duration) {
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
    let engine = Engine::builder(config(mode, &dir))
        .function(function)
        .start()
        .await
        .expect("engine");
    engine
        .send(NewEvent::new("bench/latency", json!({})))
        .await
        .expect("send");
    wait_until_completed(&engine, 1).await;
    engine.shutdown(Duration::from_secs(5)).await;
    let mut samples = samples.lock().expect("samples").clone();
    samples.sort_unstable();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

/// Runs per second, and writes per commit over the whole workload.
async fn run_throughput(mode: Mode, sending: Sending) -> (f64, f64) {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let function = Function::new("eight-steps", "bench/run", |ctx, _| async move {
        for _ in 0..STEPS_PER_RUN {
            ctx.step("noop", || async { Ok::<_, StepError>(()) }).await?;
        }
        Ok(())
    })
    .concurrency_key("key");
    let engine = Engine::builder(config(mode, &dir))
        .function(function)
        .start()
        .await
        .expect("engine");
    let event = |n: usize| NewEvent::new("bench/run", json!({"key": format!("k{}", n % KEYS)}));
    let before = engine.journal_stats();
    let started = Instant::now();
    match sending {
        Sending::Sequential => {
            for n in 0..RUNS {
                engine.send(event(n)).await.expect("send");
            }
        }
        Sending::Waves => {
            for wave in 0..RUNS / KEYS {
                let sends = (0..KEYS).map(|key| engine.send(event(wave * KEYS + key)));
                for sent in join_all(sends).await {
                    sent.expect("send");
                }
            }
        }
    }
    wait_until_completed(&engine, RUNS).await;
    let elapsed = started.elapsed().as_secs_f64();
    let after = engine.journal_stats();
    engine.shutdown(Duration::from_secs(5)).await;
    let per_commit = (after.writes - before.writes) as f64 / (after.commits - before.commits).max(1) as f64;
    (RUNS as f64 / elapsed, per_commit)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        println!(
            "{RUNS} runs of {STEPS_PER_RUN} no-op steps over {KEYS} keys; step overhead over {LATENCY_STEPS} steps of one run"
        );
        println!(
            "{:<34} {:>9} {:>9} {:>12} {:>12} {:>14}",
            "journal commits", "step p50", "step p99", "seq runs/s", "waves runs/s", "writes/commit"
        );
        for mode in MODES {
            let (p50, p99) = step_latency(mode).await;
            let (sequential, _) = run_throughput(mode, Sending::Sequential).await;
            let (waves, per_commit) = run_throughput(mode, Sending::Waves).await;
            println!(
                "{:<34} {:>7.3}ms {:>7.3}ms {:>12.0} {:>12.0} {:>14.1}",
                mode.name,
                millis(p50),
                millis(p99),
                sequential,
                waves,
                per_commit
            );
        }
    });
}
