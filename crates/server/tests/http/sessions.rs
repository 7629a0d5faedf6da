//! Browser sessions are tokens of their own that expire and are revoked on sign-out; a user
//! lists and revokes their tokens; `/metrics` is not public.

use std::time::Duration;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{METRICS_TOKEN, TestServer, expect_error, read_json};

const THIRTY_DAYS: i64 = 30 * 24 * 3600;

/// `name=value` of a Set-Cookie header, and its attributes.
struct SetCookie {
    pair: String,
    value: String,
    attributes: Vec<String>,
}

impl SetCookie {
    fn parse(response: &reqwest::Response) -> SetCookie {
        let header = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
        let mut parts = header.split(';').map(|part| part.trim().to_owned());
        let pair = parts.next().unwrap();
        let value = pair.split_once('=').unwrap().1.to_owned();
        SetCookie {
            pair,
            value,
            attributes: parts.collect(),
        }
    }

    fn max_age(&self) -> i64 {
        self.attributes
            .iter()
            .find_map(|attribute| attribute.strip_prefix("Max-Age="))
            .unwrap_or_else(|| panic!("no Max-Age: {:?}", self.attributes))
            .parse()
            .unwrap()
    }

    fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a.eq_ignore_ascii_case(attribute))
    }
}

async fn with_cookie(s: &TestServer, method: Method, path: &str, cookie: &str) -> reqwest::Response {
    s.request(method, path, None)
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
}

async fn login(s: &TestServer, link_token: &str) -> reqwest::Response {
    s.request(Method::GET, &format!("/login?token={link_token}"), None)
        .send()
        .await
        .unwrap()
}

pub async fn sessions_are_revoked_on_sign_out_and_expire(s: &TestServer) {
    let alice = s.user("alice").await;

    // A login link: a new session, in a cookie that ends with it (at most 30 days).
    let link = s.store.create_login_token(&alice.id).await.unwrap().unwrap();
    let response = login(s, &link).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/");
    let cookie = SetCookie::parse(&response);
    assert!(cookie.pair.starts_with("forgeai_session="), "{}", cookie.pair);
    assert!(cookie.has("HttpOnly") && cookie.has("SameSite=Lax") && cookie.has("Path=/"));
    assert!(!cookie.attributes.iter().any(|a| a.starts_with("Domain")), "host-only");
    assert!(
        (THIRTY_DAYS - 60..=THIRTY_DAYS).contains(&cookie.max_age()),
        "{}",
        cookie.max_age()
    );
    let expires = cookie
        .attributes
        .iter()
        .find_map(|a| a.strip_prefix("Expires="))
        .expect("Expires");
    let expires = chrono::DateTime::parse_from_rfc2822(&expires.replace("GMT", "+0000")).unwrap();
    let in_30_days = chrono::Utc::now() + chrono::Duration::days(30);
    assert!((expires.to_utc() - in_30_days).num_seconds().abs() < 60, "{expires}");
    let response = with_cookie(s, Method::GET, "/api/projects", &cookie.pair).await;
    assert_eq!(response.status(), StatusCode::OK);

    // The link works once.
    let again = login(s, &link).await;
    assert!(!again.headers().contains_key(SET_COOKIE));
    let error = expect_error(again, StatusCode::BAD_REQUEST).await;
    assert!(error.contains("already used"), "{error}");

    // Signing out revokes the session on the server: the same cookie, sent again, is refused.
    let response = with_cookie(s, Method::DELETE, "/api/session", &cookie.pair).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let removal = SetCookie::parse(&response);
    assert_eq!(removal.pair, "forgeai_session=");
    assert_eq!(removal.max_age(), 0);
    let refused = with_cookie(s, Method::GET, "/api/projects", &cookie.pair).await;
    expect_error(refused, StatusCode::UNAUTHORIZED).await;
    let refused = s
        .request(Method::GET, "/api/projects", Some(&cookie.value))
        .send()
        .await
        .unwrap();
    expect_error(refused, StatusCode::UNAUTHORIZED).await;
    // Signing out without a session, or twice, is fine.
    let response = with_cookie(s, Method::DELETE, "/api/session", &cookie.pair).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = s.request(Method::DELETE, "/api/session", None).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // POST /api/session mints a new session: the API token is neither the cookie nor in the
    // answer, and signing out leaves the API token working.
    let response = s
        .request(Method::POST, "/api/session", None)
        .json(&json!({ "token": alice.token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cookie = SetCookie::parse(&response);
    assert!(cookie.pair.starts_with("forgeai_session="));
    assert_ne!(cookie.value, alice.token, "the cookie is not the API token");
    assert_eq!(cookie.value.len(), alice.token.len());
    for value in response.headers().values() {
        assert!(!value.to_str().unwrap_or_default().contains(&alice.token), "{value:?}");
    }
    assert!(response.bytes().await.unwrap().is_empty());
    assert!((THIRTY_DAYS - 60..=THIRTY_DAYS).contains(&cookie.max_age()));
    let response = with_cookie(s, Method::GET, "/api/projects", &cookie.pair).await;
    assert_eq!(response.status(), StatusCode::OK);
    // A session cannot mint the next one (it would never end).
    let response = s
        .request(Method::POST, "/api/session", None)
        .json(&json!({ "token": cookie.value }))
        .send()
        .await
        .unwrap();
    assert!(!response.headers().contains_key(SET_COOKIE));
    expect_error(response, StatusCode::UNAUTHORIZED).await;
    let response = with_cookie(s, Method::DELETE, "/api/session", &cookie.pair).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let refused = with_cookie(s, Method::GET, "/api/projects", &cookie.pair).await;
    expect_error(refused, StatusCode::UNAUTHORIZED).await;
    let (status, _) = s.get("/api/projects", &alice.token).await;
    assert_eq!(status, StatusCode::OK, "signing out does not end the API token");

    // An expired session is refused, as cookie and as bearer token.
    let (_, expired) = s
        .store
        .create_session(&alice.id, chrono::Duration::seconds(-1))
        .await
        .unwrap()
        .unwrap();
    let refused = with_cookie(s, Method::GET, "/api/projects", &format!("forgeai_session={expired}")).await;
    expect_error(refused, StatusCode::UNAUTHORIZED).await;
    let refused = s
        .request(Method::GET, "/api/projects", Some(&expired))
        .send()
        .await
        .unwrap();
    expect_error(refused, StatusCode::UNAUTHORIZED).await;
    // An expired login link is refused (and used up).
    let stale = s
        .store
        .create_login_token_expiring(&alice.id, chrono::Duration::seconds(-1))
        .await
        .unwrap()
        .unwrap();
    let response = login(s, &stale).await;
    assert!(!response.headers().contains_key(SET_COOKIE));
    let error = expect_error(response, StatusCode::BAD_REQUEST).await;
    assert!(error.contains("expired"), "{error}");

    // A server configured for shorter sessions sends that lifetime.
    let short = TestServer::start_with(s.backend, |config| {
        config.session_ttl = Duration::from_secs(2 * 24 * 3600)
    })
    .await;
    let bob = short.user("bob").await;
    let response = short
        .request(Method::POST, "/api/session", None)
        .json(&json!({ "token": bob.token }))
        .send()
        .await
        .unwrap();
    let cookie = SetCookie::parse(&response);
    assert!((2 * 24 * 3600 - 60..=2 * 24 * 3600).contains(&cookie.max_age()));
    let link = short.store.create_login_token(&bob.id).await.unwrap().unwrap();
    let cookie = SetCookie::parse(&login(&short, &link).await);
    assert!((2 * 24 * 3600 - 60..=2 * 24 * 3600).contains(&cookie.max_age()));
}

pub async fn tokens_are_listed_and_revoked(s: &TestServer) {
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;

    let (status, tokens) = s.get("/api/tokens", &alice.token).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let tokens = tokens.as_array().unwrap().clone();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let api = &tokens[0];
    assert_eq!(api["kind"], "api");
    assert_eq!(api["current"], true);
    assert_eq!(api["expiresAt"], Value::Null);
    assert!(api["lastUsedAt"].is_string(), "this request used it: {api}");
    assert!(uuid::Uuid::parse_str(api["id"].as_str().unwrap()).is_ok());
    let mut keys: Vec<&str> = api.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["createdAt", "current", "expiresAt", "id", "kind", "lastUsedAt"]);

    // A browser session and a pending login link show up too, without their secrets.
    let link = s.store.create_login_token(&alice.id).await.unwrap().unwrap();
    let pending = s.store.create_login_token(&alice.id).await.unwrap().unwrap();
    let session = SetCookie::parse(&login(s, &link).await).pair;
    let response = with_cookie(s, Method::GET, "/api/tokens", &session).await;
    let raw = response.text().await.unwrap();
    for secret in [
        &alice.token,
        &pending,
        &link,
        &session["forgeai_session=".len()..].to_owned(),
    ] {
        assert!(!raw.contains(secret.as_str()), "a secret is listed: {raw}");
    }
    let tokens: Vec<Value> = serde_json::from_str(&raw).unwrap();
    let kinds: Vec<&str> = tokens.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["api", "login-once", "session"], "{raw}");
    let session_row = &tokens[2];
    assert_eq!(session_row["current"], true);
    assert_eq!(tokens[0]["current"], false);
    let expires = chrono::DateTime::parse_from_rfc3339(tokens[1]["expiresAt"].as_str().unwrap()).unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(tokens[1]["createdAt"].as_str().unwrap()).unwrap();
    assert_eq!(
        expires - created,
        chrono::Duration::minutes(15),
        "login links last 15 minutes"
    );

    // Bob can neither see nor revoke Alice's tokens.
    let (_, bobs) = s.get("/api/tokens", &bob.token).await;
    assert_eq!(bobs.as_array().unwrap().len(), 1);
    let session_id = session_row["id"].as_str().unwrap();
    let response = s
        .request(Method::DELETE, &format!("/api/tokens/{session_id}"), Some(&bob.token))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND).await;
    let response = s
        .request(Method::DELETE, "/api/tokens/not-a-uuid", Some(&alice.token))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST).await;
    for path in ["/api/tokens", &format!("/api/tokens/{session_id}")] {
        let method = if path == "/api/tokens" {
            Method::GET
        } else {
            Method::DELETE
        };
        let response = s.request(method, path, None).send().await.unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED).await;
    }

    // Revoking the session from the API token: the browser is signed out.
    let response = s
        .request(Method::DELETE, &format!("/api/tokens/{session_id}"), Some(&alice.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        !response.headers().contains_key(SET_COOKIE),
        "not this request's session"
    );
    let refused = with_cookie(s, Method::GET, "/api/projects", &session).await;
    expect_error(refused, StatusCode::UNAUTHORIZED).await;
    let response = s
        .request(Method::DELETE, &format!("/api/tokens/{session_id}"), Some(&alice.token))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND).await;

    // Revoking the session a request came with also removes its cookie.
    let link = s.store.create_login_token(&alice.id).await.unwrap().unwrap();
    let session = SetCookie::parse(&login(s, &link).await).pair;
    let response = with_cookie(s, Method::GET, "/api/tokens", &session).await;
    let (_, tokens) = read_json(response).await;
    let current = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = with_cookie(s, Method::DELETE, &format!("/api/tokens/{current}"), &session).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let removal = SetCookie::parse(&response);
    assert_eq!((removal.pair.as_str(), removal.max_age()), ("forgeai_session=", 0));

    // Revoking an API token ends it; the pending login link is revoked like any token.
    let (_, tokens) = s.get("/api/tokens", &alice.token).await;
    // The API token (listed first) last, since it makes these requests.
    for token in tokens.as_array().unwrap().iter().rev() {
        let response = s
            .request(
                Method::DELETE,
                &format!("/api/tokens/{}", token["id"].as_str().unwrap()),
                Some(&alice.token),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{token}");
    }
    let refused = s
        .request(Method::GET, "/api/projects", Some(&alice.token))
        .send()
        .await
        .unwrap();
    expect_error(refused, StatusCode::UNAUTHORIZED).await;
    let response = login(s, &pending).await;
    expect_error(response, StatusCode::BAD_REQUEST).await;
    let (status, _) = s.get("/api/projects", &bob.token).await;
    assert_eq!(status, StatusCode::OK, "Bob's token is untouched");
}

pub async fn metrics_need_a_token_or_their_own_listener(s: &TestServer) {
    let alice = s.user("alice").await;
    let (status, _) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.call(Method::GET, "/api/projects/not-a-uuid", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.create_project(&alice.token, "Build a todo app").await;

    for credentials in [
        None,
        Some("wrong"),
        Some(alice.token.as_str()),
        Some("metrics-test-tokenx"),
    ] {
        let response = s.request(Method::GET, "/metrics", credentials).send().await.unwrap();
        expect_error(response, StatusCode::UNAUTHORIZED).await;
    }
    let metrics = s
        .request(Method::GET, "/metrics", Some(METRICS_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(
        metrics.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains(r#"forgeai_http_requests_total{method="GET",route="/healthz",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="/api/projects/{id}",status="401""#),
        "{metrics}"
    );
    assert!(metrics.contains("forgeai_events_sent_total 1"), "{metrics}");
    assert!(
        metrics.contains("forgeai_http_request_duration_seconds_bucket"),
        "{metrics}"
    );

    // Without a metrics token, the API listener does not serve metrics at all.
    let open = TestServer::start_with(s.backend, |config| config.metrics_token = None).await;
    for credentials in [None, Some(METRICS_TOKEN), Some("")] {
        let response = open.request(Method::GET, "/metrics", credentials).send().await.unwrap();
        expect_error(response, StatusCode::NOT_FOUND).await;
    }
    // …but a listener of their own does, without a token.
    let state = forgeai_server::AppState::new(
        open.store.clone(),
        open.engine.clone(),
        forgeai_server::ServerConfig::new(&open.data_dir),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, forgeai_server::metrics_router(state))
            .await
            .unwrap();
    });
    let response = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("forgeai_events_sent_total"));
    let response = reqwest::get(format!("http://{address}/api/projects")).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "only metrics there");
    server.abort();
}
