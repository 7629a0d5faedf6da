//! The preview reverse proxy, an HTTP concern of its own over the sandbox trait: `http://<port>-<sandboxId>.<domain>[:proxy port]/…` is served by
//! port `<port>` of that sandbox, resuming it first if it was paused. Upgrades (WebSocket, for
//! the dev server's hot reload) are passed through as raw byte streams once the sandbox agreed
//! to switch protocols, so any upgrade protocol works, not only WebSocket.
//!
//! Mount [`PreviewProxy::router`] as a whole server, or check [`PreviewProxy::matches`] in
//! front of the API router and hand matching requests to [`PreviewProxy::handle`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use forgeai_sandbox::{Error, PreviewTarget};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct PreviewConfig {
    /// Domain preview hosts end with (`3000-<id>.<domain>`).
    pub domain: String,
    /// How long a request without a body waits for the sandbox's server to start listening
    /// (right after create or resume the dev server may still be booting).
    pub wait_for_server: Duration,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        PreviewConfig {
            domain: "localhost".into(),
            wait_for_server: Duration::from_secs(20),
        }
    }
}

/// The proxy. Share it in an `Arc`.
pub struct PreviewProxy {
    target: Arc<dyn PreviewTarget>,
    config: PreviewConfig,
    client: Client<HttpsConnector<HttpConnector>, Body>,
}

/// Headers that describe one hop, not the request (RFC 9110 §7.6.1); never forwarded as is.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

impl PreviewProxy {
    pub fn new(target: Arc<dyn PreviewTarget>, config: PreviewConfig) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        // Remote sandboxes (E2B) are served over HTTPS; local ones over plain HTTP.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Arc::new(PreviewProxy { target, config, client })
    }

    /// Splits a Host value `<port>-<id>.<domain>[:p]` into port and sandbox id.
    pub fn parse_host(&self, host: &str) -> Option<(u16, String)> {
        let host = host.trim().to_ascii_lowercase();
        // Strip the port, but not from a bracketed IPv6 literal (which is never ours anyway).
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !name.contains(']') && port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
            _ => host,
        };
        let name = name.trim_end_matches('.');
        let label = name.strip_suffix(&self.config.domain)?.strip_suffix('.')?;
        let (port, id) = label.split_once('-')?;
        if id.contains('.') || forgeai_sandbox::validate_id(id).is_err() {
            return None;
        }
        Some((port.parse().ok().filter(|p| *p != 0)?, id.to_string()))
    }

    /// Whether the request is addressed to a preview host.
    pub fn matches(&self, headers: &HeaderMap, uri: &Uri) -> bool {
        host_of(headers, uri).is_some_and(|h| self.parse_host(&h).is_some())
    }

    /// An axum router that proxies every request (mount it on the preview listener).
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().fallback(move |req: Request<Body>| {
            let proxy = self.clone();
            async move { proxy.handle(req).await }
        })
    }

    /// Proxies one request.
    pub async fn handle(&self, mut req: Request<Body>) -> Response<Body> {
        let Some(host) = host_of(req.headers(), req.uri()) else {
            return text(StatusCode::BAD_REQUEST, "missing Host header".into());
        };
        let Some((port, id)) = self.parse_host(&host) else {
            return text(
                StatusCode::NOT_FOUND,
                format!(
                    "{host} is not a preview host (expected <port>-<sandboxId>.{})",
                    self.config.domain
                ),
            );
        };
        let upstream = match self.target.upstream(&id, port).await {
            Ok(u) => u,
            Err(e @ (Error::Gone { .. } | Error::InvalidId { .. })) => {
                return text(StatusCode::NOT_FOUND, format!("{e}"));
            }
            Err(e) => return text(StatusCode::BAD_GATEWAY, format!("cannot reach sandbox {id}: {e}")),
        };
        let upgrade = is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = match format!("{}{}", upstream.origin, path).parse() {
            Ok(u) => u,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad request path: {e}")),
        };
        let mut headers = parts.headers.clone();
        strip_hop_by_hop(&mut headers, upgrade);
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
        if let Some(Ok(upstream_host)) = upstream.host.as_deref().map(HeaderValue::from_str) {
            headers.insert(header::HOST, upstream_host);
        }
        for (name, value) in &upstream.headers {
            headers.insert(name, value.clone());
        }
        let remote = upstream.is_remote();
        // Bodiless requests can be replayed, so they may wait for a server that is starting.
        let replayable = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
            && !parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts.headers.get(header::CONTENT_LENGTH).is_none_or(|v| v == "0");
        let deadline = Instant::now() + self.config.wait_for_server;
        let mut body = Some(body);
        let response = loop {
            let mut out = Request::builder()
                .method(parts.method.clone())
                .uri(uri.clone())
                .version(axum::http::Version::HTTP_11);
            if let Some(h) = out.headers_mut() {
                *h = headers.clone();
            }
            let b = if replayable {
                Body::empty()
            } else {
                body.take().unwrap_or_else(Body::empty)
            };
            let out = match out.body(b) {
                Ok(r) => r,
                Err(e) => return text(StatusCode::BAD_REQUEST, format!("cannot forward request: {e}")),
            };
            match self.client.request(out).await {
                Ok(resp)
                    if remote
                        && replayable
                        && resp.status() == StatusCode::BAD_GATEWAY
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Ok(resp) => break resp,
                Err(e) if replayable && e.is_connect() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    let hint = if e.is_connect() {
                        "; is the dev server running in the sandbox?"
                    } else {
                        ""
                    };
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("sandbox {id} port {port} did not answer: {e}{hint}"),
                    );
                }
            }
        };
        let guard = upstream.guard;
        if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, response.status()) {
            let mut response = response;
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let _guard = guard;
                let (client, server) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::debug!(error = %e, "preview upgrade failed");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut server = TokioIo::new(server);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, Body::empty());
        }
        let (mut parts, incoming) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        // The guard rides along with the body, so a long streaming response counts as activity.
        let body = incoming.map_frame(move |frame| {
            let _ = &guard;
            frame
        });
        Response::from_parts(parts, Body::new(body))
    }
}

fn host_of(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .filter(|t| t != "upgrade")
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for h in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(h);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut r = Response::new(Body::from(message + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves `proxy` on `listener` until the task is dropped (tests, the bench, or a standalone
/// preview port).
///
/// Sets TCP_NODELAY on accepted connections: without it, small responses written as headers
/// then body stall ~40 ms on Nagle + delayed ACK. A server mounting [`PreviewProxy::router`]
/// itself should do the same (`axum::serve::ListenerExt::tap_io`).
pub async fn serve(listener: tokio::net::TcpListener, proxy: Arc<PreviewProxy>) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a preview connection");
        }
    });
    axum::serve(listener, proxy.router()).await
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use forgeai_sandbox::{Result, Upstream};

    use super::*;

    struct NoTarget;
    #[async_trait]
    impl PreviewTarget for NoTarget {
        async fn upstream(&self, id: &str, _port: u16) -> Result<Upstream> {
            Err(Error::Gone { id: id.into() })
        }
    }

    #[tokio::test]
    async fn parses_preview_hosts() {
        let p = PreviewProxy::new(Arc::new(NoTarget), PreviewConfig::default());
        assert_eq!(
            p.parse_host("3000-abc123.localhost:8080"),
            Some((3000, "abc123".into()))
        );
        assert_eq!(p.parse_host("3000-abc123.localhost"), Some((3000, "abc123".into())));
        assert_eq!(p.parse_host("3000-ABC123.LOCALHOST"), Some((3000, "abc123".into())));
        assert_eq!(p.parse_host("localhost:8080"), None);
        assert_eq!(p.parse_host("3000-a.b.localhost"), None);
        assert_eq!(p.parse_host("x-abc.localhost"), None);
        assert_eq!(p.parse_host("3000-abc.evil-localhost"), None);
        assert_eq!(p.parse_host("3000-abc.notlocalhost"), None);
        let p2 = PreviewProxy::new(
            Arc::new(NoTarget),
            PreviewConfig {
                domain: "preview.example.com".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            p2.parse_host("5173-zz9.preview.example.com"),
            Some((5173, "zz9".into()))
        );
    }
}
