//! Checking an agent's work when it says it is done.
//!
//! A [`WorkCheck`] looks at what the run produced (for the coding agent: the app, through its
//! dev server). What it finds goes back to the agent as a message and the loop goes on, for a
//! few rounds inside the iteration budget; what is still wrong after that is the run's outcome,
//! never hidden behind "done".

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::ToolError;

/// Rounds of "here is what is wrong, fix it" a run gets by default.
pub const DEFAULT_CHECK_ROUNDS: u32 = 3;

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum CheckOutcome {
    /// The work is fine.
    Passed,
    /// Problems, as text the agent can act on (file, line, message).
    Failed { problems: String },
}

impl CheckOutcome {
    /// The problems found; `None` when the work passed.
    pub fn into_problems(self) -> Option<String> {
        match self {
            CheckOutcome::Passed => None,
            CheckOutcome::Failed { problems } => Some(problems),
        }
    }
}

/// Looks at the work after an agent gave its summary.
#[async_trait]
pub trait WorkCheck: Send + Sync {
    /// The status published while it checks.
    fn status(&self) -> &str;

    /// Checks the work of a run that changed `changed_files` (project paths, sorted).
    /// [`ToolError::Unavailable`] means the check could not reach what it checks and the step
    /// is retried; any other error is reported as the check's failure.
    async fn check(&self, changed_files: &[String]) -> Result<CheckOutcome, ToolError>;
}

/// The message that hands a failed check back to the agent.
pub fn fix_request(problems: &str, round: u32, rounds: u32) -> String {
    format!(
        "forgeai opened the app to check your work and found errors (check {round} of {rounds}); the app does \
         not work yet:\n\n{problems}\n\nFix the cause of these errors (read the files involved if you need to), \
         then end with <task_summary>…</task_summary> again."
    )
}
