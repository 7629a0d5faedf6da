//! Health, Prometheus metrics and the OpenAPI document.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use utoipa::OpenApi;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pub events_sent: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("forgeai");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let events_sent = Counter::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests",
            latency.clone(),
        );
        registry.register("events_sent", "Events sent to the engine", events_sent.clone());
        Self {
            registry,
            requests,
            latency,
            events_sent,
        }
    }
}

/// Counts and times every routed request, labelled by its route pattern (not the raw path,
/// which would make one series per project id).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { route: route.clone() })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics` on the API listener: only with `Authorization: Bearer <metrics token>`;
/// 404 when no metrics token is configured, so metrics are never public by default.
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let Some(expected) = state.config.metrics_token.as_deref().filter(|token| !token.is_empty()) else {
        return crate::ApiError::NotFound("route").into_response();
    };
    let given = crate::auth::bearer_token(&headers).unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return crate::ApiError::Unauthorized.into_response();
    }
    encode_metrics(&state)
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `/metrics` with no credential, for a listener of its own (`FORGEAI_METRICS_LISTEN`), which
/// the operator keeps off the public network.
pub fn metrics_router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move { encode_metrics(&state) }),
        )
        .with_state(state)
}

fn encode_metrics(state: &AppState) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.metrics.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Ready when the database answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "error": error.to_string()})),
        )
            .into_response(),
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "forgeai", description = "Self-hostable AI app builder: projects, prompts, fragments and live progress."),
    paths(
        crate::api::create_project, crate::api::list_projects, crate::api::get_project, crate::api::delete_project,
        crate::api::list_messages, crate::api::create_message, crate::api::get_fragment, crate::api::update_fragment,
        crate::api::list_runs, crate::api::get_run, crate::api::cancel_run, crate::realtime::subscribe, crate::uploads::upload,
        crate::events::send, crate::auth::sign_in, crate::auth::sign_out,
        crate::auth::list_tokens, crate::auth::revoke_token,
        crate::preview_access::preview_link, crate::preview_access::update_project,
        crate::versions::list_versions, crate::versions::save_version, crate::versions::diff_versions, crate::versions::restore_version,
        crate::versions::export_zip,
    ),
    // The data of `agentActivity` realtime events (the SSE body itself is text).
    components(schemas(forgeai_code_agent::Activity)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The web UI's copy of the OpenAPI document (from which its API types are generated, see
    /// `ui/tests/api-types.mjs`) is this server's; `FORGEAI_WRITE_OPENAPI=1` rewrites it.
    #[test]
    fn the_ui_copy_of_the_openapi_document_is_current() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/openapi.json");
        let current = serde_json::to_string_pretty(&ApiDoc::openapi()).expect("the document serialises") + "\n";
        if std::env::var_os("FORGEAI_WRITE_OPENAPI").is_some() {
            std::fs::write(&path, &current).expect("write ui/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == current,
            "ui/openapi.json is not this server's OpenAPI document; rewrite it with \
             FORGEAI_WRITE_OPENAPI=1 cargo test -p forgeai-server the_ui_copy, then `npm run gen:api` in ui/"
        );
    }
}
