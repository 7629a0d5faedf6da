//! Client configuration: endpoint, key, models per role, retry and timeouts.

use std::time::Duration;

/// Default `OPENAI_BASE_URL`.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// Default `FORGEAI_CODER_MODEL`.
pub const DEFAULT_CODER_MODEL: &str = "gpt-5.2";
/// Default `FORGEAI_VISION_MODEL`.
pub const DEFAULT_VISION_MODEL: &str = "gpt-4o-2024-08-06";
/// Default `FORGEAI_NAMER_MODEL`.
pub const DEFAULT_NAMER_MODEL: &str = "gpt-5.2";
/// Default `FORGEAI_LLM_MAX_RETRIES`.
pub const DEFAULT_MAX_RETRIES: u32 = 4;
/// Default `FORGEAI_LLM_TIMEOUT_SECS` (the request timeout).
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 600;

/// What a model is used for; each role has its own configurable model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelRole {
    /// The coding agent (`FORGEAI_CODER_MODEL`).
    Coder,
    /// Design-spec extraction from images (`FORGEAI_VISION_MODEL`).
    Vision,
    /// The fragment/project naming agent (`FORGEAI_NAMER_MODEL`).
    Namer,
}

/// Configuration of an [`LlmClient`](crate::LlmClient).
///
/// All fields are public so callers (and tests) can adjust them after
/// [`LlmConfig::new`]. This crate reads no environment variables: the `forgeai`
/// binary fills the config from its settings (`OPENAI_BASE_URL`,
/// `OPENAI_API_KEY`, `FORGEAI_CODER_MODEL`, `FORGEAI_VISION_MODEL`,
/// `FORGEAI_NAMER_MODEL`, `FORGEAI_LLM_MAX_RETRIES`, `FORGEAI_LLM_TIMEOUT_SECS`;
/// see `forgeai serve --help`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// Base URL of the API, e.g. `https://api.openai.com/v1` or
    /// `http://localhost:11434/v1`. `/chat/completions` is appended.
    pub base_url: String,
    /// Bearer token. `None` (or empty) sends no `Authorization` header, which
    /// is what local servers (Ollama, llama.cpp) expect.
    pub api_key: Option<String>,
    /// Model for [`ModelRole::Coder`].
    pub coder_model: String,
    /// Model for [`ModelRole::Vision`].
    pub vision_model: String,
    /// Model for [`ModelRole::Namer`].
    pub namer_model: String,
    /// Retries after the first attempt (so at most `max_retries + 1` requests).
    pub max_retries: u32,
    /// Backoff before retry *n* (0-based) is `base_delay * 2^n`, capped at
    /// `max_delay`, with jitter (a uniform pick in its upper half).
    pub base_delay: Duration,
    /// Cap on the computed exponential backoff.
    pub max_delay: Duration,
    /// Cap on a server-sent `Retry-After`; longer waits are shortened to this.
    pub max_retry_after: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout for non-streaming calls; for streaming calls, the
    /// time allowed until response headers arrive.
    pub request_timeout: Duration,
    /// Streaming: longest allowed silence between two received chunks.
    pub stream_idle_timeout: Duration,
    /// Extra headers sent with every request (e.g. OpenRouter's `X-Title`).
    pub extra_headers: Vec<(String, String)>,
}

impl LlmConfig {
    /// Explicit constructor; models and retry/timeouts take their defaults.
    /// An empty `api_key` is treated as none.
    pub fn new(base_url: impl Into<String>, api_key: Option<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            coder_model: DEFAULT_CODER_MODEL.to_owned(),
            vision_model: DEFAULT_VISION_MODEL.to_owned(),
            namer_model: DEFAULT_NAMER_MODEL.to_owned(),
            max_retries: DEFAULT_MAX_RETRIES,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS),
            stream_idle_timeout: Duration::from_secs(180),
            extra_headers: Vec::new(),
        }
    }

    /// The model configured for `role`.
    pub fn model(&self, role: ModelRole) -> &str {
        match role {
            ModelRole::Coder => &self.coder_model,
            ModelRole::Vision => &self.vision_model,
            ModelRole::Namer => &self.namer_model,
        }
    }

    /// Builder-style: sets `max_retries`.
    pub fn with_max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Builder-style: sets `base_delay` (tests use a few milliseconds).
    pub fn with_base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The full chat-completions URL. Accepts a base URL that already ends in
    /// `/chat/completions`.
    pub fn chat_completions_url(&self) -> String {
        let base = self.base_url.trim().trim_end_matches('/');
        if base.ends_with("/chat/completions") {
            base.to_owned()
        } else {
            format!("{base}/chat/completions")
        }
    }
}

impl Default for LlmConfig {
    /// Same as `LlmConfig::new(DEFAULT_BASE_URL, None)` (does not read the environment).
    fn default() -> Self {
        Self::new(DEFAULT_BASE_URL, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = LlmConfig::default();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.api_key, None);
        assert_eq!(c.model(ModelRole::Coder), "gpt-5.2");
        assert_eq!(c.model(ModelRole::Vision), "gpt-4o-2024-08-06");
        assert_eq!(c.model(ModelRole::Namer), "gpt-5.2");
        assert_eq!(c.max_retries, 4);
        assert_eq!(c.request_timeout, Duration::from_secs(600));
        assert_eq!(LlmConfig::new("http://x/v1", Some("  ".into())).api_key, None);
        let c = LlmConfig::new("http://localhost:11434/v1/", None);
        assert_eq!(c.chat_completions_url(), "http://localhost:11434/v1/chat/completions");
    }

    #[test]
    fn url_already_complete() {
        let c = LlmConfig::new("http://x/v1/chat/completions", Some("k".into()));
        assert_eq!(c.chat_completions_url(), "http://x/v1/chat/completions");
        assert_eq!(c.api_key.as_deref(), Some("k"));
    }
}
