//! Who may see a preview. A preview host (`3000-<sandbox>.<domain>`) is served to the owner of
//! the project whose sandbox it is, or to anyone once the owner made the project public
//! (`PATCH /api/projects/{id}` with `{"public": true}`). The owner is recognised by
//! `Authorization: Bearer <API or session token>` (scripts, `forgeai run`) or, in a browser, by
//! a grant: `GET /api/projects/{id}/preview` answers the preview URL with
//! `?forgeai_grant=<signed, expiring, bound to the sandbox, the user and the token>`; the
//! preview host trades it for host-only cookies and redirects to the clean URL.
//!
//! Access is decided before the request reaches the sandbox, so a refused request never
//! starts, resumes or reloads it. Only port 3000 is forwarded. What is forwarded carries no
//! credential of the owner: `Authorization`, forgeai's cookies and the grant parameter are
//! removed, and the app cannot set forgeai's cookies either.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use axum::response::IntoResponse;
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use forgeai_preview::PreviewProxy;
use forgeai_store::{SandboxOwner, Store};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::AppState;
use crate::api::{ApiJson, ApiPath};
use crate::auth::{Caller, CurrentUser, SESSION_COOKIE, bearer_token};
use crate::error::{ApiError, ErrorBody};

/// The only sandbox port previews forward.
pub const PREVIEW_PORT: u16 = 3000;
/// The query parameter that carries a grant.
pub const GRANT_PARAM: &str = "forgeai_grant";
/// The preview host's cookie for top-level browsing (SameSite=Lax).
pub const PREVIEW_COOKIE: &str = "forgeai_preview";
/// The same for a preview embedded in the UI's iframe, which browsers treat as a third-party
/// context when the UI is on another site: SameSite=None, Secure (https, or `*.localhost`) and
/// Partitioned, so it is only ever sent under the site that embedded it.
pub const PREVIEW_EMBED_COOKIE: &str = "forgeai_preview_embed";
/// How long a grant the UI gets can be traded for cookies.
pub const UI_GRANT_TTL: chrono::Duration = chrono::Duration::minutes(5);
/// The longest a preview cookie lives (never longer than the token it was minted through).
pub const PREVIEW_COOKIE_TTL: chrono::Duration = chrono::Duration::hours(12);

const SECRET_NAME: &str = "preview-grant-key";
const KIND_GRANT: &str = "grant";
const KIND_COOKIE: &str = "cookie";

/// What a grant or a preview cookie says, signed: for which sandbox, which user, through which
/// of the user's tokens (revoking it ends the cookie), until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    /// `grant` or `cookie`: one is never accepted as the other.
    k: String,
    s: String,
    u: String,
    t: String,
    /// Expiry, Unix seconds.
    e: i64,
}

/// Signs and checks grants and preview cookies with an HMAC-SHA256 key kept in the database
/// (shared by every server on it).
#[derive(Clone)]
pub struct PreviewSigner {
    key: Vec<u8>,
}

impl PreviewSigner {
    pub async fn load(store: &Store) -> Result<Self, forgeai_store::Error> {
        Ok(PreviewSigner {
            key: store.server_secret(SECRET_NAME).await?.into_bytes(),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }

    fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// The claims of `token` if it is signed with this key, of `kind`, for `sandbox_id`, and
    /// not expired at `now` (Unix seconds).
    fn verify(&self, token: &str, kind: &str, sandbox_id: &str, now: i64) -> Option<Claims> {
        let (payload, signature) = token.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&signature).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (claims.k == kind && claims.s == sandbox_id && claims.e > now).then_some(claims)
    }

    /// A grant for the preview of `sandbox_id`, for `user_id` through their token `token_id`,
    /// usable until now + `ttl`.
    pub fn grant(
        &self,
        sandbox_id: &str,
        user_id: &str,
        token_id: &str,
        ttl: chrono::Duration,
    ) -> (String, DateTime<Utc>) {
        let expires = Utc::now() + ttl;
        let grant = self.sign(&Claims {
            k: KIND_GRANT.into(),
            s: sandbox_id.into(),
            u: user_id.into(),
            t: token_id.into(),
            e: expires.timestamp(),
        });
        (grant, expires)
    }
}

/// `http://3000-<sandbox>.<domain>[:port]/`.
pub fn preview_url(domain: &str, port: Option<u16>, sandbox_id: &str) -> String {
    format!(
        "http://{}/",
        forgeai_sandbox::preview_host(sandbox_id, PREVIEW_PORT, domain, port)
    )
}

/// `url` (a preview URL without a query) with the grant added.
pub fn granted_url(url: &str, grant: &str) -> String {
    format!("{url}?{GRANT_PARAM}={grant}")
}

impl AppState {
    pub(crate) async fn preview_signer(&self) -> Result<&PreviewSigner, ApiError> {
        self.preview_signer
            .get_or_try_init(|| PreviewSigner::load(&self.store))
            .await
            .map_err(ApiError::from)
    }
}

/// A link that opens the project's preview in a browser.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewLink {
    /// The preview's URL, without credentials (what the address bar shows).
    #[schema(format = "uri")]
    pub url: String,
    /// `url` with the grant: opening it signs this browser in to the preview.
    #[schema(format = "uri")]
    pub preview_url: String,
    /// The grant alone, for adding to another path of the preview (`?forgeai_grant=`).
    pub grant: String,
    /// Until when the grant can be used (the cookie it is traded for lasts longer).
    pub expires_at: DateTime<Utc>,
    /// Whether anyone may see the preview without a grant.
    pub public: bool,
}

/// A link to the project's current preview with a short-lived grant (5 minutes) for the
/// caller's browser. 404 while the project has no sandbox yet.
#[utoipa::path(get, path = "/api/projects/{id}/preview", tag = "projects", params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = PreviewLink), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn preview_link(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PreviewLink>, ApiError> {
    let project = state.owned_project(&caller.user.id, &id).await?;
    let sandbox_id = project.sandbox_id.ok_or(ApiError::NotFound("preview"))?;
    let url = preview_url(&state.config.preview_domain, state.config.preview_port, &sandbox_id);
    let (grant, expires_at) =
        state
            .preview_signer()
            .await?
            .grant(&sandbox_id, &caller.user.id, &caller.token.id, UI_GRANT_TTL);
    Ok(Json(PreviewLink {
        preview_url: granted_url(&url, &grant),
        url,
        grant,
        expires_at,
        public: project.public,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    /// `true` serves the preview to anyone; `false` to the owner only (the default).
    pub public: bool,
}

/// Changes a project: shares its preview with anyone (`{"public": true}`) or unshares it.
#[utoipa::path(patch, path = "/api/projects/{id}", request_body = UpdateProject, tag = "projects",
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = forgeai_store::Project), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn update_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateProject>,
) -> Result<Json<forgeai_store::Project>, ApiError> {
    let id = crate::api::parse_id("project id", &id)?;
    state
        .store
        .set_project_public(&user.id, &id, body.public)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("project"))
}

/// The preview proxy behind its access check. Share it in an `Arc`.
pub struct PreviewGate {
    state: AppState,
    proxy: Arc<PreviewProxy>,
}

/// Who the request turned out to be.
enum Access {
    /// The owner, or anyone for a public preview; with the cookie claims to set, if a grant
    /// was traded.
    Allowed(Option<Claims>),
    /// Signed in as someone else.
    Forbidden,
    /// No (valid) credential.
    Unauthenticated,
}

impl PreviewGate {
    pub fn new(state: AppState, proxy: Arc<PreviewProxy>) -> Arc<Self> {
        Arc::new(PreviewGate { state, proxy })
    }

    /// Whether the request is addressed to a preview host.
    pub fn matches(&self, headers: &HeaderMap, uri: &Uri) -> bool {
        self.proxy.matches(headers, uri)
    }

    /// Checks access, then proxies the request without the owner's credentials.
    pub async fn handle(&self, mut request: Request<Body>) -> Response<Body> {
        let host = host_of(&request);
        let Some((port, sandbox_id)) = host.as_deref().and_then(|host| self.proxy.parse_host(host)) else {
            // Not a preview host after all: the proxy says so.
            return self.proxy.handle(request).await;
        };
        if port != PREVIEW_PORT {
            return text(
                StatusCode::FORBIDDEN,
                format!("forgeai forwards only port {PREVIEW_PORT} of a sandbox, not port {port}"),
            );
        }
        let owner = match self.state.store.sandbox_owner(&sandbox_id).await {
            Ok(Some(owner)) => owner,
            Ok(None) => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("no project has the preview {sandbox_id}"),
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot look up the owner of a preview");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the preview cannot be checked right now".into(),
                );
            }
        };
        let grant = query_param(request.uri(), GRANT_PARAM);
        let access = match self
            .access(request.headers(), &sandbox_id, &owner, grant.as_deref())
            .await
        {
            Ok(access) => access,
            Err(error) => {
                tracing::error!(%error, "cannot check access to a preview");
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the preview cannot be checked right now".into(),
                );
            }
        };
        let new_cookie = match access {
            Access::Allowed(new_cookie) => new_cookie,
            Access::Forbidden => {
                return refusal(
                    &request,
                    StatusCode::FORBIDDEN,
                    "This preview belongs to another user. Ask its owner to make it public.",
                    self.sign_in_url(host.as_deref()),
                );
            }
            Access::Unauthenticated => {
                let mut response = refusal(
                    &request,
                    StatusCode::UNAUTHORIZED,
                    "This preview is private. Open it from its project in forgeai, signed in as its owner, \
                     or send `Authorization: Bearer <token>`.",
                    self.sign_in_url(host.as_deref()),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"forgeai preview\""),
                );
                return response;
            }
        };
        let is_upgrade = request.headers().contains_key(header::UPGRADE);
        if grant.is_some() && matches!(*request.method(), Method::GET | Method::HEAD) && !is_upgrade {
            // The grant leaves the address bar (and never reaches the app): the clean URL,
            // now with the cookie.
            let location = clean_path_and_query(request.uri());
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::SEE_OTHER;
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Some(claims) = new_cookie {
                self.add_cookies(&mut response, claims).await;
            }
            return response;
        }
        strip_credentials(&mut request);
        let mut response = self.proxy.handle(request).await;
        strip_forgeai_set_cookies(response.headers_mut());
        response
    }

    async fn access(
        &self,
        headers: &HeaderMap,
        sandbox_id: &str,
        owner: &SandboxOwner,
        grant: Option<&str>,
    ) -> Result<Access, ApiError> {
        let signer = self.state.preview_signer().await?;
        let now = Utc::now().timestamp();
        let mut someone_else = false;
        if let Some(claims) = grant.and_then(|grant| signer.verify(grant, KIND_GRANT, sandbox_id, now)) {
            if claims.u != owner.user_id {
                someone_else = true;
            } else if self.state.store.token_is_live(&claims.u, &claims.t).await? {
                return Ok(Access::Allowed(Some(claims)));
            }
        }
        if owner.public {
            return Ok(Access::Allowed(None));
        }
        let jar = axum_extra::extract::CookieJar::from_headers(headers);
        for name in [PREVIEW_COOKIE, PREVIEW_EMBED_COOKIE] {
            let Some(cookie) = jar.get(name) else { continue };
            let Some(claims) = signer.verify(cookie.value(), KIND_COOKIE, sandbox_id, now) else {
                continue;
            };
            if claims.u != owner.user_id {
                someone_else = true;
            } else if self.state.store.token_is_live(&claims.u, &claims.t).await? {
                return Ok(Access::Allowed(None));
            }
        }
        if let Some(token) = bearer_token(headers)
            && let Some(user) = self.state.store.authenticate(&token).await?
        {
            if user.id == owner.user_id {
                return Ok(Access::Allowed(None));
            }
            someone_else = true;
        }
        Ok(if someone_else {
            Access::Forbidden
        } else {
            Access::Unauthenticated
        })
    }

    /// Sets the preview cookies for the grant's user and token: a cookie lives at most
    /// [`PREVIEW_COOKIE_TTL`] and never past its token.
    async fn add_cookies(&self, response: &mut Response<Body>, grant: Claims) {
        let Ok(signer) = self.state.preview_signer().await else {
            return;
        };
        let mut expires = Utc::now() + PREVIEW_COOKIE_TTL;
        if let Ok(tokens) = self.state.store.list_tokens(&grant.u).await
            && let Some(token_expiry) = tokens
                .iter()
                .find(|token| token.id == grant.t)
                .and_then(|token| token.expires_at)
        {
            expires = expires.min(token_expiry);
        }
        let value = signer.sign(&Claims {
            k: KIND_COOKIE.into(),
            e: expires.timestamp(),
            ..grant
        });
        let max_age = cookie::time::Duration::seconds((expires - Utc::now()).num_seconds().max(0));
        let lax = Cookie::build((PREVIEW_COOKIE, value.clone()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(max_age)
            .build();
        let embedded = Cookie::build((PREVIEW_EMBED_COOKIE, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::None)
            .secure(true)
            .partitioned(true)
            .max_age(max_age)
            .build();
        for cookie in [lax, embedded] {
            if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
    }

    /// Where a browser signs in: the public URL, or the preview host without its
    /// `3000-<sandbox>.` label.
    fn sign_in_url(&self, host: Option<&str>) -> Option<String> {
        if let Some(url) = &self.state.config.public_url {
            return Some(format!("{}/", url.trim_end_matches('/')));
        }
        let (_, rest) = host?.split_once('.')?;
        Some(format!("http://{rest}/"))
    }
}

fn host_of(request: &Request<Body>) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|authority| authority.to_string()))
}

/// The first value of the query parameter `name` (grants need no percent-decoding).
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_owned())
    })
}

/// The request's path and query without the grant parameter, byte for byte otherwise.
fn clean_path_and_query(uri: &Uri) -> String {
    let path = if uri.path().is_empty() { "/" } else { uri.path() };
    let Some(query) = uri.query() else {
        return path.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(key, _)| key) != GRANT_PARAM)
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

fn is_forgeai_cookie(name: &str) -> bool {
    [SESSION_COOKIE, PREVIEW_COOKIE, PREVIEW_EMBED_COOKIE].contains(&name)
}

/// Removes everything that identifies the owner: `Authorization`, forgeai's cookies (the
/// app's own cookies stay) and the grant parameter.
fn strip_credentials(request: &mut Request<Body>) {
    let headers = request.headers_mut();
    headers.remove(header::AUTHORIZATION);
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !is_forgeai_cookie(pair.split_once('=').map_or(*pair, |(name, _)| name).trim()))
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
    if query_param(request.uri(), GRANT_PARAM).is_some()
        && let Ok(path_and_query) = clean_path_and_query(request.uri()).parse::<axum::http::uri::PathAndQuery>()
    {
        let mut parts = request.uri().clone().into_parts();
        parts.path_and_query = Some(path_and_query);
        if let Ok(uri) = Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
    }
}

/// The app may not set (or overwrite) forgeai's cookies on its host.
fn strip_forgeai_set_cookies(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    headers.remove(header::SET_COOKIE);
    for value in values {
        let name = value
            .to_str()
            .ok()
            .and_then(|text| text.split_once('='))
            .map(|(name, _)| name.trim().to_owned());
        if !name.as_deref().is_some_and(is_forgeai_cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut response = (status, message + "\n").into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A refusal: a short page with a sign-in link for browsers, plain text for everything else.
fn refusal(request: &Request<Body>, status: StatusCode, message: &str, sign_in: Option<String>) -> Response<Body> {
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if !wants_html {
        return text(status, message.to_owned());
    }
    let link = sign_in
        .map(|url| {
            let url = html_escape(&url);
            format!("<p><a href=\"{url}\">Sign in to forgeai</a></p>")
        })
        .unwrap_or_default();
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Preview not available</title></head>\
         <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem\">\
         <h1>Preview not available</h1><p>{}</p>{link}</body></html>",
        html_escape(message)
    );
    let mut response = (status, page).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> PreviewSigner {
        PreviewSigner {
            key: b"test key".to_vec(),
        }
    }

    #[test]
    fn grants_are_bound_to_their_sandbox_kind_key_and_time() {
        let signer = signer();
        let (grant, expires) = signer.grant("sbx1", "alice", "tok", chrono::Duration::minutes(5));
        let now = Utc::now().timestamp();
        let claims = signer.verify(&grant, KIND_GRANT, "sbx1", now).unwrap();
        assert_eq!(
            (claims.u.as_str(), claims.t.as_str(), claims.e),
            ("alice", "tok", expires.timestamp())
        );
        assert!(
            grant.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "URL-safe: {grant}"
        );
        assert_eq!(signer.verify(&grant, KIND_GRANT, "sbx2", now), None, "another sandbox");
        assert_eq!(
            signer.verify(&grant, KIND_COOKIE, "sbx1", now),
            None,
            "a grant is no cookie"
        );
        assert_eq!(
            signer.verify(&grant, KIND_GRANT, "sbx1", expires.timestamp()),
            None,
            "expired"
        );
        let other = PreviewSigner { key: b"other".to_vec() };
        assert_eq!(other.verify(&grant, KIND_GRANT, "sbx1", now), None, "another key");
        // A payload changed to another user breaks the signature.
        let (payload, signature) = grant.split_once('.').unwrap();
        let mut claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims.u = "mallory".into();
        let forged = format!(
            "{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
        );
        assert_eq!(signer.verify(&forged, KIND_GRANT, "sbx1", now), None);
        for junk in ["", ".", "a.b", "no-dot", "!!.!!"] {
            assert_eq!(signer.verify(junk, KIND_GRANT, "sbx1", now), None);
        }
    }

    #[test]
    fn the_grant_parameter_is_removed_and_nothing_else() {
        let clean = |uri: &str| clean_path_and_query(&uri.parse::<Uri>().unwrap());
        assert_eq!(clean("/?forgeai_grant=abc"), "/");
        assert_eq!(clean("/a/b?x=1&forgeai_grant=abc&y=%20"), "/a/b?x=1&y=%20");
        assert_eq!(clean("/a?forgeai_grant=abc&forgeai_grant=def"), "/a");
        assert_eq!(clean("/a?x=1"), "/a?x=1");
        assert_eq!(clean("/a?forgeai_grant_x=1"), "/a?forgeai_grant_x=1");
        assert_eq!(
            query_param(&"/a?x=1&forgeai_grant=g.h".parse().unwrap(), GRANT_PARAM).as_deref(),
            Some("g.h")
        );
    }

    #[test]
    fn credentials_are_stripped_and_the_apps_cookies_kept() {
        let mut request = Request::builder()
            .uri("/page?forgeai_grant=g&q=1")
            .header(header::AUTHORIZATION, "Bearer secret")
            .header(
                header::COOKIE,
                "theme=dark; forgeai_session=s1; forgeai_preview=p1;forgeai_preview_embed=p2",
            )
            .header(header::COOKIE, "cart=3")
            .body(Body::empty())
            .unwrap();
        strip_credentials(&mut request);
        assert_eq!(request.uri().to_string(), "/page?q=1");
        assert!(request.headers().get(header::AUTHORIZATION).is_none());
        let cookies: Vec<&str> = request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["theme=dark; cart=3"]);

        let mut only_ours = Request::builder()
            .uri("/")
            .header(header::COOKIE, "forgeai_session=s1")
            .body(Body::empty())
            .unwrap();
        strip_credentials(&mut only_ours);
        assert!(only_ours.headers().get(header::COOKIE).is_none());

        let mut headers = HeaderMap::new();
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("forgeai_preview=x; Path=/"),
        );
        headers.append(header::SET_COOKIE, HeaderValue::from_static("app=1; Path=/"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("forgeai_session=y"));
        strip_forgeai_set_cookies(&mut headers);
        let left: Vec<&str> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, ["app=1; Path=/"]);
    }
}
