//! Errors of the agent layer.

use forgeai_engine::StepError;
use forgeai_llm::LlmError;

/// A failure of a one-shot agent call (naming, design-spec extraction).
///
/// Inside an engine step, convert with [`AgentError::into_step_error`] rather
/// than `?`: the engine's blanket conversion would make every error retriable,
/// including a 400 that no retry can fix.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model call failed (after the client's own retries).
    #[error("model call failed: {0}")]
    Llm(#[from] LlmError),
    /// The model declined to answer (structured-output refusal).
    #[error("the model refused to answer: {0}")]
    Refused(String),
    /// The input cannot be sent to a model (e.g. an image URL of an
    /// unsupported scheme).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model's answer did not have the required shape.
    #[error("the model's answer is not a valid {what}: {reason}")]
    InvalidAnswer {
        /// What was expected, e.g. `design spec`.
        what: &'static str,
        /// Why it does not fit.
        reason: String,
    },
}

impl AgentError {
    /// Whether the same call may succeed when tried again later.
    pub fn is_retriable(&self) -> bool {
        match self {
            AgentError::Llm(error) => error.is_retriable(),
            // Sampling differs between calls, so another try may well produce
            // a usable answer.
            AgentError::InvalidAnswer { .. } => true,
            AgentError::Refused(_) | AgentError::InvalidInput(_) => false,
        }
    }

    /// The engine error for this failure, retriable exactly when
    /// [`AgentError::is_retriable`] says so.
    pub fn into_step_error(self) -> StepError {
        if self.is_retriable() {
            StepError::retriable(self.to_string())
        } else {
            StepError::non_retriable(self.to_string())
        }
    }
}

/// Why a tool call did not succeed.
///
/// [`InvalidArguments`](ToolError::InvalidArguments) and
/// [`Failed`](ToolError::Failed) are told to the model as the tool's result,
/// so it can correct itself; [`Unavailable`](ToolError::Unavailable) means the
/// backend (sandbox, image service) could not be reached, which the model
/// cannot fix, so the tool step fails and the engine retries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments are well-formed but not acceptable (a path outside the
    /// project, a query that is too short, …).
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed (a file that does not exist, …).
    #[error("{0}")]
    Failed(String),
    /// The tool's backend is unreachable; retried by the engine.
    #[error("tool backend unavailable: {0}")]
    Unavailable(String),
}
