//! Agents: a system prompt, a model and the tools it may call.

use std::sync::Arc;

use forgeai_llm::{LlmConfig, ModelRole};

use crate::tool::{DynTool, Tool};

/// Which model an agent talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// The model configured for this role (`FORGEAI_CODER_MODEL`, …).
    Role(ModelRole),
    /// This exact model name.
    Name(String),
}

impl Model {
    /// The model name to send.
    pub fn resolve<'a>(&'a self, config: &'a LlmConfig) -> &'a str {
        match self {
            Model::Role(role) => config.model(*role),
            Model::Name(name) => name,
        }
    }
}

impl From<ModelRole> for Model {
    fn from(role: ModelRole) -> Self {
        Model::Role(role)
    }
}

impl From<&str> for Model {
    fn from(name: &str) -> Self {
        Model::Name(name.to_owned())
    }
}

impl From<String> for Model {
    fn from(name: String) -> Self {
        Model::Name(name)
    }
}

/// An agent: who it is, what it is told, which model answers for it, and the
/// tools it may call.
#[derive(Clone)]
pub struct Agent {
    name: String,
    system_prompt: String,
    model: Model,
    tools: Vec<Arc<dyn DynTool>>,
    /// The tools as the model sees them; derived once, sent with every model call.
    definitions: Vec<forgeai_llm::Tool>,
    stream: bool,
}

impl Agent {
    /// An agent without tools. `name` becomes part of step ids, so keep it to
    /// `[a-z0-9-]` and stable across releases (renaming it orphans the steps
    /// of runs that are in flight).
    pub fn new(name: impl Into<String>, system_prompt: impl Into<String>, model: impl Into<Model>) -> Self {
        Self {
            name: name.into(),
            system_prompt: system_prompt.into(),
            model: model.into(),
            tools: Vec::new(),
            definitions: Vec::new(),
            stream: false,
        }
    }

    /// Adds a tool; a tool with the same name is replaced, since the model
    /// could not tell two of them apart.
    pub fn tool<T: Tool>(mut self, tool: T) -> Self {
        self.tools.retain(|existing| existing.name() != Tool::name(&tool));
        self.tools.push(Arc::new(tool));
        self.definitions = self.tools.iter().map(|tool| tool.definition()).collect();
        self
    }

    /// Whether model calls stream their answer (the result is the same; a
    /// stream keeps long generations alive through proxies with idle timeouts).
    pub fn stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The system prompt.
    pub fn system_prompt(&self) -> &str {
        &self.system_prompt
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Whether model calls stream.
    pub fn is_streaming(&self) -> bool {
        self.stream
    }

    /// Names of the tools, in the order they were added.
    pub fn tool_names(&self) -> Vec<&str> {
        self.tools.iter().map(|tool| tool.name()).collect()
    }

    /// The tool definitions sent to the model.
    pub fn tool_definitions(&self) -> Vec<forgeai_llm::Tool> {
        self.definitions.clone()
    }

    pub(crate) fn find_tool(&self, name: &str) -> Option<&dyn DynTool> {
        self.tools
            .iter()
            .find(|tool| tool.name() == name)
            .map(|tool| tool.as_ref())
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.name)
            .field("model", &self.model)
            .field("tools", &self.tool_names())
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}
