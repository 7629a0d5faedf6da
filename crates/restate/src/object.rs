//! The virtual object `CodeAgent`: one `run` per prompt, serialized per project by Restate.

use std::net::SocketAddr;
use std::sync::Arc;

use forgeai_code_agent::{CodeAgent, CodeAgentRequest, SavedReply};

use crate::context::CANCELLED_CODE;
use forgeai_engine::RealtimeFeed;
use restate_sdk::prelude::*;

use crate::context::RestateContext;

/// The name the object is registered under in Restate.
pub const CODE_AGENT_OBJECT: &str = "CodeAgent";

/// The code-agent as a Restate virtual object keyed by project id.
#[derive(Clone)]
pub struct CodeAgentObject {
    agent: Arc<CodeAgent>,
    realtime: Arc<dyn RealtimeFeed>,
}

impl CodeAgentObject {
    /// The object running `agent`, publishing statuses on `realtime`.
    pub fn new(agent: Arc<CodeAgent>, realtime: Arc<dyn RealtimeFeed>) -> Self {
        Self { agent, realtime }
    }
}

/// A model call or a terminal command may take minutes without a journal entry: Restate must
/// neither suspend nor abort the handler for that (its defaults are a minute and ten).
#[restate_sdk::object(name = "CodeAgent", inactivity_timeout = "30m", abort_timeout = "10m")]
impl CodeAgentObject {
    /// Answers one prompt of the project (the object's key), as the code-agent function does.
    #[handler]
    async fn run(
        &self,
        ctx: ObjectContext<'_>,
        Json(request): Json<CodeAgentRequest>,
    ) -> Result<Json<SavedReply>, HandlerError> {
        if ctx.key() != request.project_id {
            return Err(TerminalError::new(format!(
                "the run of project {} was sent to the object of project {}",
                request.project_id,
                ctx.key()
            ))
            .into());
        }
        let durable = RestateContext::new(ctx, self.realtime.clone());
        match forgeai_code_agent::code_agent(&durable, &request, self.agent.clone()).await {
            Ok(saved) => Ok(Json(saved)),
            Err(error) if error.is_cancelled() => {
                durable.stopping();
                forgeai_code_agent::code_agent_cancelled(&durable, &request, self.agent.clone())
                    .await
                    .map_err(|failure| TerminalError::new(failure.message()))?;
                Err(TerminalError::new_with_code(CANCELLED_CODE, "run was cancelled").into())
            }
            Err(error) => {
                // The failure path of the embedded engine: an ERROR message and a failure status,
                // then the invocation ends for good, so the project's next prompt runs.
                let message = error.message().to_owned();
                forgeai_code_agent::code_agent_failed(&durable, &request, message.clone(), self.agent.clone())
                    .await
                    .map_err(|failure| TerminalError::new(failure.message()))?;
                Err(TerminalError::new(message).into())
            }
        }
    }
}

/// Serves `object` as a Restate deployment on `listen` until the process ends.
pub async fn serve(object: CodeAgentObject, listen: SocketAddr) {
    HttpServer::new(Endpoint::builder().bind(object).build())
        .listen_and_serve(listen)
        .await;
}
