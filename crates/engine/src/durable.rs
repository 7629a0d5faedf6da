//! The seam between durable functions and the engine that runs them.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::StepError;
use crate::context::RunContext;
use crate::journal::now_ms;

/// What one attempt of a step's work returns (see [`StepWork`]).
pub type StepFuture<'a, T> = BoxFuture<'a, Result<T, StepError>>;

/// The work of a step, called once per attempt; its result is journaled as JSON. A closure that
/// makes a new future per attempt (not an async method), hence the boxed future type.
pub type StepWork<'a> = Box<dyn FnMut() -> StepFuture<'a, Value> + Send + 'a>;

/// What a durable function needs from the engine it runs on: named steps whose results are
/// journaled (a replay returns the journaled result without running the step again), realtime
/// messages published once per run (replays included), and sleeps that survive a restart.
///
/// The embedded engine's [`RunContext`] implements it, and so can another engine's handler
/// context; code written against it (the agent network, the code-agent function) runs on
/// either. Step names must be stable across replays: the n-th call of a name in a run is the
/// same step every time the run is replayed. The trait is object safe (`&dyn DurableContext`);
/// typed steps come from [`DurableContextExt::step`]. Implementations are `#[async_trait]`.
#[async_trait]
pub trait DurableContext: Send + Sync {
    /// The id of the run (the invocation) this context belongs to.
    fn run_id(&self) -> &str;

    /// The run's id as the engine's own API names it (to list, show or cancel it); the run id
    /// unless the engine has ids of its own (Restate's invocation ids).
    fn engine_run_id(&self) -> &str {
        self.run_id()
    }

    /// Runs `work` as the durable step `name` and returns its journaled JSON result. A
    /// retriable error is retried with backoff; a step that failed for good answers a
    /// non-retriable error, which the function should return.
    async fn run_step(&self, name: &str, work: StepWork<'_>) -> Result<Value, StepError>;

    /// Publishes `data` on `channel` under `topic`, once per run.
    async fn publish(&self, channel: &str, topic: &str, data: Value) -> Result<(), StepError>;

    /// Waits `duration`; a run replayed after a restart waits only for what is left.
    async fn sleep(&self, name: &str, duration: Duration) -> Result<(), StepError>;
}

/// Typed steps on any [`DurableContext`].
#[async_trait]
pub trait DurableContextExt: DurableContext {
    /// Runs `work` as the durable step `name` (see [`DurableContext::run_step`]), its result
    /// journaled as JSON.
    async fn step<T, F, Fut, E>(&self, name: &str, mut work: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, E>> + Send,
        E: Into<StepError>,
    {
        let work: StepWork<'_> = Box::new(move || {
            let attempt = work();
            Box::pin(async move {
                let value = attempt.await.map_err(Into::into)?;
                serde_json::to_value(value).map_err(|error| {
                    StepError::non_retriable(format!("the step returned a value that is not serialisable: {error}"))
                })
            })
        });
        let value = self.run_step(name, work).await?;
        serde_json::from_value(value).map_err(|error| {
            StepError::non_retriable(format!(
                "the journaled result of step `{name}` does not fit its type any more: {error}"
            ))
        })
    }
}

impl<C: DurableContext + ?Sized> DurableContextExt for C {}

#[async_trait]
impl DurableContext for RunContext {
    fn run_id(&self) -> &str {
        RunContext::run_id(self)
    }

    async fn run_step(&self, name: &str, work: StepWork<'_>) -> Result<Value, StepError> {
        RunContext::step(self, name, work).await
    }

    async fn publish(&self, channel: &str, topic: &str, data: Value) -> Result<(), StepError> {
        RunContext::publish(self, channel, topic, data).await
    }

    async fn sleep(&self, name: &str, duration: Duration) -> Result<(), StepError> {
        // The wake-up time is journaled, so a replay waits for the rest only.
        let until_ms = RunContext::step(self, name, || async {
            Ok::<_, StepError>(now_ms().saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)))
        })
        .await?;
        let left = until_ms.saturating_sub(now_ms());
        if left > 0 {
            tokio::time::sleep(Duration::from_millis(left.unsigned_abs())).await;
        }
        Ok(())
    }
}
