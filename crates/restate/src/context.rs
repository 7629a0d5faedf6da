//! A Restate handler context as a [`DurableContext`]: a step is a `ctx.run`, journaled by
//! Restate; a publish is a step that writes the message to the realtime feed; a sleep is a
//! Restate timer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use forgeai_engine::{DurableContext, RealtimeFeed, StepError, StepWork};
use restate_sdk::context::{ContextSideEffects, ContextTimers, ObjectContext, RunFuture, RunRetryPolicy};
use restate_sdk::errors::{HandlerError, TerminalError};
use restate_sdk::serde::Json;
use serde_json::Value;

/// Attempts of a step whose error is retriable, as in the embedded engine (1 + 4 retries).
const STEP_ATTEMPTS: u32 = 5;

/// The Restate context of one `run` invocation, with what its steps need.
pub struct RestateContext<'ctx> {
    ctx: ObjectContext<'ctx>,
    run_id: String,
    realtime: Arc<dyn RealtimeFeed>,
    /// Whether a stop request ends the step in flight; off once the run is stopping, so the
    /// steps that record the stop run to their end.
    stoppable: AtomicBool,
}

impl<'ctx> RestateContext<'ctx> {
    /// Wraps the handler's context. The run id is a UUID drawn from Restate's deterministic
    /// random generator, so a replay of the invocation gets the same one (the run's ASSISTANT
    /// message is stored under it, once).
    pub fn new(mut ctx: ObjectContext<'ctx>, realtime: Arc<dyn RealtimeFeed>) -> Self {
        let run_id = ctx.rand_uuid().to_string();
        Self {
            ctx,
            run_id,
            realtime,
            stoppable: AtomicBool::new(true),
        }
    }

    /// Steps from now on run to their end whatever stop request comes (the run is stopping).
    pub fn stopping(&self) {
        self.stoppable.store(false, Ordering::SeqCst);
    }

    /// The Restate invocation id (what the ingress answered when the run was sent).
    pub fn invocation_id(&self) -> &str {
        self.ctx.invocation_id()
    }
}

fn retry_policy() -> RunRetryPolicy {
    RunRetryPolicy::default()
        .initial_delay(Duration::from_secs(1))
        .exponentiation_factor(2.0)
        .max_delay(Duration::from_secs(60))
        .max_attempts(STEP_ATTEMPTS)
}

/// The code of the terminal error with which Restate cancels an invocation.
pub(crate) const CANCELLED_CODE: u16 = 409;

/// The realtime channel on which a request to stop invocation `id` is published (through
/// PostgreSQL, so the node running it hears it whichever node took the request).
pub fn cancel_channel(invocation_id: &str) -> String {
    format!("cancel:{invocation_id}")
}

/// Resolves once a stop request for the invocation was published (before or after the call).
async fn cancel_requested(realtime: Arc<dyn RealtimeFeed>, invocation_id: String, stoppable: bool) {
    use futures::StreamExt;
    if !stoppable {
        return std::future::pending().await;
    }
    let mut requests = realtime.subscribe(&cancel_channel(&invocation_id), Some(0));
    loop {
        match requests.next().await {
            Some(Ok(_)) => return,
            // The feed failed: no stop request can be heard; the step runs on.
            Some(Err(_)) | None => std::future::pending::<()>().await,
        }
    }
}

#[async_trait]
impl<'ctx> DurableContext for RestateContext<'ctx> {
    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn engine_run_id(&self) -> &str {
        self.invocation_id()
    }

    async fn run_step(&self, name: &str, work: StepWork<'_>) -> Result<Value, StepError> {
        // SAFETY: `ctx.run` wants a closure that may live as long as the whole invocation
        // (`'ctx`), while a step's work borrows from the caller for a shorter lifetime only. The
        // closure never outlives that: restate-sdk 0.13.0 (pinned in Cargo.toml) keeps it inside
        // the future `ctx.run` returns and runs it there (it is not spawned or stored elsewhere),
        // and that future is awaited to its end inside this method's future, which
        // `#[async_trait]` bounds by the lifetime of `work`; dropping the outer future drops both.
        // Only the lifetime changes, not the type's layout.
        let mut work: StepWork<'ctx> = unsafe { std::mem::transmute::<StepWork<'_>, StepWork<'ctx>>(work) };
        let (realtime, invocation) = (self.realtime.clone(), self.invocation_id().to_owned());
        let stoppable = self.stoppable.load(Ordering::SeqCst);
        let attempt = move || {
            let attempt = work();
            let stop = cancel_requested(realtime.clone(), invocation.clone(), stoppable);
            async move {
                // A stop request ends the work in flight (a sandbox command is killed with
                // its future); the step then ends as cancelled, which Restate journals.
                let outcome = tokio::select! {
                    outcome = attempt => outcome,
                    () = stop => Err(StepError::cancelled()),
                };
                match outcome {
                    Err(error) if error.is_cancelled() => {
                        Err(TerminalError::new_with_code(CANCELLED_CODE, "run was cancelled").into())
                    }
                    Ok(value) => Ok(Json(value)),
                    // Restate retries it (per the retry policy), as the embedded engine would.
                    Err(error) if error.is_retriable() => Err(HandlerError::from(error.message().to_owned())),
                    Err(error) => Err(TerminalError::new(error.message()).into()),
                }
            }
        };
        match self.ctx.run(attempt).name(name).retry_policy(retry_policy()).await {
            Ok(Json(value)) => Ok(value),
            // Restate delivers a cancel request as a terminal error 409 at the next await.
            Err(error) if error.code() == CANCELLED_CODE => Err(StepError::cancelled()),
            Err(error) => Err(StepError::non_retriable(format!(
                "step `{name}` failed: {}",
                error.message()
            ))),
        }
    }

    async fn publish(&self, channel: &str, topic: &str, data: Value) -> Result<(), StepError> {
        let realtime = self.realtime.clone();
        let work: StepWork<'_> = Box::new(move || {
            let (realtime, data) = (realtime.clone(), data.clone());
            Box::pin(async move {
                realtime
                    .publish(channel, topic, &data)
                    .await
                    .map(|_| Value::Null)
                    .map_err(|error| StepError::retriable(format!("could not publish on {channel}: {error}")))
            })
        });
        self.run_step("$publish", work).await.map(|_| ())
    }

    async fn sleep(&self, _name: &str, duration: Duration) -> Result<(), StepError> {
        self.ctx.sleep(duration).await.map_err(|error| match error.code() {
            CANCELLED_CODE => StepError::cancelled(),
            _ => StepError::non_retriable(format!("the sleep ended early: {}", error.message())),
        })
    }
}
