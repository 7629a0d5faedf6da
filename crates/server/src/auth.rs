//! Who is calling: a bearer token, or the session cookie the one-time login URL sets.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use forgeai_store::User;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "forgeai_session";

/// The authenticated caller; every API handler that takes one is scoped to this user.
pub struct CurrentUser(pub User);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            // The scheme is case-insensitive (RFC 9110, section 11.1).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim().to_owned());
        let token = match bearer {
            Some(token) => token,
            None => CookieJar::from_headers(&parts.headers)
                .get(SESSION_COOKIE)
                .map(|cookie| cookie.value().to_owned())
                .ok_or(ApiError::Unauthorized)?,
        };
        state
            .store
            .authenticate(&token)
            .await?
            .map(CurrentUser)
            .ok_or(ApiError::Unauthorized)
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: String,
}

/// `GET /login?token=…`: trades a one-time login token for a session cookie, then opens the UI.
pub async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(LoginQuery { token })) = query else {
        return ApiError::BadRequest("the login URL needs its `token` parameter".into()).into_response();
    };
    match state
        .store
        .consume_login_token(&token, forgeai_store::MAX_SESSION_TTL)
        .await
    {
        Ok(Some(session)) => (jar.add(session_cookie(session.secret)), Redirect::to("/")).into_response(),
        Ok(None) => ApiError::BadRequest(
            "this login link was already used or is not valid; run `forgeai users login <name>` for a new one".into(),
        )
        .into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

pub fn session_cookie(token: String) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, token))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .permanent()
        .build()
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SessionRequest {
    /// An API token (from `forgeai users add`).
    pub token: String,
}

/// Signs the browser in with an API token: it becomes the session cookie.
#[utoipa::path(post, path = "/api/session", request_body = SessionRequest, tag = "session",
    // The token in the body is the credential.
    security(()),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    crate::api::ApiJson(body): crate::api::ApiJson<SessionRequest>,
) -> Result<(CookieJar, axum::http::StatusCode), ApiError> {
    let token = body.token.trim().to_owned();
    state.store.authenticate(&token).await?.ok_or(ApiError::Unauthorized)?;
    Ok((jar.add(session_cookie(token)), axum::http::StatusCode::NO_CONTENT))
}

/// Signs the browser out.
#[utoipa::path(delete, path = "/api/session", tag = "session", security(()), responses((status = 204)))]
pub async fn sign_out(jar: CookieJar) -> (CookieJar, axum::http::StatusCode) {
    (
        jar.remove(Cookie::build(SESSION_COOKIE).path("/")),
        axum::http::StatusCode::NO_CONTENT,
    )
}
