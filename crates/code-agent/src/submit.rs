//! Submitting a prompt: store the USER message (with a new project, or in an existing one),
//! start the code-agent run that answers it, and, when the run cannot be started, take the
//! message (and a project made for it) back, so nothing waits for a run that never comes. The
//! HTTP API and `forgeai run` both submit through here.

use async_trait::async_trait;
use forgeai_engine::{Engine, NewEvent, RunDetail, RunFilter, RunInfo, RunStatus};
use forgeai_store::{Message, Project, Store};

use crate::{CODE_AGENT_EVENT, CODE_AGENT_FUNCTION, CodeAgentRequest};

/// Starts code-agent runs on the engine forgeai uses.
#[async_trait]
pub trait RunStarter: Send + Sync {
    /// Starts the run answering `request` and returns its id. A second start with the same
    /// `idempotency_key` starts no second run (and answers the first one's id where the engine
    /// can tell).
    async fn start_run(&self, request: &CodeAgentRequest, idempotency_key: Option<&str>) -> Result<String, StartError>;
}

/// The code-agent runs of the engine forgeai uses, as the runs API shows them: runs are keyed
/// by project id (their `concurrency_key`) and belong to the function [`CODE_AGENT_FUNCTION`].
#[async_trait]
pub trait CodeAgentRuns: RunStarter {
    /// The runs of a project, oldest first.
    async fn project_runs(&self, project_id: &str) -> Result<Vec<RunInfo>, RunsError>;

    /// One run with its steps; `None` when the engine does not know it.
    async fn run_detail(&self, run_id: &str) -> Result<Option<RunDetail>, RunsError>;

    /// Stops a run: a queued one never starts, a running one stops in its current step (a
    /// sandbox command is killed, a model call dropped). `None` when the engine does not know
    /// it; otherwise its status after the request.
    async fn cancel_run(&self, run_id: &str) -> Result<Option<RunStatus>, RunsError>;
}

/// Why the engine could not say what its runs are.
#[derive(Debug, thiserror::Error)]
#[error("the engine could not list its runs: {0}")]
pub struct RunsError(pub String);

#[async_trait]
impl CodeAgentRuns for Engine {
    async fn project_runs(&self, project_id: &str) -> Result<Vec<RunInfo>, RunsError> {
        let filter = RunFilter {
            function_id: Some(CODE_AGENT_FUNCTION.into()),
            concurrency_key: Some(project_id.to_owned()),
        };
        self.runs(&filter).await.map_err(|error| RunsError(error.to_string()))
    }

    async fn run_detail(&self, run_id: &str) -> Result<Option<RunDetail>, RunsError> {
        self.run(run_id).await.map_err(|error| RunsError(error.to_string()))
    }

    async fn cancel_run(&self, run_id: &str) -> Result<Option<RunStatus>, RunsError> {
        match self.cancel(run_id).await {
            Ok(status) => Ok(Some(status)),
            Err(forgeai_engine::Error::RunNotFound(_)) => Ok(None),
            Err(error) => Err(RunsError(error.to_string())),
        }
    }
}

/// Why a run could not be started.
#[derive(Debug, thiserror::Error)]
#[error("the run could not be started: {0}")]
pub struct StartError(pub String);

#[async_trait]
impl RunStarter for Engine {
    async fn start_run(&self, request: &CodeAgentRequest, idempotency_key: Option<&str>) -> Result<String, StartError> {
        let data = serde_json::to_value(request).map_err(|error| StartError(error.to_string()))?;
        let mut event = NewEvent::new(CODE_AGENT_EVENT, data);
        event.id = idempotency_key.map(str::to_owned);
        let sent = self.send(event).await.map_err(|error| StartError(error.to_string()))?;
        sent.run_ids
            .into_iter()
            .next()
            .ok_or_else(|| StartError("the code-agent function is not registered with the engine".into()))
    }
}

/// Where a prompt goes.
#[derive(Debug, Clone, Copy)]
pub enum PromptTarget<'a> {
    /// A new project, named after the prompt until the agent names it.
    NewProject,
    /// An existing project of the user.
    Project(&'a str),
}

/// A prompt that was stored and whose run started.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub project: Project,
    pub message: Message,
    pub run_id: String,
}

/// Why a prompt was not submitted; nothing of it is stored then.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("project {0} does not exist")]
    NoProject(String),
    #[error(transparent)]
    Store(#[from] forgeai_store::Error),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Stores `prompt` as the user's message in `target` and starts the run that answers it.
pub async fn submit_prompt(
    store: &Store,
    runs: &dyn RunStarter,
    user_id: &str,
    target: PromptTarget<'_>,
    prompt: &str,
    image_url: Option<&str>,
) -> Result<Submitted, SubmitError> {
    let (project, message) = match target {
        PromptTarget::NewProject => store.create_project(user_id, prompt, image_url).await?,
        PromptTarget::Project(project_id) => {
            let project = store
                .get_project(user_id, project_id)
                .await?
                .ok_or_else(|| SubmitError::NoProject(project_id.to_owned()))?;
            let message = store
                .add_user_message(user_id, project_id, prompt, image_url)
                .await?
                .ok_or_else(|| SubmitError::NoProject(project_id.to_owned()))?;
            (project, message)
        }
    };
    let request = CodeAgentRequest {
        project_id: project.id.clone(),
        message: prompt.to_owned(),
        image_url: image_url.map(str::to_owned),
        user_id: user_id.to_owned(),
        message_id: Some(message.id.clone()),
    };
    // The message id keys the run: a retried submit cannot start a second one.
    match runs.start_run(&request, Some(&message.id)).await {
        Ok(run_id) => Ok(Submitted {
            project,
            message,
            run_id,
        }),
        Err(error) => {
            let undone = match target {
                PromptTarget::NewProject => store.delete_project(user_id, &project.id).await,
                PromptTarget::Project(_) => store.delete_message(user_id, &message.id).await,
            };
            if let Err(undo) = undone {
                tracing::error!(project_id = %project.id, error = %undo, "could not take back a prompt whose run did not start");
            }
            Err(error.into())
        }
    }
}
