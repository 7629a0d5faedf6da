//! Tolerant parsing of responses, stream chunks, error bodies and `Retry-After`.
//!
//! Everything goes through `serde_json::Value` rather than strict structs so
//! that missing fields, nulls and odd shapes from self-hosted servers do not
//! fail a call.

use std::time::Duration;

use serde_json::Value;

use crate::error::LlmError;
use crate::types::{ChatResponse, FinishReason, ToolCall, Usage, normalize_arguments};

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// Text of a `content` field: a string, `null`, or (some servers) a list of
/// parts whose text parts are concatenated.
fn content_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut s = String::new();
            for p in parts {
                match p {
                    Value::String(t) => s.push_str(t),
                    Value::Object(o) => {
                        if let Some(t) = o.get("text").and_then(Value::as_str) {
                            s.push_str(t);
                        }
                    }
                    _ => {}
                }
            }
            Some(s)
        }
        _ => None,
    }
}

pub(crate) fn parse_usage(v: Option<&Value>) -> Option<Usage> {
    let o = v?.as_object()?;
    let n = |k: &str| {
        o.get(k)
            .and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f.max(0.0) as u64)))
    };
    let prompt = n("prompt_tokens").or_else(|| n("input_tokens")).unwrap_or(0);
    let completion = n("completion_tokens").or_else(|| n("output_tokens")).unwrap_or(0);
    let total = n("total_tokens").filter(|t| *t > 0).unwrap_or(prompt + completion);
    Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
    })
}

/// An error object inside a 2xx body or a stream chunk
/// (`{"error": {...}}` or `{"error": "text"}`).
pub(crate) fn embedded_error(v: &Value, http_status: u16) -> Option<LlmError> {
    let e = v.get("error")?;
    if e.is_null() {
        return None;
    }
    let (message, code) = error_fields(e);
    // OpenRouter puts the upstream HTTP status in `error.code`.
    let status = e
        .get("code")
        .and_then(Value::as_u64)
        .filter(|c| (400..=599).contains(c))
        .map(|c| c as u16)
        .unwrap_or(if http_status >= 400 { http_status } else { 500 });
    Some(LlmError::Api {
        status,
        message: message.unwrap_or_else(|| e.to_string()),
        code,
        retry_after: None,
    })
}

fn error_fields(e: &Value) -> (Option<String>, Option<String>) {
    match e {
        Value::String(s) => (Some(s.clone()), None),
        Value::Object(o) => {
            let message = str_of(o.get("message"));
            let code = o
                .get("code")
                .and_then(|c| match c {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .or_else(|| str_of(o.get("type")));
            (message, code)
        }
        _ => (None, None),
    }
}

/// The provider's message and code from an error body:
/// `{"error":{"message","code","type"}}`, `{"error":"..."}`, `{"message":..}`,
/// `{"detail":..}`, or the (truncated) raw text.
pub(crate) fn error_from_body(body: &str) -> (String, Option<String>) {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(e) = v.get("error") {
            let (m, c) = error_fields(e);
            if let Some(m) = m {
                return (m, c);
            }
        }
        for k in ["message", "detail"] {
            match v.get(k) {
                Some(Value::String(s)) => return (s.clone(), str_of(v.get("code"))),
                Some(other) if !other.is_null() => return (other.to_string(), None),
                _ => {}
            }
        }
    }
    let t = body.trim();
    if t.is_empty() {
        return ("(empty error body)".to_owned(), None);
    }
    let mut s: String = t.chars().take(1000).collect();
    if s.len() < t.len() {
        s.push('…');
    }
    (s, None)
}

/// `Retry-After` as seconds (integer or fractional) or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The `retry-after-ms` header (OpenAI/Azure), in milliseconds.
pub(crate) fn parse_retry_after_ms(value: &str) -> Option<Duration> {
    let ms = value.trim().parse::<f64>().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| Duration::from_secs_f64(ms / 1000.0))
}

/// Choice 0 of a `choices` array (by `index`, else the first).
fn first_choice(v: &Value) -> Option<&Value> {
    let choices = v.get("choices")?.as_array()?;
    choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
        .or_else(|| choices.first())
}

/// Shared final clean-up, so streaming and non-streaming agree.
fn finish(mut r: ChatResponse) -> ChatResponse {
    if r.content.as_deref() == Some("") {
        r.content = None;
    }
    if r.refusal.as_deref() == Some("") {
        r.refusal = None;
    }
    for (i, t) in r.tool_calls.iter_mut().enumerate() {
        if t.id.is_empty() {
            t.id = format!("call_{i}");
        }
        if t.arguments.trim().is_empty() {
            t.arguments = "{}".to_owned();
        }
    }
    r
}

/// Parses a non-streaming chat-completions body.
pub(crate) fn parse_completion(v: &Value) -> Result<ChatResponse, LlmError> {
    if v.get("choices").is_none()
        && let Some(err) = embedded_error(v, 200)
    {
        return Err(err);
    }
    let choice = first_choice(v)
        .ok_or_else(|| LlmError::Decode(format!("no choices in response: {}", truncate(&v.to_string(), 500))))?;
    let msg = choice.get("message").or_else(|| choice.get("delta"));
    let mut r = ChatResponse {
        id: str_of(v.get("id")),
        model: str_of(v.get("model")),
        usage: parse_usage(v.get("usage")),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(FinishReason::parse),
        ..Default::default()
    };
    if let Some(m) = msg {
        r.content = content_text(m.get("content"));
        r.refusal = str_of(m.get("refusal"));
        if let Some(calls) = m.get("tool_calls").and_then(Value::as_array) {
            for c in calls {
                let f = c.get("function");
                r.tool_calls.push(ToolCall {
                    id: str_of(c.get("id")).unwrap_or_default(),
                    name: str_of(f.and_then(|f| f.get("name"))).unwrap_or_default(),
                    arguments: normalize_arguments(f.and_then(|f| f.get("arguments")).unwrap_or(&Value::Null)),
                });
            }
        } else if let Some(f) = m.get("function_call").filter(|f| f.is_object()) {
            // Legacy function calling.
            r.tool_calls.push(ToolCall {
                id: String::new(),
                name: str_of(f.get("name")).unwrap_or_default(),
                arguments: normalize_arguments(f.get("arguments").unwrap_or(&Value::Null)),
            });
        }
    }
    Ok(finish(r))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A tool call being assembled from stream deltas.
#[derive(Debug, Default)]
struct PartialCall {
    index: u64,
    id: String,
    name: String,
    arguments: String,
}

/// What one chunk added, for live progress callbacks.
#[derive(Debug, Default)]
pub(crate) struct ChunkDelta {
    pub text: Option<String>,
    /// (index, id, name, arguments fragment)
    pub tool_calls: Vec<(u64, Option<String>, Option<String>, String)>,
}

/// Accumulates streaming chunks into one [`ChatResponse`].
#[derive(Debug, Default)]
pub(crate) struct StreamAccumulator {
    id: Option<String>,
    model: Option<String>,
    content: Option<String>,
    refusal: Option<String>,
    calls: Vec<PartialCall>,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
}

impl StreamAccumulator {
    pub(crate) fn finish_reason(&self) -> Option<&FinishReason> {
        self.finish_reason.as_ref()
    }

    pub(crate) fn saw_anything(&self) -> bool {
        self.content.is_some() || !self.calls.is_empty() || self.finish_reason.is_some()
    }

    /// Applies one chunk (`data:` JSON).
    pub(crate) fn push(&mut self, v: &Value) -> Result<ChunkDelta, LlmError> {
        if let Some(err) = embedded_error(v, 200) {
            return Err(err);
        }
        if self.id.is_none() {
            self.id = str_of(v.get("id"));
        }
        if self.model.is_none() {
            self.model = str_of(v.get("model"));
        }
        if let Some(u) = parse_usage(v.get("usage")) {
            self.usage = Some(u);
        }
        let mut out = ChunkDelta::default();
        let Some(choice) = first_choice(v) else {
            return Ok(out);
        };
        if let Some(fr) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(FinishReason::parse(fr));
        }
        // Some servers put usage inside the choice.
        if let Some(u) = parse_usage(choice.get("usage")) {
            self.usage = Some(u);
        }
        let Some(delta) = choice.get("delta").or_else(|| choice.get("message")) else {
            return Ok(out);
        };
        if let Some(t) = content_text(delta.get("content")) {
            self.content.get_or_insert_with(String::new).push_str(&t);
            if !t.is_empty() {
                out.text = Some(t);
            }
        }
        if let Some(t) = delta.get("refusal").and_then(Value::as_str) {
            self.refusal.get_or_insert_with(String::new).push_str(t);
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for c in calls {
                out.tool_calls.push(self.push_call(c));
            }
        }
        Ok(out)
    }

    fn push_call(&mut self, c: &Value) -> (u64, Option<String>, Option<String>, String) {
        let id = str_of(c.get("id")).filter(|s| !s.is_empty());
        let f = c.get("function");
        let name = str_of(f.and_then(|f| f.get("name"))).filter(|s| !s.is_empty());
        let args = f.and_then(|f| f.get("arguments"));
        let index = match c.get("index").and_then(Value::as_u64) {
            Some(i) => i,
            // No index: a new id starts a new call, else continue the last one.
            None => match (&id, self.calls.last()) {
                (Some(id), Some(last)) if &last.id == id || last.id.is_empty() => last.index,
                (None, Some(last)) => last.index,
                _ => self.calls.iter().map(|p| p.index + 1).max().unwrap_or(0),
            },
        };
        let pos = match self.calls.iter().position(|p| p.index == index) {
            Some(p) => p,
            None => {
                self.calls.push(PartialCall {
                    index,
                    ..Default::default()
                });
                self.calls.len() - 1
            }
        };
        let p = &mut self.calls[pos];
        if let Some(id) = &id
            && p.id.is_empty()
        {
            p.id = id.clone();
        }
        if let Some(n) = &name
            && p.name.is_empty()
        {
            p.name = n.clone();
        }
        let frag = match args {
            Some(Value::String(s)) => {
                p.arguments.push_str(s);
                s.clone()
            }
            Some(Value::Null) | None => String::new(),
            // A whole arguments object in one delta.
            Some(other) => {
                p.arguments = other.to_string();
                p.arguments.clone()
            }
        };
        (index, id, name, frag)
    }

    /// The final response.
    pub(crate) fn into_response(mut self) -> ChatResponse {
        self.calls.sort_by_key(|p| p.index);
        finish(ChatResponse {
            id: self.id,
            model: self.model,
            content: self.content,
            refusal: self.refusal,
            tool_calls: self
                .calls
                .into_iter()
                .map(|p| ToolCall {
                    id: p.id,
                    name: p.name,
                    arguments: p.arguments,
                })
                .collect(),
            finish_reason: self.finish_reason,
            usage: self.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5", now), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after_ms("1500"), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_from_body(
                r#"{"error":{"message":"bad model","type":"invalid_request_error","code":"model_not_found"}}"#
            ),
            ("bad model".into(), Some("model_not_found".into()))
        );
        assert_eq!(error_from_body(r#"{"error":"nope"}"#).0, "nope");
        assert_eq!(
            error_from_body(r#"{"object":"error","message":"vllm says"}"#).0,
            "vllm says"
        );
        assert_eq!(error_from_body(r#"{"detail":"fastapi"}"#).0, "fastapi");
        assert_eq!(
            error_from_body("<html>Bad Gateway</html>").0,
            "<html>Bad Gateway</html>"
        );
    }

    #[test]
    fn tolerant_completion() {
        let v = json!({
            "choices": [{"message": {"content": null, "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"id": "k", "type": "function", "function": {"name": "b", "arguments": ""}}
            ]}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4}
        });
        let r = parse_completion(&v).unwrap();
        assert_eq!(r.content, None);
        assert_eq!(r.tool_calls[0], ToolCall::new("call_0", "a", r#"{"x":1}"#));
        assert_eq!(r.tool_calls[1], ToolCall::new("k", "b", "{}"));
        assert_eq!(
            r.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7
            })
        );
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
    }

    #[test]
    fn error_in_200_body() {
        let e = parse_completion(&json!({"error": {"message": "upstream down", "code": 502}})).unwrap_err();
        assert_eq!(e.status(), Some(502));
        assert!(e.is_retriable());
    }

    #[test]
    fn stream_without_indices() {
        let mut acc = StreamAccumulator::default();
        for c in [
            json!({"choices":[{"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{\"q\""}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"function":{"arguments":":1}"}}]}}]}),
            json!({"choices":[{"delta":{"tool_calls":[{"id":"b","function":{"name":"g","arguments":{"z":2}}}]}}]}),
            json!({"choices":[{"delta":{},"finish_reason":"tool_calls"}]}),
        ] {
            acc.push(&c).unwrap();
        }
        let r = acc.into_response();
        assert_eq!(
            r.tool_calls,
            vec![
                ToolCall::new("a", "f", "{\"q\":1}"),
                ToolCall::new("b", "g", "{\"z\":2}")
            ]
        );
    }
}
