use std::fmt;
use std::sync::Arc;

/// Failures of the engine itself: the journal database, bad registrations, unknown runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("engine journal database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("engine journal migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot open the engine data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("another forgeai engine already uses {path}; stop it first or choose another data directory")]
    Locked { path: String },
    #[error("function `{0}` is registered twice")]
    DuplicateFunction(String),
    #[error("event name must not be empty")]
    EmptyEventName,
    #[error("run `{0}` not found")]
    RunNotFound(String),
    #[error("stored journal value is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// A write failed on its own; the other writes of its group commit went through.
    #[error("engine journal write failed: {0}")]
    Write(#[from] rusqlite::Error),
    /// The transaction of a group commit failed as a whole, so every write in it failed.
    #[error("engine journal commit failed: {0}")]
    Commit(Arc<rusqlite::Error>),
    #[error("cannot start the engine journal writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("the engine journal is closed (the engine was shut down)")]
    JournalClosed,
}

/// Why a step or a run failed, and whether trying again could help.
///
/// Any `std::error::Error` converts into a retriable `StepError`, so step closures can use `?`.
/// (It deliberately does not implement `std::error::Error` itself, which would clash with that
/// blanket conversion.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    message: String,
    kind: StepErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepErrorKind {
    Retriable,
    NonRetriable,
    Cancelled,
}

impl StepError {
    /// A failure that may go away when tried again (a timeout, a 503, a busy resource).
    pub fn retriable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: StepErrorKind::Retriable,
        }
    }

    /// A failure that trying again cannot fix; the run fails at once.
    pub fn non_retriable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: StepErrorKind::NonRetriable,
        }
    }

    /// The run was cancelled: the step did not (or not entirely) run.
    pub fn cancelled() -> Self {
        Self {
            message: "run was cancelled".into(),
            kind: StepErrorKind::Cancelled,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is_retriable(&self) -> bool {
        self.kind == StepErrorKind::Retriable
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == StepErrorKind::Cancelled
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for StepError {
    fn from(error: E) -> Self {
        Self::retriable(error_chain(&error))
    }
}

/// An error and its causes on one line (`outer: cause: root cause`), for logs and step errors.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_errors_become_retriable_with_their_causes() {
        let io = std::io::Error::other("disk on fire");
        let error = StepError::from(io);
        assert!(error.is_retriable());
        assert_eq!(error.message(), "disk on fire");
    }
}
