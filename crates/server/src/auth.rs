//! Who is calling: a bearer token (API or session), or the session cookie. Sessions are tokens
//! of their own, stored server-side (as hashes) with an expiry: the one-time login URL and
//! `POST /api/session` mint one, sign-out revokes it. A user lists and revokes their tokens
//! through `/api/tokens`.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::Utc;
use forgeai_store::{TokenInfo, TokenKind, User};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::api::{ApiJson, ApiPath, parse_id};
use crate::error::{ApiError, ErrorBody};

pub const SESSION_COOKIE: &str = "forgeai_session";

/// The longest a browser session lives.
pub const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The authenticated caller; every API handler that takes one is scoped to this user.
pub struct CurrentUser(pub User);

/// The authenticated caller with the token it authenticated with.
pub struct Caller {
    pub user: User,
    pub token: TokenInfo,
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110
/// section 11.1; the token may be surrounded by spaces).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
        .map(|(_, token)| token.trim().to_owned())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = match bearer_token(&parts.headers) {
            Some(token) => token,
            None => CookieJar::from_headers(&parts.headers)
                .get(SESSION_COOKIE)
                .map(|cookie| cookie.value().to_owned())
                .ok_or(ApiError::Unauthorized)?,
        };
        let (user, token) = state
            .store
            .authenticate_token(&token)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        Ok(Caller { user, token })
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Caller::from_request_parts(parts, state)
            .await
            .map(|caller| CurrentUser(caller.user))
    }
}

impl AppState {
    fn session_ttl(&self) -> chrono::Duration {
        let ttl = self.config.session_ttl.min(MAX_SESSION_TTL);
        chrono::Duration::from_std(ttl).unwrap_or(forgeai_store::MAX_SESSION_TTL)
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: String,
}

/// `GET /login?token=…`: trades a one-time login token (valid 15 minutes) for a new session,
/// then opens the UI.
pub async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(LoginQuery { token })) = query else {
        return ApiError::BadRequest("the login URL needs its `token` parameter".into()).into_response();
    };
    match state.store.consume_login_token(&token, state.session_ttl()).await {
        Ok(Some(session)) => (
            jar.add(session_cookie(session.secret, &session.token)),
            Redirect::to("/"),
        )
            .into_response(),
        Ok(None) => ApiError::BadRequest(
            "this login link was already used, has expired (links last 15 minutes) or is not valid; \
             run `forgeai users login <name>` for a new one"
                .into(),
        )
        .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The session cookie: HttpOnly, SameSite=Lax, host-only, and ending when the session does
/// (Max-Age and Expires).
fn session_cookie(secret: String, session: &TokenInfo) -> Cookie<'static> {
    let expires = session.expires_at.unwrap_or_else(Utc::now);
    let max_age = (expires - Utc::now()).num_seconds().max(0);
    let mut cookie = Cookie::build((SESSION_COOKIE, secret))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    if let Ok(at) = cookie::time::OffsetDateTime::from_unix_timestamp(expires.timestamp()) {
        cookie.set_expires(at);
    }
    cookie
}

fn removed_session_cookie(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(SESSION_COOKIE).path("/"))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SessionRequest {
    /// An API token (from `forgeai users add`).
    pub token: String,
}

/// Signs the browser in with an API token: a new session token (not the API token) becomes
/// the session cookie, which expires with the session.
#[utoipa::path(post, path = "/api/session", request_body = SessionRequest, tag = "session",
    // The token in the body is the credential.
    security(()),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Result<(CookieJar, StatusCode), ApiError> {
    let token = body.token.trim();
    let (user, token) = state
        .store
        .authenticate_token(token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    // A session cannot prolong itself by minting the next one.
    if token.kind != TokenKind::Api {
        return Err(ApiError::Unauthorized);
    }
    let (session, secret) = state
        .store
        .create_session(&user.id, state.session_ttl())
        .await?
        .ok_or(ApiError::Unauthorized)?;
    Ok((jar.add(session_cookie(secret, &session)), StatusCode::NO_CONTENT))
}

/// Signs the browser out: its session is revoked on the server and the cookie removed.
#[utoipa::path(delete, path = "/api/session", tag = "session", security(()), responses((status = 204)))]
pub async fn sign_out(State(state): State<AppState>, jar: CookieJar) -> Result<(CookieJar, StatusCode), ApiError> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        state.store.revoke_session(cookie.value()).await?;
    }
    Ok((removed_session_cookie(jar), StatusCode::NO_CONTENT))
}

/// One of the caller's tokens; never its secret.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    #[serde(flatten)]
    pub token: TokenInfo,
    /// Whether this is the token the request was made with.
    pub current: bool,
}

/// The caller's tokens (API tokens, browser sessions, unused login links), oldest first.
#[utoipa::path(get, path = "/api/tokens", tag = "tokens",
    responses((status = 200, body = [TokenView]), (status = 401, body = ErrorBody)))]
pub async fn list_tokens(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = state.store.list_tokens(&caller.user.id).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|token| TokenView {
                current: token.id == caller.token.id,
                token,
            })
            .collect(),
    ))
}

/// Revokes one of the caller's tokens: it authenticates nothing from now on (revoking the
/// session the request came with signs this browser out).
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", params(("id" = String, Path, format = "uuid")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    jar: CookieJar,
    ApiPath(id): ApiPath<String>,
) -> Result<(CookieJar, StatusCode), ApiError> {
    let id = parse_id("token id", &id)?;
    if !state.store.revoke_token(&caller.user.id, &id).await? {
        return Err(ApiError::NotFound("token"));
    }
    let jar = if id == caller.token.id && caller.token.kind == TokenKind::Session {
        removed_session_cookie(jar)
    } else {
        jar
    };
    Ok((jar, StatusCode::NO_CONTENT))
}
