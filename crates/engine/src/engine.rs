//! The embedded engine: accepts events, schedules runs, drives them through their steps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Error;
use crate::context::{RunContext, RunServices};
use crate::feed::{EventSink, FeedError, RealtimeFeed};
use crate::function::Function;
use crate::journal::{Journal, NewRun, now_ms};
use crate::live::LiveSteps;
use crate::realtime::Realtime;
use crate::scheduler::{QueueKey, Queued, Scheduler, queue_key};
use crate::types::{Event, NewEvent, RealtimeMessage, RunDetail, RunFilter, RunInfo, RunStatus, SendOutcome};
use crate::writer::{Durability, JournalStats};

/// Where the engine keeps its journal, how durable its writes are, and how much it may do at
/// once.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Holds `engine.db` (the journal) and `engine.lock`.
    pub data_dir: PathBuf,
    /// Runs executing at the same time, across all keys.
    pub workers: usize,
    /// How long realtime messages are kept for replay.
    pub realtime_retention: Duration,
    /// Whether a completed step survives a power cut ([`Durability::Fsync`], the default) or
    /// only a killed process.
    pub durability: Durability,
    /// The most journal writes committed together in one transaction (one fsync). 1 commits
    /// every write on its own, as a naive journal would.
    pub group_commit_max: usize,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            workers: 512,
            realtime_retention: Duration::from_secs(24 * 60 * 60),
            durability: Durability::default(),
            group_commit_max: 1024,
        }
    }
}

/// Collects the functions to serve, then starts the engine.
pub struct EngineBuilder {
    config: EngineConfig,
    functions: Vec<Function>,
}

impl EngineBuilder {
    pub fn function(mut self, function: Function) -> Self {
        self.functions.push(function);
        self
    }

    /// Opens the journal, resumes every run that was queued or running when the last process
    /// stopped, and starts dispatching.
    pub async fn start(self) -> Result<Engine, Error> {
        let data_dir = &self.config.data_dir;
        let dir_error = |source| Error::DataDir {
            path: data_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(dir_error)?;
        let lock_path = data_dir.join("engine.lock");
        let lock = std::fs::File::create(&lock_path).map_err(dir_error)?;
        // Two engines on one journal would run the same runs twice at once.
        lock.try_lock().map_err(|_| Error::Locked {
            path: data_dir.display().to_string(),
        })?;

        let mut functions = HashMap::new();
        let mut by_trigger: HashMap<String, Vec<String>> = HashMap::new();
        for function in self.functions {
            if functions.contains_key(&function.id) {
                return Err(Error::DuplicateFunction(function.id));
            }
            by_trigger
                .entry(function.trigger.clone())
                .or_default()
                .push(function.id.clone());
            functions.insert(function.id.clone(), function);
        }

        let journal = Journal::open(
            &data_dir.join("engine.db"),
            self.config.durability,
            self.config.group_commit_max,
        )
        .await?;
        let mut scheduler = Scheduler::new(self.config.workers);
        for run in journal.unfinished_runs().await? {
            let key = queue_key(&run.function_id, run.concurrency_key.as_deref(), &run.id);
            scheduler.enqueue(
                key,
                Queued {
                    seq: run.seq,
                    run_id: run.id,
                },
            );
        }

        let inner = Arc::new(Inner {
            realtime: Arc::new(Realtime::new(journal.clone())),
            live: Arc::new(LiveSteps::default()),
            journal,
            functions,
            by_trigger,
            scheduler: Arc::new(Mutex::new(scheduler)),
            wake: Arc::new(Notify::new()),
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            retention: self.config.realtime_retention,
            _lock: lock,
        });
        let engine = Engine { inner };
        engine.inner.tasks.spawn(engine.clone().dispatch());
        engine.inner.tasks.spawn(engine.clone().sweep_realtime());
        Ok(engine)
    }
}

/// A running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    realtime: Arc<Realtime>,
    live: Arc<LiveSteps>,
    functions: HashMap<String, Function>,
    by_trigger: HashMap<String, Vec<String>>,
    // Shared with the journal writer, which queues new runs right after their commit.
    scheduler: Arc<Mutex<Scheduler>>,
    wake: Arc<Notify>,
    running: Mutex<HashMap<String, RunTokens>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    retention: Duration,
    _lock: std::fs::File,
}

const RETRY_AFTER_JOURNAL_ERROR: Duration = Duration::from_secs(1);

impl Engine {
    pub fn builder(config: EngineConfig) -> EngineBuilder {
        EngineBuilder {
            config,
            functions: Vec::new(),
        }
    }

    /// Stores the event and queues a run of every function it triggers.
    pub async fn send(&self, event: NewEvent) -> Result<SendOutcome, Error> {
        if event.name.trim().is_empty() {
            return Err(Error::EmptyEventName);
        }
        let stored = Event {
            id: uuid::Uuid::now_v7().to_string(),
            ts: event.ts.unwrap_or_else(now_ms),
            name: event.name,
            data: event.data,
        };
        let runs: Vec<NewRun> = self
            .inner
            .by_trigger
            .get(&stored.name)
            .into_iter()
            .flatten()
            .filter_map(|function_id| self.inner.functions.get(function_id))
            .map(|function| NewRun {
                id: uuid::Uuid::now_v7().to_string(),
                function_id: function.id.clone(),
                concurrency_key: function.key_of(&stored.data),
            })
            .collect();
        // The runs are queued by the journal writer right after their commit, in commit (so
        // sequence) order: the in-memory FIFO matches the journal's even though concurrent
        // sends share commits, and a caller that stops waiting cannot leave a run unqueued.
        let queued: Vec<(QueueKey, String)> = runs
            .iter()
            .map(|run| {
                let key = queue_key(&run.function_id, run.concurrency_key.as_deref(), &run.id);
                (key, run.id.clone())
            })
            .collect();
        let (scheduler, wake) = (self.inner.scheduler.clone(), self.inner.wake.clone());
        let enqueue = move |seqs: &[i64]| {
            let mut scheduler = scheduler.lock().unwrap_or_else(PoisonError::into_inner);
            for ((key, run_id), seq) in queued.into_iter().zip(seqs) {
                scheduler.enqueue(key, Queued { seq: *seq, run_id });
            }
            drop(scheduler);
            wake.notify_one();
        };
        let inserted = self
            .inner
            .journal
            .insert_event(&stored, event.id.as_deref(), &runs, enqueue)
            .await?;
        if let Err(existing_event_id) = inserted {
            return Ok(SendOutcome {
                event_id: existing_event_id,
                run_ids: Vec::new(),
                duplicate: true,
            });
        }
        Ok(SendOutcome {
            event_id: stored.id,
            run_ids: runs.into_iter().map(|run| run.id).collect(),
            duplicate: false,
        })
    }

    /// Stops a run: a queued run never starts; a running one stops before its next step.
    pub async fn cancel(&self, run_id: &str) -> Result<RunStatus, Error> {
        let status = self
            .inner
            .journal
            .request_cancel(run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
        if status.is_finished() {
            return Ok(status);
        }
        let run = self
            .inner
            .journal
            .run(run_id)
            .await?
            .ok_or_else(|| Error::RunNotFound(run_id.to_owned()))?;
        let key = queue_key(&run.function_id, run.concurrency_key.as_deref(), run_id);
        let was_waiting = self.lock_scheduler().remove_waiting(&key, run_id);
        if was_waiting {
            self.finish_cancelled(run_id).await?;
            return Ok(RunStatus::Cancelled);
        }
        if let Some(tokens) = self.lock_running().get(run_id) {
            tokens.stop.cancel();
            tokens.abort.cancel();
        }
        Ok(status)
    }

    /// Publishes outside any run (not journaled as a step).
    pub async fn publish(&self, channel: &str, topic: &str, data: Value) -> Result<RealtimeMessage, Error> {
        self.inner.realtime.publish(channel, topic, &data, None).await
    }

    /// Kept messages of `channel` after `after_id` (none when `None`), then live messages.
    pub fn subscribe(
        &self,
        channel: &str,
        after_id: Option<i64>,
    ) -> BoxStream<'static, Result<RealtimeMessage, Error>> {
        self.inner.realtime.subscribe(channel, after_id)
    }

    /// Runs matching `filter`, oldest first.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunInfo>, Error> {
        self.inner.journal.runs(filter).await
    }

    /// A run and its steps, or `None` if there is no such run.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunDetail>, Error> {
        let Some(run) = self.inner.journal.run(run_id).await? else {
            return Ok(None);
        };
        let mut steps = self.inner.journal.steps(run_id).await?;
        self.inner.live.merge(run_id, &mut steps);
        Ok(Some(RunDetail { run, steps }))
    }

    /// Counters of the journal's group commit: how many transactions (fsyncs) carried how
    /// many writes.
    pub fn journal_stats(&self) -> JournalStats {
        self.inner.journal.stats()
    }

    /// Stops dispatching and waits up to `grace` for runs in flight to reach a step boundary.
    /// Runs that do not finish are resumed by the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(grace, self.inner.tasks.wait()).await;
        self.inner.journal.close().await;
    }

    fn lock_scheduler(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        self.inner.scheduler.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunTokens>> {
        self.inner.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn dispatch(self) {
        loop {
            loop {
                let next = self.lock_scheduler().next();
                let Some((key, run)) = next else { break };
                let tokens = RunTokens::new(&self.inner.shutdown);
                self.lock_running().insert(run.run_id.clone(), tokens.clone());
                self.inner.tasks.spawn(self.clone().execute(key, run, tokens));
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    async fn execute(self, key: QueueKey, run: Queued, tokens: RunTokens) {
        let driven = tokio::spawn(self.clone().drive(run.run_id.clone(), tokens)).await;
        let requeue = match driven {
            Ok(Ok(())) => false,
            Ok(Err(error)) => {
                tracing::error!(run_id = %run.run_id, %error, "run interrupted by a journal error; retrying");
                true
            }
            Err(join_error) => {
                let error = format!("the function panicked: {join_error}");
                tracing::error!(run_id = %run.run_id, %error);
                if let Err(journal_error) = self
                    .inner
                    .journal
                    .finish_run(&run.run_id, RunStatus::Failed, None, Some(&error))
                    .await
                {
                    tracing::error!(run_id = %run.run_id, %journal_error, "could not record the panic");
                }
                false
            }
        };
        self.lock_running().remove(&run.run_id);
        if requeue && !self.inner.shutdown.is_cancelled() {
            tokio::time::sleep(RETRY_AFTER_JOURNAL_ERROR).await;
            let mut scheduler = self.lock_scheduler();
            scheduler.finish(&key);
            scheduler.enqueue(key, run);
        } else {
            self.lock_scheduler().finish(&key);
        }
        self.inner.wake.notify_one();
    }

    /// Executes (or resumes) one run to its end.
    async fn drive(self, run_id: String, tokens: RunTokens) -> Result<(), Error> {
        let token = &tokens.stop;
        let journal = &self.inner.journal;
        let state = journal.run_state(&run_id).await?;
        if state.status.is_finished() {
            return Ok(());
        }
        let Some(function) = self.inner.functions.get(&state.function_id) else {
            let error = format!("function `{}` is not registered with this engine", state.function_id);
            return journal.finish_run(&run_id, RunStatus::Failed, None, Some(&error)).await;
        };
        if state.cancel_requested {
            return self.finish_cancelled(&run_id).await;
        }
        journal.mark_running(&run_id).await?;

        let failure = match state.failure {
            Some(failure) => failure,
            None => {
                let mut attempt = state.attempt;
                loop {
                    let ctx = self.context(&run_id, function, &tokens, "").await?;
                    let error = match (function.handler)(ctx, state.event.clone()).await {
                        Ok(output) => {
                            return journal
                                .finish_run(&run_id, RunStatus::Completed, Some(&output), None)
                                .await;
                        }
                        Err(error) => error,
                    };
                    if error.is_cancelled() {
                        return self.stop_cancelled(&run_id).await;
                    }
                    if !error.is_retriable() || attempt >= function.retry.retries {
                        journal.set_run_failure(&run_id, error.message()).await?;
                        break error.message().to_owned();
                    }
                    attempt += 1;
                    journal.set_run_attempt(&run_id, attempt).await?;
                    tokio::select! {
                        () = tokio::time::sleep(function.retry.delay(attempt)) => {}
                        () = token.cancelled() => return self.stop_cancelled(&run_id).await,
                    }
                }
            }
        };

        if let Some(on_failure) = &function.on_failure {
            let ctx = self.context(&run_id, function, &tokens, "on_failure/").await?;
            if let Err(error) = on_failure(ctx, state.event.clone(), failure.clone()).await {
                if error.is_cancelled() && self.inner.shutdown.is_cancelled() {
                    return Ok(());
                }
                tracing::warn!(%run_id, %error, "on_failure handler failed");
            }
        }
        journal
            .finish_run(&run_id, RunStatus::Failed, None, Some(&failure))
            .await
    }

    async fn context(
        &self,
        run_id: &str,
        function: &Function,
        tokens: &RunTokens,
        prefix: &'static str,
    ) -> Result<RunContext, Error> {
        let services = RunServices {
            journal: self.inner.journal.clone(),
            realtime: self.inner.realtime.clone(),
            live: self.inner.live.clone(),
        };
        Ok(RunContext::new(
            run_id,
            services,
            self.inner.journal.journal(run_id).await?,
            function.retry,
            tokens.stop.clone(),
            tokens.abort.clone(),
            prefix,
        ))
    }

    /// A cancelled token means either a cancel request or engine shutdown; only the former ends
    /// the run, the latter leaves it to be resumed.
    async fn stop_cancelled(&self, run_id: &str) -> Result<(), Error> {
        if self.inner.shutdown.is_cancelled() {
            return Ok(());
        }
        self.finish_cancelled(run_id).await
    }

    /// Ends a cancelled run, after its function's `on_cancel` handler (with tokens of its own:
    /// the run's are cancelled) had its say.
    async fn finish_cancelled(&self, run_id: &str) -> Result<(), Error> {
        let state = self.inner.journal.run_state(run_id).await?;
        if let Some(function) = self.inner.functions.get(&state.function_id)
            && let Some(on_cancel) = &function.on_cancel
        {
            let ctx = self
                .context(run_id, function, &RunTokens::new(&self.inner.shutdown), "on_cancel/")
                .await?;
            if let Err(error) = on_cancel(ctx, state.event.clone()).await {
                if error.is_cancelled() && self.inner.shutdown.is_cancelled() {
                    return Ok(());
                }
                tracing::warn!(%run_id, %error, "on_cancel handler failed");
            }
        }
        self.inner
            .journal
            .finish_run(run_id, RunStatus::Cancelled, None, Some("run was cancelled"))
            .await
    }

    async fn sweep_realtime(self) {
        let period = (self.inner.retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
        let retention_ms = i64::try_from(self.inner.retention.as_millis()).unwrap_or(i64::MAX);
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
            if let Err(error) = self.inner.journal.delete_realtime_before(now_ms() - retention_ms).await {
                tracing::warn!(%error, "could not delete expired realtime messages");
            }
        }
    }
}

/// The tokens of a running run: `stop` ends it at its next step boundary (also set when the
/// engine shuts down), `abort` stops its step in flight (set by a cancel request only).
#[derive(Clone)]
struct RunTokens {
    stop: CancellationToken,
    abort: CancellationToken,
}

impl RunTokens {
    fn new(shutdown: &CancellationToken) -> Self {
        RunTokens {
            stop: shutdown.child_token(),
            abort: CancellationToken::new(),
        }
    }
}

#[async_trait]
impl EventSink for Engine {
    async fn send_event(&self, event: NewEvent) -> Result<SendOutcome, Error> {
        self.send(event).await
    }
}

/// The engine's own realtime channels, for readers that take any feed (the SSE endpoint).
#[async_trait]
impl RealtimeFeed for Engine {
    async fn publish(&self, channel: &str, topic: &str, data: &Value) -> Result<RealtimeMessage, FeedError> {
        Ok(self.inner.realtime.publish(channel, topic, data, None).await?)
    }

    fn subscribe(
        &self,
        channel: &str,
        after_id: Option<i64>,
    ) -> BoxStream<'static, Result<RealtimeMessage, FeedError>> {
        self.inner
            .realtime
            .subscribe(channel, after_id)
            .map(|message| message.map_err(FeedError::from))
            .boxed()
    }
}
