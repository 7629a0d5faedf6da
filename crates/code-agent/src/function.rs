//! The code-agent function, step by step as in the design's table.

use std::sync::Arc;

use forgeai_agent::{Activity, NetworkInput, NetworkState, RunOutcome};
use forgeai_engine::{DurableContext, DurableContextExt, StepError};

use crate::steps::SavedReply;
use crate::{CANCELLED_STATUS, CodeAgent, CodeAgentRequest, ERRORS_STATUS, FAILED_STATUS, READY_STATUS};

/// One run answering `request`, on any engine.
pub async fn code_agent(
    ctx: &dyn DurableContext,
    request: &CodeAgentRequest,
    agent: Arc<CodeAgent>,
) -> Result<SavedReply, StepError> {
    let run_id = ctx.engine_run_id().to_owned();
    agent
        .activity(ctx, request, Activity::RunStarted { run_id: run_id.clone() })
        .await?;
    let sandbox_id = ctx
        .step("get-or-create-sandbox", || agent.get_or_create_sandbox(request))
        .await?;
    let history = ctx
        .step("get-prev-messages", || agent.previous_messages(request))
        .await?;
    let files = ctx
        .step("get-prev-code-files", || agent.previous_files(request))
        .await?;
    let input = ctx
        .step("build-agent-input", || agent.build_agent_input(request))
        .await?;
    let network_input = NetworkInput::new(input.text.clone())
        .with_history(history)
        .with_state(NetworkState::with_files(files));
    let result = agent.network(request, &sandbox_id).run(ctx, network_input).await?;
    agent.status(ctx, request, "Generating sandbox url...").await?;
    let sandbox_url = ctx.step("get-sandbox-url", || agent.sandbox_url(&sandbox_id)).await?;
    agent.status(ctx, request, "Generating project name...").await?;
    let title = ctx
        .step("generate-metadata", || agent.generate_metadata(request))
        .await?;
    agent.status(ctx, request, "Saving to db...").await?;
    let reply = agent.reply(request, &result, &sandbox_id, &sandbox_url, &title, &input);
    let saved = ctx
        .step("save-to-db", || agent.save(request, ctx.run_id(), reply.clone()))
        .await?;
    if let Some(reason) = agent.unfinished(&result) {
        // The run stored an ERROR message, so it failed: its outcome says so and why.
        // `code_agent_failed` then finds that message (same id) instead of storing a second
        // one, and publishes the failure status.
        return Err(StepError::non_retriable(reason));
    }
    let last_status = if result.problems.is_some() {
        ERRORS_STATUS
    } else {
        READY_STATUS
    };
    agent.status(ctx, request, last_status).await?;
    let finished = Activity::RunFinished {
        run_id,
        outcome: RunOutcome::Completed,
    };
    agent.activity(ctx, request, finished).await?;
    Ok(saved)
}

/// After the retries are spent: an ERROR message for the project, and a failure status.
pub async fn code_agent_failed(
    ctx: &dyn DurableContext,
    request: &CodeAgentRequest,
    error: String,
    agent: Arc<CodeAgent>,
) -> Result<(), StepError> {
    tracing::warn!(run_id = ctx.run_id(), %error, "code-agent run failed");
    let reply = forgeai_store::AssistantReply::Error {
        content: FAILED_STATUS.to_owned(),
    };
    ctx.step("save-error", || agent.save(request, ctx.run_id(), reply.clone()))
        .await?;
    agent.status(ctx, request, FAILED_STATUS).await?;
    let finished = Activity::RunFinished {
        run_id: ctx.engine_run_id().to_owned(),
        outcome: RunOutcome::Failed,
    };
    agent.activity(ctx, request, finished).await
}

/// After a run was stopped: an ERROR message saying so, the status, and the run's end.
pub async fn code_agent_cancelled(
    ctx: &dyn DurableContext,
    request: &CodeAgentRequest,
    agent: Arc<CodeAgent>,
) -> Result<(), StepError> {
    let reply = forgeai_store::AssistantReply::Error {
        content: CANCELLED_STATUS.to_owned(),
    };
    ctx.step("save-cancelled", || agent.save(request, ctx.run_id(), reply.clone()))
        .await?;
    agent.status(ctx, request, CANCELLED_STATUS).await?;
    let finished = Activity::RunFinished {
        run_id: ctx.engine_run_id().to_owned(),
        outcome: RunOutcome::Cancelled,
    };
    agent.activity(ctx, request, finished).await
}
