//! Durability of the journal: a step is committed before `step()` returns, the writes of
//! concurrent runs share commits (group commit), and order is kept although commits are shared.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forgeai_engine::{Durability, Engine, EngineConfig, Function, NewEvent, RunFilter, RunStatus, StepError};
use futures::StreamExt;
use futures::future::join_all;
use serde_json::json;
use tempfile::TempDir;

async fn start(dir: &TempDir, durability: Durability, function: Function) -> Engine {
    let mut config = EngineConfig::new(dir.path());
    config.durability = durability;
    Engine::builder(config)
        .function(function)
        .start()
        .await
        .expect("engine starts")
}

async fn all_completed(engine: &Engine, expected: usize) -> Vec<forgeai_engine::RunInfo> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = engine.runs(&RunFilter::default()).await.expect("journal readable");
        assert!(
            runs.iter().all(|run| run.status != RunStatus::Failed),
            "a run failed: {runs:?}"
        );
        if runs.len() == expected && runs.iter().all(|run| run.status == RunStatus::Completed) {
            return runs;
        }
        assert!(Instant::now() < deadline, "runs did not complete: {runs:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a separate connection (as after a restart) finds in the journal for a step.
fn journaled_step(db: &Path, step_id: &str) -> Option<(String, Option<String>)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("journal opens read-only");
    conn.query_row("SELECT status, output FROM steps WHERE step_id = ?", [step_id], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
    .ok()
}

#[tokio::test]
async fn a_step_is_in_the_journal_file_when_it_returns() {
    for durability in [Durability::Fsync, Durability::ProcessCrash] {
        let dir = TempDir::new().unwrap();
        let db = dir.path().join("engine.db");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (db_in, seen_in) = (db.clone(), seen.clone());
        let function = Function::new("durable", "test/durable", move |ctx, _| {
            let (db, seen) = (db_in.clone(), seen_in.clone());
            async move {
                for n in 0..5 {
                    let step_id = if n == 0 {
                        "answer".to_owned()
                    } else {
                        format!("answer:{n}")
                    };
                    let value: u32 = ctx.step("answer", || async move { Ok::<_, StepError>(40 + n) }).await?;
                    // Straight after the step returned, before anything else of the run.
                    let found = journaled_step(&db, &step_id);
                    seen.lock().unwrap().push((value, found));
                }
                Ok(())
            }
        });
        let engine = start(&dir, durability, function).await;
        engine.send(NewEvent::new("test/durable", json!({}))).await.unwrap();
        all_completed(&engine, 1).await;
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 5);
        for (value, found) in seen {
            assert_eq!(
                found,
                Some(("completed".to_owned(), Some(value.to_string()))),
                "{durability:?}: step with result {value}"
            );
        }
        engine.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test]
async fn steps_of_concurrent_runs_share_commits() {
    const RUNS: usize = 50;
    const STEPS: usize = 8;
    let dir = TempDir::new().unwrap();
    // Every step of every run ends at the same moment, as under load.
    let barrier = Arc::new(tokio::sync::Barrier::new(RUNS));
    let barrier_in = barrier.clone();
    let function = Function::new("together", "test/together", move |ctx, _| {
        let barrier = barrier_in.clone();
        async move {
            for _ in 0..STEPS {
                ctx.step("meet", || {
                    let barrier = barrier.clone();
                    async move {
                        tokio::time::timeout(Duration::from_secs(20), barrier.wait())
                            .await
                            .map_err(|_| StepError::non_retriable("the runs did not overlap"))?;
                        Ok::<_, StepError>(())
                    }
                })
                .await?;
            }
            Ok(())
        }
    })
    .concurrency_key("key");
    let engine = start(&dir, Durability::Fsync, function).await;
    let before = engine.journal_stats();
    let sends = (0..RUNS).map(|n| engine.send(NewEvent::new("test/together", json!({"key": format!("k{n}")}))));
    for sent in join_all(sends).await {
        sent.unwrap();
    }
    all_completed(&engine, RUNS).await;
    let after = engine.journal_stats();
    let commits = after.commits - before.commits;
    let writes = after.writes - before.writes;
    // Per run: the event, `running`, the steps, the end.
    assert!(writes >= (RUNS * (STEPS + 3)) as u64, "{writes} writes");
    // Measured here: about 30 commits with fsync (each fsync gathers the writes that arrive
    // meanwhile), about 95 even without fsync; one commit per write would be 550.
    assert!(
        commits * 4 <= writes,
        "{commits} commits for {writes} writes: concurrent writes were not grouped"
    );
}

#[tokio::test]
async fn concurrent_sends_to_one_key_run_in_journal_order() {
    let dir = TempDir::new().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let order_in = order.clone();
    let function = Function::new("serial", "test/serial", move |ctx, event| {
        let order = order_in.clone();
        async move {
            let n = event.data["n"].as_u64().unwrap_or(u64::MAX);
            order.lock().unwrap().push(n);
            ctx.step("work", || async { Ok::<_, StepError>(()) }).await?;
            Ok(n)
        }
    })
    .concurrency_key("projectId");
    let engine = start(&dir, Durability::Fsync, function).await;
    let sends = (0..40).map(|n| engine.send(NewEvent::new("test/serial", json!({"projectId": "p1", "n": n}))));
    for sent in join_all(sends).await {
        sent.unwrap();
    }
    // Listed by sequence number: the order in which the journal accepted the events.
    let runs = all_completed(&engine, 40).await;
    let journal_order: Vec<u64> = runs
        .iter()
        .map(|run| run.output.as_ref().and_then(|output| output.as_u64()).unwrap())
        .collect();
    assert_eq!(*order.lock().unwrap(), journal_order);
}

#[tokio::test]
async fn concurrent_publishes_reach_live_subscribers_in_id_order() {
    let dir = TempDir::new().unwrap();
    let function = Function::new("idle", "test/idle", |_, _| async { Ok(()) });
    let engine = start(&dir, Durability::Fsync, function).await;
    let mut live = engine.subscribe("Project:p", None);
    let publishes = (0..60).map(|n| engine.publish("Project:p", "projectInfo", json!(n)));
    let published = join_all(publishes).await;
    assert!(published.iter().all(Result::is_ok));
    let mut ids = Vec::new();
    for _ in 0..60 {
        let message = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .expect("message arrives")
            .expect("stream open")
            .expect("message readable");
        ids.push(message.id);
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}
