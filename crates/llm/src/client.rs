//! The HTTP client: sending, retrying, streaming.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::config::LlmConfig;
use crate::error::{LlmError, chain};
use crate::parse::{StreamAccumulator, error_from_body, parse_completion, parse_retry_after, parse_retry_after_ms};
use crate::sse::SseDecoder;
use crate::types::{ChatRequest, ChatResponse};

/// A piece of a streamed answer, passed to the callback of
/// [`LlmClient::chat_stream`] as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// More assistant text.
    Text(String),
    /// Part of a tool call: `id`/`name` usually come with the first delta of
    /// an index, `arguments` is the next fragment of the arguments JSON.
    ToolCallDelta {
        /// Position of the tool call in the answer.
        index: u64,
        /// Call id, when this delta carries it.
        id: Option<String>,
        /// Function name, when this delta carries it.
        name: Option<String>,
        /// Arguments fragment (may be empty).
        arguments: String,
    },
}

/// Client for one OpenAI-compatible endpoint. Cheap to clone (shares the
/// connection pool).
#[derive(Debug, Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    config: Arc<LlmConfig>,
    url: Arc<str>,
}

impl LlmClient {
    /// Builds a client. Fails only on an unusable config (e.g. a header value
    /// with control characters).
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = config.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|_| LlmError::Invalid("OPENAI_API_KEY is not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        for (k, v) in &config.extra_headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| LlmError::Invalid(format!("header name {k:?}: {e}")))?;
            let value = HeaderValue::from_str(v).map_err(|e| LlmError::Invalid(format!("header {k:?} value: {e}")))?;
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("forgeai-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LlmError::Invalid(chain(&e)))?;
        let url = config.chat_completions_url().into();
        Ok(Self {
            http,
            config: Arc::new(config),
            url,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Sends `request`, streaming or not according to `request.stream`, with
    /// retries. Both transports return the same [`ChatResponse`].
    pub async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        if request.stream {
            self.chat_stream(request, |_| {}).await
        } else {
            self.chat_once_with_retries(request).await
        }
    }

    /// Streams the answer (whatever `request.stream` says), calling `on_event`
    /// for every text / tool-call delta, and returns the accumulated
    /// [`ChatResponse`]. Requests `stream_options.include_usage`.
    ///
    /// Failures before the first delta are retried like in [`LlmClient::chat`];
    /// a stream that breaks after deltas were delivered is returned as a
    /// (retriable) [`LlmError::Stream`] / transport error rather than retried
    /// here, so `on_event` never sees the same text twice.
    pub async fn chat_stream(
        &self,
        request: &ChatRequest,
        mut on_event: impl FnMut(StreamEvent) + Send,
    ) -> Result<ChatResponse, LlmError> {
        let body = self.body(request, true)?;
        let mut attempt = 0u32;
        loop {
            let mut emitted = false;
            match self.stream_attempt(&body, &mut on_event, &mut emitted).await {
                Ok(r) => return Ok(r),
                Err(e) if !emitted => match self.retry_delay(attempt, &e) {
                    Some(d) => {
                        self.log_retry(attempt, d, &e);
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    async fn chat_once_with_retries(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = self.body(request, false)?;
        let mut attempt = 0u32;
        loop {
            match self.once_attempt(&body).await {
                Ok(r) => return Ok(r),
                Err(e) => match self.retry_delay(attempt, &e) {
                    Some(d) => {
                        self.log_retry(attempt, d, &e);
                        tokio::time::sleep(d).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    fn log_retry(&self, attempt: u32, delay: Duration, e: &LlmError) {
        tracing::warn!(
            attempt = attempt + 1,
            max_retries = self.config.max_retries,
            delay_ms = delay.as_millis() as u64,
            error = %e,
            "retrying LLM request"
        );
    }

    /// `None` when `e` must not (or can no longer) be retried.
    fn retry_delay(&self, attempt: u32, e: &LlmError) -> Option<Duration> {
        if !e.is_retriable() || attempt >= self.config.max_retries {
            return None;
        }
        if let Some(ra) = e.retry_after() {
            return Some(ra.min(self.config.max_retry_after));
        }
        let exp = self
            .config
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.config.max_delay);
        // "Equal jitter": somewhere in [exp/2, exp].
        let half = exp / 2;
        let jitter = rand::rng().random_range(0..=half.as_micros() as u64);
        Some(half + Duration::from_micros(jitter))
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Result<Value, LlmError> {
        let mut body = serde_json::to_value(request).map_err(|e| LlmError::Invalid(e.to_string()))?;
        let obj = body
            .as_object_mut()
            .ok_or_else(|| LlmError::Invalid("request did not serialise to an object".into()))?;
        obj.insert("stream".into(), Value::Bool(stream));
        if stream {
            obj.insert("stream_options".into(), json!({"include_usage": true}));
        } else {
            obj.remove("stream_options");
        }
        Ok(body)
    }

    async fn send(&self, body: &Value, stream: bool) -> Result<reqwest::Response, LlmError> {
        let mut req = self
            .http
            .post(&*self.url)
            .header(CONTENT_TYPE, "application/json")
            .json(body);
        if stream {
            req = req.header(ACCEPT, "text/event-stream");
        } else {
            req = req
                .header(ACCEPT, "application/json")
                .timeout(self.config.request_timeout);
        }
        let resp = match tokio::time::timeout(self.config.request_timeout, req.send()).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(LlmError::Timeout(format!(
                    "no response within {:?}",
                    self.config.request_timeout
                )));
            }
        };
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from_response(resp).await)
        }
    }

    async fn once_attempt(&self, body: &Value) -> Result<ChatResponse, LlmError> {
        let resp = self.send(body, false).await?;
        let bytes = resp.bytes().await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            LlmError::Decode(format!(
                "{e}; body starts with: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ))
        })?;
        parse_completion(&v)
    }

    async fn stream_attempt(
        &self,
        body: &Value,
        on_event: &mut (impl FnMut(StreamEvent) + Send),
        emitted: &mut bool,
    ) -> Result<ChatResponse, LlmError> {
        let resp = self.send(body, true).await?;
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.contains("event-stream") || !ct.contains("json"));
        if !is_sse {
            // The server ignored `stream: true` and answered in one piece.
            let bytes = resp.bytes().await?;
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| LlmError::Decode(format!("non-SSE reply to a streaming request: {e}")))?;
            let r = parse_completion(&v)?;
            *emitted = true;
            if let Some(t) = &r.content {
                on_event(StreamEvent::Text(t.clone()));
            }
            for (i, t) in r.tool_calls.iter().enumerate() {
                on_event(StreamEvent::ToolCallDelta {
                    index: i as u64,
                    id: Some(t.id.clone()),
                    name: Some(t.name.clone()),
                    arguments: t.arguments.clone(),
                });
            }
            return Ok(r);
        }

        let mut stream = resp.bytes_stream();
        let mut decoder = SseDecoder::default();
        let mut acc = StreamAccumulator::default();
        let idle = self.config.stream_idle_timeout;
        let mut done = false;
        let mut saw_done = false;
        while !done {
            let next = match tokio::time::timeout(idle, stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    return Err(LlmError::Timeout(format!("no stream data for {idle:?}")));
                }
            };
            let events = match next {
                Some(Ok(bytes)) => decoder.feed(&bytes),
                Some(Err(e)) => return Err(LlmError::Stream(chain(&e))),
                None => {
                    done = true;
                    decoder.finish().into_iter().collect()
                }
            };
            for data in events {
                let data = data.trim();
                if data.is_empty() {
                    continue;
                }
                if data == "[DONE]" {
                    done = true;
                    saw_done = true;
                    break;
                }
                let v: Value = serde_json::from_str(data)
                    .map_err(|e| LlmError::Decode(format!("bad stream chunk ({e}): {}", truncate(data, 300))))?;
                let delta = acc.push(&v)?;
                if let Some(t) = delta.text {
                    *emitted = true;
                    on_event(StreamEvent::Text(t));
                }
                for (index, id, name, arguments) in delta.tool_calls {
                    *emitted = true;
                    on_event(StreamEvent::ToolCallDelta {
                        index,
                        id,
                        name,
                        arguments,
                    });
                }
            }
        }
        if !saw_done && acc.finish_reason().is_none() {
            // Neither `[DONE]` nor a finish reason: the stream was cut short.
            return Err(LlmError::Stream(if acc.saw_anything() {
                "stream ended before the answer was complete".into()
            } else {
                "stream ended without any data".into()
            }));
        }
        Ok(acc.into_response())
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

async fn error_from_response(resp: reqwest::Response) -> LlmError {
    let status = resp.status().as_u16();
    let headers = resp.headers();
    let retry_after = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after_ms)
        .or_else(|| {
            headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
        });
    let body = resp.text().await.unwrap_or_default();
    let (message, code) = error_from_body(&body);
    LlmError::Api {
        status,
        message,
        code,
        retry_after,
    }
}
