//! Recorded agent transcripts replayed on the real `forgeai-v1` template and opened in
//! Chromium: what a person judges first is whether the app the agent made works.
//!
//! Each `tests/transcripts/*.json` (and each file of the directory `FORGEAI_TRANSCRIPTS` names,
//! for held-out transcripts) is one prompt and the model's answers, turn by turn:
//!
//! ```json
//! { "name": "landing-page", "prompt": "Build …",
//!   "turns": [ { "text": "…", "toolCalls": [ { "name": "createOrUpdateFiles", "arguments": { … } } ] },
//!              { "afterCheckFailure": "Module not found", "toolCalls": [ … ] },
//!              { "text": "<task_summary>…</task_summary>" } ],
//!   "expect": { "path": "/", "text": ["…"],
//!               "interaction": [ { "click": "Subscribe" }, { "fill": { "field": "Email", "value": "a@b.c" } },
//!                                { "expectText": "Thanks" } ],
//!               "appErrors": "…" } }
//! ```
//!
//! The mock model answers coding call `n` of a project (counted by the assistant turns since
//! the prompt) with turn `n`; a turn with `afterCheckFailure` must be answering forgeai's check
//! report containing that text. Every transcript runs through `forgeai serve` with the mock
//! model; the run must store a RESULT, and then `ui/tests/transcript.mjs` opens the preview in
//! Chromium: the expected text is visible, no error overlay or uncaught error, and the
//! interaction works. A transcript with `appErrors` must end with a RESULT whose fragment
//! names those errors, and the web UI must show that the app has errors. Timings are printed
//! per transcript. Needs the template cache CI keeps (`FORGEAI_TEMPLATE_CACHE`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Transcript {
    name: String,
    prompt: String,
    turns: Vec<Turn>,
    expect: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Turn {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
    /// Text the check report this turn answers must contain.
    #[serde(default)]
    after_check_failure: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolCall {
    name: String,
    arguments: Value,
}

fn transcripts() -> Vec<(PathBuf, Transcript)> {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/transcripts")];
    dirs.extend(std::env::var_os("FORGEAI_TRANSCRIPTS").map(PathBuf::from));
    let mut found = Vec::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let transcript: Transcript =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not a transcript: {e}", file.display()));
            found.push((file, transcript));
        }
    }
    found
}

/// Problems the mock model noticed while replaying (a turn played without the check report it
/// expects, a prompt it does not know).
type Noticed = Arc<Mutex<Vec<String>>>;

/// The mock model's answer to `body` from the transcripts (matched by their prompt).
fn replay(transcripts: &[Transcript], noticed: &Noticed, body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("\"Transcript App\"");
    }
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let Some(input) = messages
        .iter()
        .position(|message| message["role"] == "user" && transcripts.iter().any(|t| message["content"] == t.prompt))
    else {
        noticed
            .lock()
            .unwrap()
            .push("a coding call without a known prompt".into());
        return MockReply::error(400, "no transcript has this prompt");
    };
    let transcript = transcripts
        .iter()
        .find(|t| messages[input]["content"] == t.prompt)
        .unwrap();
    let turn_index = messages[input..].iter().filter(|m| m["role"] == "assistant").count();
    let Some(turn) = transcript.turns.get(turn_index) else {
        noticed.lock().unwrap().push(format!(
            "{}: the agent was called for turn {}, past the transcript",
            transcript.name,
            turn_index + 1
        ));
        return MockReply::text("<task_summary>The transcript has no more turns.</task_summary>");
    };
    if let Some(expected) = &turn.after_check_failure {
        let last_user = last_user_text(body);
        if !last_user.contains("found errors") || !last_user.contains(expected.as_str()) {
            noticed.lock().unwrap().push(format!(
                "{} turn {}: expected a check report containing {expected:?}, the last user message is {last_user:?}",
                transcript.name,
                turn_index + 1
            ));
        }
    }
    let mut calls = turn
        .tool_calls
        .iter()
        .enumerate()
        .map(|(index, call)| (format!("call-{}-{index}", turn_index + 1), call));
    let mut reply = match (&turn.text, calls.next()) {
        (Some(text), None) => MockReply::text(text.clone()),
        (Some(text), Some((id, call))) => {
            MockReply::text(text.clone()).with_tool_call(id, &call.name, call.arguments.clone())
        }
        (None, Some((id, call))) => MockReply::tool_call(id, &call.name, call.arguments.clone()),
        (None, None) => MockReply::text(""),
    };
    for (id, call) in calls {
        reply = reply.with_tool_call(id, &call.name, call.arguments.clone());
    }
    reply
}

#[tokio::test]
async fn recorded_transcripts_build_apps_that_render_and_work_in_chromium() {
    let _serial = SERIAL.lock().await;
    let Some(data) = forgeai_v1_data_dir().await else {
        return;
    };
    let ui = repo_dir().join("ui");
    assert!(
        ui.join("dist/index.html").exists() && ui.join("node_modules/playwright-core").exists(),
        "the web UI is not built: run scripts/setup.sh"
    );
    let found = transcripts();
    assert!(found.len() >= 5, "the repository ships at least five transcripts");
    let plays: Vec<Transcript> = found.iter().map(|(_, transcript)| transcript.clone()).collect();
    let noticed: Noticed = Arc::default();
    let model = {
        let noticed = noticed.clone();
        MockOpenAi::with_responder(move |body| replay(&plays, &noticed, body)).await
    };
    let port = free_port();
    let token = add_user(data.path(), "alice");
    let login = login_url(data.path(), port, "alice");
    let server = Forgeai::start_with(
        data.path(),
        &model.base_url(),
        port,
        &[("FORGEAI_SANDBOX_TEMPLATE", "forgeai-v1")],
    )
    .await;
    let api = Api::new(&server, token);
    let artifacts = artifacts_dir("transcripts");

    let mut failures = Vec::new();
    let mut timings = Vec::new();
    for (file, transcript) in &found {
        let started = Instant::now();
        let project_id = api.new_project(&transcript.prompt).await;
        let reply = api.replies(&project_id, 1, Duration::from_secs(600)).await.remove(0);
        let run_time = started.elapsed();
        let expects_errors = transcript.expect.get("appErrors").and_then(Value::as_str);
        let fragment = &reply["codeFragment"];
        let app_errors = fragment["appErrors"].as_str();
        match (reply["type"].as_str(), expects_errors, app_errors) {
            (Some("RESULT"), None, None) => {}
            (Some("RESULT"), Some(expected), Some(found)) if found.contains(expected) => {
                if !reply["content"].as_str().unwrap_or_default().contains(expected) {
                    failures.push(format!(
                        "{}: the RESULT does not name the error: {reply}",
                        transcript.name
                    ));
                }
            }
            _ => {
                failures.push(format!(
                    "{} ({}): expected a RESULT{}, got {} with app errors {app_errors:?}",
                    transcript.name,
                    file.display(),
                    expects_errors.map(|e| format!(" naming {e:?}")).unwrap_or_default(),
                    reply["type"]
                ));
                continue;
            }
        }
        let mut command = Command::new("node");
        command
            .arg("tests/transcript.mjs")
            .current_dir(&ui)
            .env("NAME", &transcript.name)
            .env("EXPECT", transcript.expect.to_string())
            .env("ARTIFACTS", &artifacts);
        if expects_errors.is_some() {
            command
                .env("LOGIN_URL", &login)
                .env("PROJECT_PATH", format!("/projects/{project_id}"));
        } else {
            let link = api.get(&format!("/api/projects/{project_id}/preview")).await;
            command.env("PREVIEW_URL", link["previewUrl"].as_str().expect("a preview URL"));
        }
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            failures.push(format!(
                "{}: the browser check failed (screenshot in {}):\n{}{}",
                transcript.name,
                artifacts.display(),
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ));
            continue;
        }
        let result: Value = stdout
            .lines()
            .find_map(|line| line.strip_prefix("RESULT "))
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        let line = match result["firstLoadMs"].as_u64() {
            Some(load) => format!(
                "transcript {:<24} run {:>5.1} s, first page load {:>4.1} s (target < 5 s), interaction {:.1} s",
                transcript.name,
                run_time.as_secs_f64(),
                load as f64 / 1000.0,
                result["interactionMs"].as_u64().unwrap_or(0) as f64 / 1000.0
            ),
            None => format!(
                "transcript {:<24} run {:>5.1} s, ended with the app's errors shown in the UI",
                transcript.name,
                run_time.as_secs_f64()
            ),
        };
        eprintln!("{line}");
        timings.push(line);
    }
    failures.extend(noticed.lock().unwrap().iter().cloned());
    drop(server);
    // scripts/test.sh prints this file after the tests, whose own output cargo keeps to itself.
    let report = artifacts.join("timings.txt");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(&report, timings.join("\n") + "\n").unwrap_or_else(|e| panic!("write {}: {e}", report.display()));
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{}", timings.join("\n"));
}
