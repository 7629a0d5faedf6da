//! `forgeai-llm` has one job: talk to an OpenAI-compatible **chat-completions**
//! endpoint (OpenAI, OpenRouter, vLLM, Ollama, llama.cpp, …) and hand back one
//! typed [`ChatResponse`] per call.
//!
//! It covers what forgeai's agents need and nothing more:
//!
//! * messages (system / user / assistant / tool), user content as text or as
//!   parts with `image_url` (https or `data:` URLs);
//! * function calling (`tools`, `tool_choice`);
//! * structured output (`response_format` `json_schema`, strict);
//! * non-streaming and streaming (SSE) calls, both producing the same
//!   [`ChatResponse`] (text, tool calls, finish reason, token [`Usage`]);
//! * retries with exponential backoff and jitter on 429 / 5xx / connect errors /
//!   timeouts, honouring `Retry-After`; hopeless 4xx fail at once with the
//!   provider's message ([`LlmError::is_retriable`] tells callers such as a
//!   durable engine whether trying again later can help).
//!
//! Parsing is deliberately tolerant (missing fields, `content: null`, tool-call
//! arguments sent as an object, missing tool-call ids, …) so that self-hosted
//! servers work as well as the hosted APIs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), forgeai_llm::LlmError> {
//! use forgeai_llm::{ChatRequest, LlmClient, LlmConfig, Message, ModelRole};
//!
//! let config = LlmConfig::new("http://localhost:11434/v1", None);
//! let client = LlmClient::new(config)?;
//! let request = ChatRequest::new(
//!     client.config().model(ModelRole::Namer),
//!     vec![Message::system("Name things."), Message::user("A todo app")],
//! );
//! let response = client.chat(&request).await?;
//! println!("{} ({:?})", response.text(), response.usage);
//! # Ok(()) }
//! ```

mod client;
mod config;
mod error;
mod parse;
mod sse;
mod types;

pub use client::{LlmClient, StreamEvent};
pub use config::{
    DEFAULT_BASE_URL, DEFAULT_CODER_MODEL, DEFAULT_MAX_RETRIES, DEFAULT_NAMER_MODEL, DEFAULT_REQUEST_TIMEOUT_SECS,
    DEFAULT_VISION_MODEL, LlmConfig, ModelRole,
};
pub use error::LlmError;
pub use types::{
    ChatRequest, ChatResponse, ContentPart, FinishReason, ImageDetail, ImageUrl, JsonSchemaFormat, Message,
    ResponseFormat, Tool, ToolCall, ToolChoice, Usage, UserContent, data_url,
};
