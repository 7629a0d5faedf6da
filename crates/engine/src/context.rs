//! The handle a running function uses for durable steps and realtime publishing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::StepError;
use crate::function::RetryPolicy;
use crate::journal::{Journal, JournalEntry, StepRecord, now_ms};
use crate::live::LiveSteps;
use crate::realtime::Realtime;
use crate::types::StepStatus;

/// What every run context works with, shared with the engine.
#[derive(Clone)]
pub(crate) struct RunServices {
    pub journal: Journal,
    pub realtime: Arc<Realtime>,
    pub live: Arc<LiveSteps>,
}

/// Passed to a function's handler. Cheap to clone; clones share the step counters, so steps
/// may also run concurrently (e.g. with `join`), as long as they are started in a stable order.
#[derive(Clone)]
pub struct RunContext {
    inner: Arc<Inner>,
}

struct Inner {
    run_id: String,
    journal: Journal,
    realtime: Arc<Realtime>,
    live: Arc<LiveSteps>,
    retry: RetryPolicy,
    /// Ends the run at its next step boundary (a cancel request, or the engine shutting down).
    cancel: CancellationToken,
    /// Stops the step in flight too (a cancel request only: at shutdown a step may finish).
    abort: CancellationToken,
    /// Prepended to step names, so an `on_failure` handler gets a journal of its own.
    prefix: &'static str,
    state: Mutex<ReplayState>,
}

struct ReplayState {
    entries: HashMap<String, JournalEntry>,
    occurrences: HashMap<String, u32>,
    next_position: u32,
}

impl RunContext {
    pub(crate) fn new(
        run_id: &str,
        services: RunServices,
        entries: HashMap<String, JournalEntry>,
        retry: RetryPolicy,
        cancel: CancellationToken,
        abort: CancellationToken,
        prefix: &'static str,
    ) -> Self {
        let next_position = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        Self {
            inner: Arc::new(Inner {
                run_id: run_id.to_owned(),
                journal: services.journal,
                realtime: services.realtime,
                live: services.live,
                retry,
                cancel,
                abort,
                prefix,
                state: Mutex::new(ReplayState {
                    entries,
                    occurrences: HashMap::new(),
                    next_position,
                }),
            }),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// Runs `work` as a durable step named `name`.
    ///
    /// Its result is committed to the journal before this returns (and fsync'd, with the default
    /// `Durability::Fsync`: it survives a power cut); when the run is replayed the
    /// journaled result is returned without calling `work` again. A retriable error is retried
    /// with backoff; once the retries are spent, or on a non-retriable error, the step fails for
    /// good and the error (now non-retriable) should be returned from the handler.
    pub async fn step<T, F, Fut, E>(&self, name: &str, mut work: F) -> Result<T, StepError>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Into<StepError>,
    {
        let (step_id, position, previous) = self.claim_step_id(name);
        let mut attempts = match previous {
            Some(entry) if entry.status == StepStatus::Completed => {
                return serde_json::from_value(entry.output.unwrap_or(Value::Null)).map_err(|error| {
                    StepError::non_retriable(format!(
                        "the journaled result of step `{step_id}` does not fit its type any more: {error}"
                    ))
                });
            }
            Some(entry) if entry.status == StepStatus::Failed => {
                return Err(StepError::non_retriable(entry.error.unwrap_or_default()));
            }
            Some(entry) => entry.attempts,
            None => 0,
        };
        let journal = &self.inner.journal;
        let run_id = self.run_id();
        loop {
            if self.inner.cancel.is_cancelled() {
                return Err(StepError::cancelled());
            }
            attempts += 1;
            let started_at = now_ms();
            // The attempt is only journaled when it ends (one write per step, committed together
            // with the other runs' writes of the moment); meanwhile the engine shows it from memory.
            self.inner.live.started(run_id, &step_id, name, attempts, started_at);
            // Dropping the step's future stops what it does (a model request, a sandbox
            // command, whose process tree is killed with it).
            let outcome = tokio::select! {
                outcome = work() => outcome.map_err(Into::into),
                () = self.inner.abort.cancelled() => Err(StepError::cancelled()),
            };
            self.inner.live.ended(run_id, &step_id);
            let record = |status, output, error| StepRecord {
                run_id,
                step_id: &step_id,
                name,
                position,
                status,
                attempts,
                output,
                error,
                started_at,
            };
            let error = match outcome {
                Ok(value) => {
                    let output = serde_json::to_value(&value).map_err(|error| {
                        StepError::non_retriable(format!(
                            "step `{step_id}` returned a value that is not serialisable: {error}"
                        ))
                    })?;
                    journal
                        .record_step(&record(StepStatus::Completed, Some(&output), None))
                        .await?;
                    return Ok(value);
                }
                Err(error) => error,
            };
            if error.is_cancelled() {
                return Err(error);
            }
            if !error.is_retriable() || attempts > self.inner.retry.retries {
                let message = if error.is_retriable() {
                    format!("step `{step_id}` failed after {attempts} attempts: {error}")
                } else {
                    format!("step `{step_id}` failed: {error}")
                };
                journal
                    .record_step(&record(StepStatus::Failed, None, Some(&message)))
                    .await?;
                return Err(StepError::non_retriable(message));
            }
            journal
                .record_step(&record(StepStatus::Retrying, None, Some(error.message())))
                .await?;
            tokio::select! {
                () = tokio::time::sleep(self.inner.retry.delay(attempts)) => {}
                () = self.inner.cancel.cancelled() => return Err(StepError::cancelled()),
            }
        }
    }

    /// Publishes `data` on `channel` under `topic`. Journaled like a step, so a replayed run
    /// does not publish the same message twice.
    pub async fn publish(&self, channel: &str, topic: &str, data: Value) -> Result<(), StepError> {
        let (step_id, position, previous) = self.claim_step_id("$publish");
        if previous.is_some() {
            return Ok(());
        }
        self.inner
            .realtime
            .publish(channel, topic, &data, Some((self.run_id(), &step_id, position)))
            .await
            .map_err(StepError::from)?;
        Ok(())
    }

    /// The stable id of the next call of `name`: the name itself for the first call, then
    /// `name:1`, `name:2`, … — plus its position and what the journal holds for it.
    fn claim_step_id(&self, name: &str) -> (String, u32, Option<JournalEntry>) {
        let mut state = self.inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        let occurrence = state.occurrences.entry(name.to_owned()).or_insert(0);
        let step_id = match *occurrence {
            0 => format!("{}{name}", self.inner.prefix),
            n => format!("{}{name}:{n}", self.inner.prefix),
        };
        *occurrence += 1;
        let previous = state.entries.get(&step_id).cloned();
        let position = match previous {
            Some(_) => 0,
            None => {
                state.next_position += 1;
                state.next_position
            }
        };
        (step_id, position, previous)
    }
}
