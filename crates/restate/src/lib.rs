//! `forgeai-restate`: the code-agent served to a Restate cluster.
//!
//! The code-agent is the virtual object `CodeAgent`, keyed by project id, so Restate runs the
//! prompts of one project one at a time in arrival order and those of different projects in
//! parallel. Its `run` handler runs the same code-agent function as the embedded engine, over a
//! [`DurableContext`](forgeai_engine::DurableContext) made of the Restate handler context: each
//! step (every model call, every tool call) is a `ctx.run`, journaled by Restate. Prompts are
//! sent through the ingress with the user message id as idempotency key ([`RestateRuns`]).

mod client;
mod context;
mod object;

pub use client::{RestateConfig, RestateError, RestateRuns, is_invocation_id, register_deployment};
pub use context::RestateContext;
pub use object::{CODE_AGENT_OBJECT, CodeAgentObject, serve};
