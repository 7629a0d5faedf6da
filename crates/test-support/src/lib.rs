//! `forgeai-test-support`: real-HTTP test servers shared by forgeai's tests
//! (use it as a dev-dependency only).
//!
//! * [`MockOpenAi`] — an OpenAI-compatible chat-completions server on
//!   `127.0.0.1:<random port>` that plays scripted [`MockReply`]s in order (or
//!   asks a responder closure), streaming or not, and records every request.
//! * [`MockUnsplash`] — the Unsplash search API, its download tracking and its images.
//! * [`MockE2b`] — E2B's control plane and envd (behind its proxy), over local sandboxes.
//! * [`cached_forgeai_v1`] — the real `forgeai-v1` template from the cache CI keeps.
//! * [`TestRestate`] — a throwaway `restate-server`, which a test can kill and restart.
//!
//! ```no_run
//! # async fn demo() {
//! use forgeai_test_support::{MockOpenAi, MockReply};
//! let mock = MockOpenAi::start([
//!     MockReply::error(429, "slow down").retry_after("1"),
//!     MockReply::text("hello"),
//! ])
//! .await;
//! let base_url = mock.base_url(); // "http://127.0.0.1:PORT/v1"
//! // ... point the client at base_url, then:
//! assert_eq!(mock.requests().len(), 2);
//! # }
//! ```

mod e2b;
mod openai;
mod restate;
mod template_cache;
mod unsplash;

pub use e2b::{MockE2b, MockE2bRequest};
pub use openai::{MockOpenAi, MockReply, MockToolCall, RecordedRequest, Responder};
pub use restate::{RESTATE_SERVER, TestRestate};
pub use template_cache::{TEMPLATE_CACHE_VAR, cached_forgeai_v1, template_cache};
pub use unsplash::{MockUnsplash, TINY_JPEG, UnsplashRequest};
