//! What the preview proxy (the `forgeai-preview` crate) needs from a sandbox provider: where
//! a port of a sandbox can be reached from the host. Both providers implement
//! [`PreviewTarget`]; the proxy holds it as a trait object and knows no provider.

use std::net::SocketAddr;

use async_trait::async_trait;
use axum::http::HeaderMap;

use crate::error::Result;

/// Where a sandbox port can be reached from the host.
pub struct Upstream {
    /// `scheme://authority` requests go to: the sandbox's own address for a local sandbox, the
    /// cloud provider's proxy for a remote one.
    pub origin: String,
    /// The Host header sent upstream; `None` keeps the client's (a local dev server sees the
    /// preview host it is served under).
    pub host: Option<String>,
    /// Headers added to every forwarded request (a remote provider's routing and access tokens).
    pub headers: HeaderMap,
    /// Held while the request or upgraded connection lasts (e.g. keeps the sandbox from being
    /// paused as idle while a hot-reload socket is open).
    pub guard: Option<Box<dyn Send + Sync>>,
}

impl Upstream {
    /// A port of a sandbox on this machine.
    pub fn local(addr: SocketAddr, guard: Option<Box<dyn Send + Sync>>) -> Self {
        Upstream {
            origin: format!("http://{addr}"),
            host: None,
            headers: HeaderMap::new(),
            guard,
        }
    }

    /// A port behind a remote provider's proxy, which answers 502 while nothing listens yet.
    pub fn is_remote(&self) -> bool {
        self.host.is_some() || !self.headers.is_empty()
    }
}

/// Resolves sandbox ports for the proxy; the local provider implements it.
#[async_trait]
pub trait PreviewTarget: Send + Sync {
    /// The address of `port` in sandbox `id`, resuming the sandbox if needed.
    async fn upstream(&self, id: &str, port: u16) -> Result<Upstream>;
}
