//! E2B sandboxes for forgeai.
//!
//! [`E2bProvider`] implements forgeai's [`SandboxProvider`](forgeai_sandbox::SandboxProvider)
//! and [`PreviewTarget`](forgeai_sandbox::PreviewTarget) over E2B's own wire protocols, as its
//! repository (`e2b-dev/E2B`: `spec/openapi.yml`, `spec/envd/`) and its SDKs define them:
//!
//! - [`api`]: the control plane, REST at `https://api.<domain>` (create with an idempotency
//!   key, connect, get, list, timeout, pause, kill), retried on 429/502/503/504 like the SDKs;
//! - [`envd`]: the agent in each sandbox, Connect-RPC with the JSON codec over HTTP/1.1
//!   ([`connect`]) for processes and directory listings, `/files` for file contents;
//! - [`proto`]: envd's messages, generated from E2B's `.proto` files.
//!
//! It works with E2B's cloud and with a self-hosted E2B (`E2B_DOMAIN`, `E2B_API_URL`,
//! `E2B_SANDBOX_URL`).

pub mod api;
pub mod connect;
pub mod envd;
mod output;
pub mod proto;
mod provider;

pub use provider::{DEV_LOG, E2bConfig, E2bProvider, ENVD_PORT};
