//! The network loop: model calls and tool calls as durable engine steps.

use std::collections::BTreeSet;
use std::sync::Arc;

use forgeai_engine::{DurableContext, DurableContextExt, StepError};
use forgeai_llm::{ChatRequest, ChatResponse, LlmClient, Message, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activity::{ACTIVITY_TOPIC, Activity, CallOutcome, CallReport};
use crate::agent::Agent;
use crate::check::{CheckOutcome, DEFAULT_CHECK_ROUNDS, WorkCheck, fix_request};
use crate::error::{AgentError, ToolError};
use crate::limits::{SizeLimits, format_bytes, truncate_middle};
use crate::state::{NetworkState, StateChanges};
use crate::tool::{DynTool, ToolContext};

/// The topic statuses are published under.
pub const STATUS_TOPIC: &str = "projectInfo";

/// Iterations of a network unless [`Network::max_iter`] says otherwise.
const DEFAULT_MAX_ITER: u32 = 10;

const SUMMARY_OPEN: &str = "<task_summary>";
const SUMMARY_CLOSE: &str = "</task_summary>";

/// Sent after an answer that neither called a tool nor finished the task, so
/// the next model call has something to answer (a conversation ending in an
/// assistant message makes many models repeat themselves or stop).
const CONTINUE_PROMPT: &str = "Continue with the task using the tools. When everything is done, \
end your reply with <task_summary>…</task_summary>.";

/// The realtime channel of a project: `Project:<projectId>`.
pub fn project_channel(project_id: &str) -> String {
    format!("Project:{project_id}")
}

/// The text between `<task_summary>` and `</task_summary>` (to the end when
/// the closing tag is missing), trimmed; `None` when there is no opening tag.
pub fn extract_task_summary(text: &str) -> Option<String> {
    let start = text.find(SUMMARY_OPEN)? + SUMMARY_OPEN.len();
    let rest = &text[start..];
    let end = rest.find(SUMMARY_CLOSE).unwrap_or(rest.len());
    Some(rest[..end].trim().to_owned())
}

/// What a network run starts from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkInput {
    /// The task (the user's message, or the design spec plus the message).
    pub input: String,
    /// Earlier conversation (user and assistant text), oldest first; placed
    /// between the system prompt and the input.
    pub history: Vec<Message>,
    /// The starting state, usually seeded with the previous fragment's files.
    pub state: NetworkState,
}

impl NetworkInput {
    /// Input without history, from an empty state.
    pub fn new(input: impl Into<String>) -> Self {
        Self {
            input: input.into(),
            ..Self::default()
        }
    }

    /// Sets the earlier conversation.
    pub fn with_history(mut self, history: Vec<Message>) -> Self {
        self.history = history;
        self
    }

    /// Sets the starting state.
    pub fn with_state(mut self, state: NetworkState) -> Self {
        self.state = state;
        self
    }
}

/// How a network run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkResult {
    /// The final state: summary (empty unless `completed`) and files.
    pub state: NetworkState,
    /// Whether an agent gave its `<task_summary>`; `false` when the run
    /// stopped at the iteration limit or because the router ended it.
    pub completed: bool,
    /// Iterations (model calls) made.
    pub iterations: u32,
    /// Tokens used by all model calls of the run, including calls made by an
    /// earlier process and replayed from the journal (they were paid for).
    pub usage: Usage,
    /// What the network's [`WorkCheck`] still found wrong when the run ended; `None` when the
    /// last check passed or none ran.
    #[serde(default)]
    pub problems: Option<String>,
    /// Checks made (each a step).
    #[serde(default)]
    pub checks: u32,
}

/// What a [`Router`] decides from.
#[derive(Debug)]
pub struct RouteContext<'a> {
    /// The iteration about to start, from 1.
    pub iteration: u32,
    /// The state so far.
    pub state: &'a NetworkState,
    /// The network's agents.
    pub agents: &'a [Agent],
    /// Index of the agent that ran the previous iteration.
    pub last_agent: Option<usize>,
}

/// Chooses the agent for each iteration.
///
/// A router is asked again when a run is replayed, so it must decide from its
/// [`RouteContext`] alone (no clocks, randomness or outside state); otherwise
/// the replay would take another path than the journaled one.
pub trait Router: Send + Sync {
    /// The index of the agent to run next, or `None` to end the run.
    fn route(&self, ctx: &RouteContext<'_>) -> Option<usize>;
}

/// The default router: the network's first agent, every iteration, until the
/// task summary or the iteration limit ends the run.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirstAgentRouter;

impl Router for FirstAgentRouter {
    fn route(&self, ctx: &RouteContext<'_>) -> Option<usize> {
        (!ctx.agents.is_empty()).then_some(0)
    }
}

/// The files a run wrote (project paths), and whether it wrote any since its work was last
/// checked.
#[derive(Default)]
struct WrittenFiles {
    paths: BTreeSet<String>,
    since_check: bool,
}

impl WrittenFiles {
    fn record<'a>(&mut self, paths: impl IntoIterator<Item = &'a String>) {
        for path in paths {
            self.paths.insert(path.clone());
            self.since_check = true;
        }
    }
}

/// The journaled result of one tool step: the text for the model and the
/// state changes, so a replay rebuilds the state without running the tool.
#[derive(Debug, Serialize, Deserialize)]
struct ToolStepRecord {
    output: String,
    #[serde(default)]
    is_error: bool,
    #[serde(default)]
    changes: StateChanges,
    /// How long the call took (journaled, so a replay publishes the same activity).
    #[serde(default)]
    duration_ms: u64,
}

/// Agents, a router and the loop that runs them.
///
/// Each iteration is one model call (step `<agent>/iter-<n>/model`) followed
/// by the tool calls it asked for (steps `<agent>/iter-<n>/tool-<i>-<tool>`).
/// The loop ends after the iteration whose answer holds `<task_summary>` (its
/// tool calls still run: they are part of the final answer), when the router
/// returns `None`, or after `max_iter` iterations. With a [`WorkCheck`], a
/// summary after files were written is checked first (step
/// `<agent>/iter-<n>/check`); a failed check goes back to the agent and the
/// loop goes on, at most `rounds` times.
#[derive(Clone)]
pub struct Network {
    llm: LlmClient,
    agents: Vec<Agent>,
    router: Arc<dyn Router>,
    max_iter: u32,
    status_channel: Option<String>,
    status_topic: String,
    limits: SizeLimits,
    check: Option<Arc<dyn WorkCheck>>,
    check_rounds: u32,
}

impl Network {
    /// A network of one agent, run by the [`FirstAgentRouter`], publishing no
    /// statuses until [`Network::status_channel`] is set.
    pub fn new(llm: LlmClient, agent: Agent) -> Self {
        Self {
            llm,
            agents: vec![agent],
            router: Arc::new(FirstAgentRouter),
            max_iter: DEFAULT_MAX_ITER,
            status_channel: None,
            status_topic: STATUS_TOPIC.to_owned(),
            limits: SizeLimits::default(),
            check: None,
            check_rounds: DEFAULT_CHECK_ROUNDS,
        }
    }

    /// Checks the work when an agent gives its summary after a run that wrote files; what the
    /// check finds goes back to the agent, at most `rounds` times (inside the iteration limit).
    pub fn check(mut self, check: impl WorkCheck + 'static, rounds: u32) -> Self {
        self.check = Some(Arc::new(check));
        self.check_rounds = rounds;
        self
    }

    /// Adds another agent (for a router that uses it).
    pub fn with_agent(mut self, agent: Agent) -> Self {
        self.agents.push(agent);
        self
    }

    /// Replaces the router.
    pub fn router(mut self, router: impl Router + 'static) -> Self {
        self.router = Arc::new(router);
        self
    }

    /// The most iterations (model calls) of one run.
    pub fn max_iter(mut self, max_iter: u32) -> Self {
        self.max_iter = max_iter;
        self
    }

    /// Publishes tool statuses on this channel (see [`project_channel`]).
    pub fn status_channel(mut self, channel: impl Into<String>) -> Self {
        self.status_channel = Some(channel.into());
        self
    }

    /// Publishes tool statuses under this topic instead of [`STATUS_TOPIC`].
    pub fn status_topic(mut self, topic: impl Into<String>) -> Self {
        self.status_topic = topic.into();
        self
    }

    /// The size limits of tool calls and of the results sent back to the model (the default
    /// is [`SizeLimits::default`]).
    pub fn limits(mut self, limits: SizeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The agents.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// Runs the network inside an engine run (of any engine: see [`DurableContext`]).
    ///
    /// Return the error from the function handler: a step that failed for
    /// good fails the run, and a retriable error lets the engine replay it,
    /// resuming at the step that failed.
    pub async fn run(&self, ctx: &dyn DurableContext, input: NetworkInput) -> Result<NetworkResult, StepError> {
        let NetworkInput {
            input,
            history,
            mut state,
        } = input;
        let mut transcript: Vec<Message> = Vec::new();
        let mut result = NetworkResult::default();
        let mut last_agent = None;
        let mut written = WrittenFiles::default();
        let mut fix_rounds = 0;

        for iteration in 1..=self.max_iter {
            let route = RouteContext {
                iteration,
                state: &state,
                agents: &self.agents,
                last_agent,
            };
            let Some(index) = self.router.route(&route) else {
                break;
            };
            let agent = self.agents.get(index).ok_or_else(|| {
                StepError::non_retriable(format!(
                    "the router chose agent #{index}, but the network has {} agents",
                    self.agents.len()
                ))
            })?;
            last_agent = Some(index);
            result.iterations = iteration;

            let response = self
                .call_model(ctx, agent, iteration, &history, &input, &transcript)
                .await?;
            if let Some(usage) = response.usage {
                result.usage += usage;
            }
            if let Some(text) = response.content.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
                self.activity(ctx, Activity::ModelText { text: text.to_owned() })
                    .await?;
            }
            let summary = response.content.as_deref().and_then(extract_task_summary);
            if response.content.is_some() || !response.tool_calls.is_empty() {
                transcript.push(self.transcript_message(&response));
            }
            for (call_index, call) in response.tool_calls.iter().enumerate() {
                // Step `<agent>/iter-<n>/tool-<i>-<tool>`.
                let step_prefix = format!("{}/iter-{iteration}/tool-{call_index}", agent.name());
                let output = self
                    .call_tool(ctx, agent, &step_prefix, call, &mut state, &mut written)
                    .await?;
                transcript.push(Message::tool(call.id.clone(), output));
            }
            if let Some(summary) = summary {
                state.summary = summary;
                result.completed = true;
                if !written.since_check {
                    break;
                }
                written.since_check = false;
                let step = format!("{}/iter-{iteration}/check", agent.name());
                let Some(outcome) = self.check_work(ctx, &step, &written.paths).await? else {
                    break;
                };
                result.checks += 1;
                result.problems = outcome.into_problems();
                let Some(problems) = &result.problems else {
                    break;
                };
                if fix_rounds == self.check_rounds || iteration == self.max_iter {
                    break;
                }
                fix_rounds += 1;
                transcript.push(Message::user(fix_request(problems, fix_rounds, self.check_rounds)));
                continue;
            }
            if response.tool_calls.is_empty() {
                transcript.push(Message::user(CONTINUE_PROMPT));
            }
        }
        // The agent ran out of iterations while fixing: the outcome is what the app is like now.
        let last = last_agent.and_then(|index| self.agents.get(index));
        if let (Some(agent), Some(_), true) = (last, &result.problems, written.since_check) {
            let step = format!("{}/final-check", agent.name());
            if let Some(outcome) = self.check_work(ctx, &step, &written.paths).await? {
                result.checks += 1;
                result.problems = outcome.into_problems();
            }
        }
        if !result.completed {
            tracing::warn!(
                run_id = ctx.run_id(),
                iterations = result.iterations,
                "agent network ended without a task summary"
            );
        }
        result.state = state;
        Ok(result)
    }

    /// One model call as a step. The request is built only from the input
    /// and journaled results, so a replay sends (or skips) the same request.
    async fn call_model(
        &self,
        ctx: &dyn DurableContext,
        agent: &Agent,
        iteration: u32,
        history: &[Message],
        input: &str,
        transcript: &[Message],
    ) -> Result<ChatResponse, StepError> {
        let mut messages = Vec::with_capacity(history.len() + transcript.len() + 2);
        messages.push(Message::system(agent.system_prompt()));
        messages.extend_from_slice(history);
        messages.push(Message::user(input));
        messages.extend_from_slice(transcript);
        let request = ChatRequest::new(agent.model().resolve(self.llm.config()), messages)
            .with_tools(agent.tool_definitions())
            .with_stream(agent.is_streaming());
        let step = format!("{}/iter-{iteration}/model", agent.name());
        ctx.step(&step, || async {
            self.llm
                .chat(&request)
                .await
                .map_err(|error| AgentError::from(error).into_step_error())
        })
        .await
    }

    /// The assistant turn as it goes back to the model: the arguments of a tool call over the
    /// size limit are replaced by a note, or every later model call would carry them again.
    fn transcript_message(&self, response: &ChatResponse) -> Message {
        let mut tool_calls = response.tool_calls.clone();
        for call in &mut tool_calls {
            if call.arguments.len() > self.limits.max_tool_call_bytes {
                call.arguments = serde_json::json!({
                    "omitted": format!(
                        "{} of arguments, over the limit of {} per tool call",
                        format_bytes(call.arguments.len()),
                        format_bytes(self.limits.max_tool_call_bytes)
                    )
                })
                .to_string();
            }
        }
        Message::Assistant {
            content: response.content.clone(),
            tool_calls,
        }
    }

    /// One tool call. Calls that cannot run (unknown tool, arguments that are
    /// not JSON or do not fit the parameters, arguments over the size limit)
    /// are answered with an error for the model and need no step: the answer
    /// follows from the journaled model response alone, so a replay computes
    /// the same one.
    async fn call_tool(
        &self,
        ctx: &dyn DurableContext,
        agent: &Agent,
        step_prefix: &str,
        call: &ToolCall,
        state: &mut NetworkState,
        written: &mut WrittenFiles,
    ) -> Result<String, StepError> {
        if call.arguments.len() > self.limits.max_tool_call_bytes {
            tracing::warn!(tool = %call.name, bytes = call.arguments.len(), "the model sent a tool call over the size limit");
            return Ok(format!(
                "Error: this `{}` call has {} of arguments; one tool call may carry at most {}. Nothing was done. \
                 Split the work into several smaller calls (for files: fewer files per call, and no file over its own \
                 size limit).",
                call.name,
                format_bytes(call.arguments.len()),
                format_bytes(self.limits.max_tool_call_bytes)
            ));
        }
        let Some(tool) = agent.find_tool(&call.name) else {
            tracing::warn!(tool = %call.name, "the model called an unknown tool");
            return Ok(format!(
                "Error: there is no tool named `{}`. The available tools are: {}.",
                call.name,
                agent.tool_names().join(", ")
            ));
        };
        let prepared = match tool.prepare(&call.arguments) {
            Ok(prepared) => prepared,
            Err(problem) => {
                tracing::warn!(tool = %call.name, %problem, "the model sent bad tool arguments");
                return Ok(format!(
                    "Error: {problem}. Call `{}` again with arguments that match its parameters schema: {}",
                    call.name,
                    tool.definition().parameters
                ));
            }
        };
        if let (Some(status), Some(channel)) = (&prepared.status, &self.status_channel) {
            ctx.publish(channel, &self.status_topic, Value::String(status.clone()))
                .await?;
        }
        let step = format!("{step_prefix}-{}", tool.name());
        let snapshot: &NetworkState = state;
        let max_result = self.limits.max_tool_result_bytes;
        let record: ToolStepRecord = ctx
            .step(&step, || {
                run_tool(tool, prepared.args.clone(), ctx.run_id(), snapshot, max_result)
            })
            .await?;
        if record.is_error {
            tracing::info!(tool = tool.name(), output = %record.output, "tool call failed");
        }
        let report = CallReport {
            output: &record.output,
            is_error: record.is_error,
            elapsed: std::time::Duration::from_millis(record.duration_ms),
        };
        let activity = Activity::ToolCall {
            tool: tool.name().to_owned(),
            summary: tool.activity(&prepared.args, &report),
            outcome: if record.is_error {
                CallOutcome::Error
            } else {
                CallOutcome::Ok
            },
            duration_ms: record.duration_ms,
        };
        self.activity(ctx, activity).await?;
        written.record(record.changes.files.keys());
        state.apply(&record.changes);
        Ok(record.output)
    }

    /// Runs the network's check as step `step`, publishing its status first; `None` when the
    /// network has no check.
    async fn check_work(
        &self,
        ctx: &dyn DurableContext,
        step: &str,
        changed: &BTreeSet<String>,
    ) -> Result<Option<CheckOutcome>, StepError> {
        let Some(check) = &self.check else {
            return Ok(None);
        };
        if let Some(channel) = &self.status_channel {
            ctx.publish(channel, &self.status_topic, Value::String(check.status().to_owned()))
                .await?;
        }
        let changed: Vec<String> = changed.iter().cloned().collect();
        let outcome = ctx
            .step(step, || async {
                match check.check(&changed).await {
                    Ok(outcome) => Ok(outcome),
                    Err(ToolError::Unavailable(message)) => Err(StepError::retriable(format!(
                        "the check could not reach the sandbox: {message}"
                    ))),
                    Err(error) => Ok(CheckOutcome::Failed {
                        problems: format!("forgeai could not check the app: {error}"),
                    }),
                }
            })
            .await?;
        let problems = outcome.clone().into_problems();
        self.activity(ctx, Activity::AppChecked { problems }).await?;
        Ok(Some(outcome))
    }

    /// Publishes an event on the activity topic of the network's channel, if it has one.
    async fn activity(&self, ctx: &dyn DurableContext, activity: Activity) -> Result<(), StepError> {
        match &self.status_channel {
            Some(channel) => ctx.publish(channel, ACTIVITY_TOPIC, activity.to_value()).await,
            None => Ok(()),
        }
    }
}

/// The body of a tool step. Failures the model can react to become its
/// result; an unreachable backend fails the step so the engine retries it.
async fn run_tool(
    tool: &dyn DynTool,
    args: Value,
    run_id: &str,
    state: &NetworkState,
    max_result_bytes: usize,
) -> Result<ToolStepRecord, StepError> {
    let mut tool_ctx = ToolContext::new(run_id, state);
    let started = std::time::Instant::now();
    let outcome = tool.call(args, &mut tool_ctx).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let changes = tool_ctx.into_changes();
    match outcome {
        Ok(output) => Ok(ToolStepRecord {
            output: truncate_middle(&output, max_result_bytes),
            is_error: false,
            changes,
            duration_ms,
        }),
        Err(ToolError::Unavailable(message)) => Err(StepError::retriable(format!(
            "tool `{}` could not reach its backend: {message}",
            tool.name()
        ))),
        // Whatever was written before the failure stays written, so the
        // changes are kept with the error.
        Err(error) => Ok(ToolStepRecord {
            output: truncate_middle(&format!("Error: {error}"), max_result_bytes),
            is_error: true,
            changes,
            duration_ms,
        }),
    }
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("agents", &self.agents)
            .field("max_iter", &self.max_iter)
            .field("status_channel", &self.status_channel)
            .field("status_topic", &self.status_topic)
            .field("limits", &self.limits)
            .field("check_rounds", &self.check.as_ref().map(|_| self.check_rounds))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_are_extracted_between_the_tags() {
        assert_eq!(
            extract_task_summary("Done.\n<task_summary>\nBuilt a todo app.\n</task_summary>\n"),
            Some("Built a todo app.".into())
        );
        assert_eq!(extract_task_summary("<task_summary>unclosed"), Some("unclosed".into()));
        assert_eq!(
            extract_task_summary("<task_summary></task_summary>"),
            Some(String::new())
        );
        assert_eq!(extract_task_summary("no summary yet"), None);
    }

    #[test]
    fn the_project_channel_is_named_after_the_project() {
        assert_eq!(project_channel("p-1"), "Project:p-1");
    }
}
