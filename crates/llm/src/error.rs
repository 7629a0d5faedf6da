//! The error type of the client.

use std::time::Duration;

/// Everything that can go wrong in a chat-completions call.
///
/// Use [`LlmError::is_retriable`] to decide whether trying the same request
/// again later can succeed (the client has already retried these errors
/// `max_retries` times before returning them).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with an error status (or an error object inside a
    /// 200 response / stream). `message` is the provider's own message when it
    /// sent one (`{"error":{"message":..}}`), else the start of the body.
    #[error("LLM provider returned HTTP {status}: {message}")]
    Api {
        /// HTTP status (or the numeric `error.code` of an in-body error).
        status: u16,
        /// The provider's error message.
        message: String,
        /// `error.code` or `error.type`, when present (e.g. `insufficient_quota`).
        code: Option<String>,
        /// Parsed `Retry-After` / `retry-after-ms`, when present.
        retry_after: Option<Duration>,
    },
    /// Could not connect (DNS, refused, TLS handshake, …).
    #[error("could not connect to LLM provider: {0}")]
    Connect(String),
    /// The request (or a streaming chunk) took too long.
    #[error("LLM request timed out: {0}")]
    Timeout(String),
    /// The connection broke while sending the request or reading the body.
    #[error("LLM transport error: {0}")]
    Transport(String),
    /// A streamed response ended or broke before it was complete.
    #[error("LLM stream error: {0}")]
    Stream(String),
    /// The response could not be understood.
    #[error("could not decode LLM response: {0}")]
    Decode(String),
    /// The request or client could not be built (bad URL, bad header, …).
    #[error("invalid LLM request or configuration: {0}")]
    Invalid(String),
}

impl LlmError {
    /// Whether sending the same request again may succeed: 408/409/425/429,
    /// 5xx (except 501), connect errors, timeouts, broken connections and
    /// broken streams. 429 with code `insufficient_quota` is not retriable.
    pub fn is_retriable(&self) -> bool {
        match self {
            LlmError::Api { status, code, .. } => {
                if code.as_deref() == Some("insufficient_quota") {
                    return false;
                }
                retriable_status(*status)
            }
            LlmError::Connect(_) | LlmError::Timeout(_) | LlmError::Transport(_) | LlmError::Stream(_) => true,
            LlmError::Decode(_) | LlmError::Invalid(_) => false,
        }
    }

    /// The HTTP status, for [`LlmError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            LlmError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `Retry-After`, for [`LlmError::Api`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The provider's error message, for [`LlmError::Api`].
    pub fn provider_message(&self) -> Option<&str> {
        match self {
            LlmError::Api { message, .. } => Some(message),
            _ => None,
        }
    }
}

pub(crate) fn retriable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || (500..=599).contains(&status) && status != 501
}

/// Formats an error with its whole source chain (reqwest hides the useful
/// part, e.g. "connection refused", in the sources).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let msg = e.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = e.source();
    }
    s
}

impl From<reqwest::Error> for LlmError {
    fn from(e: reqwest::Error) -> Self {
        let msg = chain(&e);
        if e.is_timeout() {
            LlmError::Timeout(msg)
        } else if e.is_connect() {
            LlmError::Connect(msg)
        } else if e.is_builder() {
            LlmError::Invalid(msg)
        } else if e.is_decode() {
            LlmError::Decode(msg)
        } else {
            LlmError::Transport(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: Option<&str>) -> LlmError {
        LlmError::Api {
            status,
            message: "m".into(),
            code: code.map(Into::into),
            retry_after: None,
        }
    }

    #[test]
    fn retriable_classification() {
        for s in [408, 409, 425, 429, 500, 502, 503, 504, 529] {
            assert!(api(s, None).is_retriable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422, 501] {
            assert!(!api(s, None).is_retriable(), "{s}");
        }
        assert!(!api(429, Some("insufficient_quota")).is_retriable());
        assert!(LlmError::Connect("x".into()).is_retriable());
        assert!(LlmError::Timeout("x".into()).is_retriable());
        assert!(!LlmError::Decode("x".into()).is_retriable());
    }
}
