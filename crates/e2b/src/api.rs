//! E2B's control plane (REST, `https://api.<domain>`): create, connect, get, list, timeout,
//! pause and kill, with the `X-API-Key` header and the retry rules of E2B's SDKs.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

/// Statuses retried when the answer does not say otherwise with `Should-Retry`.
const RETRYABLE: [u16; 4] = [429, 502, 503, 504];
/// The longest wait between two attempts, whatever `Retry-After` asks for.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// A sandbox as `POST /v2/sandboxes` and connect return it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedSandbox {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "templateID", default)]
    pub template_id: String,
    #[serde(default)]
    pub envd_version: String,
    #[serde(default)]
    pub envd_access_token: Option<String>,
    #[serde(default)]
    pub traffic_access_token: Option<String>,
    /// The domain the sandbox is served under, when it is not the configured one.
    #[serde(default)]
    pub domain: Option<String>,
}

/// A sandbox as `GET /sandboxes/{id}` and `GET /v2/sandboxes` describe it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxDetail {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "templateID", default)]
    pub template_id: String,
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    pub end_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `running` or `paused`.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The body of `POST /v2/sandboxes`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSandbox<'a> {
    #[serde(rename = "templateID")]
    pub template_id: &'a str,
    /// Seconds until E2B stops the sandbox unless the timeout is extended.
    pub timeout: u64,
    /// envd access needs the token E2B returns (v2 always secures it; older servers read this).
    pub secure: bool,
    pub metadata: &'a BTreeMap<String, String>,
    pub env_vars: &'a BTreeMap<String, String>,
}

/// An error answer of the control plane, or a failure to reach it.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// 0 when no answer came.
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{} {}", self.status, self.message)
        }
    }
}

/// The control-plane client.
#[derive(Clone)]
pub struct ControlPlane {
    http: reqwest::Client,
    api_url: String,
    api_key: String,
    retries: u32,
}

impl ControlPlane {
    pub fn new(http: reqwest::Client, api_url: &str, api_key: &str, retries: u32) -> Self {
        ControlPlane {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            retries,
        }
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// `POST /v2/sandboxes`; the idempotency key makes a retried create return the same sandbox.
    pub async fn create(&self, body: &NewSandbox<'_>, idempotency_key: &str) -> Result<CreatedSandbox, ApiError> {
        let body = serde_json::to_value(body).map_err(|e| local_error(e.to_string()))?;
        let (status, bytes) = self
            .send(Method::POST, "/v2/sandboxes", Some(body), Some(idempotency_key))
            .await?;
        match status {
            StatusCode::OK | StatusCode::CREATED => decode(&bytes),
            _ => Err(api_error(status, &bytes)),
        }
    }

    /// `POST /v2/sandboxes/{id}/connect` (falling back to the older `/sandboxes/{id}/connect`):
    /// resumes a paused sandbox and extends its timeout to at least `timeout`. `None` when it
    /// does not exist.
    pub async fn connect(&self, id: &str, timeout: Duration) -> Result<Option<CreatedSandbox>, ApiError> {
        let body = serde_json::json!({ "timeout": timeout.as_secs().max(1) });
        for path in [
            format!("/v2/sandboxes/{id}/connect"),
            format!("/sandboxes/{id}/connect"),
        ] {
            let (status, bytes) = self.send(Method::POST, &path, Some(body.clone()), None).await?;
            match status {
                StatusCode::OK | StatusCode::CREATED => return decode(&bytes).map(Some),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => continue,
                _ => return Err(api_error(status, &bytes)),
            }
        }
        Ok(None)
    }

    /// `GET /sandboxes/{id}`; `None` when it does not exist.
    pub async fn get(&self, id: &str) -> Result<Option<SandboxDetail>, ApiError> {
        let (status, bytes) = self.send(Method::GET, &format!("/sandboxes/{id}"), None, None).await?;
        match status {
            StatusCode::OK => decode(&bytes).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(api_error(status, &bytes)),
        }
    }

    /// `GET /v2/sandboxes?metadata=k=v&...`: running and paused sandboxes with that metadata.
    pub async fn list(&self, metadata: &BTreeMap<String, String>) -> Result<Vec<SandboxDetail>, ApiError> {
        let filter: String = metadata
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let path = format!("/v2/sandboxes?metadata={}&state=running,paused", encode(&filter));
        let (status, bytes) = self.send(Method::GET, &path, None, None).await?;
        match status {
            StatusCode::OK => decode(&bytes),
            _ => Err(api_error(status, &bytes)),
        }
    }

    /// `POST /sandboxes/{id}/timeout`; false when the sandbox does not exist.
    pub async fn set_timeout(&self, id: &str, timeout: Duration) -> Result<bool, ApiError> {
        let body = serde_json::json!({ "timeout": timeout.as_secs().max(1) });
        let (status, bytes) = self
            .send(Method::POST, &format!("/sandboxes/{id}/timeout"), Some(body), None)
            .await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(api_error(status, &bytes)),
        }
    }

    /// `POST /sandboxes/{id}/pause`: `Some(true)` paused, `Some(false)` already paused,
    /// `None` when it does not exist.
    pub async fn pause(&self, id: &str) -> Result<Option<bool>, ApiError> {
        let (status, bytes) = self
            .send(
                Method::POST,
                &format!("/sandboxes/{id}/pause"),
                Some(serde_json::json!({})),
                None,
            )
            .await?;
        match status {
            s if s.is_success() => Ok(Some(true)),
            StatusCode::CONFLICT => Ok(Some(false)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(api_error(status, &bytes)),
        }
    }

    /// `DELETE /sandboxes/{id}`; false when it did not exist.
    pub async fn kill(&self, id: &str) -> Result<bool, ApiError> {
        let (status, bytes) = self
            .send(Method::DELETE, &format!("/sandboxes/{id}"), None, None)
            .await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(api_error(status, &bytes)),
        }
    }

    /// One request, retried like the SDKs do: answers marked `Should-Retry: true`, or 429/502/
    /// 503/504 without that header, after `Retry-After` seconds or an exponential backoff with
    /// jitter; refused connections too.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, bytes::Bytes), ApiError> {
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.api_url))
                .header("X-API-Key", &self.api_key);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let wait = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let wait = retry_wait(&response, attempt);
                    if wait.is_none() || attempt >= self.retries {
                        let bytes = response.bytes().await.map_err(|e| unreachable(&self.api_url, &e))?;
                        return Ok((status, bytes));
                    }
                    tracing::info!(%status, path, attempt, "E2B asked to retry");
                    wait.unwrap_or_default()
                }
                Err(error) if error.is_connect() && attempt < self.retries => backoff(attempt),
                Err(error) => return Err(unreachable(&self.api_url, &error)),
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

fn retry_wait(response: &reqwest::Response, attempt: u32) -> Option<Duration> {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok());
    match header("Should-Retry") {
        Some(flag) if !flag.trim().eq_ignore_ascii_case("true") => return None,
        Some(_) => {}
        None if !RETRYABLE.contains(&response.status().as_u16()) => return None,
        None => {}
    }
    let retry_after = header("Retry-After").and_then(|v| v.trim().parse::<u64>().ok());
    Some(match retry_after {
        Some(seconds) => Duration::from_secs(seconds).min(MAX_RETRY_WAIT),
        None => backoff(attempt),
    })
}

/// 0.1 s doubling up to 10 s, with half of it random so that many clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = (0.1 * 2f64.powi(attempt.min(10) as i32)).min(10.0);
    Duration::from_secs_f64(base * (0.5 + rand::rng().random::<f64>() * 0.5))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError {
        status: 0,
        message: format!(
            "E2B answered with something that is not the expected JSON ({e}): {}",
            String::from_utf8_lossy(bytes).chars().take(300).collect::<String>()
        ),
    })
}

fn api_error(status: StatusCode, bytes: &[u8]) -> ApiError {
    ApiError {
        status: status.as_u16(),
        message: crate::connect::answer_message(bytes, 300),
    }
}

fn local_error(message: String) -> ApiError {
    ApiError { status: 0, message }
}

fn unreachable(api_url: &str, error: &reqwest::Error) -> ApiError {
    ApiError {
        status: 0,
        message: format!("cannot reach E2B at {api_url}: {}", crate::connect::error_chain(error)),
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub(crate) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_query_components() {
        assert_eq!(encode("projectId=a b&c"), "projectId%3Da%20b%26c");
        assert_eq!(encode("/home/user/x.txt"), "%2Fhome%2Fuser%2Fx.txt");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(100));
        assert!(backoff(3) >= Duration::from_millis(400));
        assert!(backoff(30) <= Duration::from_secs(10));
    }
}
