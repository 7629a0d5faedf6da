//! What only the E2B provider meets: E2B's errors (rate limit, API key, template), sandboxes
//! paused or stopped by someone else, timeouts pushed back while a sandbox is in use, and the
//! proxy's routing and codecs as forgeai relies on them.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::E2bEnv;
use forgeai_e2b::E2bProvider;
use forgeai_e2b::proto::filesystem::{ListDirRequest, ListDirResponse};
use forgeai_sandbox::{CommandOptions, CreateOptions, Error, SandboxProvider};
use prost::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limited_creates_are_retried_with_one_idempotency_key() {
    let env = E2bEnv::new().await;
    let provider = env.provider();
    env.mock.rate_limit_next(2);
    let options = CreateOptions {
        metadata: BTreeMap::from([("projectId".to_owned(), "p1".to_owned())]),
        ..CreateOptions::default()
    };
    let info = provider.create("static", options).await.expect("create after two 429s");
    let creates: Vec<_> = env
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.uri == "/v2/sandboxes")
        .collect();
    assert_eq!(creates.len(), 3, "two refused, one served");
    let keys: Vec<_> = creates.iter().map(|r| r.headers["idempotency-key"].clone()).collect();
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every retry carries the same key: {keys:?}"
    );
    assert!(creates.iter().all(|r| r.headers["x-api-key"] == "e2b_test_key"));
    let listed = provider
        .list(&BTreeMap::from([("projectId".to_owned(), "p1".to_owned())]))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "one sandbox for the three attempts");
    assert_eq!(listed[0].id, info.id);

    let mut config = env.config();
    config.retries = 1;
    env.mock.rate_limit_next(5);
    let error = E2bProvider::new(config)
        .unwrap()
        .create("static", CreateOptions::default())
        .await
        .expect_err("the rate limit outlasts the retries");
    let message = error.to_string();
    assert!(message.contains("429") && message.contains("rate limit"), "{message}");
    env.mock.rate_limit_next(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_key_and_an_unknown_template_say_what_to_fix() {
    let env = E2bEnv::new().await;
    let mut config = env.config();
    config.api_key = "e2b_wrong".into();
    let error = E2bProvider::new(config)
        .unwrap()
        .create("static", CreateOptions::default())
        .await
        .expect_err("wrong key");
    assert!(
        error.to_string().contains("401") && error.to_string().contains("E2B_API_KEY"),
        "{error}"
    );

    let error = env
        .provider()
        .create("no-such-template", CreateOptions::default())
        .await
        .expect_err("unknown template");
    assert!(matches!(error, Error::TemplateNotFound { .. }), "{error}");
    assert!(error.to_string().contains("no-such-template"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandbox_paused_elsewhere_is_resumed_on_use() {
    let env = E2bEnv::new().await;
    let provider = env.provider();
    let id = provider.create("static", CreateOptions::default()).await.unwrap().id;
    provider.write_file(&id, "a.txt", b"kept").await.unwrap();
    // Another node (or E2B's auto-pause) pauses it; this node still holds its session.
    let paused = reqwest::Client::new()
        .post(format!("{}/sandboxes/{id}/pause", env.mock.api_url()))
        .header("X-API-Key", env.mock.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(paused.status(), 204);
    assert_eq!(env.mock.is_paused(&id), Some(true));
    let result = provider
        .run_command(&id, "cat a.txt", CommandOptions::default())
        .await
        .expect("the proxy's 409 leads to a resume and the command runs");
    assert_eq!(result.stdout, "kept");
    assert_eq!(env.mock.is_paused(&id), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandbox_stopped_mid_command_is_reported_gone() {
    let env = E2bEnv::new().await;
    let provider = env.provider();
    let id = provider.create("static", CreateOptions::default()).await.unwrap().id;
    let running = {
        let provider = provider.clone();
        let id = id.clone();
        tokio::spawn(async move {
            provider
                .run_command(&id, "echo started; sleep 30", CommandOptions::default())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    env.mock.expire(&id).await;
    let outcome = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the command ends with its sandbox")
        .unwrap();
    assert!(matches!(outcome, Err(Error::Gone { .. })), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_timeout_is_pushed_back_while_the_sandbox_is_used() {
    let env = E2bEnv::new().await;
    let provider = env.provider();
    let options = CreateOptions {
        timeout: Some(Duration::from_secs(2)),
        ..CreateOptions::default()
    };
    let id = provider.create("static", options).await.unwrap().id;
    for _ in 0..10 {
        provider
            .run_command(&id, "true", CommandOptions::default())
            .await
            .expect("in use, the sandbox outlives its 2 s timeout");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let extended = env
        .mock
        .requests()
        .iter()
        .filter(|r| r.uri == format!("/sandboxes/{id}/timeout"))
        .count();
    assert!(extended >= 2, "timeout extended {extended} times");
    // Left alone, it expires, as on E2B.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(matches!(provider.connect(&id).await, Err(Error::Gone { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_routes_by_host_and_speaks_the_binary_codec() {
    let env = E2bEnv::new().await;
    let provider = env.provider();
    let id = provider.create("static", CreateOptions::default()).await.unwrap().id;
    provider.write_file(&id, "dir/x.txt", b"x").await.unwrap();
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v2/sandboxes/{id}/connect", env.mock.api_url()))
        .header("X-API-Key", env.mock.api_key())
        .json(&serde_json::json!({"timeout": 60}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = created["envdAccessToken"].as_str().unwrap().to_owned();
    let request = ListDirRequest {
        path: "/home/user/project/dir".into(),
        depth: 1,
    };
    let answer = reqwest::Client::new()
        .post(format!("{}/filesystem.Filesystem/ListDir", env.mock.sandbox_url()))
        .header("Host", format!("49983-{id}.{}", env.mock.domain()))
        .header("X-Access-Token", &access)
        .header("Content-Type", "application/proto")
        .header("Connect-Protocol-Version", "1")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let listed = ListDirResponse::decode(answer.bytes().await.unwrap()).unwrap();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(listed.entries[0].path, "/home/user/project/dir/x.txt");

    let no_token = reqwest::Client::new()
        .get(format!(
            "{}/files?path=/home/user/project/dir/x.txt",
            env.mock.sandbox_url()
        ))
        .header("Host", format!("49983-{id}.{}", env.mock.domain()))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    let gone = reqwest::Client::new()
        .get(format!("{}/health", env.mock.sandbox_url()))
        .header("E2b-Sandbox-Id", "nosuchsandbox")
        .header("E2b-Sandbox-Port", "49983")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 502);
    assert!(gone.text().await.unwrap().contains("was not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dev_server_log_is_read_from_where_the_template_writes_it() {
    let env = E2bEnv::new().await;
    let provider = env.provider();
    let id = provider.create("static", CreateOptions::default()).await.unwrap().id;
    assert_eq!(provider.dev_server_output(&id, 0).await.unwrap(), None, "no log yet");
    provider
        .run_command(
            &id,
            &format!("printf 'ready\\n⨯ Error: boom\\n' > {}", forgeai_e2b::DEV_LOG),
            CommandOptions::default(),
        )
        .await
        .unwrap();
    let all = provider.dev_server_output(&id, 0).await.unwrap().expect("the log");
    assert_eq!(all.text, "ready\n⨯ Error: boom\n");
    assert_eq!(all.end, all.text.len() as u64);
    let tail = provider.dev_server_output(&id, 6).await.unwrap().unwrap();
    assert_eq!(tail.text, "⨯ Error: boom\n");
    let restarted = provider.dev_server_output(&id, 10_000).await.unwrap().unwrap();
    assert_eq!(
        restarted.text, all.text,
        "a shorter log than `from` is read from its start"
    );
}

/// An E2B without the v2 connect path (an older self-hosted one) is still connected to.
#[tokio::test]
async fn connect_falls_back_to_the_older_path() {
    use axum::extract::Path;
    use axum::http::StatusCode;
    let app = axum::Router::new().route(
        "/sandboxes/{id}/connect",
        axum::routing::post(|Path(id): Path<String>| async move {
            (
                StatusCode::CREATED,
                axum::Json(serde_json::json!({
                    "sandboxID": id, "templateID": "forgeai-v1", "envdVersion": "0.5.0", "envdAccessToken": "token",
                })),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let api = forgeai_e2b::api::ControlPlane::new(reqwest::Client::new(), &url, "key", 0);
    let sandbox = api
        .connect("abc123", Duration::from_secs(60))
        .await
        .expect("an answer")
        .expect("found through /sandboxes/{id}/connect");
    assert_eq!(sandbox.sandbox_id, "abc123");
    assert_eq!(sandbox.envd_access_token.as_deref(), Some("token"));
    server.abort();
}
