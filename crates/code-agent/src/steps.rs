//! What each step of the code-agent does.

use std::collections::BTreeMap;
use std::sync::Arc;

use forgeai_agent::{ACTIVITY_TOPIC, Activity, AgentInput, ImageProvider, Network, NetworkResult, UnconfiguredImages};
use forgeai_engine::{DurableContext, Event, StepError};
use forgeai_llm::Message;
use forgeai_sandbox::{CreateOptions, Error as SandboxError};
use forgeai_store::{AssistantReply, MessageRole, NewFragment};
use serde::{Deserialize, Serialize};

use crate::adapters::{SandboxWorkspace, UnsplashImages};
use crate::fragment::fragment_files;
use crate::{APP_ERRORS_NOTE, CodeAgent, CodeAgentRequest, FAILED_STATUS, STATUS_TOPIC, project_channel};

/// How many earlier messages the agent sees.
const HISTORY_LEN: u32 = 6;
/// How far back to look for the prompt when the event does not name its message.
const PROMPT_SEARCH_LEN: u32 = 50;

/// What a run leaves behind: the ASSISTANT message it stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedReply {
    pub message_id: String,
    pub fragment_id: Option<String>,
}

impl CodeAgent {
    pub(crate) fn request(event: &Event) -> Result<CodeAgentRequest, StepError> {
        serde_json::from_value(event.data.clone()).map_err(|error| {
            StepError::non_retriable(format!(
                "the event data is not {{projectId, message, imageUrl?, userId}}: {error}"
            ))
        })
    }

    pub(crate) async fn status(
        &self,
        ctx: &dyn DurableContext,
        request: &CodeAgentRequest,
        status: &str,
    ) -> Result<(), StepError> {
        ctx.publish(&project_channel(&request.project_id), STATUS_TOPIC, status.into())
            .await
    }

    /// Publishes an event on the project's activity topic.
    pub(crate) async fn activity(
        &self,
        ctx: &dyn DurableContext,
        request: &CodeAgentRequest,
        activity: Activity,
    ) -> Result<(), StepError> {
        ctx.publish(
            &project_channel(&request.project_id),
            ACTIVITY_TOPIC,
            activity.to_value(),
        )
        .await
    }

    /// Reconnects to the project's sandbox, or makes a new one holding the latest fragment's files.
    pub(crate) async fn get_or_create_sandbox(&self, request: &CodeAgentRequest) -> Result<String, StepError> {
        let (user, project_id) = (&request.user_id, &request.project_id);
        let project = self
            .store
            .get_project(user, project_id)
            .await?
            .ok_or_else(|| StepError::non_retriable(format!("project {project_id} no longer exists")))?;
        if let Some(sandbox_id) = project.sandbox_id {
            match self.sandboxes.connect(&sandbox_id).await {
                Ok(_) => return Ok(sandbox_id),
                Err(SandboxError::Gone { .. } | SandboxError::InvalidId { .. }) => {
                    tracing::info!(%project_id, %sandbox_id, "the project's sandbox is gone; creating a new one");
                }
                Err(error) => return Err(error.into()),
            }
        }
        let options = CreateOptions {
            timeout: Some(self.config.sandbox_timeout),
            metadata: BTreeMap::from([("projectId".to_owned(), project_id.clone())]),
            ..CreateOptions::default()
        };
        let sandbox = self.sandboxes.create(&self.config.template, options).await?;
        if let Some(fragment) = self.store.latest_fragment(user, project_id).await? {
            let files: Vec<(String, Vec<u8>)> = fragment
                .files
                .into_iter()
                .map(|(path, content)| (path, content.into_bytes()))
                .collect();
            self.sandboxes.write_files(&sandbox.id, &files).await?;
        }
        self.store
            .set_project_sandbox(user, project_id, Some(&sandbox.id))
            .await?;
        Ok(sandbox.id)
    }

    /// The conversation before the prompt being answered, oldest first.
    pub(crate) async fn previous_messages(&self, request: &CodeAgentRequest) -> Result<Vec<Message>, StepError> {
        let (user, project_id) = (&request.user_id, &request.project_id);
        let prompt_id = match &request.message_id {
            Some(id) => Some(id.clone()),
            None => self
                .store
                .recent_messages(user, project_id, None, PROMPT_SEARCH_LEN)
                .await?
                .into_iter()
                .rev()
                .find(|message| message.role == MessageRole::User && message.content == request.message)
                .map(|message| message.id),
        };
        let Some(prompt_id) = prompt_id else {
            return Ok(Vec::new());
        };
        let history = self
            .store
            .recent_messages(user, project_id, Some(&prompt_id), HISTORY_LEN)
            .await?;
        Ok(history
            .into_iter()
            .map(|message| match message.role {
                MessageRole::User => Message::user(message.content),
                MessageRole::Assistant => Message::assistant(message.content),
            })
            .collect())
    }

    pub(crate) async fn previous_files(
        &self,
        request: &CodeAgentRequest,
    ) -> Result<BTreeMap<String, String>, StepError> {
        let fragment = self
            .store
            .latest_fragment(&request.user_id, &request.project_id)
            .await?;
        // Files a fragment could not keep now (one saved before the limits) are not carried on.
        let files = fragment.map(|fragment| fragment.files).unwrap_or_default();
        Ok(fragment_files(&files, &self.config.limits).files)
    }

    /// The message, preceded by the design spec of its image if it has one.
    pub(crate) async fn build_agent_input(&self, request: &CodeAgentRequest) -> Result<AgentInput, StepError> {
        let image_url = match &request.image_url {
            Some(url) => Some(self.inline_upload(url).await),
            None => None,
        };
        forgeai_agent::build_agent_input(&self.llm, &request.message, image_url.as_deref())
            .await
            .map_err(|error| error.into_step_error())
    }

    /// Our own uploads are sent to the model inline: a hosted model cannot fetch them from here.
    async fn inline_upload(&self, url: &str) -> String {
        let Some(name) = url.rsplit_once("/uploads/").map(|(_, name)| name) else {
            return url.to_owned();
        };
        let mime = match name.rsplit_once('.').map(|(_, extension)| extension) {
            Some("png") => "image/png",
            Some("jpg") => "image/jpeg",
            Some("gif") => "image/gif",
            Some("webp") => "image/webp",
            _ => return url.to_owned(),
        };
        if name.contains('/') || name.contains("..") {
            return url.to_owned();
        }
        match tokio::fs::read(self.config.data_dir.join("uploads").join(name)).await {
            Ok(bytes) => forgeai_llm::data_url(mime, &bytes),
            Err(_) => url.to_owned(),
        }
    }

    pub(crate) fn network(self: &Arc<Self>, request: &CodeAgentRequest, sandbox_id: &str) -> Network {
        let workspace = Arc::new(SandboxWorkspace::new(
            self.sandboxes.clone(),
            sandbox_id,
            self.config.command_timeout,
        ));
        let images: Arc<dyn ImageProvider> = if self.unsplash.is_configured() {
            Arc::new(UnsplashImages::new(
                self.unsplash.clone(),
                self.sandboxes.clone(),
                sandbox_id,
            ))
        } else {
            Arc::new(UnconfiguredImages)
        };
        forgeai_agent::coding_network_with_limits(
            self.llm.clone(),
            workspace,
            images,
            &request.project_id,
            self.config.limits,
        )
    }

    pub(crate) async fn sandbox_url(&self, sandbox_id: &str) -> Result<String, StepError> {
        Ok(format!(
            "{}://{}/",
            self.config.preview_scheme,
            self.sandboxes.host(sandbox_id, 3000)
        ))
    }

    /// A short title for the fragment; the project takes it while it has its default name.
    pub(crate) async fn generate_metadata(&self, request: &CodeAgentRequest) -> Result<String, StepError> {
        let title = forgeai_agent::generate_title(&self.llm, &request.message)
            .await
            .map_err(|error| error.into_step_error())?;
        self.store
            .rename_project_if_default(&request.user_id, &request.project_id, &title)
            .await?;
        Ok(title)
    }

    /// Why the run cannot store a RESULT, if it cannot: the agent did not finish, or left no
    /// files a fragment keeps.
    pub(crate) fn unfinished(&self, result: &NetworkResult) -> Option<String> {
        if !result.completed || result.state.summary.trim().is_empty() {
            return Some(format!(
                "the agent stopped after {} iterations without finishing its task (no task summary)",
                result.iterations
            ));
        }
        if fragment_files(&result.state.files, &self.config.limits)
            .files
            .is_empty()
        {
            return Some("the agent finished without writing any file a fragment keeps".into());
        }
        None
    }

    /// A RESULT with the fragment when the agent finished with a summary and files; else an ERROR.
    /// The fragment keeps what [`fragment_files`] keeps, and the summary says what it left out.
    pub(crate) fn reply(
        &self,
        request: &CodeAgentRequest,
        result: &NetworkResult,
        sandbox_id: &str,
        sandbox_url: &str,
        title: &str,
        input: &AgentInput,
    ) -> AssistantReply {
        if self.unfinished(result).is_some() {
            return AssistantReply::Error {
                content: FAILED_STATUS.to_owned(),
            };
        }
        let kept = fragment_files(&result.state.files, &self.config.limits);
        let mut content = result.state.summary.trim().to_owned();
        if let Some(problems) = &result.problems {
            tracing::warn!(project_id = %request.project_id, "the app still has errors at the end of the run");
            content.push_str(&format!("\n\n{APP_ERRORS_NOTE}\n\n{problems}"));
        }
        if let Some(note) = kept.note() {
            tracing::warn!(project_id = %request.project_id, left_out = ?kept.left_out, "files left out of a fragment");
            content.push_str(&format!("\n\n{note}"));
        }
        AssistantReply::Result {
            content,
            fragment: NewFragment {
                sandbox_url: sandbox_url.to_owned(),
                sandbox_id: Some(sandbox_id.to_owned()),
                title: title.to_owned(),
                files: kept.files,
                image_url: request.image_url.clone(),
                design_spec: input
                    .design_spec
                    .as_ref()
                    .and_then(|spec| serde_json::to_value(spec).ok()),
                app_errors: result.problems.clone(),
            },
        }
    }

    /// Stores the reply as the run's one ASSISTANT message (its id is the run id, so a repeated
    /// step stores nothing twice).
    pub(crate) async fn save(
        &self,
        request: &CodeAgentRequest,
        run_id: &str,
        reply: AssistantReply,
    ) -> Result<SavedReply, StepError> {
        let saved = self
            .store
            .add_assistant_message_once(&request.user_id, &request.project_id, run_id, reply)
            .await?
            .ok_or_else(|| StepError::non_retriable(format!("project {} no longer exists", request.project_id)))?;
        Ok(SavedReply {
            message_id: saved.message.id,
            fragment_id: saved.fragment.map(|fragment| fragment.id),
        })
    }
}
