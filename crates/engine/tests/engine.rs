//! Behaviour of the embedded engine, each test on its own journal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use forgeai_engine::{
    Engine, EngineConfig, Error, Function, NewEvent, RetryPolicy, RunDetail, RunFilter, RunStatus, StepError,
    StepStatus,
};
use futures::StreamExt;
use serde_json::json;
use tempfile::TempDir;

const FAST_RETRY: RetryPolicy = RetryPolicy {
    retries: 4,
    base_delay: Duration::from_millis(40),
    max_delay: Duration::from_secs(1),
};

async fn start(dir: &TempDir, functions: Vec<Function>) -> Engine {
    let mut builder = Engine::builder(EngineConfig::new(dir.path()));
    for function in functions {
        builder = builder.function(function);
    }
    builder.start().await.expect("engine starts")
}

async fn finished(engine: &Engine, run_id: &str) -> RunDetail {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let detail = engine.run(run_id).await.expect("journal readable").expect("run exists");
        if detail.run.status.is_finished() {
            return detail;
        }
        assert!(Instant::now() < deadline, "run {run_id} did not finish: {detail:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn send_one(engine: &Engine, name: &str, data: serde_json::Value) -> String {
    let outcome = engine.send(NewEvent::new(name, data)).await.expect("event accepted");
    assert_eq!(outcome.run_ids.len(), 1);
    outcome.run_ids[0].clone()
}

#[tokio::test]
async fn steps_complete_in_order_with_stable_ids_and_the_output_is_stored() {
    let dir = TempDir::new().unwrap();
    let function = Function::new("loop", "test/loop", |ctx, event| async move {
        let mut total = 0;
        for i in 0..3 {
            total += ctx.step("add", || async move { Ok::<_, StepError>(i) }).await?;
        }
        let name: String = ctx
            .step("echo", || {
                let data = event.data.clone();
                async move { Ok::<_, StepError>(data["name"].as_str().unwrap_or_default().to_owned()) }
            })
            .await?;
        Ok(json!({ "total": total, "name": name }))
    });
    let engine = start(&dir, vec![function]).await;
    let run_id = send_one(&engine, "test/loop", json!({"name": "forge"})).await;
    let detail = finished(&engine, &run_id).await;
    assert_eq!(detail.run.status, RunStatus::Completed);
    assert_eq!(detail.run.output, Some(json!({"total": 3, "name": "forge"})));
    let ids: Vec<_> = detail.steps.iter().map(|step| step.id.as_str()).collect();
    assert_eq!(ids, ["add", "add:1", "add:2", "echo"]);
    assert!(
        detail
            .steps
            .iter()
            .all(|step| step.status == StepStatus::Completed && step.attempts == 1)
    );
    assert!(detail.steps.iter().all(|step| step.ended_at >= Some(step.started_at)));
}

#[tokio::test]
async fn a_function_retried_by_replay_does_not_repeat_completed_steps() {
    let dir = TempDir::new().unwrap();
    let first_step_calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = Arc::new(AtomicUsize::new(0));
    let (first, handler) = (first_step_calls.clone(), handler_calls.clone());
    let function = Function::new("replay", "test/replay", move |ctx, _| {
        let (first, handler) = (first.clone(), handler.clone());
        async move {
            let value: u32 = ctx
                .step("first", || {
                    first.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, StepError>(41) }
                })
                .await?;
            if handler.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(StepError::retriable("transient failure outside any step"));
            }
            Ok(value + 1)
        }
    })
    .retry_policy(FAST_RETRY);
    let engine = start(&dir, vec![function]).await;
    let run_id = send_one(&engine, "test/replay", json!({})).await;
    let detail = finished(&engine, &run_id).await;
    assert_eq!(detail.run.status, RunStatus::Completed);
    assert_eq!(detail.run.output, Some(json!(42)));
    assert_eq!(handler_calls.load(Ordering::SeqCst), 2, "the handler was replayed once");
    assert_eq!(
        first_step_calls.load(Ordering::SeqCst),
        1,
        "the completed step ran once"
    );
}

#[tokio::test]
async fn runs_of_one_key_run_one_at_a_time_in_send_order() {
    let dir = TempDir::new().unwrap();
    let active = Arc::new(AtomicUsize::new(0));
    let most_active = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let (active_in, most_in, order_in) = (active.clone(), most_active.clone(), order.clone());
    let function = Function::new("serial", "test/serial", move |ctx, event| {
        let (active, most, order) = (active_in.clone(), most_in.clone(), order_in.clone());
        async move {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            order.lock().unwrap().push(event.data["n"].as_u64().unwrap_or(u64::MAX));
            ctx.step("work", || async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, StepError>(())
            })
            .await?;
            ctx.step("more-work", || async { Ok::<_, StepError>(()) }).await?;
            active.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    })
    .concurrency_key("projectId");
    let engine = start(&dir, vec![function]).await;
    let mut run_ids = Vec::new();
    for n in 0..100 {
        run_ids.push(send_one(&engine, "test/serial", json!({"projectId": "p1", "n": n})).await);
    }
    for run_id in &run_ids {
        assert_eq!(finished(&engine, run_id).await.run.status, RunStatus::Completed);
    }
    assert_eq!(most_active.load(Ordering::SeqCst), 1, "two runs of one key overlapped");
    assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<u64>>());
    let listed = engine
        .runs(&RunFilter {
            concurrency_key: Some("p1".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|run| run.id.clone()).collect::<Vec<_>>(), run_ids);
    assert!(listed.windows(2).all(|pair| pair[0].ended_at <= pair[1].started_at));
}

#[tokio::test]
async fn runs_of_different_keys_run_in_parallel() {
    let dir = TempDir::new().unwrap();
    // Every run waits until all ten are inside the barrier: this only finishes if they overlap.
    let barrier = Arc::new(tokio::sync::Barrier::new(10));
    let barrier_in = barrier.clone();
    let function = Function::new("parallel", "test/parallel", move |ctx, _| {
        let barrier = barrier_in.clone();
        async move {
            ctx.step("meet", || {
                let barrier = barrier.clone();
                async move {
                    tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                        .await
                        .map_err(|_| StepError::non_retriable("runs of different keys did not overlap"))?;
                    Ok::<_, StepError>(())
                }
            })
            .await
        }
    })
    .concurrency_key("projectId");
    let engine = start(&dir, vec![function]).await;
    let mut run_ids = Vec::new();
    for key in 0..10 {
        run_ids.push(send_one(&engine, "test/parallel", json!({"projectId": format!("p{key}")})).await);
    }
    for run_id in &run_ids {
        let detail = finished(&engine, run_id).await;
        assert_eq!(detail.run.status, RunStatus::Completed, "{detail:?}");
    }
}

#[tokio::test]
async fn failing_steps_are_retried_with_growing_backoff() {
    let dir = TempDir::new().unwrap();
    let attempts_at = Arc::new(Mutex::new(Vec::new()));
    let attempts_in = attempts_at.clone();
    let function = Function::new("flaky", "test/flaky", move |ctx, _| {
        let attempts = attempts_in.clone();
        async move {
            ctx.step("flaky", || {
                let attempts = attempts.clone();
                async move {
                    let mut attempts = attempts.lock().unwrap();
                    attempts.push(Instant::now());
                    if attempts.len() < 4 {
                        return Err(StepError::retriable(format!("attempt {} failed", attempts.len())));
                    }
                    Ok("finally".to_owned())
                }
            })
            .await
        }
    })
    .retry_policy(FAST_RETRY);
    let engine = start(&dir, vec![function]).await;
    let run_id = send_one(&engine, "test/flaky", json!({})).await;
    let detail = finished(&engine, &run_id).await;
    assert_eq!(detail.run.status, RunStatus::Completed);
    assert_eq!(detail.steps[0].attempts, 4);
    let attempts = attempts_at.lock().unwrap();
    for (retry, pair) in attempts.windows(2).enumerate() {
        // Equal jitter: retry n waits at least half of base * 2^(n-1).
        let least = FAST_RETRY.base_delay * (1 << retry) / 2;
        let waited = pair[1] - pair[0];
        assert!(
            waited >= least,
            "retry {} waited {waited:?}, less than {least:?}",
            retry + 1
        );
    }
}

#[tokio::test]
async fn a_step_that_keeps_failing_fails_the_run_and_calls_on_failure() {
    let dir = TempDir::new().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let (calls_in, failures_in) = (calls.clone(), failures.clone());
    let function = Function::new("doomed", "test/doomed", move |ctx, _| {
        let calls = calls_in.clone();
        async move {
            ctx.step("always-fails", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(std::io::Error::other("model API answered 500")) }
            })
            .await
        }
    })
    .retry_policy(RetryPolicy {
        retries: 2,
        ..FAST_RETRY
    })
    .on_failure(move |ctx, event, error| {
        let failures = failures_in.clone();
        async move {
            ctx.step("record", || {
                failures.lock().unwrap().push((event.data.clone(), error.clone()));
                async { Ok::<_, StepError>(()) }
            })
            .await
        }
    });
    let engine = start(&dir, vec![function]).await;
    let run_id = send_one(&engine, "test/doomed", json!({"projectId": "p"})).await;
    let detail = finished(&engine, &run_id).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one try and two retries");
    let error = detail.run.error.clone().unwrap();
    assert!(
        error.contains("always-fails") && error.contains("model API answered 500"),
        "{error}"
    );
    assert_eq!(*failures.lock().unwrap(), vec![(json!({"projectId": "p"}), error)]);
    let ids: Vec<_> = detail
        .steps
        .iter()
        .map(|step| (step.id.as_str(), step.status))
        .collect();
    assert_eq!(
        ids,
        [
            ("always-fails", StepStatus::Failed),
            ("on_failure/record", StepStatus::Completed)
        ]
    );
}

#[tokio::test]
async fn a_non_retriable_error_fails_at_once() {
    let dir = TempDir::new().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let on_failure_calls = Arc::new(AtomicUsize::new(0));
    let (calls_in, on_failure_in) = (calls.clone(), on_failure_calls.clone());
    let function = Function::new("fatal", "test/fatal", move |ctx, _| {
        let calls = calls_in.clone();
        async move {
            ctx.step("bad-input", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(StepError::non_retriable("the prompt is empty")) }
            })
            .await
        }
    })
    .retry_policy(FAST_RETRY)
    .on_failure(move |_, _, _| {
        on_failure_in.fetch_add(1, Ordering::SeqCst);
        async { Ok(()) }
    });
    let engine = start(&dir, vec![function]).await;
    let run_id = send_one(&engine, "test/fatal", json!({})).await;
    let detail = finished(&engine, &run_id).await;
    assert_eq!(detail.run.status, RunStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(on_failure_calls.load(Ordering::SeqCst), 1);
    assert_eq!(detail.steps[0].attempts, 1);
    assert!(detail.run.error.unwrap().contains("the prompt is empty"));
}

#[tokio::test]
async fn cancelling_stops_a_running_run_between_steps_and_a_queued_run_before_it_starts() {
    let dir = TempDir::new().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let after_release = Arc::new(AtomicUsize::new(0));
    let (release_in, after_in) = (release.clone(), after_release.clone());
    let function = Function::new("cancellable", "test/cancel", move |ctx, _| {
        let (release, after) = (release_in.clone(), after_in.clone());
        async move {
            ctx.step("before", || async { Ok::<_, StepError>(()) }).await?;
            release.notified().await;
            ctx.step("after", || {
                after.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, StepError>(()) }
            })
            .await
        }
    })
    .concurrency_key("projectId");
    let engine = start(&dir, vec![function]).await;
    let running = send_one(&engine, "test/cancel", json!({"projectId": "p"})).await;
    let queued = send_one(&engine, "test/cancel", json!({"projectId": "p"})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.run(&running).await.unwrap().unwrap().steps.is_empty() {
        assert!(Instant::now() < deadline, "first run never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.cancel(&queued).await.unwrap(), RunStatus::Cancelled);
    engine.cancel(&running).await.unwrap();
    release.notify_one();
    let running_detail = finished(&engine, &running).await;
    assert_eq!(running_detail.run.status, RunStatus::Cancelled);
    assert_eq!(
        running_detail.steps.len(),
        1,
        "no step after the cancel: {running_detail:?}"
    );
    let queued_detail = finished(&engine, &queued).await;
    assert_eq!(queued_detail.run.status, RunStatus::Cancelled);
    assert!(queued_detail.run.started_at.is_none() && queued_detail.steps.is_empty());
    assert_eq!(after_release.load(Ordering::SeqCst), 0);
    assert!(matches!(engine.cancel("no-such-run").await, Err(Error::RunNotFound(_))));
}

#[tokio::test]
async fn a_step_in_flight_is_shown_as_running() {
    let dir = TempDir::new().unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let release_in = release.clone();
    let function = Function::new("slow", "test/slow", move |ctx, _| {
        let release = release_in.clone();
        async move {
            ctx.step("wait", || {
                let release = release.clone();
                async move {
                    release.notified().await;
                    Ok::<_, StepError>(())
                }
            })
            .await
        }
    });
    let engine = start(&dir, vec![function]).await;
    let run_id = send_one(&engine, "test/slow", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = loop {
        let detail = engine.run(&run_id).await.unwrap().unwrap();
        if let Some(step) = detail.steps.first() {
            break step.clone();
        }
        assert!(Instant::now() < deadline, "the step never showed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        (running.id.as_str(), running.status, running.attempts),
        ("wait", StepStatus::Running, 1)
    );
    assert_eq!(
        engine.run(&run_id).await.unwrap().unwrap().run.status,
        RunStatus::Running
    );
    release.notify_one();
    let detail = finished(&engine, &run_id).await;
    assert_eq!(detail.steps.len(), 1);
    assert_eq!(detail.steps[0].status, StepStatus::Completed);
}

#[tokio::test]
async fn a_repeated_event_id_starts_no_second_run() {
    let dir = TempDir::new().unwrap();
    let function = Function::new("once", "test/once", |_, _| async { Ok(()) });
    let engine = start(&dir, vec![function]).await;
    let event = NewEvent::new("test/once", json!({"n": 1})).with_id("client-event-1");
    let first = engine.send(event.clone()).await.unwrap();
    let second = engine.send(event).await.unwrap();
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(first.event_id, second.event_id);
    assert_eq!(first.run_ids.len(), 1);
    assert!(second.run_ids.is_empty());
    let other = engine
        .send(NewEvent::new("test/once", json!({})).with_id("client-event-2"))
        .await
        .unwrap();
    assert_eq!(other.run_ids.len(), 1);
    assert_eq!(engine.runs(&RunFilter::default()).await.unwrap().len(), 2);
    assert!(matches!(
        engine.send(NewEvent::new(" ", json!({}))).await,
        Err(Error::EmptyEventName)
    ));
}

#[tokio::test]
async fn subscribers_replay_from_an_id_then_receive_live_messages() {
    let dir = TempDir::new().unwrap();
    let function = Function::new("talker", "test/talk", |ctx, event| async move {
        for i in 0..5 {
            ctx.publish("Project:p", "projectInfo", json!(format!("status {i}")))
                .await?;
        }
        let gate = event.data["gate"].as_str().unwrap_or_default().to_owned();
        ctx.publish("Project:other", "projectInfo", json!(gate)).await
    });
    let engine = start(&dir, vec![function]).await;
    let run_id = send_one(&engine, "test/talk", json!({"gate": "elsewhere"})).await;
    finished(&engine, &run_id).await;

    let all: Vec<_> = engine
        .subscribe("Project:p", Some(0))
        .take(5)
        .map(Result::unwrap)
        .collect()
        .await;
    let texts: Vec<_> = all.iter().map(|message| message.data.clone()).collect();
    assert_eq!(texts, (0..5).map(|i| json!(format!("status {i}"))).collect::<Vec<_>>());
    assert!(all.windows(2).all(|pair| pair[0].id < pair[1].id));

    let mut resumed = engine.subscribe("Project:p", Some(all[1].id));
    for expected in &all[2..] {
        assert_eq!(&resumed.next().await.unwrap().unwrap(), expected);
    }
    let live = engine
        .publish("Project:p", "projectInfo", json!("Demo is ready"))
        .await
        .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(5), resumed.next())
        .await
        .unwrap();
    assert_eq!(received.unwrap().unwrap(), live);

    let publishes = engine.run(&run_id).await.unwrap().unwrap().steps;
    assert_eq!(publishes.len(), 6, "each publish is journaled once");
}

#[tokio::test]
async fn realtime_messages_expire_after_the_retention_period() {
    let dir = TempDir::new().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.realtime_retention = Duration::from_millis(200);
    let engine = Engine::builder(config).start().await.unwrap();
    engine.publish("c", "t", json!(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let fresh = engine.publish("c", "t", json!(2)).await.unwrap();
    let first = engine.subscribe("c", Some(0)).next().await.unwrap().unwrap();
    assert_eq!(first, fresh, "the old message should have been deleted");
}

#[tokio::test]
async fn a_second_engine_cannot_open_the_same_journal() {
    let dir = TempDir::new().unwrap();
    let _engine = start(&dir, vec![]).await;
    let second = Engine::builder(EngineConfig::new(dir.path())).start().await;
    assert!(matches!(second, Err(Error::Locked { .. })));
}
