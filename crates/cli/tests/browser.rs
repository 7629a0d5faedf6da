//! The web UI in a real browser: Debian's Chromium, driven by `ui/tests/browser.mjs`
//! (playwright-core), against a real `forgeai serve` with the mock model and the `static`
//! template. Screenshots of each page land in `target/test-artifacts/browser/`.

mod common;

use std::process::Command;

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};

#[tokio::test]
async fn the_web_ui_builds_edits_and_continues_a_project_in_chromium() {
    let _serial = SERIAL.lock().await;
    let ui = repo_dir().join("ui");
    assert!(
        ui.join("dist/index.html").exists() && ui.join("node_modules/playwright-core").exists(),
        "the web UI is not built: run scripts/setup.sh (it runs `npm ci && npm run build` in ui/)"
    );
    let data = DataDir::new();
    // The hello page, the about page, and a "long task" whose command runs until it is stopped.
    let model = MockOpenAi::with_responder(|body: &serde_json::Value| {
        if !is_naming(body) && last_user_text(body).contains("long task") {
            return match iteration(body) {
                1 => MockReply::tool_call("l1", "terminal", serde_json::json!({"command": "sleep 62"})),
                _ => MockReply::text("<task_summary>Done.</task_summary>"),
            };
        }
        hello_then_about_model(body)
    })
    .await;
    let port = free_port();
    add_user(data.path(), "alice");
    let login = login_url(data.path(), port, "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), port).await;

    let artifacts = artifacts_dir("browser");
    let status = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("tests/browser.mjs")
            .current_dir(ui)
            .env("FORGEAI_URL", &server.url)
            .env("LOGIN_URL", login)
            .env("ARTIFACTS", artifacts)
            .status()
            .map(|status| (status, server))
    })
    .await
    .unwrap()
    .expect("node runs");
    assert!(
        status.0.success(),
        "the browser test failed; see its output and the screenshots in {}",
        artifacts_dir("browser").display()
    );
    drop(status.1);
}
