//! `POST /e/{eventKey}`: the Inngest-compatible event endpoint, over raw HTTP and through the
//! official Inngest JavaScript SDK (`tests/inngest-client`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use forgeai_code_agent::CODE_AGENT_EVENT;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestServer, assert_code_agent_event, expect_error, read_json};

fn event(project_id: &str, message: &str) -> Value {
    json!({ "name": CODE_AGENT_EVENT, "data": { "projectId": project_id, "message": message } })
}

async fn send(s: &TestServer, key: &str, body: &Value) -> reqwest::Response {
    s.request(Method::POST, &format!("/e/{key}"), None)
        .json(body)
        .send()
        .await
        .expect("event sent")
}

/// Sends `body` as an Inngest SDK does, with its per-request seed; answers the JSON reply.
async fn send_seeded(s: &TestServer, key: &str, seed: &str, body: &Value) -> Value {
    let response = s
        .request(Method::POST, &format!("/e/{key}"), None)
        .header("x-inngest-event-id-seed", seed)
        .json(body)
        .send()
        .await
        .expect("event sent");
    let (status, reply) = read_json(response).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply
}

/// The prompts the project's finished runs received, in run order.
async fn run_messages(s: &TestServer, token: &str, project_id: &str, count: usize) -> Vec<Value> {
    let mut outputs = Vec::new();
    for run in s.finished_runs(token, project_id, count).await {
        assert_eq!(run["status"], "completed", "{run}");
        outputs.push(
            s.engine_run(run["id"].as_str().unwrap())
                .await
                .run
                .output
                .expect("output"),
        );
    }
    outputs
}

pub async fn event_endpoint(s: &TestServer) {
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let id = s.create_project(&alice.token, "Build a todo app").await;
    s.finished_runs(&alice.token, &id, 1).await;

    // One event: answered the Inngest way, and it starts a run as the key's owner, whatever
    // userId the sender claims.
    let mut spoofed = event(&id, "Sent as an event");
    spoofed["data"]["userId"] = json!(bob.id);
    let (status, body) = read_json(send(s, &alice.token, &spoofed).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], 200);
    let ids = body["ids"].as_array().expect("ids");
    assert_eq!(ids.len(), 1);
    assert!(ids[0].as_str().is_some_and(|id| !id.is_empty()));
    let outputs = run_messages(s, &alice.token, &id, 2).await;
    assert_code_agent_event(&outputs[1], &id, "Sent as an event", &alice.id);

    // A batch: one id per event, in order, one run per event.
    let batch = json!([event(&id, "first of two"), event(&id, "second of two")]);
    let (status, body) = read_json(send(s, &alice.token, &batch).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ids"].as_array().map(Vec::len), Some(2));
    assert_ne!(body["ids"][0], body["ids"][1]);
    let outputs = run_messages(s, &alice.token, &id, 4).await;
    assert_eq!(outputs[2]["message"], "first of two");
    assert_eq!(outputs[3]["message"], "second of two");

    // An event id is an idempotency key: the repeat answers the same id and starts nothing.
    let mut keyed = event(&id, "only once");
    keyed["id"] = json!("client-key-1");
    keyed["ts"] = json!(1_767_225_600_000_i64);
    let (_, first) = read_json(send(s, &alice.token, &keyed).await).await;
    let (status, repeat) = read_json(send(s, &alice.token, &keyed).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["ids"], repeat["ids"]);
    run_messages(s, &alice.token, &id, 5).await;
    // Keys are per user: Bob's event with Alice's key is his own, and runs.
    let bobs = s.create_project(&bob.token, "Bob's app").await;
    let mut keyed_by_bob = event(&bobs, "Bob's event");
    keyed_by_bob["id"] = json!("client-key-1");
    let (status, body) = read_json(send(s, &bob.token, &keyed_by_bob).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["ids"], first["ids"]);
    let outputs = run_messages(s, &bob.token, &bobs, 2).await;
    assert_code_agent_event(&outputs[1], &bobs, "Bob's event", &bob.id);

    // The Inngest SDKs retry a failed send with the same `x-inngest-event-id-seed`: a retry
    // of a request that did arrive starts nothing more; another seed is another request.
    let pair = json!([event(&id, "seeded one"), event(&id, "seeded two")]);
    let sent = send_seeded(s, &alice.token, "1767225600000,AAAAAAAAAAAAAA==", &pair).await;
    let retried = send_seeded(s, &alice.token, "1767225600000,AAAAAAAAAAAAAA==", &pair).await;
    assert_eq!(sent["ids"], retried["ids"]);
    assert_ne!(sent["ids"][0], sent["ids"][1]);
    run_messages(s, &alice.token, &id, 7).await;
    let other = send_seeded(s, &alice.token, "1767225600001,BBBBBBBBBBBBBB==", &pair).await;
    assert_ne!(other["ids"], sent["ids"]);
    run_messages(s, &alice.token, &id, 9).await;

    // Events of other names are accepted and start no code-agent run.
    let (status, body) = read_json(
        send(
            s,
            &alice.token,
            &json!({ "name": "app/user.signup", "data": { "x": 1 } }),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = read_json(send(s, &alice.token, &json!({ "name": "app/no-data" })).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = s.stored().await;
    let too_many: Vec<Value> = (0..101).map(|n| event(&id, &format!("event {n}"))).collect();
    let rejected: Vec<(Value, StatusCode)> = vec![
        (json!([]), StatusCode::BAD_REQUEST),
        (json!(too_many), StatusCode::BAD_REQUEST),
        (json!({ "data": {} }), StatusCode::BAD_REQUEST),
        (json!({ "name": "", "data": {} }), StatusCode::BAD_REQUEST),
        (json!({ "name": "  " }), StatusCode::BAD_REQUEST),
        (json!({ "name": 5 }), StatusCode::BAD_REQUEST),
        (json!("code-agent/codeAgent.run"), StatusCode::BAD_REQUEST),
        (json!({ "name": CODE_AGENT_EVENT }), StatusCode::BAD_REQUEST),
        (
            json!({ "name": CODE_AGENT_EVENT, "data": { "projectId": id } }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "name": CODE_AGENT_EVENT, "data": { "message": "hi" } }),
            StatusCode::BAD_REQUEST,
        ),
        (event("not-a-uuid", "hi"), StatusCode::BAD_REQUEST),
        (event(&id, ""), StatusCode::BAD_REQUEST),
        (event(&id, &"a".repeat(10_001)), StatusCode::BAD_REQUEST),
        (event(&id, "nul \u{0}"), StatusCode::BAD_REQUEST),
        (
            event("0190a5b1-0000-7000-8000-000000000000", "hi"),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({ "name": CODE_AGENT_EVENT, "data": { "projectId": id, "message": "hi", "imageUrl": "file:///etc/passwd" } }),
            StatusCode::BAD_REQUEST,
        ),
        (json!({ "name": "app/x", "ts": "yesterday" }), StatusCode::BAD_REQUEST),
        // A bad event anywhere in a batch sends none of it.
        (
            json!([event(&id, "fine"), { "name": "app/fine" }, event(&id, "")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{ "name": "app/fine" }, event(&id, "fine"), { "name": "" }]),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in &rejected {
        let response = send(s, &alice.token, body).await;
        let error = expect_error(response, *status).await;
        assert!(!error.contains("internal"), "{body:.100}: {error}");
    }
    // Bob's key does not reach Alice's project.
    expect_error(send(s, &bob.token, &event(&id, "hi")).await, StatusCode::NOT_FOUND).await;
    let malformed = s
        .request(Method::POST, &format!("/e/{}", alice.token), None)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    expect_error(malformed, StatusCode::BAD_REQUEST).await;
    let text = s
        .request(Method::POST, &format!("/e/{}", alice.token), None)
        .header(CONTENT_TYPE, "text/plain")
        .body(event(&id, "hi").to_string())
        .send()
        .await
        .unwrap();
    expect_error(text, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // A wrong key is reported as such, even with a malformed body.
    let wrong_key_and_body = s
        .request(Method::POST, "/e/not-a-key", None)
        .header(CONTENT_TYPE, "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    expect_error(wrong_key_and_body, StatusCode::UNAUTHORIZED).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.stored().await, before, "a rejected event was kept");
}

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("inngest-client")
}

/// Installs the pinned SDK (`npm ci`) unless `node_modules` is already up to date.
fn install_sdk() {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = client_dir();
    let modified = |path: &Path| std::fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    let locked = modified(&dir.join("package-lock.json"));
    if installed.is_some() && installed >= locked {
        return;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run npm (Node.js 20 and npm are needed for this test): {error}"));
    assert!(
        output.status.success(),
        "npm ci in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Sends `events` with the Inngest SDK; answers `Ok(ids)` or `Err(the SDK's error message)`.
async fn sdk_send(s: &TestServer, event_key: &str, events: &Value) -> Result<Vec<String>, String> {
    let output = tokio::process::Command::new("node")
        .arg("send.mjs")
        .current_dir(client_dir())
        .env("FORGEAI_URL", &s.url)
        .env("FORGEAI_EVENT_KEY", event_key)
        .env("FORGEAI_EVENTS", events.to_string())
        .env_remove("INNGEST_DEV")
        .env_remove("INNGEST_BASE_URL")
        .env_remove("INNGEST_EVENT_API_BASE_URL")
        .env_remove("INNGEST_EVENT_KEY")
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "the SDK script printed nothing; stderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let answer: Value = serde_json::from_str(last).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    match (&answer["ids"], &answer["error"]) {
        (Value::Array(ids), _) => {
            assert!(output.status.success());
            Ok(ids
                .iter()
                .map(|id| id.as_str().expect("string id").to_owned())
                .collect())
        }
        (_, Value::String(error)) => Err(error.clone()),
        _ => panic!("unexpected answer from the SDK script: {stdout}"),
    }
}

pub async fn inngest_sdk_sends_events(s: &TestServer) {
    install_sdk();
    let alice = s.user("alice").await;
    let bob = s.user("bob").await;
    let id = s.create_project(&alice.token, "Build a todo app").await;
    s.finished_runs(&alice.token, &id, 1).await;

    let ids = sdk_send(s, &alice.token, &event(&id, "Sent with the Inngest SDK"))
        .await
        .expect("the SDK sends");
    assert_eq!(ids.len(), 1);
    let outputs = run_messages(s, &alice.token, &id, 2).await;
    assert_code_agent_event(&outputs[1], &id, "Sent with the Inngest SDK", &alice.id);

    let batch = json!([event(&id, "SDK batch one"), event(&id, "SDK batch two")]);
    let ids = sdk_send(s, &alice.token, &batch).await.expect("the SDK sends a batch");
    assert_eq!(ids.len(), 2);
    let outputs = run_messages(s, &alice.token, &id, 4).await;
    assert_eq!(outputs[2]["message"], "SDK batch one");
    assert_eq!(outputs[3]["message"], "SDK batch two");

    // Refusals reach the SDK's caller as errors with our message; nothing is sent.
    let before = s.stored().await;
    let error = sdk_send(s, "not-a-token", &event(&id, "hi"))
        .await
        .expect_err("a bad key is refused");
    assert!(error.contains("credentials"), "{error}");
    let error = sdk_send(s, &bob.token, &event(&id, "hi"))
        .await
        .expect_err("Bob cannot reach Alice's project");
    assert!(error.contains("not found"), "{error}");
    let error = sdk_send(s, &alice.token, &event(&id, ""))
        .await
        .expect_err("an empty prompt is refused");
    assert!(error.contains("empty"), "{error}");
    assert_eq!(s.stored().await, before);
}
