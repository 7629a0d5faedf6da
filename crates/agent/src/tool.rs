//! Tools: typed functions the model may call.

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::activity::CallReport;
use crate::error::ToolError;
use crate::schema::parameters_schema;
use crate::state::{NetworkState, StateChanges};

/// A function the model may call.
///
/// The parameters' JSON schema is derived from [`Tool::Args`]; the model's
/// arguments are deserialised into it before [`Tool::call`] runs, so a handler
/// only ever sees well-typed arguments (malformed ones are answered to the
/// model by the network, without calling the handler).
///
/// [`Tool::call`] runs inside a durable engine step: it may run again if the
/// process dies before the step is committed, so its side effects should be
/// idempotent (writing a file is; appending to one is not). Its changes to the
/// network state go through [`ToolContext::record_file`], so they are
/// journaled with the step's result.
///
/// Implementations are `#[async_trait]` (the `async-trait` crate), like the trait.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    /// The arguments, as the model sends them.
    type Args: DeserializeOwned + JsonSchema + Send;

    /// The name the model calls the tool by (`[A-Za-z0-9_-]`, as the APIs
    /// require; it is also part of the tool step's id).
    fn name(&self) -> &str;

    /// What the tool does, for the model.
    fn description(&self) -> &str;

    /// The status published (e.g. `Installing packages...`) when a call of
    /// this tool starts; `None` publishes nothing.
    ///
    /// The network publishes it just before the call's step rather than the
    /// handler publishing it from inside: publishes are journaled in the order
    /// they happen, and a handler that is skipped on replay would shift that
    /// order and make later statuses go missing or repeat.
    fn status(&self, _args: &Self::Args) -> Option<String> {
        None
    }

    /// The line a person reads in the activity log once the call is done, e.g. "Edited
    /// app/page.tsx". The network publishes it with the outcome and the time taken.
    fn activity(&self, _args: &Self::Args, _report: &CallReport<'_>) -> String {
        format!("Called {}", self.name())
    }

    /// Runs the call; the `Ok` text is the tool's result for the model.
    async fn call(&self, args: Self::Args, ctx: &mut ToolContext<'_>) -> Result<String, ToolError>;
}

/// What a tool handler gets besides its arguments: the network state as it
/// was before this call, and a place to record the changes it makes.
#[derive(Debug)]
pub struct ToolContext<'a> {
    run_id: &'a str,
    state: &'a NetworkState,
    changes: StateChanges,
}

impl<'a> ToolContext<'a> {
    /// A context for a call in run `run_id` against `state`.
    pub fn new(run_id: &'a str, state: &'a NetworkState) -> Self {
        Self {
            run_id,
            state,
            changes: StateChanges::default(),
        }
    }

    /// The engine run this call belongs to.
    pub fn run_id(&self) -> &str {
        self.run_id
    }

    /// The network state before this call (without its own changes).
    pub fn state(&self) -> &NetworkState {
        self.state
    }

    /// The current content of a project file as the network knows it,
    /// including what this call has written so far.
    pub fn file(&self, path: &str) -> Option<&str> {
        self.changes
            .files
            .get(path)
            .or_else(|| self.state.files.get(path))
            .map(String::as_str)
    }

    /// Records that the call wrote `content` to `path`; the network applies it
    /// to `state.files` once the call's step is committed.
    pub fn record_file(&mut self, path: impl Into<String>, content: impl Into<String>) {
        self.changes.files.insert(path.into(), content.into());
    }

    /// The changes recorded so far.
    pub fn changes(&self) -> &StateChanges {
        &self.changes
    }

    pub(crate) fn into_changes(self) -> StateChanges {
        self.changes
    }
}

/// A tool call whose arguments fit the tool: ready to run.
pub(crate) struct PreparedCall {
    /// The parsed arguments, deserialised again for each attempt of the step.
    pub args: Value,
    pub status: Option<String>,
}

/// [`Tool`] with its argument type erased, so an agent can hold tools of
/// different types in one list.
#[async_trait]
pub(crate) trait DynTool: Send + Sync {
    fn name(&self) -> &str;
    fn definition(&self) -> forgeai_llm::Tool;
    /// Checks the model's raw arguments; `Err` is the message for the model.
    fn prepare(&self, raw_arguments: &str) -> Result<PreparedCall, String>;
    async fn call(&self, args: Value, ctx: &mut ToolContext<'_>) -> Result<String, ToolError>;
    fn activity(&self, args: &Value, report: &CallReport<'_>) -> String;
}

#[async_trait]
impl<T: Tool> DynTool for T {
    fn name(&self) -> &str {
        Tool::name(self)
    }

    fn definition(&self) -> forgeai_llm::Tool {
        forgeai_llm::Tool::function(Tool::name(self), self.description(), parameters_schema::<T::Args>())
    }

    fn prepare(&self, raw_arguments: &str) -> Result<PreparedCall, String> {
        let raw = raw_arguments.trim();
        // Some servers send no arguments at all for a call without parameters.
        let raw = if raw.is_empty() { "{}" } else { raw };
        let args: Value =
            serde_json::from_str(raw).map_err(|error| format!("the arguments are not valid JSON ({error})"))?;
        let typed: T::Args = deserialize_args(args.clone())?;
        Ok(PreparedCall {
            status: self.status(&typed),
            args,
        })
    }

    async fn call(&self, args: Value, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
        let typed: T::Args = deserialize_args(args).map_err(ToolError::InvalidArguments)?;
        Tool::call(self, typed, ctx).await
    }

    fn activity(&self, args: &Value, report: &CallReport<'_>) -> String {
        match deserialize_args::<T::Args>(args.clone()) {
            Ok(typed) => Tool::activity(self, &typed, report),
            Err(_) => format!("Called {}", Tool::name(self)),
        }
    }
}

/// Deserialises arguments, naming the offending field in the error (e.g.
/// `files[0]: missing field `content``), which is what a model needs to
/// correct its call.
fn deserialize_args<A: DeserializeOwned>(args: Value) -> Result<A, String> {
    serde_path_to_error::deserialize(args).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            format!("the arguments do not match the parameters schema: {inner}")
        } else {
            format!("the arguments do not match the parameters schema: at `{path}`: {inner}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema)]
    struct EchoArgs {
        items: Vec<Item>,
    }

    #[derive(Deserialize, JsonSchema)]
    struct Item {
        text: String,
    }

    struct Echo;

    #[async_trait]
    impl Tool for Echo {
        type Args = EchoArgs;

        fn name(&self) -> &str {
            "echo"
        }

        fn description(&self) -> &str {
            "Echoes"
        }

        fn status(&self, args: &EchoArgs) -> Option<String> {
            Some(format!("Echoing {}...", args.items.len()))
        }

        async fn call(&self, args: EchoArgs, ctx: &mut ToolContext<'_>) -> Result<String, ToolError> {
            for item in &args.items {
                ctx.record_file(item.text.clone(), "x");
            }
            Ok(args
                .items
                .into_iter()
                .map(|item| item.text)
                .collect::<Vec<_>>()
                .join(","))
        }
    }

    #[test]
    fn bad_arguments_are_explained() {
        let tool: &dyn DynTool = &Echo;
        let invalid = tool.prepare("{\"items\": [").err().unwrap_or_default();
        assert!(invalid.starts_with("the arguments are not valid JSON"), "{invalid}");
        let mismatch = tool.prepare("{\"items\": [{\"txt\": 1}]}").err().unwrap_or_default();
        assert!(mismatch.contains("at `items[0]`"), "{mismatch}");
        assert!(mismatch.contains("missing field `text`"), "{mismatch}");
        let not_object = tool.prepare("[1]").err().unwrap_or_default();
        assert!(not_object.contains("do not match"), "{not_object}");
    }

    #[tokio::test]
    async fn prepared_calls_run_with_typed_arguments_and_record_changes() {
        let tool: &dyn DynTool = &Echo;
        let prepared = tool
            .prepare("{\"items\": [{\"text\": \"a\"}, {\"text\": \"b\"}]}")
            .unwrap();
        assert_eq!(prepared.status.as_deref(), Some("Echoing 2..."));
        let state = NetworkState::default();
        let mut ctx = ToolContext::new("run", &state);
        let output = tool.call(prepared.args, &mut ctx).await.unwrap();
        assert_eq!(output, "a,b");
        assert_eq!(ctx.file("b"), Some("x"));
        assert_eq!(ctx.into_changes().files.len(), 2);
    }
}
