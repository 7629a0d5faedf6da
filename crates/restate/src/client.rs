//! forgeai's side of a Restate cluster: registering the code-agent deployment with the admin
//! API, and starting runs through the ingress.

use async_trait::async_trait;
use forgeai_code_agent::{CODE_AGENT_FUNCTION, CodeAgentRequest, CodeAgentRuns, RunStarter, RunsError, StartError};
use std::sync::Arc;

use forgeai_engine::{RealtimeFeed, RunDetail, RunInfo, RunStatus, StepInfo, StepStatus};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::cancel_channel;
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
#[derive(Clone)]
pub struct RestateRuns {
    config: RestateConfig,
    http: reqwest::Client,
    /// Where stop requests for running invocations are published (see [`cancel_channel`]).
    realtime: Arc<dyn RealtimeFeed>,
}

impl RestateRuns {
    pub fn new(config: RestateConfig, realtime: Arc<dyn RealtimeFeed>) -> Self {
        Self {
            config,
            http: reqwest::Client::new(),
            realtime,
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
    /// Sends `run` to the project's object with the idempotency key (for a prompt, its message
    /// id), so a request sent twice (a retried HTTP call) starts one run: Restate answers the
    /// first invocation's id again.
    async fn start_run(&self, request: &CodeAgentRequest, idempotency_key: Option<&str>) -> Result<String, StartError> {
        let url = format!(
            "{}/{CODE_AGENT_OBJECT}/{}/run/send",
            self.config.ingress_url.trim_end_matches('/'),
            request.project_id
        );
        let mut call = self.http.post(&url).json(request);
        if let Some(key) = idempotency_key {
            call = call.header("idempotency-key", key);
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

/// The columns of `sys_invocation` a run is made of.
const RUN_COLUMNS: &str = "id, target_service_key, status, created_at, running_at, completed_at, \
     completion_result, completion_failure, last_failure";

impl RestateRuns {
    /// Runs a SQL query over Restate's system tables (admin `/query`).
    async fn query(&self, sql: &str) -> Result<Vec<Value>, RunsError> {
        let url = format!("{}/query", self.config.admin_url.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .header("accept", "application/json")
            .json(&json!({ "query": sql }))
            .send()
            .await
            .map_err(|error| RunsError(format!("cannot reach Restate's admin API at {url}: {error}")))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|error| RunsError(format!("Restate's admin API answered something unexpected: {error}")))?;
        if !status.is_success() {
            return Err(RunsError(format!("Restate's admin API answered {status}: {body}")));
        }
        Ok(body["rows"].as_array().cloned().unwrap_or_default())
    }
}

/// Whether `id` looks like a Restate invocation id (`inv_` and base62); Restate fails a query
/// naming anything else.
pub fn is_invocation_id(id: &str) -> bool {
    id.strip_prefix("inv_")
        .is_some_and(|rest| rest.len() >= 20 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// A string for a SQL literal: keys and ids are checked by the server, quotes doubled anyway.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn millis(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.timestamp_millis())
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .ok()
                .map(|time| time.and_utc().timestamp_millis())
        })
}

/// A `sys_invocation` row as a run: Restate's statuses folded into the engine's.
fn run_info(row: &Value) -> RunInfo {
    let text = |column: &str| row[column].as_str().map(str::to_owned);
    let status = match (row["status"].as_str(), row["completion_result"].as_str()) {
        (Some("completed"), Some("success")) => RunStatus::Completed,
        (Some("completed"), _)
            if row["completion_failure"]
                .as_str()
                .is_some_and(|f| f.starts_with("[409]")) =>
        {
            RunStatus::Cancelled
        }
        (Some("completed"), _) => RunStatus::Failed,
        (Some("pending" | "scheduled" | "inboxed"), _) => RunStatus::Queued,
        _ => RunStatus::Running,
    };
    let error = match status {
        RunStatus::Failed | RunStatus::Cancelled => text("completion_failure"),
        RunStatus::Running => text("last_failure"),
        _ => None,
    };
    RunInfo {
        id: text("id").unwrap_or_default(),
        function_id: CODE_AGENT_FUNCTION.to_owned(),
        event_id: text("id").unwrap_or_default(),
        concurrency_key: text("target_service_key"),
        status,
        error,
        output: None,
        created_at: millis(&row["created_at"]).unwrap_or_default(),
        started_at: millis(&row["running_at"]),
        ended_at: millis(&row["completed_at"]),
    }
}

#[async_trait]
impl CodeAgentRuns for RestateRuns {
    async fn project_runs(&self, project_id: &str) -> Result<Vec<RunInfo>, RunsError> {
        let rows = self
            .query(&format!(
                "SELECT {RUN_COLUMNS} FROM sys_invocation WHERE target_service_name = {} \
                 AND target_handler_name = 'run' AND target_service_key = {} ORDER BY created_at",
                literal(CODE_AGENT_OBJECT),
                literal(project_id)
            ))
            .await?;
        Ok(rows.iter().map(run_info).collect())
    }

    async fn run_detail(&self, run_id: &str) -> Result<Option<RunDetail>, RunsError> {
        if !is_invocation_id(run_id) {
            return Ok(None);
        }
        let rows = self
            .query(&format!(
                "SELECT {RUN_COLUMNS} FROM sys_invocation WHERE id = {} AND target_service_name = {}",
                literal(run_id),
                literal(CODE_AGENT_OBJECT)
            ))
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let run = run_info(row);
        // The journal's named `run` entries are the steps (a completed invocation's journal is
        // gone once its retention ends; then the run has no steps to show).
        let entries = self
            .query(&format!(
                "SELECT index, name, completed, appended_at FROM sys_journal WHERE id = {} \
                 AND name IS NOT NULL AND name <> '' ORDER BY index",
                literal(run_id)
            ))
            .await?;
        let steps = entries
            .iter()
            .map(|entry| {
                let completed = entry["completed"].as_bool().unwrap_or(false);
                let at = millis(&entry["appended_at"]).unwrap_or(run.created_at);
                StepInfo {
                    id: entry["name"].as_str().unwrap_or_default().to_owned(),
                    name: entry["name"].as_str().unwrap_or_default().to_owned(),
                    status: if completed {
                        StepStatus::Completed
                    } else {
                        StepStatus::Running
                    },
                    attempts: 1,
                    error: None,
                    started_at: at,
                    ended_at: completed.then_some(at),
                }
            })
            .collect();
        Ok(Some(RunDetail { run, steps }))
    }

    /// A queued invocation is cancelled by Restate (`PATCH /invocations/{id}/cancel`): it never
    /// starts. A running one is told through the realtime feed, which stops its step in flight
    /// (Restate's own cancel would wait for that step to end); its handler then stores the
    /// stopped answer and ends with a terminal error 409.
    async fn cancel_run(&self, run_id: &str) -> Result<Option<RunStatus>, RunsError> {
        let Some(detail) = self.run_detail(run_id).await? else {
            return Ok(None);
        };
        match detail.run.status {
            RunStatus::Queued => {
                let url = format!(
                    "{}/invocations/{run_id}/cancel",
                    self.config.admin_url.trim_end_matches('/')
                );
                let response = self
                    .http
                    .patch(&url)
                    .send()
                    .await
                    .map_err(|error| RunsError(format!("cannot reach Restate's admin API at {url}: {error}")))?;
                let status = response.status();
                if !status.is_success() && status.as_u16() != 404 {
                    let body = response.text().await.unwrap_or_default();
                    return Err(RunsError(format!(
                        "Restate's admin API answered {status} to the cancel: {body}"
                    )));
                }
            }
            RunStatus::Running => {
                self.realtime
                    .publish(&cancel_channel(run_id), "cancel", &json!({ "runId": run_id }))
                    .await
                    .map_err(|error| RunsError(format!("cannot publish the stop request: {error}")))?;
            }
            _ => {}
        }
        Ok(self.run_detail(run_id).await?.map(|detail| detail.run.status))
    }
}
