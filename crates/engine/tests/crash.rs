//! Kills a real engine process with SIGKILL at many points and checks that every run still
//! completes exactly once, with the side effects of completed steps happening exactly once.
//!
//! The child is this same test binary, re-run with `CRASH_CHILD_DIR` set: it then serves the
//! function below until every run has completed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use forgeai_engine::{Engine, EngineConfig, Function, NewEvent, RetryPolicy, RunFilter, RunStatus, StepError};
use serde_json::json;

const CHILD_DIR_VAR: &str = "CRASH_CHILD_DIR";
const RUNS: u64 = 10;
const STEPS: u64 = 5;
const KILLS: usize = 24;

fn effects_path(dir: &Path) -> PathBuf {
    dir.join("effects.log")
}

fn append_effect(dir: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(effects_path(dir))?;
    writeln!(file, "{line}")
}

fn appending_function(dir: PathBuf) -> Function {
    Function::new("append", "crash/append", move |ctx, event| {
        let dir = dir.clone();
        async move {
            let n = event.data["n"].as_u64().unwrap_or(u64::MAX);
            for step in 0..STEPS {
                ctx.step(&format!("append-{step}"), || {
                    let dir = dir.clone();
                    async move {
                        // The marker tells the parent it may kill now: inside the step,
                        // before its side effect.
                        println!("IN-STEP {n}:{step}");
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        append_effect(&dir, &format!("{n}:{step}"))?;
                        Ok::<_, StepError>(())
                    }
                })
                .await?;
                // Between steps: the step above is committed, the next one has not started.
                println!("BETWEEN-STEPS {n}:{step}");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            Ok(n)
        }
    })
    .concurrency_key("key")
    .retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    })
}

/// Runs in the child process only; returns at once in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR).map(PathBuf::from) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        // One worker: with a single step in flight, every kill lands at a known point. (A kill
        // between a step's effect and its commit would legitimately repeat the effect.)
        let mut config = EngineConfig::new(dir.join("engine"));
        config.workers = 1;
        let engine = Engine::builder(config)
            .function(appending_function(dir.clone()))
            .start()
            .await
            .expect("engine starts");
        // Every incarnation sends every event again: the event ids make repeats harmless.
        for n in 0..RUNS {
            let event = NewEvent::new("crash/append", json!({"n": n, "key": format!("k{}", n % 3)}))
                .with_id(format!("event-{n}"));
            engine.send(event).await.expect("event accepted");
        }
        loop {
            let runs = engine.runs(&RunFilter::default()).await.expect("journal readable");
            if runs.len() as u64 == RUNS && runs.iter().all(|run| run.status == RunStatus::Completed) {
                println!("ALL-DONE");
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts")
}

/// A small deterministic generator, so a failing kill schedule can be reproduced.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn runs_survive_sigkill_at_many_points_with_exactly_once_step_effects() {
    if std::env::var_os(CHILD_DIR_VAR).is_some() {
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let start_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5eed, |elapsed| elapsed.as_nanos() as u64)
        | 1;
    let mut seed = start_seed;
    let mut kills = Vec::new();
    let mut finished = false;
    for incarnation in 0..200 {
        let mut child = spawn_child(dir.path());
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Alternate kill points: inside a step (before its effect) and between steps.
        let marker = if kills.len() % 2 == 0 {
            "IN-STEP"
        } else {
            "BETWEEN-STEPS"
        };
        let kill_after = 1 + next_random(&mut seed) % 4;
        let mut seen = 0;
        let mut killed = false;
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if line == "ALL-DONE" {
                finished = true;
                break;
            }
            if kills.len() < KILLS && line.starts_with(marker) {
                seen += 1;
                if seen == kill_after {
                    child.kill().expect("SIGKILL delivered");
                    kills.push(format!("#{incarnation} at {line}"));
                    killed = true;
                    break;
                }
            }
        }
        let status = child.wait().expect("child reaped");
        if finished {
            assert!(status.success(), "child exited with {status}");
            break;
        }
        assert!(killed, "child {incarnation} stopped without finishing: {status}");
    }
    assert!(finished, "runs did not finish after {} kills", kills.len());
    assert!(kills.len() >= 20, "only {} kills: {kills:?}", kills.len());

    let effects = std::fs::read_to_string(effects_path(dir.path())).unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for line in effects.lines() {
        *counts.entry(line).or_default() += 1;
    }
    for n in 0..RUNS {
        for step in 0..STEPS {
            let effect = format!("{n}:{step}");
            assert_eq!(
                counts.get(effect.as_str()),
                Some(&1),
                "effect {effect}, seed {start_seed}, kills {kills:?}"
            );
        }
    }
    assert_eq!(counts.len() as u64, RUNS * STEPS);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let engine = Engine::builder(EngineConfig::new(dir.path().join("engine")))
            .start()
            .await
            .unwrap();
        let runs = engine.runs(&RunFilter::default()).await.unwrap();
        assert_eq!(runs.len() as u64, RUNS, "no run lost or duplicated");
        let mut outputs: Vec<u64> = runs
            .iter()
            .map(|run| run.output.as_ref().and_then(|v| v.as_u64()).unwrap())
            .collect();
        outputs.sort_unstable();
        assert_eq!(outputs, (0..RUNS).collect::<Vec<_>>());
    });
}
