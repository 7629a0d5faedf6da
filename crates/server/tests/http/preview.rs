//! Preview access through the gate in front of the preview proxy (as `forgeai serve` has it),
//! with an echo server standing in for the sandboxes: who gets the app, who does not (and does
//! not wake the sandbox), grants traded for cookies, sharing, ports, and what reaches the app.
//! The same over a real `forgeai serve` with a real sandbox is in crates/cli/tests/e2e.rs.

use std::time::{Duration, Instant};

use forgeai_server::PreviewSigner;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestServer, expect_error, read_json};

const SANDBOX: &str = "sbxalice1";

/// A request to `/path` of `<port>-<sandbox>.localhost`.
fn preview(s: &TestServer, port: u16, sandbox: &str, path: &str) -> reqwest::RequestBuilder {
    s.http
        .get(format!("{}{path}", s.url))
        .header("Host", format!("{port}-{sandbox}.localhost:{}", s.port))
}

/// What the app got, as the echo server answered it.
struct Echo {
    uri: String,
    headers: Vec<(String, String)>,
}

impl Echo {
    async fn read(response: reqwest::Response) -> (Echo, Vec<String>) {
        assert_eq!(response.status(), StatusCode::OK);
        let set_cookies = set_cookies(&response);
        let (_, body) = read_json(response).await;
        let headers = body["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_owned(),
                    pair[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (
            Echo {
                uri: body["uri"].as_str().unwrap().to_owned(),
                headers,
            },
            set_cookies,
        )
    }

    fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Nothing in what reached the app identifies the owner.
    fn assert_no_credentials(&self, secrets: &[&str]) {
        assert!(self.header("authorization").is_empty(), "{:?}", self.headers);
        for (name, value) in &self.headers {
            assert!(!value.contains("forgeai_"), "{name}: {value}");
            for secret in secrets {
                assert!(!value.contains(secret), "{name} carries a credential: {value}");
            }
        }
        assert!(!self.uri.contains("forgeai_grant"), "{}", self.uri);
    }
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// Alice's project with its sandbox; answers the project id.
async fn alice_project(s: &TestServer, alice: &crate::harness::TestUser) -> String {
    let id = s.create_project(&alice.token, "Build a page").await;
    assert!(
        s.store
            .set_project_sandbox(&alice.id, &id, Some(SANDBOX))
            .await
            .unwrap()
    );
    id
}

async fn preview_link(s: &TestServer, token: &str, project_id: &str) -> Value {
    let (status, link) = s.get(&format!("/api/projects/{project_id}/preview"), token).await;
    assert_eq!(status, StatusCode::OK, "{link}");
    link
}

/// Trades a grant for the preview cookies: answers the `Cookie` header value to send next.
async fn trade(s: &TestServer, grant: &str) -> String {
    let response = preview(s, 3000, SANDBOX, &format!("/?forgeai_grant={grant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    set_cookies(&response)
        .iter()
        .map(|c| c.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

pub async fn previews_are_served_to_their_owner_only(s: &TestServer) {
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let project = alice_project(s, &alice).await;

    // Nobody, someone else, a forged token: refused before the sandbox is touched.
    let anonymous = preview(s, 3000, SANDBOX, "/").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()[WWW_AUTHENTICATE],
        "Bearer realm=\"forgeai preview\""
    );
    let browser = preview(s, 3000, SANDBOX, "/")
        .header(ACCEPT, "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), StatusCode::UNAUTHORIZED);
    assert!(
        browser.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = browser.text().await.unwrap();
    assert!(page.contains("This preview is private"), "{page}");
    assert!(
        page.contains(&format!("href=\"http://localhost:{}/\"", s.port)),
        "a link to sign in: {page}"
    );
    let other = preview(s, 3000, SANDBOX, "/")
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert!(other.text().await.unwrap().contains("belongs to another user"));
    for bad in ["forged", "", &format!("{}x", alice.token)] {
        let response = preview(s, 3000, SANDBOX, "/")
            .header(AUTHORIZATION, format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
    }
    let unknown = preview(s, 3000, "sbxnobody", "/")
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // A grant for another sandbox, a tampered one, an expired one, and one of Bob's.
    let signer = PreviewSigner::load(&s.store).await.unwrap();
    let api_token_id = s.get("/api/tokens", &alice.token).await.1[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (elsewhere, _) = signer.grant("sbxother", &alice.id, &api_token_id, chrono::Duration::minutes(5));
    let (expired, _) = signer.grant(SANDBOX, &alice.id, &api_token_id, chrono::Duration::seconds(-1));
    let (good, _) = signer.grant(SANDBOX, &alice.id, &api_token_id, chrono::Duration::minutes(5));
    let tampered = format!("{}A", good);
    let bobs_project = s.create_project(&bob.token, "Bob's page").await;
    assert!(
        s.store
            .set_project_sandbox(&bob.id, &bobs_project, Some("sbxbob1"))
            .await
            .unwrap()
    );
    let bobs_grant = preview_link(s, &bob.token, &bobs_project).await["grant"]
        .as_str()
        .unwrap()
        .to_owned();
    let (bob_for_alice, _) = signer.grant(SANDBOX, &bob.id, &api_token_id, chrono::Duration::minutes(5));
    for grant in [&elsewhere, &expired, &tampered, &bobs_grant, &"junk".to_owned()] {
        let response = preview(s, 3000, SANDBOX, &format!("/?forgeai_grant={grant}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{grant}");
        assert!(set_cookies(&response).is_empty());
    }
    let response = preview(s, 3000, SANDBOX, &format!("/?forgeai_grant={bob_for_alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Preview cookies that were never issued, or issued for Bob's sandbox, open nothing.
    let bobs_cookie = {
        let response = preview(s, 3000, "sbxbob1", &format!("/?forgeai_grant={bobs_grant}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        set_cookies(&response)[0].split(';').next().unwrap().to_owned()
    };
    for cookie in [
        "forgeai_preview=forged".to_owned(),
        bobs_cookie,
        format!("forgeai_preview={good}"),
        format!("forgeai_session={}", alice.token),
    ] {
        let response = preview(s, 3000, SANDBOX, "/")
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cookie}");
    }
    assert_eq!(
        s.sandboxes.woken(),
        Vec::<String>::new(),
        "no refused request reached a sandbox"
    );

    // Only port 3000 is forwarded: any other is refused at once, even for the owner.
    let started = Instant::now();
    for port in [22, 80, 5432, 3001] {
        let response = preview(s, port, SANDBOX, "/")
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "port {port}");
        assert!(response.text().await.unwrap().contains("only port 3000"));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(s.sandboxes.woken().is_empty());

    // The owner with a bearer token gets the app; the app sees no credential of hers (nor a
    // grant parameter), keeps its own cookies, and cannot set forgeai's.
    let response = s
        .http
        .post(format!("{}/echo?x=1&forgeai_grant=whatever&y=2", s.url))
        .header("Host", format!("3000-{SANDBOX}.localhost:{}", s.port))
        .bearer_auth(&alice.token)
        .header(
            COOKIE,
            format!("theme=dark; forgeai_session={}; forgeai_preview=old", alice.token),
        )
        .header(COOKIE, "cart=3")
        .send()
        .await
        .unwrap();
    let (echo, app_cookies) = Echo::read(response).await;
    assert_eq!(echo.uri, "/echo?x=1&y=2");
    assert_eq!(echo.header("cookie"), ["theme=dark; cart=3"]);
    echo.assert_no_credentials(&[&alice.token]);
    assert_eq!(app_cookies, ["app_cookie=1; Path=/"], "the app's own cookie only");
    assert_eq!(s.sandboxes.woken(), [format!("3000-{SANDBOX}")]);
    let response = preview(s, 3000, SANDBOX, "/echo")
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    let (echo, _) = Echo::read(response).await;
    assert_eq!(echo.uri, "/echo");
    echo.assert_no_credentials(&[&alice.token]);
    // A GET with a grant parameter is redirected to the URL without it.
    let response = preview(s, 3000, SANDBOX, "/echo?x=1&forgeai_grant=whatever&y=2")
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/echo?x=1&y=2");
    assert!(set_cookies(&response).is_empty(), "no grant was traded");
    assert_eq!(s.sandboxes.woken().len(), 2);

    // In a browser: the UI's link carries a grant, traded for cookies and a redirect to the
    // clean URL (before the sandbox is reached); the cookies then open the app.
    let link = preview_link(s, &alice.token, &project).await;
    let base = format!("http://3000-{SANDBOX}.localhost:{}/", s.port);
    assert_eq!(link["url"], base.as_str());
    let grant = link["grant"].as_str().unwrap();
    assert_eq!(link["previewUrl"], format!("{base}?forgeai_grant={grant}").as_str());
    assert_eq!(link["public"], false);
    let expires = chrono::DateTime::parse_from_rfc3339(link["expiresAt"].as_str().unwrap()).unwrap();
    let left = expires.to_utc() - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(4) && left <= chrono::Duration::minutes(5),
        "{left}"
    );
    let response = preview(s, 3000, SANDBOX, &format!("/about.html?forgeai_grant={grant}&lang=en"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/about.html?lang=en");
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    let lax = &cookies[0];
    assert!(lax.starts_with("forgeai_preview="), "{lax}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(lax.contains(attribute), "{attribute} in {lax}");
    }
    let embedded = &cookies[1];
    assert!(embedded.starts_with("forgeai_preview_embed="), "{embedded}");
    for attribute in ["HttpOnly", "SameSite=None", "Secure", "Partitioned", "Path=/"] {
        assert!(embedded.contains(attribute), "{attribute} in {embedded}");
    }
    assert!(cookies.iter().all(|c| !c.contains("Domain")), "host-only: {cookies:?}");
    assert!(
        !cookies.iter().any(|c| c.contains(grant)),
        "the cookie is not the grant"
    );
    assert_eq!(s.sandboxes.woken().len(), 2, "the redirect did not reach the sandbox");
    for cookie in [lax, embedded] {
        let pair = cookie.split(';').next().unwrap();
        let response = preview(s, 3000, SANDBOX, "/about.html?lang=en")
            .header(COOKIE, format!("{pair}; theme=dark"))
            .send()
            .await
            .unwrap();
        let (echo, _) = Echo::read(response).await;
        assert_eq!(echo.header("cookie"), ["theme=dark"]);
        echo.assert_no_credentials(&[pair.split_once('=').unwrap().1]);
    }
    // The cookie opens this preview only.
    let pair = lax.split(';').next().unwrap();
    let response = preview(s, 3000, "sbxbob1", "/")
        .header(COOKIE, pair)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // A grant used again while its cookie is set still just redirects.
    let response = preview(s, 3000, SANDBOX, &format!("/?forgeai_grant={grant}"))
        .header(COOKIE, pair)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/");

    // Bob cannot get a link to Alice's preview; a project without a sandbox has none.
    let (status, _) = s.get(&format!("/api/projects/{project}/preview"), &bob.token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let no_sandbox = s.create_project(&alice.token, "Another page").await;
    let response = s
        .request(
            Method::GET,
            &format!("/api/projects/{no_sandbox}/preview"),
            Some(&alice.token),
        )
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::NOT_FOUND).await;
    let response = s
        .request(Method::GET, &format!("/api/projects/{project}/preview"), None)
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED).await;
}

pub async fn a_preview_cookie_ends_with_the_session_it_came_from(s: &TestServer) {
    let alice = s.user("alice").await;
    let project = alice_project(s, &alice).await;
    // The UI's way: signed in with a login link, it asks for the preview link with its cookie.
    let link = s.store.create_login_token(&alice.id).await.unwrap().unwrap();
    let response = s
        .request(Method::GET, &format!("/login?token={link}"), None)
        .send()
        .await
        .unwrap();
    let session = set_cookies(&response)[0].split(';').next().unwrap().to_owned();
    let response = s
        .request(Method::GET, &format!("/api/projects/{project}/preview"), None)
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    let (status, link) = read_json(response).await;
    assert_eq!(status, StatusCode::OK);
    let preview_cookies = trade(s, link["grant"].as_str().unwrap()).await;
    let response = preview(s, 3000, SANDBOX, "/")
        .header(COOKIE, &preview_cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Signing out of the UI ends the preview cookies too; so does revoking the token.
    let response = s
        .request(Method::DELETE, "/api/session", None)
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = preview(s, 3000, SANDBOX, "/")
        .header(COOKIE, &preview_cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // …and the grant, had it not been used yet, would not work any more.
    let response = preview(
        s,
        3000,
        SANDBOX,
        &format!("/?forgeai_grant={}", link["grant"].as_str().unwrap()),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.sandboxes.woken().len(), 1);
}

pub async fn a_public_preview_is_served_to_anyone(s: &TestServer) {
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let project = alice_project(s, &alice).await;
    let path = format!("/api/projects/{project}");
    let patch = |token: Option<&str>, body: Value| {
        let request = s.request(Method::PATCH, &path, token).json(&body);
        async move { request.send().await.unwrap() }
    };

    // Only the owner shares, and only with a well-formed body.
    expect_error(
        patch(Some(&bob.token), json!({ "public": true })).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(patch(None, json!({ "public": true })).await, StatusCode::UNAUTHORIZED).await;
    for body in [
        json!({}),
        json!({ "public": "yes" }),
        json!({ "name": "x" }),
        json!(null),
    ] {
        expect_error(patch(Some(&alice.token), body.clone()).await, StatusCode::BAD_REQUEST).await;
    }
    let response = s
        .request(Method::PATCH, "/api/projects/not-a-uuid", Some(&alice.token))
        .json(&json!({ "public": true }))
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST).await;
    let anonymous = preview(s, 3000, SANDBOX, "/").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let (status, shared) = read_json(patch(Some(&alice.token), json!({ "public": true })).await).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert_eq!(shared["public"], true);
    assert_eq!(shared["id"], project.as_str());
    assert_eq!(s.get(&path, &alice.token).await.1["public"], true);
    let listed = s.get("/api/projects", &alice.token).await.1;
    assert_eq!(listed[0]["public"], true);

    // Anyone now gets the app, still without anyone's credentials forwarded.
    let (echo, _) = Echo::read(preview(s, 3000, SANDBOX, "/").send().await.unwrap()).await;
    echo.assert_no_credentials(&[]);
    let (echo, _) = Echo::read(
        preview(s, 3000, SANDBOX, "/")
            .bearer_auth(&bob.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    echo.assert_no_credentials(&[&bob.token]);
    // Other ports stay closed.
    let response = preview(s, 3000 + 1, SANDBOX, "/").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.sandboxes.woken().len(), 2);

    // Unshared: private again.
    let (status, unshared) = read_json(patch(Some(&alice.token), json!({ "public": false })).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unshared["public"], false);
    let anonymous = preview(s, 3000, SANDBOX, "/").send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let other = preview(s, 3000, SANDBOX, "/")
        .bearer_auth(&bob.token)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.sandboxes.woken().len(), 2);
}
