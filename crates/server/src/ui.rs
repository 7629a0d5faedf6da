//! The web UI: the front-end build (`ui/dist`) served by this same process.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::response::{Html, IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// Where the UI build is looked for unless `FORGEAI_UI_DIR` says otherwise: this checkout's.
pub fn default_ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist")
}

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>forgeai</title>\
<p>The web UI is not built. Run <code>scripts/setup.sh</code> (or <code>cd ui &amp;&amp; npm ci &amp;&amp; npm run build</code>) \
and reload. The API is at <code>/api</code>.</p>";

/// Paths no route took: API paths are 404s; any other GET is a page of the single-page app,
/// so it gets `index.html` (or an asset of the build).
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    let is_api = ["/api/", "/e/", "/uploads/"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    if is_api || (request.method() != Method::GET && request.method() != Method::HEAD) {
        return ApiError::NotFound("route").into_response();
    }
    let Some(ui_dir) = state.config.ui_dir.as_deref() else {
        return Html(NOT_BUILT).into_response();
    };
    if let Some(asset) = path.strip_prefix("/assets/") {
        return serve_asset(ui_dir, asset).await;
    }
    match tokio::fs::read(ui_dir.join("index.html")).await {
        Ok(page) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            page,
        )
            .into_response(),
        Err(_) => Html(NOT_BUILT).into_response(),
    }
}

async fn serve_asset(ui_dir: &Path, name: &str) -> Response {
    let safe = !name.is_empty()
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !safe {
        return ApiError::NotFound("asset").into_response();
    }
    let content_type = match name.rsplit_once('.').map(|(_, extension)| extension) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
    };
    match tokio::fs::read(ui_dir.join("assets").join(name)).await {
        // Build output has content hashes in its names, so it never changes under one name.
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => ApiError::NotFound("asset").into_response(),
    }
}
