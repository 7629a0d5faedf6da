//! The code-agent function: the event that asks for it and, step by step as in the design,
//! the work it does with the engine, store, agent and sandbox.

mod unsplash;

use serde::{Deserialize, Serialize};

pub use unsplash::{Attribution, Photo, Unsplash, UnsplashError};

/// The event that starts a code-agent run.
pub const CODE_AGENT_EVENT: &str = "code-agent/codeAgent.run";

/// The id of the code-agent function in the engine.
pub const CODE_AGENT_FUNCTION: &str = "code-agent";

/// The realtime channel a project's statuses are published on.
pub fn project_channel(project_id: &str) -> String {
    format!("Project:{project_id}")
}

/// The topic of status messages on a project's channel.
pub const STATUS_TOPIC: &str = "projectInfo";

/// The data of a [`CODE_AGENT_EVENT`]; the USER message is already stored when it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeAgentRequest {
    pub project_id: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    pub user_id: String,
}
