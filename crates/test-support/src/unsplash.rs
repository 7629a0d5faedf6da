//! A mock of the Unsplash API: photo search, the download-tracking endpoint and the images.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The smallest valid JPEG (1×1 pixel): what every mock photo serves.
pub const TINY_JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 0x4A, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
    0x00, 0xFF, 0xDB, 0x00, 0x43, 0x00, 0x08, 0x06, 0x06, 0x07, 0x06, 0x05, 0x08, 0x07, 0x07, 0x07, 0x09, 0x09, 0x08,
    0x0A, 0x0C, 0x14, 0x0D, 0x0C, 0x0B, 0x0B, 0x0C, 0x19, 0x12, 0x13, 0x0F, 0x14, 0x1D, 0x1A, 0x1F, 0x1E, 0x1D, 0x1A,
    0x1C, 0x1C, 0x20, 0x24, 0x2E, 0x27, 0x20, 0x22, 0x2C, 0x23, 0x1C, 0x1C, 0x28, 0x37, 0x29, 0x2C, 0x30, 0x31, 0x34,
    0x34, 0x34, 0x1F, 0x27, 0x39, 0x3D, 0x38, 0x32, 0x3C, 0x2E, 0x33, 0x34, 0x32, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00,
    0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xC4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0xFF, 0xC4, 0x00, 0x14, 0x10, 0x01, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xDA, 0x00, 0x08,
    0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x2A, 0x9F, 0xFF, 0xD9,
];

/// Requests the mock received, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsplashRequest {
    pub path: String,
    pub query: HashMap<String, String>,
    pub authorization: Option<String>,
}

struct Shared {
    access_key: String,
    addr: Mutex<Option<SocketAddr>>,
    requests: Mutex<Vec<UnsplashRequest>>,
}

/// A mock Unsplash API over real HTTP on `127.0.0.1:<random port>`.
///
/// `GET /search/photos` answers one photo per query (none for the query `nothing`), in the
/// real response shape; `GET /photos/{id}/download` is the download-tracking endpoint;
/// `GET /images/{id}.jpg` serves [`TINY_JPEG`]. Requests without `Authorization: Client-ID
/// <key>` get 401 like the real API.
pub struct MockUnsplash {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockUnsplash {
    pub async fn start(access_key: &str) -> Self {
        let shared = Arc::new(Shared {
            access_key: access_key.to_owned(),
            addr: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/search/photos", get(search))
            .route("/photos/{id}/download", get(track_download))
            .route("/images/{file}", get(image))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock Unsplash");
        let addr = listener.local_addr().expect("local addr");
        *shared.addr.lock().unwrap() = Some(addr);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// What `UNSPLASH_API_URL` would be.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<UnsplashRequest> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for MockUnsplash {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(shared: &Shared, path: String, query: HashMap<String, String>, headers: &HeaderMap) -> bool {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let authorized = authorization.as_deref() == Some(&format!("Client-ID {}", shared.access_key));
    shared.requests.lock().unwrap().push(UnsplashRequest {
        path,
        query,
        authorization,
    });
    authorized
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"errors": ["OAuth error: The access token is invalid"]})),
    )
        .into_response()
}

async fn search(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !record(&shared, "/search/photos".into(), query.clone(), &headers) {
        return unauthorized();
    }
    let term = query.get("query").cloned().unwrap_or_default();
    if term == "nothing" {
        return axum::Json(json!({"total": 0, "total_pages": 0, "results": []})).into_response();
    }
    let base = format!("http://{}", shared.addr.lock().unwrap().expect("bound"));
    let id = format!("photo-{}", term.replace(' ', "-"));
    let photo: Value = json!({
        "id": id,
        "alt_description": format!("a photo of {term}"),
        "description": null,
        "width": 1, "height": 1,
        "urls": {
            "raw": format!("{base}/images/{id}.jpg"),
            "full": format!("{base}/images/{id}.jpg"),
            "regular": format!("{base}/images/{id}.jpg"),
            "small": format!("{base}/images/{id}.jpg"),
            "thumb": format!("{base}/images/{id}.jpg"),
        },
        "links": {
            "self": format!("{base}/photos/{id}"),
            "html": format!("https://unsplash.com/photos/{id}"),
            "download": format!("{base}/images/{id}.jpg"),
            "download_location": format!("{base}/photos/{id}/download"),
        },
        "user": {
            "id": "user-1",
            "username": "janedoe",
            "name": "Jane Doe",
            "links": {"html": "https://unsplash.com/@janedoe"},
        },
    });
    axum::Json(json!({"total": 1, "total_pages": 1, "results": [photo]})).into_response()
}

async fn track_download(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !record(&shared, format!("/photos/{id}/download"), query, &headers) {
        return unauthorized();
    }
    let base = format!("http://{}", shared.addr.lock().unwrap().expect("bound"));
    axum::Json(json!({"url": format!("{base}/images/{id}.jpg")})).into_response()
}

async fn image(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    record(&shared, format!("/images/{file}"), query, &headers);
    ([(header::CONTENT_TYPE, "image/jpeg")], TINY_JPEG).into_response()
}
