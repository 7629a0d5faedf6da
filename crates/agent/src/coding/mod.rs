//! The `forgeai-v1` coding agent: its prompt, tools and network.

mod app_check;
mod edit;
mod images;
mod prompt;
mod tools;
mod workspace;

use std::sync::Arc;

use forgeai_llm::{LlmClient, ModelRole};

pub use app_check::{AppCheck, CHECK_STATUS};
pub use edit::{EditFileArgs, EditFileTool, TextEdit, apply_edits};
pub use images::{
    ImageAttribution, ImageError, ImageOrientation, ImageProvider, ImagePurpose, SavedImage, UnconfiguredImages,
    UnsplashImageArgs, UnsplashImageTool,
};
pub use prompt::CODING_AGENT_PROMPT;
pub use tools::{
    CreateOrUpdateFilesArgs, CreateOrUpdateFilesTool, FileToWrite, ReadFilesArgs, ReadFilesTool, TerminalArgs,
    TerminalTool,
};
pub use workspace::{
    CommandOutput, DevOutput, PROJECT_ROOT, ProjectWorkspace, RouteResponse, WorkspaceError, normalize_project_path,
};

use crate::agent::Agent;
use crate::check::DEFAULT_CHECK_ROUNDS;
use crate::limits::SizeLimits;
use crate::network::{Network, project_channel};

/// The coding agent's name: the prefix of its step ids.
pub const CODING_AGENT_NAME: &str = "code-agent";

/// The most iterations of a coding run.
pub const CODING_MAX_ITER: u32 = 20;

/// The coding agent with its five tools, on the coder model.
pub fn coding_agent(workspace: Arc<dyn ProjectWorkspace>, images: Arc<dyn ImageProvider>) -> Agent {
    coding_agent_with_limits(workspace, images, SizeLimits::default())
}

/// [`coding_agent`] with its file tools held to `limits`.
pub fn coding_agent_with_limits(
    workspace: Arc<dyn ProjectWorkspace>,
    images: Arc<dyn ImageProvider>,
    limits: SizeLimits,
) -> Agent {
    Agent::new(CODING_AGENT_NAME, CODING_AGENT_PROMPT, ModelRole::Coder)
        .tool(TerminalTool::new(workspace.clone()))
        .tool(CreateOrUpdateFilesTool::new(workspace.clone()).max_file_bytes(limits.max_file_bytes))
        .tool(EditFileTool::new(workspace.clone()).max_file_bytes(limits.max_file_bytes))
        .tool(ReadFilesTool::new(workspace).max_result_bytes(limits.max_tool_result_bytes))
        .tool(UnsplashImageTool::new(images))
}

/// The network of a coding run for `project_id`: the coding agent, at most
/// [`CODING_MAX_ITER`] iterations, its work checked through the dev server ([`AppCheck`],
/// [`DEFAULT_CHECK_ROUNDS`] rounds of fixes), statuses on the project's channel.
pub fn coding_network(
    llm: LlmClient,
    workspace: Arc<dyn ProjectWorkspace>,
    images: Arc<dyn ImageProvider>,
    project_id: &str,
) -> Network {
    coding_network_with_limits(llm, workspace, images, project_id, SizeLimits::default())
}

/// [`coding_network`] with its tools and tool results held to `limits`.
pub fn coding_network_with_limits(
    llm: LlmClient,
    workspace: Arc<dyn ProjectWorkspace>,
    images: Arc<dyn ImageProvider>,
    project_id: &str,
    limits: SizeLimits,
) -> Network {
    Network::new(llm, coding_agent_with_limits(workspace.clone(), images, limits))
        .check(AppCheck::new(workspace), DEFAULT_CHECK_ROUNDS)
        .max_iter(CODING_MAX_ITER)
        .status_channel(project_channel(project_id))
        .limits(limits)
}
