//! A Connect-RPC client over HTTP/1.1 with the JSON codec, as E2B's SDKs talk to envd.
//!
//! Unary calls are plain `POST /<service>/<method>` with a JSON body. Server streams send one
//! enveloped message (`flags:u8 | length:u32be | message`) and read envelopes back until the
//! end-of-stream envelope (flag `0x02`), whose JSON may carry the call's error: a failed
//! stream still answers HTTP 200, so the end envelope is the only place its error appears.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::{Stream, StreamExt};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Set on an envelope whose payload is compressed (never requested by this client).
const FLAG_COMPRESSED: u8 = 0x01;
/// Set on the last envelope of a stream, which holds `{error?, metadata?}` instead of a message.
const FLAG_END_STREAM: u8 = 0x02;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// envd answered with a Connect error (`not_found`, `deadline_exceeded`, ...).
    Connect { code: String, message: String },
    /// Something in front of envd (E2B's proxy) answered with a plain HTTP error.
    Http { status: u16, message: String },
    /// The connection failed or broke off before the call completed.
    Transport(String),
    /// envd sent something that is not a message of the expected type.
    Decode(String),
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Connect { code, message } => write!(f, "{code}: {message}"),
            RpcError::Http { status, message } => write!(f, "HTTP {status}: {message}"),
            RpcError::Transport(message) => write!(f, "connection failed: {message}"),
            RpcError::Decode(message) => write!(f, "undecodable answer: {message}"),
        }
    }
}

/// Where calls go: envd's base URL and the headers every call carries (access token, routing).
#[derive(Debug, Clone)]
pub struct RpcTarget {
    pub base_url: String,
    pub headers: HeaderMap,
}

/// Unary call: `request` as JSON, the answer decoded as `Resp`.
pub async fn unary<Req: Serialize, Resp: DeserializeOwned>(
    http: &reqwest::Client,
    target: &RpcTarget,
    method: &str,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, RpcError> {
    let body = serde_json::to_vec(request).map_err(|e| RpcError::Decode(e.to_string()))?;
    let response = http
        .post(format!("{}/{method}", target.base_url))
        .headers(target.headers.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("Connect-Protocol-Version", "1")
        .header("Connect-Timeout-Ms", timeout.as_millis().to_string())
        .timeout(timeout + Duration::from_secs(5))
        .body(body)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    let content_type = content_type(response.headers());
    let bytes = response.bytes().await.map_err(transport)?;
    if !status.is_success() {
        return Err(error_answer(status.as_u16(), &content_type, &bytes));
    }
    serde_json::from_slice(&bytes).map_err(|e| RpcError::Decode(format!("{method}: {e}")))
}

/// Server-streaming call: the messages as they arrive, ending with the call's error if it failed.
pub async fn server_stream<Req: Serialize, Resp: DeserializeOwned + Send + 'static>(
    http: &reqwest::Client,
    target: &RpcTarget,
    method: &str,
    request: &Req,
    extra_headers: HeaderMap,
    deadline: Duration,
) -> Result<impl Stream<Item = Result<Resp, RpcError>> + Send + use<Req, Resp>, RpcError> {
    let message = serde_json::to_vec(request).map_err(|e| RpcError::Decode(e.to_string()))?;
    let mut body = Vec::with_capacity(message.len() + 5);
    body.push(0);
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let response = http
        .post(format!("{}/{method}", target.base_url))
        .headers(target.headers.clone())
        .headers(extra_headers)
        .header(CONTENT_TYPE, "application/connect+json")
        .header("Connect-Protocol-Version", "1")
        .header("Connect-Timeout-Ms", deadline.as_millis().to_string())
        // envd enforces the deadline itself and ends the stream with `deadline_exceeded`;
        // this only bounds a stream whose server stopped answering.
        .timeout(deadline + Duration::from_secs(10))
        .body(body)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        let content_type = content_type(response.headers());
        let bytes = response.bytes().await.map_err(transport)?;
        return Err(error_answer(status.as_u16(), &content_type, &bytes));
    }
    let chunks = response.bytes_stream();
    let state = (chunks, BytesMut::new(), false);
    Ok(futures::stream::unfold(
        state,
        |(mut chunks, mut buffer, mut done)| async move {
            if done {
                return None;
            }
            loop {
                match next_envelope(&mut buffer) {
                    Some((flags, payload)) => {
                        if flags & FLAG_END_STREAM != 0 {
                            done = true;
                            return end_of_stream(&payload).map(|error| (Err(error), (chunks, buffer, done)));
                        }
                        if flags & FLAG_COMPRESSED != 0 {
                            let error =
                                RpcError::Decode("envd sent a compressed message, which was not asked for".into());
                            return Some((Err(error), (chunks, buffer, true)));
                        }
                        let item =
                            serde_json::from_slice::<Resp>(&payload).map_err(|e| RpcError::Decode(e.to_string()));
                        return Some((item, (chunks, buffer, done)));
                    }
                    None => match chunks.next().await {
                        Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
                        Some(Err(error)) => return Some((Err(transport(error)), (chunks, buffer, true))),
                        None => {
                            let error =
                                RpcError::Transport("the stream ended without its end-of-stream message".into());
                            return Some((Err(error), (chunks, buffer, true)));
                        }
                    },
                }
            }
        },
    ))
}

/// Takes one whole envelope off the front of `buffer`, if it holds one.
fn next_envelope(buffer: &mut BytesMut) -> Option<(u8, BytesMut)> {
    if buffer.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]) as usize;
    if buffer.len() < 5 + len {
        return None;
    }
    let flags = buffer[0];
    buffer.advance(5);
    Some((flags, buffer.split_to(len)))
}

/// The error an end-of-stream envelope carries, if any.
fn end_of_stream(payload: &[u8]) -> Option<RpcError> {
    #[derive(serde::Deserialize)]
    struct End {
        error: Option<ConnectErrorBody>,
    }
    match serde_json::from_slice::<End>(payload) {
        Ok(End { error: Some(error) }) => Some(error.into_rpc_error()),
        Ok(End { error: None }) => None,
        Err(e) => Some(RpcError::Decode(format!("end of stream: {e}"))),
    }
}

#[derive(serde::Deserialize)]
struct ConnectErrorBody {
    code: serde_json::Value,
    #[serde(default)]
    message: Option<String>,
}

impl ConnectErrorBody {
    fn into_rpc_error(self) -> RpcError {
        let code = match self.code {
            serde_json::Value::String(code) => code,
            other => other.to_string(),
        };
        RpcError::Connect {
            message: self.message.unwrap_or_else(|| code.clone()),
            code,
        }
    }
}

/// A non-200 answer: a Connect error when its JSON has a string `code`, otherwise a plain HTTP
/// error from whatever answered in envd's place (the same rule the SDKs apply).
fn error_answer(status: u16, content_type: &str, body: &[u8]) -> RpcError {
    if content_type.starts_with("application/json")
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
    {
        if value.get("code").is_some_and(|code| code.is_string())
            && let Ok(error) = serde_json::from_value::<ConnectErrorBody>(value.clone())
        {
            return error.into_rpc_error();
        }
        if let Some(message) = value.get("message").and_then(|m| m.as_str()) {
            return RpcError::Http {
                status,
                message: message.to_owned(),
            };
        }
    }
    RpcError::Http {
        status,
        message: String::from_utf8_lossy(body).trim().chars().take(500).collect(),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// What an error answer says: the `message` of its JSON body, else the start of its text.
pub(crate) fn answer_message(body: &[u8], max_chars: usize) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().chars().take(max_chars).collect())
}

pub(crate) fn transport(error: reqwest::Error) -> RpcError {
    RpcError::Transport(error_chain(&error))
}

/// An error with its causes, `error: cause: cause` (reqwest's own message leaves them out).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_split_across_reads() {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&[0, 0, 0, 0, 2, b'{']);
        assert!(next_envelope(&mut buffer).is_none());
        buffer.extend_from_slice(&[b'}', 2, 0, 0, 0, 2]);
        let (flags, payload) = next_envelope(&mut buffer).unwrap();
        assert_eq!((flags, &payload[..]), (0, &b"{}"[..]));
        assert!(next_envelope(&mut buffer).is_none());
        buffer.extend_from_slice(b"{}");
        assert_eq!(next_envelope(&mut buffer).unwrap().0, FLAG_END_STREAM);
    }

    #[test]
    fn end_of_stream_errors() {
        assert_eq!(end_of_stream(b"{}"), None);
        assert_eq!(end_of_stream(br#"{"metadata":{"a":["b"]}}"#), None);
        assert_eq!(
            end_of_stream(br#"{"error":{"code":"deadline_exceeded","message":"too slow"}}"#),
            Some(RpcError::Connect {
                code: "deadline_exceeded".into(),
                message: "too slow".into()
            })
        );
    }

    #[test]
    fn error_answers_tell_envd_from_the_proxy() {
        assert_eq!(
            error_answer(
                404,
                "application/json",
                br#"{"code":"not_found","message":"no such file"}"#
            ),
            RpcError::Connect {
                code: "not_found".into(),
                message: "no such file".into()
            }
        );
        assert_eq!(
            error_answer(
                502,
                "application/json; charset=utf-8",
                br#"{"code":502,"message":"The sandbox x was not found"}"#
            ),
            RpcError::Http {
                status: 502,
                message: "The sandbox x was not found".into()
            }
        );
        assert_eq!(
            error_answer(404, "text/plain", b"404 page not found\n"),
            RpcError::Http {
                status: 404,
                message: "404 page not found".into()
            }
        );
    }
}
