//! Function definitions: what event starts them, how they are keyed, how failures are retried.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::StepError;
use crate::context::RunContext;
use crate::types::Event;

pub(crate) type Handler = Arc<dyn Fn(RunContext, Event) -> BoxFuture<'static, Result<Value, StepError>> + Send + Sync>;
pub(crate) type FailureHandler =
    Arc<dyn Fn(RunContext, Event, String) -> BoxFuture<'static, Result<(), StepError>> + Send + Sync>;
pub(crate) type CancelHandler =
    Arc<dyn Fn(RunContext, Event) -> BoxFuture<'static, Result<(), StepError>> + Send + Sync>;

/// How often and how patiently failures are tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries after the first one, for each step and for the function body.
    pub retries: u32,
    /// Delay before the first retry; doubled for every further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 4,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based): exponential, capped, with "equal jitter"
    /// (half fixed, half random) so retries of many runs spread out but never come too early.
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(30);
        let full = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        let half = full / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// A durable function: a handler run once per triggering event, with its steps journaled.
#[derive(Clone)]
pub struct Function {
    pub(crate) id: String,
    pub(crate) trigger: String,
    pub(crate) concurrency_key: Option<String>,
    pub(crate) retry: RetryPolicy,
    pub(crate) handler: Handler,
    pub(crate) on_failure: Option<FailureHandler>,
    pub(crate) on_cancel: Option<CancelHandler>,
}

impl Function {
    pub fn new<F, Fut, Out>(id: impl Into<String>, trigger: impl Into<String>, handler: F) -> Self
    where
        F: Fn(RunContext, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Out, StepError>> + Send + 'static,
        Out: Serialize,
    {
        let handler: Handler = Arc::new(move |ctx, event| {
            let run = handler(ctx, event);
            Box::pin(async move {
                let output = run.await?;
                serde_json::to_value(output)
                    .map_err(|error| StepError::non_retriable(format!("function output is not serialisable: {error}")))
            })
        });
        Self {
            id: id.into(),
            trigger: trigger.into(),
            concurrency_key: None,
            retry: RetryPolicy::default(),
            handler,
            on_failure: None,
            on_cancel: None,
        }
    }

    /// Runs with the same value of this top-level field of the event data run one at a time,
    /// in the order their events were sent.
    pub fn concurrency_key(mut self, field: impl Into<String>) -> Self {
        self.concurrency_key = Some(field.into());
        self
    }

    pub fn retries(mut self, retries: u32) -> Self {
        self.retry.retries = retries;
        self
    }

    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Runs once a run has failed for good (after its retries), with the final error.
    /// Its steps are journaled like the function's own.
    pub fn on_failure<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(RunContext, Event, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        self.on_failure = Some(Arc::new(move |ctx, event, error| Box::pin(handler(ctx, event, error))));
        self
    }

    /// Runs once a run was cancelled ([`crate::Engine::cancel`]), after the step in flight
    /// was stopped. Its steps are journaled like the function's own.
    pub fn on_cancel<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(RunContext, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), StepError>> + Send + 'static,
    {
        self.on_cancel = Some(Arc::new(move |ctx, event| Box::pin(handler(ctx, event))));
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The concurrency key value of an event for this function: the named field as text.
    pub(crate) fn key_of(&self, data: &Value) -> Option<String> {
        let field = self.concurrency_key.as_deref()?;
        match data.get(field)? {
            Value::Null => None,
            Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_with_jitter_within_bounds() {
        let policy = RetryPolicy {
            retries: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        for retry in 1..=6 {
            let full = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_millis(1000));
            for _ in 0..50 {
                let delay = policy.delay(retry);
                assert!(delay >= full / 2 && delay <= full, "retry {retry}: {delay:?}");
            }
        }
    }

    #[test]
    fn key_is_taken_from_the_named_field() {
        let function = Function::new("f", "e", |_, _| async { Ok(()) }).concurrency_key("projectId");
        assert_eq!(
            function.key_of(&serde_json::json!({"projectId": "p1"})),
            Some("p1".into())
        );
        assert_eq!(function.key_of(&serde_json::json!({"projectId": 7})), Some("7".into()));
        assert_eq!(function.key_of(&serde_json::json!({})), None);
    }
}
