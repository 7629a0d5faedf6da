use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event to send. `id` is the sender's idempotency key: a repeat within 24 h starts no run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NewEvent {
    pub name: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch; the time of receipt when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
}

impl NewEvent {
    pub fn new(name: impl Into<String>, data: Value) -> Self {
        Self {
            name: name.into(),
            data,
            id: None,
            ts: None,
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// An event as stored and handed to the functions it triggers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    pub name: String,
    pub data: Value,
    pub ts: i64,
}

/// What `send` did with an event.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SendOutcome {
    pub event_id: String,
    /// The runs this event started; empty when it was a repeat of an earlier event id.
    pub run_ids: Vec<String>,
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// A run as shown to people inspecting the engine. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunInfo {
    pub id: String,
    pub function_id: String,
    pub event_id: String,
    pub concurrency_key: Option<String>,
    pub status: RunStatus,
    pub error: Option<String>,
    pub output: Option<Value>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Running,
    Retrying,
    Completed,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn parse(value: &str) -> Self {
        match value {
            "running" => Self::Running,
            "retrying" => Self::Retrying,
            "completed" => Self::Completed,
            _ => Self::Failed,
        }
    }
}

/// One journal entry of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepInfo {
    pub id: String,
    pub name: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub error: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
}

/// A run together with its journal, in the order the steps first started.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunInfo,
    pub steps: Vec<StepInfo>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub function_id: Option<String>,
    pub concurrency_key: Option<String>,
}

/// A realtime message. Ids increase across all channels.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RealtimeMessage {
    pub id: i64,
    pub channel: String,
    pub topic: String,
    pub data: Value,
    pub created_at: i64,
}
