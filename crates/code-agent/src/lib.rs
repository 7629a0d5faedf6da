//! The code-agent function: the event that asks for it and, step by step as in the design,
//! the work it does with the engine, store, agent and sandbox.

mod adapters;
mod fragment;
mod function;
mod steps;
mod submit;
mod unsplash;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use forgeai_engine::Function;
use forgeai_llm::LlmClient;
use forgeai_sandbox::SandboxProvider;
use forgeai_store::Store;
use serde::{Deserialize, Serialize};

pub use forgeai_agent::{Activity, SizeLimits, format_bytes};
pub use function::{code_agent, code_agent_cancelled, code_agent_failed};
pub use steps::SavedReply;
pub use submit::{
    CodeAgentRuns, PromptTarget, RunStarter, RunsError, StartError, SubmitError, Submitted, submit_prompt,
};
pub use unsplash::{DEFAULT_UNSPLASH_API_URL, Photo, Unsplash, UnsplashError};

/// The event that starts a code-agent run.
pub const CODE_AGENT_EVENT: &str = "code-agent/codeAgent.run";

/// The id of the code-agent function in the engine.
pub const CODE_AGENT_FUNCTION: &str = "code-agent";

/// The answer stored for a run that was stopped, and its last status.
pub const CANCELLED_STATUS: &str = "Stopped. File changes made before the stop stay in the sandbox.";
/// The topic of the agent's activity events on a project's channel.
pub const ACTIVITY_TOPIC: &str = forgeai_agent::ACTIVITY_TOPIC;
/// The topic of status messages on a project's channel.
pub const STATUS_TOPIC: &str = forgeai_agent::STATUS_TOPIC;

/// The last status of a run that went well.
pub const READY_STATUS: &str = "Demo is ready";

/// The line a RESULT introduces the errors its app still has with.
pub const APP_ERRORS_NOTE: &str = "The app still has errors that the agent could not fix:";

/// The last status of a run that ended with an app that has errors.
pub const ERRORS_STATUS: &str = "Ready, but the app has errors";

/// The status (and ERROR message) of a run that failed.
pub const FAILED_STATUS: &str = "Something went wrong. Please try again.";

/// The realtime channel a project's statuses are published on.
pub fn project_channel(project_id: &str) -> String {
    forgeai_agent::project_channel(project_id)
}

/// The data of a [`CODE_AGENT_EVENT`]; the USER message is already stored when it is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeAgentRequest {
    pub project_id: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    pub user_id: String,
    /// The stored USER message this run answers; history is what came before it. Inngest
    /// clients may leave it out: the newest USER message with this text is taken then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// Settings of the code-agent.
#[derive(Debug, Clone)]
pub struct CodeAgentConfig {
    /// The sandbox template new sandboxes are made from (`FORGEAI_SANDBOX_TEMPLATE`).
    pub template: String,
    /// Where uploads live, so uploaded images can be sent to the vision model inline.
    pub data_dir: PathBuf,
    /// `http` or `https`: how preview URLs are reached.
    pub preview_scheme: String,
    /// Idle time before a sandbox is paused.
    pub sandbox_timeout: Duration,
    /// How long one `terminal` command may run.
    pub command_timeout: Duration,
    /// Sizes of files, tool calls, tool results and fragments.
    pub limits: SizeLimits,
}

impl CodeAgentConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            template: "forgeai-v1".into(),
            data_dir: data_dir.into(),
            preview_scheme: "http".into(),
            sandbox_timeout: Duration::from_secs(15 * 60),
            command_timeout: Duration::from_secs(5 * 60),
            limits: SizeLimits::default(),
        }
    }
}

/// What the code-agent works with.
pub struct CodeAgent {
    store: Store,
    sandboxes: Arc<dyn SandboxProvider>,
    llm: LlmClient,
    unsplash: Unsplash,
    config: CodeAgentConfig,
}

impl CodeAgent {
    pub fn new(
        store: Store,
        sandboxes: Arc<dyn SandboxProvider>,
        llm: LlmClient,
        unsplash: Unsplash,
        config: CodeAgentConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            sandboxes,
            llm,
            unsplash,
            config,
        })
    }

    /// The engine function: one run per event, one run per project at a time.
    pub fn function(self: &Arc<Self>) -> Function {
        let agent = self.clone();
        let on_failure = self.clone();
        let on_cancel = self.clone();
        Function::new(CODE_AGENT_FUNCTION, CODE_AGENT_EVENT, move |ctx, event| {
            let agent = agent.clone();
            async move { function::code_agent(&ctx, &CodeAgent::request(&event)?, agent).await }
        })
        .concurrency_key("projectId")
        .on_failure(move |ctx, event, error| {
            let agent = on_failure.clone();
            async move { function::code_agent_failed(&ctx, &CodeAgent::request(&event)?, error, agent).await }
        })
        .on_cancel(move |ctx, event| {
            let agent = on_cancel.clone();
            async move { function::code_agent_cancelled(&ctx, &CodeAgent::request(&event)?, agent).await }
        })
    }
}
