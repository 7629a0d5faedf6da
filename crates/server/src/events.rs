//! `POST /e/{eventKey}`: an Inngest-compatible event endpoint, so existing Inngest clients can
//! send `code-agent/codeAgent.run`. The event key is a forgeai API token.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use forgeai_code_agent::{CODE_AGENT_EVENT, CodeAgentRequest};
use forgeai_engine::NewEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{ApiJson, ApiPath, parse_id};
use crate::error::ApiError;

const MAX_EVENTS_PER_REQUEST: usize = 100;

/// Set by the Inngest SDKs to the same value on every retry of one send.
const EVENT_ID_SEED_HEADER: &str = "x-inngest-event-id-seed";

#[derive(Deserialize, ToSchema)]
pub struct InngestEvent {
    pub name: String,
    #[serde(default)]
    pub data: Value,
    /// An idempotency key: a repeat from the same user within 24 hours starts nothing.
    #[serde(default)]
    pub id: Option<String>,
    /// Milliseconds since the Unix epoch.
    #[serde(default)]
    pub ts: Option<i64>,
}

/// One event, or a batch of them.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum InngestEvents {
    Batch(Vec<InngestEvent>),
    One(InngestEvent),
}

#[derive(Serialize, ToSchema)]
pub struct SendResponse {
    /// The id of each event, in the order sent.
    pub ids: Vec<String>,
    pub status: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CodeAgentData {
    project_id: String,
    message: String,
    #[serde(default)]
    image_url: Option<String>,
}

/// Sends events the Inngest way. `code-agent/codeAgent.run` events must name a project of the
/// key's owner; their `userId` is set to that owner.
#[utoipa::path(post, path = "/e/{eventKey}", request_body = InngestEvents, tag = "events",
    params(("eventKey" = String, Path, description = "a forgeai API token")),
    // The key in the path is the credential; no bearer token is needed.
    security(()),
    responses((status = 200, body = SendResponse), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    ApiPath(event_key): ApiPath<String>,
    headers: HeaderMap,
    events: Result<ApiJson<InngestEvents>, ApiError>,
) -> Result<Json<SendResponse>, ApiError> {
    // A wrong key is told as such even when the body is bad too.
    let user = state
        .store
        .authenticate(&event_key)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let ApiJson(events) = events?;
    let seed = headers
        .get(EVENT_ID_SEED_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|seed| !seed.is_empty());
    let events = match events {
        InngestEvents::Batch(events) => events,
        InngestEvents::One(event) => vec![event],
    };
    if events.is_empty() || events.len() > MAX_EVENTS_PER_REQUEST {
        return Err(ApiError::BadRequest(format!(
            "send between 1 and {MAX_EVENTS_PER_REQUEST} events per request"
        )));
    }
    // Check every event before sending any, so a bad batch sends nothing.
    let mut checked = Vec::with_capacity(events.len());
    for (index, event) in events.into_iter().enumerate() {
        if event.name.trim().is_empty() {
            return Err(ApiError::BadRequest(format!("event {index} has no name")));
        }
        // A code-agent event also keeps its request, for an engine whose runs start without events.
        let (data, request) = if event.name == CODE_AGENT_EVENT {
            let data: CodeAgentData = serde_json::from_value(event.data).map_err(|error| {
                ApiError::BadRequest(format!(
                    "event {index}: data must be {{projectId, message, imageUrl?}}: {error}"
                ))
            })?;
            let project_id = parse_id("projectId", &data.project_id)?;
            crate::api::validate_message(&data.message)?;
            crate::api::validate_image_url(data.image_url.as_deref())?;
            state
                .store
                .get_project(&user.id, &project_id)
                .await?
                .ok_or(ApiError::NotFound("project"))?;
            let request = CodeAgentRequest {
                project_id,
                message: data.message,
                image_url: data.image_url,
                user_id: user.id.clone(),
                message_id: None,
            };
            let data = serde_json::to_value(&request).map_err(|error| ApiError::Internal(error.to_string()))?;
            (data, Some(request))
        } else {
            (event.data, None)
        };
        // Idempotency keys are per user, so one user's keys never swallow another's events.
        // Without a key of its own, an event sent by an Inngest SDK is keyed by the request's
        // seed, which the SDK keeps when it retries the request.
        let id = match (event.id, seed) {
            (Some(id), _) => Some(format!("{}:id:{id}", user.id)),
            (None, Some(seed)) => Some(format!("{}:seed:{seed}:{index}", user.id)),
            (None, None) => None,
        };
        let event = NewEvent {
            name: event.name,
            data,
            id,
            ts: event.ts,
        };
        checked.push((event, request));
    }
    let mut ids = Vec::with_capacity(checked.len());
    for (event, request) in checked {
        let id = match request {
            Some(request) if state.external_runs => state
                .runs
                .start_run(&request, event.id.as_deref())
                .await
                .map_err(|error| ApiError::Unavailable(format!("{error}; send the event again later")))?,
            _ => state.events.send_event(event).await?.event_id,
        };
        ids.push(id);
        state.metrics.events_sent.inc();
    }
    Ok(Json(SendResponse { ids, status: 200 }))
}
