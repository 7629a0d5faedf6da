//! forgeai's side of a Restate cluster: registering the code-agent deployment with the admin
//! API, and starting runs through the ingress.

use async_trait::async_trait;
use forgeai_code_agent::{CodeAgentRequest, RunStarter, StartError};
use serde::Deserialize;
use serde_json::json;

use crate::object::CODE_AGENT_OBJECT;

/// Where the Restate cluster is.
#[derive(Debug, Clone)]
pub struct RestateConfig {
    /// The ingress (`RESTATE_INGRESS_URL`), e.g. `http://127.0.0.1:8080`.
    pub ingress_url: String,
    /// The admin API (`RESTATE_ADMIN_URL`), e.g. `http://127.0.0.1:9070`.
    pub admin_url: String,
}

/// Why talking to Restate failed.
#[derive(Debug, thiserror::Error)]
pub enum RestateError {
    #[error("cannot reach Restate at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Restate answered {status} to {what}: {body}")]
    Refused { what: String, status: u16, body: String },
}

/// Registers (or re-registers, forcing a new revision when the address changed) the deployment
/// serving the code-agent at `endpoint_url` with the admin API.
pub async fn register_deployment(config: &RestateConfig, endpoint_url: &str) -> Result<(), RestateError> {
    let url = format!("{}/deployments", config.admin_url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .json(&json!({ "uri": endpoint_url, "force": true }))
        .send()
        .await
        .map_err(|source| RestateError::Unreachable {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(RestateError::Refused {
        what: format!("the registration of {endpoint_url}"),
        status: status.as_u16(),
        body: response.text().await.unwrap_or_default(),
    })
}

/// Starts code-agent runs through the Restate ingress.
#[derive(Debug, Clone)]
pub struct RestateRuns {
    config: RestateConfig,
    http: reqwest::Client,
}

impl RestateRuns {
    pub fn new(config: RestateConfig) -> Self {
        Self {
            config,
            http: reqwest::Client::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendResponse {
    invocation_id: String,
}

#[async_trait]
impl RunStarter for RestateRuns {
    /// Sends `run` to the project's object. The user message id is the idempotency key, so a
    /// request sent twice (a retried HTTP call) starts one run: Restate answers the first
    /// invocation's id again.
    async fn start_run(&self, request: &CodeAgentRequest) -> Result<String, StartError> {
        let url = format!(
            "{}/{CODE_AGENT_OBJECT}/{}/run/send",
            self.config.ingress_url.trim_end_matches('/'),
            request.project_id
        );
        let mut call = self.http.post(&url).json(request);
        if let Some(message_id) = &request.message_id {
            call = call.header("idempotency-key", message_id);
        }
        let response = call
            .send()
            .await
            .map_err(|error| StartError(format!("cannot reach Restate's ingress at {url}: {error}")))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(StartError(format!("Restate's ingress answered {status}: {body}")));
        }
        let sent: SendResponse = response
            .json()
            .await
            .map_err(|error| StartError(format!("Restate's ingress answered something unexpected: {error}")))?;
        Ok(sent.invocation_id)
    }
}
