//! The mock E2B is faithful: E2B's official SDKs, Python and JavaScript (pinned in
//! scripts/setup.sh), create a sandbox, run commands with streamed output and a timeout, write,
//! read and list files, list sandboxes by metadata and kill, all against the mock, with no error.

mod common;

use std::process::Stdio;

use common::E2bEnv;

const SDK_PYTHON: &str = "/usr/local/lib/forgeai/e2b-sdk-2.63.0/bin/python";
const SDK_JS_DIR: &str = "/usr/local/lib/forgeai/e2b-js-sdk-2.51.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_python_sdk_works_against_the_mock() {
    assert!(
        std::path::Path::new(SDK_PYTHON).exists(),
        "{SDK_PYTHON} is missing: run scripts/setup.sh"
    );
    let mut command = tokio::process::Command::new(SDK_PYTHON);
    command.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_check.py"));
    check_sdk(command).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_official_javascript_sdk_works_against_the_mock() {
    let modules = std::path::Path::new(SDK_JS_DIR).join("node_modules");
    assert!(
        modules.join("e2b").exists(),
        "{SDK_JS_DIR} is missing: run scripts/setup.sh"
    );
    // An ES module resolves `e2b` from its own directory up, so it runs from a copy next to the
    // installed SDK.
    let dir = tempfile::Builder::new()
        .prefix("e2b-js-check-")
        .tempdir_in(SDK_JS_DIR)
        .unwrap();
    let script = dir.path().join("sdk_check.mjs");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk_check.mjs"), &script).unwrap();
    let mut command = tokio::process::Command::new("node");
    command.arg(&script);
    check_sdk(command).await;
}

/// Runs one SDK's check script against a fresh mock and checks what it saw.
async fn check_sdk(mut command: tokio::process::Command) {
    let env = E2bEnv::new().await;
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (name, value) in env.mock.env() {
        command.env(name, value);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the SDK check finishes")
        .expect("run python");
    assert!(
        output.status.success(),
        "the SDK failed against the mock:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the check prints JSON");
    let id = seen["id"].as_str().expect("a sandbox id").to_owned();
    assert_eq!(seen["stdout"], "hello\nhé!");
    assert_eq!(seen["stderr"], "oops\n");
    assert_eq!(seen["exit_code"], 0);
    assert_eq!(seen["streamed"], "hello\nhé!");
    assert_eq!(seen["failed_exit_code"], 3);
    assert_eq!(seen["timeout"], "raised");
    assert_eq!(seen["written_path"], "/home/user/project/sdk/hello.txt");
    assert_eq!(seen["read"], "written by the SDK");
    assert_eq!(seen["listed"], serde_json::json!(["hello.txt"]));
    assert_eq!(seen["exists"], true);
    assert_eq!(seen["host"], format!("3000-{id}.e2b.test"));
    assert_eq!(seen["listed_ids"], serde_json::json!([id]));
    assert_eq!(seen["killed"], true);
    assert_eq!(seen["killed_again"], false);
    assert!(env.mock.sandbox_ids().is_empty());
    // The SDK reached envd through the routing headers with the access token from create.
    let envd_calls: Vec<_> = env
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.uri.starts_with("/process.Process/Start"))
        .collect();
    assert!(!envd_calls.is_empty());
    for call in envd_calls {
        assert_eq!(call.headers["e2b-sandbox-id"], id.as_str());
        assert_eq!(call.headers["e2b-sandbox-port"], "49983");
        assert!(call.headers.contains_key("x-access-token"));
    }
}
