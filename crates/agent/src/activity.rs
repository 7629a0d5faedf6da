//! What the agent does while it does it: typed events on a project's `agentActivity` topic,
//! next to the status line, for a live log (each tool call in a line a person reads, the
//! model's text between tool calls, and when a run starts and how it ends).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The realtime topic of [`Activity`] events on a project's channel.
pub const ACTIVITY_TOPIC: &str = "agentActivity";

/// How a tool call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallOutcome {
    Ok,
    Error,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Completed,
    Failed,
    Cancelled,
}

/// One event of the `agentActivity` topic, as JSON `{"type": "toolCall", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Activity {
    #[serde(rename_all = "camelCase")]
    RunStarted { run_id: String },
    /// What the model said in one turn (before its tool calls, or its final answer).
    ModelText { text: String },
    #[serde(rename_all = "camelCase")]
    ToolCall {
        tool: String,
        /// A line for a person: "Edited app/page.tsx", "Ran `npm install recharts` (exit 0, 4.1 s)".
        summary: String,
        outcome: CallOutcome,
        duration_ms: u64,
    },
    /// The app was checked through its dev server.
    AppChecked {
        /// The errors found; `None` when every page rendered.
        problems: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    RunFinished { run_id: String, outcome: RunOutcome },
}

impl Activity {
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// A finished tool call, for [`crate::Tool::activity`].
#[derive(Debug, Clone, Copy)]
pub struct CallReport<'a> {
    /// The tool's answer to the model (or its error).
    pub output: &'a str,
    pub is_error: bool,
    pub elapsed: Duration,
}

/// `4.1 s` or `350 ms`.
pub fn format_elapsed(elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(1) {
        format!("{} ms", elapsed.as_millis())
    } else {
        format!("{:.1} s", elapsed.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_typed_json() {
        let event = Activity::ToolCall {
            tool: "terminal".into(),
            summary: "Ran `ls` (exit 0, 12 ms)".into(),
            outcome: CallOutcome::Ok,
            duration_ms: 12,
        };
        assert_eq!(
            event.to_value(),
            serde_json::json!({"type": "toolCall", "tool": "terminal", "summary": "Ran `ls` (exit 0, 12 ms)", "outcome": "ok", "durationMs": 12})
        );
        let finished = Activity::RunFinished {
            run_id: "r1".into(),
            outcome: RunOutcome::Cancelled,
        };
        assert_eq!(
            finished.to_value(),
            serde_json::json!({"type": "runFinished", "runId": "r1", "outcome": "cancelled"})
        );
        assert_eq!(format_elapsed(Duration::from_millis(4100)), "4.1 s");
        assert_eq!(format_elapsed(Duration::from_millis(350)), "350 ms");
    }
}
