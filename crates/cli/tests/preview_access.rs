//! Preview access over a real `forgeai serve` with a real sandbox (`static` template, busybox
//! httpd): the owner's bearer token, a grant traded for a cookie, anonymous and other users
//! refused without waking the sandbox, the public toggle, a refused port, and an app route that
//! prints the request headers it got (a CGI script) seeing no credential of the owner.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

/// An app route that answers with the HTTP headers it received (busybox httpd passes each one
/// to CGI scripts as `HTTP_<NAME>`).
const HEADERS_CGI: &str = "#!/bin/sh\necho 'Content-Type: text/plain'\necho\nenv | grep '^HTTP_' | sort\n";

/// Writes the hello page and the headers route, makes the route executable, and finishes.
fn page_and_headers_route(body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("Hello Page");
    }
    match iteration(body) {
        1 => MockReply::tool_call(
            "c1",
            "createOrUpdateFiles",
            json!({"files": [
                {"path": "index.html", "content": PAGE},
                {"path": "cgi-bin/headers", "content": HEADERS_CGI},
            ]}),
        ),
        2 => MockReply::tool_call("c2", "terminal", json!({"command": "chmod 755 cgi-bin/headers"})),
        _ => MockReply::text("<task_summary>Built the hello page and a headers route.</task_summary>"),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A GET of `path` on `<port>-<sandbox>.localhost`.
fn preview(server: &Forgeai, port: u16, sandbox: &str, path: &str) -> reqwest::RequestBuilder {
    client()
        .get(format!("{}{path}", server.url))
        .header("Host", format!("{port}-{sandbox}.localhost:{}", server.port))
}

async fn status_and_text(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// What shows that a sandbox is loaded (its processes, network and cgroup exist).
fn loaded_traces(sandbox: &str) -> Vec<String> {
    let short = &sandbox[..10];
    [
        format!("/run/netns/fa-{short}"),
        format!("/sys/class/net/fah-{short}"),
        format!("/sys/fs/cgroup/pids/forgeai/{sandbox}"),
        format!("/sys/fs/cgroup/forgeai/{sandbox}"),
    ]
    .into_iter()
    .filter(|path| Path::new(path).exists())
    .collect()
}

async fn wait_until_unloaded(sandbox: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !loaded_traces(sandbox).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the idle sandbox was not unloaded: {:?}",
            loaded_traces(sandbox)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cookies a grant URL (`previewUrl`) is traded for, as a `Cookie` header value.
async fn trade_grant(server: &Forgeai, preview_url: &str) -> String {
    let url = reqwest::Url::parse(preview_url).unwrap();
    let host = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let response = client()
        .get(format!("{}{}?{}", server.url, url.path(), url.query().unwrap()))
        .header("Host", host)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "a grant is traded for a cookie and a redirect");
    assert_eq!(response.headers()["location"], "/", "to the clean URL");
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("forgeai_preview=") && c.contains("HttpOnly"))
    );
    cookies
        .iter()
        .map(|c| c.split(';').next().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test]
async fn a_preview_is_served_to_its_owner_only_and_leaks_no_credential_to_the_app() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(page_and_headers_route).await;
    let alice = add_user(data.path(), "alice");
    let bob = add_user(data.path(), "bob");
    // Idle sandboxes are unloaded after 3 s, so the test can see whether a request wakes one.
    let server = Forgeai::start_with(
        data.path(),
        &model.base_url(),
        free_port(),
        &[("FORGEAI_SANDBOX_IDLE_UNLOAD", "3s")],
    )
    .await;
    let api = Api::new(&server, alice.clone());
    let project = api.new_project("Build a hello page").await;
    let replies = api.replies(&project, 1, Duration::from_secs(60)).await;
    assert_eq!(replies[0]["type"], "RESULT", "{}", replies[0]);
    let sandbox = api.get(&format!("/api/projects/{project}")).await["sandboxId"]
        .as_str()
        .unwrap()
        .to_owned();

    // The owner, with her API token.
    let (status, page) = status_and_text(preview(&server, 3000, &sandbox, "/").bearer_auth(&alice)).await;
    assert_eq!((status, page.as_str()), (200, PAGE));

    // The app route sees no Authorization and none of forgeai's cookies; its own cookie stays.
    let session = {
        let response = client()
            .post(format!("{}/api/session", server.url))
            .json(&json!({ "token": alice }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    let (status, headers) = status_and_text(
        preview(&server, 3000, &sandbox, "/cgi-bin/headers?q=1")
            .bearer_auth(&alice)
            .header("Cookie", format!("app_theme=dark; {session}; forgeai_preview=x")),
    )
    .await;
    assert_eq!(status, 200, "{headers}");
    assert!(headers.contains("HTTP_COOKIE=app_theme=dark\n"), "{headers}");
    assert!(
        headers.contains("HTTP_HOST="),
        "the route printed the headers: {headers}"
    );
    assert!(!headers.contains("HTTP_AUTHORIZATION"), "{headers}");
    assert!(!headers.contains("forgeai_"), "{headers}");
    assert!(!headers.contains(&alice), "{headers}");
    assert!(!headers.contains(session.split_once('=').unwrap().1), "{headers}");

    // In a browser: the UI's link has a grant, traded for a host-only cookie and a redirect to
    // the clean URL; the app then sees the cookie's request without any forgeai cookie.
    let link = api.get(&format!("/api/projects/{project}/preview")).await;
    let preview_url = link["previewUrl"].as_str().unwrap();
    assert!(
        preview_url.starts_with(&format!(
            "http://3000-{sandbox}.localhost:{}/?forgeai_grant=",
            server.port
        )),
        "{preview_url}"
    );
    let cookie = trade_grant(&server, preview_url).await;
    let (status, page) = status_and_text(preview(&server, 3000, &sandbox, "/").header("Cookie", &cookie)).await;
    assert_eq!((status, page.as_str()), (200, PAGE));
    let (status, headers) = status_and_text(
        preview(&server, 3000, &sandbox, "/cgi-bin/headers").header("Cookie", format!("{cookie}; app_theme=dark")),
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.contains("HTTP_COOKIE=app_theme=dark\n"), "{headers}");
    assert!(!headers.contains("forgeai_"), "{headers}");

    // Anonymous, another user, a forged cookie, a port other than 3000: refused at once, and
    // the idle (unloaded) sandbox is not started for them.
    wait_until_unloaded(&sandbox).await;
    let started = Instant::now();
    let (status, _) = status_and_text(preview(&server, 3000, &sandbox, "/")).await;
    assert_eq!(status, 401);
    let (status, body) = status_and_text(preview(&server, 3000, &sandbox, "/").header("Accept", "text/html")).await;
    assert_eq!(status, 401);
    assert!(body.contains("Sign in to forgeai"), "{body}");
    let (status, _) = status_and_text(preview(&server, 3000, &sandbox, "/").bearer_auth(&bob)).await;
    assert_eq!(status, 403);
    let (status, _) =
        status_and_text(preview(&server, 3000, &sandbox, "/").header("Cookie", "forgeai_preview=forged")).await;
    assert_eq!(status, 401);
    for port in [22, 8080] {
        let (status, body) = status_and_text(preview(&server, port, &sandbox, "/").bearer_auth(&alice)).await;
        assert_eq!(status, 403, "port {port}: {body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refusals are immediate: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        loaded_traces(&sandbox),
        Vec::<String>::new(),
        "a refused request woke the sandbox"
    );
    // The owner's request does bring it back (so the traces above would have shown a wake-up).
    let (status, page) = status_and_text(preview(&server, 3000, &sandbox, "/").header("Cookie", &cookie)).await;
    assert_eq!((status, page.as_str()), (200, PAGE));
    assert!(
        !loaded_traces(&sandbox).is_empty(),
        "the owner's request loaded the sandbox"
    );

    // Shared: anyone gets the app; unshared: private again.
    let patch = |public: bool| {
        client()
            .patch(format!("{}/api/projects/{project}", server.url))
            .bearer_auth(&alice)
            .json(&json!({ "public": public }))
            .send()
    };
    let shared: Value = patch(true).await.unwrap().json().await.unwrap();
    assert_eq!(shared["public"], true);
    let (status, page) = status_and_text(preview(&server, 3000, &sandbox, "/")).await;
    assert_eq!((status, page.as_str()), (200, PAGE));
    let (status, _) = status_and_text(preview(&server, 3000, &sandbox, "/").bearer_auth(&bob)).await;
    assert_eq!(status, 200);
    let (status, _) = status_and_text(preview(&server, 22, &sandbox, "/")).await;
    assert_eq!(status, 403, "sharing opens port 3000 only");
    let unshared: Value = patch(false).await.unwrap().json().await.unwrap();
    assert_eq!(unshared["public"], false);
    let (status, _) = status_and_text(preview(&server, 3000, &sandbox, "/")).await;
    assert_eq!(status, 401);
    drop(server);
}

#[tokio::test]
async fn forgeai_run_prints_a_preview_url_that_opens_in_a_browser() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(hello_then_about_model).await;
    let port = free_port();
    let mut command = forgeai(data.path(), &model.base_url());
    command
        .env("FORGEAI_LISTEN", format!("127.0.0.1:{port}"))
        .args(["run", "Build a hello page"]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let url = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Preview: "))
        .unwrap_or_else(|| panic!("no preview URL: {stdout}"))
        .to_owned();
    assert!(url.contains("/?forgeai_grant="), "{url}");

    // Served again by `forgeai serve`, the printed URL signs a browser in to the preview.
    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let cookie = trade_grant(&server, &url).await;
    let host = reqwest::Url::parse(&url).unwrap();
    let sandbox = host
        .host_str()
        .unwrap()
        .strip_prefix("3000-")
        .unwrap()
        .split('.')
        .next()
        .unwrap();
    let (status, page) = status_and_text(preview(&server, 3000, sandbox, "/").header("Cookie", &cookie)).await;
    assert_eq!((status, page.as_str()), (200, PAGE));
    let (status, _) = status_and_text(preview(&server, 3000, sandbox, "/")).await;
    assert_eq!(status, 401, "without the cookie it stays private");

    // The link's session is listed for its user, and revoking it ends the cookie.
    let tokens = forgeai(data.path(), "http://127.0.0.1:9")
        .args(["users", "tokens", "admin"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&tokens.stdout).to_string();
    assert!(tokens.status.success(), "{listing}");
    let session_id = listing
        .lines()
        .find(|line| line.contains(" session "))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session listed: {listing}"))
        .to_owned();
    let revoked = forgeai(data.path(), "http://127.0.0.1:9")
        .args(["users", "revoke", "admin", &session_id])
        .output()
        .unwrap();
    assert!(revoked.status.success(), "{}", String::from_utf8_lossy(&revoked.stderr));
    let (status, _) = status_and_text(preview(&server, 3000, sandbox, "/").header("Cookie", &cookie)).await;
    assert_eq!(status, 401, "revoking the link's session ends its preview cookie");
    let again = forgeai(data.path(), "http://127.0.0.1:9")
        .args(["users", "revoke", "admin", &session_id])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("has no token"));
}
