//! `GET /api/projects/{id}/realtime`: a project's status channel as Server-Sent Events.

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use forgeai_code_agent::{ACTIVITY_TOPIC, STATUS_TOPIC, project_channel};
use forgeai_engine::error_chain;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::api::ApiPath;
use crate::auth::CurrentUser;
use crate::error::ApiError;

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RealtimeQuery {
    /// Replay every kept message after this id (same as the `Last-Event-ID` header).
    pub last_event_id: Option<String>,
    /// Only this topic: `projectInfo` (the status line) or `agentActivity` (the agent's typed
    /// activity events); both when absent.
    pub topic: Option<String>,
}

/// Streams the project's realtime messages: statuses (`event: projectInfo`, `data:` the
/// JSON-encoded status line) and the agent's activity (`event: agentActivity`, `data:` a JSON
/// object with its `type`: `runStarted`, `modelText`, `toolCall`, `appChecked`, `runFinished`),
/// each with `id:` the message id. With `Last-Event-ID` it first replays what came after that
/// id; `?topic=` keeps one topic.
#[utoipa::path(get, path = "/api/projects/{id}/realtime", tag = "realtime",
    params(("id" = String, Path, format = "uuid"), ("Last-Event-ID" = Option<String>, Header), RealtimeQuery),
    responses((status = 200, content_type = "text/event-stream", body = String),
        (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn subscribe(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    query: Result<Query<RealtimeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query?;
    let id = state.owned_project(&user.id, &id).await?.id;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or(query.last_event_id);
    let after = match last_event_id.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<i64>().map_err(|_| {
            ApiError::BadRequest(format!("Last-Event-ID must be a message id (an integer), got {raw:?}"))
        })?),
    };
    let topic = query.topic.filter(|t| !t.is_empty());
    if let Some(topic) = &topic
        && ![STATUS_TOPIC, ACTIVITY_TOPIC].contains(&topic.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "topic must be {STATUS_TOPIC} or {ACTIVITY_TOPIC}, got {topic:?}"
        )));
    }
    let events = state
        .realtime
        .subscribe(&project_channel(&id), after)
        .take_while(|message| {
            if let Err(error) = message {
                tracing::warn!(error = %error_chain(error), "realtime stream ended by an error of its feed");
            }
            futures::future::ready(message.is_ok())
        })
        .filter_map(move |message| {
            let wanted = topic.clone();
            async move {
                let message = message.ok()?;
                if wanted.is_some_and(|wanted| wanted != message.topic) {
                    return None;
                }
                let event = Event::default()
                    .event(message.topic)
                    .id(message.id.to_string())
                    .data(message.data.to_string());
                Some(Ok(event))
            }
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
