//! Mock OpenAI-compatible chat-completions server.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Decides the reply from the request body (see [`MockOpenAi::with_responder`]).
pub type Responder = Arc<dyn Fn(&Value) -> MockReply + Send + Sync>;

/// One tool call in a [`MockReply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockToolCall {
    /// Call id.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Arguments JSON text, sent as-is.
    pub arguments: String,
}

#[derive(Debug, Clone)]
enum Kind {
    Message {
        content: Option<String>,
        tool_calls: Vec<MockToolCall>,
        finish_reason: Option<String>,
        usage: UsageMode,
    },
    Error {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    RawJson(Value),
    RawSse(String),
}

#[derive(Debug, Clone, Copy)]
enum UsageMode {
    Auto,
    Fixed(u64, u64),
    Omit,
}

/// One scripted answer of [`MockOpenAi`]: an assistant message (text and/or
/// tool calls), an HTTP error, or a raw body; optionally after a delay.
///
/// Message replies are served in the shape the request asked for: one JSON
/// body, or (`"stream": true`) SSE chunks with the text and each tool call's
/// arguments split over several deltas, a usage chunk when
/// `stream_options.include_usage` is set, then `data: [DONE]`.
#[derive(Debug, Clone)]
pub struct MockReply {
    kind: Kind,
    delay: Option<Duration>,
    chunk_delay: Option<Duration>,
    id: String,
}

impl MockReply {
    fn message(content: Option<String>, tool_calls: Vec<MockToolCall>) -> Self {
        MockReply {
            kind: Kind::Message {
                content,
                tool_calls,
                finish_reason: None,
                usage: UsageMode::Auto,
            },
            delay: None,
            chunk_delay: None,
            id: "chatcmpl-mock".to_owned(),
        }
    }

    /// An assistant text reply (`finish_reason: "stop"`).
    pub fn text(content: impl Into<String>) -> Self {
        Self::message(Some(content.into()), Vec::new())
    }

    /// An assistant reply with one tool call (`finish_reason: "tool_calls"`).
    /// `arguments`: a JSON string is sent verbatim (so it may be invalid JSON),
    /// any other value as its JSON text.
    pub fn tool_call(id: impl Into<String>, name: impl Into<String>, arguments: impl Into<Value>) -> Self {
        Self::message(None, Vec::new()).with_tool_call(id, name, arguments)
    }

    /// Adds a tool call to a message reply.
    pub fn with_tool_call(
        mut self,
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: impl Into<Value>,
    ) -> Self {
        if let Kind::Message { tool_calls, .. } = &mut self.kind {
            let arguments = match arguments.into() {
                Value::String(s) => s,
                other => other.to_string(),
            };
            tool_calls.push(MockToolCall {
                id: id.into(),
                name: name.into(),
                arguments,
            });
        }
        self
    }

    /// Sets the assistant text of a message reply.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        if let Kind::Message { content, .. } = &mut self.kind {
            *content = Some(text.into());
        }
        self
    }

    /// Overrides the finish reason of a message reply.
    pub fn finish_reason(mut self, reason: impl Into<String>) -> Self {
        if let Kind::Message { finish_reason, .. } = &mut self.kind {
            *finish_reason = Some(reason.into());
        }
        self
    }

    /// Fixed usage (`total = prompt + completion`). By default usage is
    /// computed from the size of the request's `messages` and of the answer.
    pub fn usage(mut self, prompt_tokens: u64, completion_tokens: u64) -> Self {
        if let Kind::Message { usage, .. } = &mut self.kind {
            *usage = UsageMode::Fixed(prompt_tokens, completion_tokens);
        }
        self
    }

    /// Sends no usage at all.
    pub fn without_usage(mut self) -> Self {
        if let Kind::Message { usage, .. } = &mut self.kind {
            *usage = UsageMode::Omit;
        }
        self
    }

    /// Response id (default `chatcmpl-mock`).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// An HTTP error with an OpenAI-style body
    /// `{"error":{"message":..,"type":"mock_error","code":null}}`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        let body = json!({"error": {"message": message.into(), "type": "mock_error", "code": null}});
        Self::error_body(status, body.to_string())
    }

    /// An HTTP error with this exact body.
    pub fn error_body(status: u16, body: impl Into<String>) -> Self {
        MockReply {
            kind: Kind::Error {
                status,
                retry_after: None,
                body: body.into(),
            },
            delay: None,
            chunk_delay: None,
            id: String::new(),
        }
    }

    /// Adds a `Retry-After` header (seconds or HTTP date) to an error reply.
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        if let Kind::Error { retry_after, .. } = &mut self.kind {
            *retry_after = Some(value.into());
        }
        self
    }

    /// HTTP 200 with this exact JSON body (whatever `stream` says).
    pub fn raw_json(body: Value) -> Self {
        MockReply {
            kind: Kind::RawJson(body),
            delay: None,
            chunk_delay: None,
            id: String::new(),
        }
    }

    /// HTTP 200 `text/event-stream` with this exact body, sent in small
    /// pieces to exercise chunk boundaries. Include `data: [DONE]` yourself.
    pub fn raw_sse(body: impl Into<String>) -> Self {
        MockReply {
            kind: Kind::RawSse(body.into()),
            delay: None,
            chunk_delay: None,
            id: String::new(),
        }
    }

    /// Waits this long before answering.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }

    /// Streaming only: waits this long between two SSE chunks.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = Some(d);
        self
    }
}

/// A request received by [`MockOpenAi`].
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// Body as JSON (`Value::Null` when it was not JSON; see `raw_body`).
    pub body: Value,
    /// Body as text.
    pub raw_body: String,
    /// When it arrived.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<MockReply>>,
    responder: Mutex<Option<Responder>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// A mock OpenAI-compatible server over real HTTP on `127.0.0.1:<random port>`.
///
/// Serves `POST /v1/chat/completions` and `POST /chat/completions`. Each
/// request takes the next scripted [`MockReply`]; when the script is empty the
/// responder (if set) is asked; otherwise the answer is HTTP 418 with an
/// error body saying the script is exhausted (not retriable, so tests fail
/// fast). The server stops when dropped.
pub struct MockOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl MockOpenAi {
    /// Starts a server that plays `script` in order. Must be called inside a
    /// Tokio runtime; panics if it cannot bind.
    pub async fn start(script: impl IntoIterator<Item = MockReply>) -> Self {
        let shared = Arc::new(Shared::default());
        shared.script.lock().unwrap().extend(script);
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/chat/completions", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind mock OpenAI server");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockOpenAi { addr, shared, task }
    }

    /// Starts a server that answers every request with `responder(body)`.
    pub async fn with_responder(responder: impl Fn(&Value) -> MockReply + Send + Sync + 'static) -> Self {
        let mock = Self::start([]).await;
        mock.set_responder(responder);
        mock
    }

    /// Sets (or replaces) the responder used once the script is empty.
    pub fn set_responder(&self, responder: impl Fn(&Value) -> MockReply + Send + Sync + 'static) {
        *self.shared.responder.lock().unwrap() = Some(Arc::new(responder));
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: MockReply) {
        self.shared.script.lock().unwrap().push_back(reply);
    }

    /// Scripted replies not yet served.
    pub fn remaining(&self) -> usize {
        self.shared.script.lock().unwrap().len()
    }

    /// Base URL including `/v1`, e.g. `http://127.0.0.1:41234/v1` (what
    /// `OPENAI_BASE_URL` would be).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Root URL without `/v1`, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Bodies of all requests so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    /// All requests so far, with path, headers and arrival time.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Number of requests so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.request_count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for MockOpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockOpenAi")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let index = {
        let mut reqs = shared.requests.lock().unwrap();
        reqs.push(RecordedRequest {
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: json_body.clone(),
            raw_body,
            received_at: Instant::now(),
        });
        reqs.len()
    };
    let scripted = shared.script.lock().unwrap().pop_front();
    let reply = match scripted {
        Some(r) => r,
        None => {
            let responder = shared.responder.lock().unwrap().clone();
            match responder {
                Some(f) => f(&json_body),
                None => MockReply::error(
                    418,
                    format!("forgeai mock: no scripted reply left for request #{index}"),
                ),
            }
        }
    };
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await;
    }
    render(reply, &json_body)
}

fn render(reply: MockReply, request: &Value) -> Response {
    match reply.kind {
        Kind::Error {
            status,
            retry_after,
            body,
        } => {
            let mut resp = (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response();
            if let Some(ra) = retry_after
                && let Ok(v) = HeaderValue::from_str(&ra)
            {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Kind::RawJson(v) => ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        Kind::RawSse(body) => {
            // 7-byte pieces: boundaries fall anywhere, even inside UTF-8 chars.
            let bytes: Vec<Bytes> = body.as_bytes().chunks(7).map(Bytes::copy_from_slice).collect();
            sse_response(bytes, reply.chunk_delay)
        }
        Kind::Message {
            content,
            tool_calls,
            finish_reason,
            usage,
        } => {
            let model = request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("mock-model")
                .to_owned();
            let finish =
                finish_reason.unwrap_or_else(|| if tool_calls.is_empty() { "stop" } else { "tool_calls" }.to_owned());
            let usage = match usage {
                UsageMode::Omit => None,
                UsageMode::Fixed(p, c) => Some((p, c)),
                UsageMode::Auto => {
                    let prompt = request.get("messages").map(|m| m.to_string().len()).unwrap_or(0);
                    let out = content.as_deref().map(str::len).unwrap_or(0)
                        + tool_calls
                            .iter()
                            .map(|t| t.name.len() + t.arguments.len())
                            .sum::<usize>();
                    Some((prompt as u64 / 4 + 1, out as u64 / 4 + 1))
                }
            }
            .map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}));
            let stream = request.get("stream").and_then(Value::as_bool).unwrap_or(false);
            if stream {
                let include_usage = request
                    .pointer("/stream_options/include_usage")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let chunks = stream_chunks(
                    &reply.id,
                    &model,
                    content.as_deref(),
                    &tool_calls,
                    &finish,
                    usage.filter(|_| include_usage),
                );
                let bytes = chunks
                    .into_iter()
                    .map(|c| Bytes::from(format!("data: {c}\n\n")))
                    .chain(std::iter::once(Bytes::from_static(b"data: [DONE]\n\n")))
                    .collect();
                sse_response(bytes, reply.chunk_delay)
            } else {
                let mut message = json!({"role": "assistant", "content": content, "refusal": null});
                if !tool_calls.is_empty() {
                    message["tool_calls"] = tool_calls.iter().map(wire_tool_call).collect();
                }
                let mut body = json!({
                    "id": reply.id,
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
                });
                if let Some(u) = usage {
                    body["usage"] = u;
                }
                ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
            }
        }
    }
}

fn wire_tool_call(t: &MockToolCall) -> Value {
    json!({"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}})
}

/// Splits `s` into at most `max` pieces on char boundaries (at least one piece).
fn split(s: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    let size = chars.len().div_ceil(max.min(chars.len()));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// OpenAI-shaped stream chunks (without the `data: ` framing).
fn stream_chunks(
    id: &str,
    model: &str,
    content: Option<&str>,
    tool_calls: &[MockToolCall],
    finish: &str,
    usage: Option<Value>,
) -> Vec<Value> {
    let with_usage = usage.is_some();
    let chunk = |delta: Value, finish_reason: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        });
        if with_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut out = Vec::new();
    let first_content = if content.is_some() { json!("") } else { Value::Null };
    out.push(chunk(
        json!({"role": "assistant", "content": first_content, "refusal": null}),
        Value::Null,
    ));
    if let Some(text) = content {
        for piece in split(text, 16) {
            out.push(chunk(json!({"content": piece}), Value::Null));
        }
    }
    for (i, t) in tool_calls.iter().enumerate() {
        out.push(chunk(
            json!({"tool_calls": [{"index": i, "id": t.id, "type": "function",
                "function": {"name": t.name, "arguments": ""}}]}),
            Value::Null,
        ));
        for piece in split(&t.arguments, 3) {
            out.push(chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    out.push(chunk(json!({}), json!(finish)));
    if let Some(u) = usage {
        out.push(json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": u,
        }));
    }
    out
}

fn sse_response(chunks: Vec<Bytes>, chunk_delay: Option<Duration>) -> Response {
    let stream = futures::stream::iter(chunks).then(move |b| async move {
        if let Some(d) = chunk_delay {
            tokio::time::sleep(d).await;
        }
        Ok::<_, Infallible>(b)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}
