//! The durable execution engine forgeai's functions run on.
//!
//! Events trigger functions; each run goes through steps whose results are journaled in SQLite,
//! so a run interrupted by a crash resumes by replay without repeating completed steps. Runs
//! sharing a concurrency key execute one at a time in FIFO order; failing steps are retried with
//! backoff; runs publish realtime messages that subscribers can replay from an id (also through
//! [`RealtimeFeed`], which other stores of realtime messages implement as well). The engine
//! knows nothing of forgeai's own types, so the same functions could be served elsewhere.

mod context;
mod durable;
mod engine;
mod error;
mod feed;
mod function;
mod journal;
mod live;
mod realtime;
mod scheduler;
mod types;
mod writer;

pub use context::RunContext;
pub use durable::{DurableContext, DurableContextExt, StepFuture, StepWork};
pub use engine::{Engine, EngineBuilder, EngineConfig};
pub use error::{Error, StepError, error_chain};
pub use feed::{EventSink, FeedError, RealtimeFeed};
pub use function::{Function, RetryPolicy};
pub use types::{
    Event, NewEvent, RealtimeMessage, RunDetail, RunFilter, RunInfo, RunStatus, SendOutcome, StepInfo, StepStatus,
};
pub use writer::{Durability, JournalStats};
