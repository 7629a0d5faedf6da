//! `forgeai-agent` has one job: run an **agent network** — a model calling
//! typed tools in a loop until the task is done — as durable steps of an
//! engine run, so an interrupted run resumes where it stopped without paying
//! for any model call twice.
//!
//! The pieces:
//!
//! * [`Tool`]: a function the model may call, with JSON-schema parameters
//!   derived from a Rust type (`schemars`) and an async handler that gets the
//!   typed arguments and a [`ToolContext`]. Arguments that are not valid JSON
//!   or do not fit the type, and calls of unknown tools, are answered to the
//!   model as tool errors; they never fail the run.
//! * [`Agent`]: name, system prompt, model, tools.
//! * [`Network`]: the loop. Each model call and each tool call is its own
//!   engine step (`<agent>/iter-<n>/model`, `<agent>/iter-<n>/tool-<i>-<tool>`);
//!   the [`NetworkState`] (task summary and files) is rebuilt from the
//!   journaled step results, never from in-memory side effects, so a replay
//!   after a crash arrives at exactly the state the crashed process had.
//! * The `forgeai-v1` coding agent ([`coding_agent`], [`coding_network`]) with
//!   its tools `terminal`, `createOrUpdateFiles`, `readFiles` and
//!   `unsplashImage`, working against the [`ProjectWorkspace`] and
//!   [`ImageProvider`] traits that the sandbox and Unsplash crates implement.
//! * [`WorkCheck`]: what looks at the work when an agent says it is done; its findings go back
//!   to the agent (step `<agent>/iter-<n>/check`), and what is still wrong at the end is part
//!   of the [`NetworkResult`].
//! * The naming agent ([`generate_title`]) and the vision step
//!   ([`extract_design_spec_from_image`], [`build_agent_input`]).

mod activity;
mod agent;
mod check;
mod coding;
mod error;
mod limits;
mod naming;
mod network;
mod schema;
mod state;
mod tool;
mod vision;

pub use activity::{ACTIVITY_TOPIC, Activity, CallOutcome, CallReport, RunOutcome, format_elapsed};
pub use agent::{Agent, Model};
pub use check::{CheckOutcome, DEFAULT_CHECK_ROUNDS, WorkCheck};
pub use coding::{
    AppCheck, CHECK_STATUS, CODING_AGENT_NAME, CODING_AGENT_PROMPT, CODING_MAX_ITER, CommandOutput,
    CreateOrUpdateFilesArgs, CreateOrUpdateFilesTool, DevOutput, EditFileArgs, EditFileTool, FileToWrite,
    ImageAttribution, ImageError, ImageOrientation, ImageProvider, ImagePurpose, PROJECT_ROOT, ProjectWorkspace,
    ReadFilesArgs, ReadFilesTool, RouteResponse, SavedImage, TerminalArgs, TerminalTool, TextEdit, UnconfiguredImages,
    UnsplashImageArgs, UnsplashImageTool, WorkspaceError, apply_edits, coding_agent, coding_agent_with_limits,
    coding_network, coding_network_with_limits, normalize_project_path,
};
pub use error::{AgentError, ToolError};
pub use limits::{SizeLimits, format_bytes, truncate_middle};
pub use naming::{FALLBACK_TITLE, NAMING_PROMPT, clean_title, generate_title};
pub use network::{
    FirstAgentRouter, Network, NetworkInput, NetworkResult, RouteContext, Router, STATUS_TOPIC, extract_task_summary,
    project_channel,
};
pub use schema::{parameters_schema, strict_schema};
pub use state::{NetworkState, StateChanges};
pub use tool::{Tool, ToolContext};
pub use vision::{
    AgentInput, ButtonVariant, ContainerWidth, DESIGN_SPEC_PROMPT, DesignSpec, FontStyle, MediaAspect, PageSpec,
    Radius, SectionAlign, SectionButton, SectionContent, SectionItem, SectionLayout, SectionMedia, SectionSpec,
    SpecMeta, SpecMode, SpecTheme, build_agent_input, design_spec_input, extract_design_spec_from_image,
};
