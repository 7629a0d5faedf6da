//! The builder features of a running forgeai, over real HTTP: the agent's `editFile` tool.

mod common;

on_both_engines!(a_run_is_stopped_mid_tool_and_mid_model_call_and_the_next_prompt_runs);

use std::time::Duration;

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

const FIRST: &str = "<h1>Hello</h1>\n<p>Hello world</p>\n";

/// A `forgeai serve` on the `static` template with `model` answering, alice's API on it, and
/// her project of `prompt` once its first answer came.
struct Served {
    _data: DataDir,
    model: MockOpenAi,
    server: Forgeai,
    api: Api,
    project_id: String,
    first: Value,
}

async fn served(model: fn(&Value) -> MockReply, prompt: &str) -> Served {
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(model).await;
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), free_port()).await;
    let api = Api::new(&server, token);
    let project_id = api.new_project(prompt).await;
    let first = api.replies(&project_id, 1, Duration::from_secs(60)).await[0].clone();
    Served {
        _data: data,
        model,
        server,
        api,
        project_id,
        first,
    }
}

/// The tool answers the model got, in order.
fn tool_answers(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter(|m| m["role"] == "tool")
                .filter_map(|m| m["content"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn editing_model(body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("Hello Page");
    }
    let edit = |id: &str, old: &str, new: &str| {
        MockReply::tool_call(
            id,
            "editFile",
            json!({"path": "index.html", "edits": [{"old": old, "new": new}]}),
        )
    };
    match iteration(body) {
        1 => MockReply::tool_call(
            "c1",
            "createOrUpdateFiles",
            json!({"files": [{"path": "index.html", "content": FIRST}]}),
        ),
        2 => edit("c2", "Hello", "Hi"),
        3 => edit("c3", "Goodbye", "Hi"),
        4 => edit("c4", "<h1>Hello</h1>", "<h1>Hi</h1>"),
        _ => MockReply::text("<task_summary>Built and edited the page.</task_summary>"),
    }
}

#[tokio::test]
async fn edit_file_changes_a_matching_text_once_and_explains_a_miss() {
    let _serial = SERIAL.lock().await;
    let Served {
        _data,
        model,
        server,
        api,
        project_id: _project_id,
        first: reply,
    } = served(editing_model, "Build a hello page").await;
    let token = api.token.clone();
    assert_eq!(reply["type"], "RESULT", "{reply}");

    let last = model
        .requests()
        .into_iter()
        .filter(|body| !is_naming(body))
        .max_by_key(iteration)
        .unwrap();
    let answers = tool_answers(&last);
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(
        answers[1].contains("occurs 2 times") && answers[1].contains("left as it was"),
        "{}",
        answers[1]
    );
    assert!(
        answers[2].contains("was not found") && answers[2].contains("left as it was"),
        "{}",
        answers[2]
    );
    assert!(answers[3].contains("Edited `index.html` (1 edit)"), "{}", answers[3]);

    let fragment = api
        .get(&format!(
            "/api/fragments/{}",
            reply["codeFragment"]["id"].as_str().unwrap()
        ))
        .await;
    let edited = FIRST.replacen("<h1>Hello</h1>", "<h1>Hi</h1>", 1);
    assert_eq!(fragment["files"]["index.html"], edited.as_str(), "{fragment}");
    let url = reply["codeFragment"]["sandboxUrl"].as_str().unwrap();
    assert_eq!(preview_as(&server, &token, url, "/").await, (200, edited));
}

/// Prompt by prompt: "hello" writes the page, "change" rewrites it and adds a second page,
/// "read" reads the page back.
fn versioning_model(body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("Hello Page");
    }
    let prompt = last_user_text(body);
    match (iteration(body), prompt.as_str()) {
        (1, p) if p.contains("hello") => MockReply::tool_call(
            "c1",
            "createOrUpdateFiles",
            json!({"files": [{"path": "index.html", "content": PAGE}]}),
        ),
        (1, p) if p.contains("change") => MockReply::tool_call(
            "c2",
            "createOrUpdateFiles",
            json!({"files": [{"path": "index.html", "content": "<h1>Changed</h1>"}, {"path": "about.html", "content": "<p>About</p>"}]}),
        ),
        (1, _) => MockReply::tool_call("c3", "readFiles", json!({"files": ["index.html"]})),
        _ => MockReply::text("<task_summary>Done.</task_summary>"),
    }
}

#[tokio::test]
async fn versions_are_listed_diffed_and_restored() {
    let _serial = SERIAL.lock().await;
    let Served {
        _data,
        model,
        server,
        api,
        project_id,
        first: _first,
    } = served(versioning_model, "Build a hello page").await;
    let token = api.token.clone();
    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Now change it"}),
    )
    .await;
    api.replies(&project_id, 2, Duration::from_secs(60)).await;

    let versions = api.get(&format!("/api/projects/{project_id}/versions")).await;
    let versions = versions.as_array().unwrap().clone();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[0]["number"], 1);
    assert_eq!(versions[0]["title"], "Hello Page");
    assert_eq!(
        versions[0]["changedFiles"],
        json!([{"path": "index.html", "change": "added"}])
    );
    assert_eq!(
        versions[1]["changedFiles"],
        json!([{"path": "about.html", "change": "added"}, {"path": "index.html", "change": "modified"}])
    );
    let (v1, v2) = (versions[0]["id"].as_str().unwrap(), versions[1]["id"].as_str().unwrap());

    let diff = api
        .get(&format!("/api/projects/{project_id}/versions/{v1}/diff/{v2}"))
        .await;
    let files = diff["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{diff}");
    let page = files.iter().find(|f| f["path"] == "index.html").unwrap()["diff"]
        .as_str()
        .unwrap();
    assert!(page.starts_with("--- a/index.html\n+++ b/index.html\n@@"), "{page}");
    assert!(
        page.contains(&format!("-{PAGE}")) && page.contains("+<h1>Changed</h1>"),
        "{page}"
    );
    let missing = api
        .http
        .get(format!("{}/api/projects/{project_id}/versions/{v1}/diff/nope", api.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let restored = api
        .post(&format!("/api/projects/{project_id}/versions/{v1}/restore"), json!({}))
        .await;
    assert_eq!(restored["sandboxUpdated"], true, "{restored}");
    assert_eq!(restored["version"]["number"], 3);
    assert_eq!(
        restored["version"]["changedFiles"],
        json!([{"path": "about.html", "change": "removed"}, {"path": "index.html", "change": "modified"}])
    );
    let replies = api.replies(&project_id, 3, Duration::from_secs(5)).await;
    assert!(
        replies[2]["content"]
            .as_str()
            .unwrap()
            .starts_with("Restored version 1"),
        "{:?}",
        replies[2]
    );
    let url = replies[2]["codeFragment"]["sandboxUrl"].as_str().unwrap();
    assert_eq!(
        preview_as(&server, &token, url, "/").await,
        (200, PAGE.to_owned()),
        "the preview serves v1"
    );
    assert_eq!(
        preview_as(&server, &token, url, "/about.html").await.0,
        404,
        "v2's page is gone"
    );

    // The next prompt builds on the restored version.
    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Please read the page"}),
    )
    .await;
    let replies = api.replies(&project_id, 4, Duration::from_secs(60)).await;
    assert_eq!(replies[3]["type"], "RESULT", "{replies:?}");
    let read = model
        .requests()
        .into_iter()
        .rfind(|body| !is_naming(body) && last_user_text(body).contains("read the page") && iteration(body) == 2)
        .unwrap();
    let answer = tool_answers(&read).pop().unwrap();
    assert!(answer.contains(PAGE) && !answer.contains("Changed"), "{answer}");
    let fourth = api
        .get(&format!(
            "/api/fragments/{}",
            replies[3]["codeFragment"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(fourth["files"], json!({"index.html": PAGE}));
}

#[tokio::test]
async fn export_zip_holds_the_project_without_installed_packages() {
    let _serial = SERIAL.lock().await;
    let Served {
        _data,
        model: _model,
        server: _server,
        api,
        project_id,
        first: _first,
    } = served(hello_then_about_model, "Build a hello page").await;
    let files = export(&api, &project_id).await;
    assert_eq!(files.get("index.html").map(Vec::as_slice), Some(PAGE.as_bytes()));
    assert_eq!(
        files.len(),
        1,
        "the static template's project is its one page: {:?}",
        files.keys()
    );
    assert!(
        files
            .keys()
            .all(|path| !path.starts_with("node_modules/") && !path.starts_with(".next/"))
    );
}

/// The project's export, unpacked: path → contents.
async fn export(api: &Api, project_id: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let response = api
        .http
        .get(format!("{}/api/projects/{project_id}/export.zip", api.url))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"")
    );
    let bytes = response.bytes().await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    let mut files = std::collections::BTreeMap::new();
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).unwrap();
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut contents).unwrap();
        files.insert(file.name().to_owned(), contents);
    }
    files
}

/// A forgeai-v1 project's export builds on its own with `npm ci && npm run build`.
#[tokio::test]
async fn a_forgeai_v1_export_builds_on_its_own() {
    let _serial = SERIAL.lock().await;
    let Some(data) = forgeai_v1_data_dir().await else {
        return;
    };
    let page = "export default function Page() {\n  return <main className=\"p-8\"><h1>Exported app</h1></main>;\n}\n";
    let model = MockOpenAi::with_responder(move |body: &Value| {
        if is_naming(body) {
            return MockReply::text("Exported App");
        }
        match iteration(body) {
            1 => MockReply::tool_call(
                "c1",
                "createOrUpdateFiles",
                json!({"files": [{"path": "app/page.tsx", "content": page}]}),
            ),
            _ => MockReply::text("<task_summary>Built the page.</task_summary>"),
        }
    })
    .await;
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start_with(
        data.path(),
        &model.base_url(),
        free_port(),
        &[("FORGEAI_SANDBOX_TEMPLATE", "forgeai-v1")],
    )
    .await;
    let api = Api::new(&server, token);
    let project_id = api.new_project("Build an exported app").await;
    let reply = api.replies(&project_id, 1, Duration::from_secs(240)).await[0].clone();
    assert_eq!(reply["type"], "RESULT", "{reply}");
    let files = export(&api, &project_id).await;
    for needed in [
        "package.json",
        "package-lock.json",
        "next.config.ts",
        "tsconfig.json",
        "postcss.config.mjs",
        "app/layout.tsx",
        "components/ui/button.jsx",
    ] {
        assert!(
            files.contains_key(needed),
            "{needed} is exported: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(files["app/page.tsx"], page.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in &files {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    for script in ["npm ci --no-audit --no-fund --loglevel=error", "npm run build"] {
        let output = tokio::process::Command::new("bash")
            .args(["-c", script])
            .current_dir(dir.path())
            .env("NEXT_TELEMETRY_DISABLED", "1")
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "`{script}` failed in the export:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(
        dir.path().join(".next/BUILD_ID").exists(),
        "next build wrote its output"
    );
}

#[tokio::test]
async fn the_activity_topic_tells_what_the_agent_does_and_replays() {
    let _serial = SERIAL.lock().await;
    let Served {
        _data,
        model: _model,
        server: _server,
        api,
        project_id,
        first: _first,
    } = served(hello_then_about_model, "Build a hello page").await;
    let finished = |data: &Value| data["type"] == "runFinished";
    let events = api.events_until(&project_id, "agentActivity", "0", finished).await;
    let kinds: Vec<&str> = events.iter().map(|(_, e)| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["runStarted", "toolCall", "modelText", "appChecked", "runFinished"],
        "{events:?}"
    );
    let run_id = events[0].1["runId"].as_str().unwrap();
    assert_eq!(events[1].1["summary"], "Wrote index.html");
    assert_eq!(events[1].1["outcome"], "ok");
    assert_eq!(
        events[2].1["text"],
        "<task_summary>Built the hello page.</task_summary>"
    );
    assert_eq!(
        events[4].1,
        json!({"type": "runFinished", "runId": run_id, "outcome": "completed"})
    );
    let runs = api.get(&format!("/api/projects/{project_id}/runs")).await;
    assert_eq!(runs[0]["id"], run_id, "runStarted names the run");

    // A client that reconnects after the second event gets the rest, in order.
    let second = events[1].0.to_string();
    let replayed = api.events_until(&project_id, "agentActivity", &second, finished).await;
    assert_eq!(replayed, events[2..].to_vec());
    // The status topic alone has no activity in it.
    let statuses = api.statuses_until(&project_id, "Demo is ready").await;
    assert_eq!(statuses, READY_STATUSES);
    let bad = api
        .http
        .get(format!("{}/api/projects/{project_id}/realtime?topic=nope", api.url))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

/// "slow model": the first model call takes a minute. Otherwise: write the page, then run a
/// command of a minute, then (a later prompt) check that no `sleep` is left and finish.
fn stoppable_model(body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("Stoppable");
    }
    let prompt = last_user_text(body);
    match (iteration(body), prompt.as_str()) {
        (1, p) if p.contains("slow model") => {
            MockReply::text("<task_summary>late</task_summary>").delay(Duration::from_secs(60))
        }
        (1, p) if p.contains("long command") => MockReply::tool_call(
            "c1",
            "createOrUpdateFiles",
            json!({"files": [{"path": "index.html", "content": PAGE}]}),
        ),
        (2, p) if p.contains("long command") => {
            MockReply::tool_call("c2", "terminal", json!({"command": "sleep 61; echo late > late.txt"}))
        }
        (1, _) => MockReply::tool_call("c3", "terminal", json!({"command": "ls"})),
        (2, p) if p.contains("Check") => MockReply::tool_call(
            "c4",
            "createOrUpdateFiles",
            json!({"files": [{"path": "about.html", "content": "<p>About</p>"}]}),
        ),
        _ => MockReply::text("<task_summary>Checked.</task_summary>"),
    }
}

/// `POST /api/runs/{id}/cancel`, answered 200 with the run.
async fn cancel(api: &Api, run_id: &str) -> Value {
    let response = api
        .http
        .post(format!("{}/api/runs/{run_id}/cancel", api.url))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits until the project's newest run is `running` with `step` in flight; returns its id.
async fn run_in_step(api: &Api, project_id: &str, step: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let runs = api.get(&format!("/api/projects/{project_id}/runs")).await;
        if let Some(run) = runs.as_array().and_then(|runs| runs.last()) {
            let id = run["id"].as_str().unwrap().to_owned();
            let detail = api.get(&format!("/api/runs/{id}")).await;
            let in_step = detail["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["status"] == "running" && s["name"].as_str().unwrap().ends_with(step));
            if in_step {
                return id;
            }
        }
        assert!(std::time::Instant::now() < deadline, "no run reached `{step}`");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_run_is_stopped_mid_tool_and_mid_model_call_and_the_next_prompt_runs(backend: Backend) {
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(stoppable_model).await;
    let token = backend.add_user(data.path(), "alice");
    let server = backend.start(data.path(), &model.base_url(), free_port()).await;
    let api = Api::new(&server, token.clone());

    // Mid-tool: the terminal command is killed.
    let project_id = api.new_project("Run a long command").await;
    let run_id = run_in_step(&api, &project_id, "terminal").await;
    let started = std::time::Instant::now();
    let stopped = cancel(&api, &run_id).await;
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        started.elapsed()
    );
    assert_eq!(api.get(&format!("/api/runs/{run_id}")).await["status"], "cancelled");
    let replies = api.replies(&project_id, 1, Duration::from_secs(10)).await;
    assert_eq!(replies[0]["type"], "ERROR");
    assert!(
        replies[0]["content"].as_str().unwrap().starts_with("Stopped."),
        "{:?}",
        replies[0]
    );
    let activity = api
        .events_until(&project_id, "agentActivity", "0", |e| e["type"] == "runFinished")
        .await;
    assert_eq!(
        activity.last().unwrap().1,
        json!({"type": "runFinished", "runId": run_id, "outcome": "cancelled"})
    );
    // The command's process is gone (seen from the host, where every sandbox's processes are).
    let left = std::process::Command::new("pgrep")
        .args(["-f", "[s]leep 61"])
        .output()
        .unwrap();
    assert!(
        !left.status.success(),
        "`sleep 61` still runs: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    // Cancelling an ended run changes nothing.
    let again = cancel(&api, &run_id).await;
    assert_eq!(again["status"], "cancelled");

    // The next prompt runs normally, in the same sandbox: the killed command did not get to its
    // end, and the file written before the stop is there.
    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Check the sandbox"}),
    )
    .await;
    let replies = api.replies(&project_id, 2, Duration::from_secs(60)).await;
    assert_eq!(replies[1]["type"], "RESULT", "{replies:?}");
    let check = model
        .requests()
        .into_iter()
        .rfind(|body| last_user_text(body).contains("Check the sandbox") && iteration(body) == 2)
        .unwrap();
    let listing = tool_answers(&check).pop().unwrap();
    assert!(
        listing.contains("index.html") && !listing.contains("late.txt"),
        "{listing}"
    );

    // Mid-model-call: the request is dropped.
    let slow = api.new_project("A slow model").await;
    let slow_run = run_in_step(&api, &slow, "model").await;
    let started = std::time::Instant::now();
    let stopped = cancel(&api, &slow_run).await;
    assert_eq!(stopped["status"], "cancelled", "{stopped}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let replies = api.replies(&slow, 1, Duration::from_secs(10)).await;
    assert!(replies[0]["content"].as_str().unwrap().starts_with("Stopped."));

    let unknown = api
        .http
        .post(format!("{}/api/runs/nosuchrun/cancel", api.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn a_hand_edit_is_saved_as_a_new_version_the_preview_and_the_agent_see() {
    let _serial = SERIAL.lock().await;
    let Served {
        _data,
        model,
        server,
        api,
        project_id,
        first,
    } = served(versioning_model, "Build a hello page").await;
    let token = api.token.clone();

    let edited = "<h1>Edited by hand</h1>";
    let saved = api
        .post(
            &format!("/api/projects/{project_id}/versions"),
            json!({"files": {"index.html": edited}}),
        )
        .await;
    assert_eq!(saved["sandboxUpdated"], true, "{saved}");
    assert_eq!(saved["version"]["number"], 2);
    assert_eq!(
        saved["version"]["changedFiles"],
        json!([{"path": "index.html", "change": "modified"}])
    );
    let url = first["codeFragment"]["sandboxUrl"].as_str().unwrap();
    assert_eq!(preview_as(&server, &token, url, "/").await, (200, edited.to_owned()));

    for (body, status) in [
        (json!({"files": {"../escape.html": "x"}}), 400),
        (json!({"files": {}}), 400),
        (json!({"files": {"big.txt": "x".repeat(2 << 20)}}), 413),
    ] {
        let response = api
            .http
            .post(format!("{}/api/projects/{project_id}/versions", api.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
    }
    let versions = api.get(&format!("/api/projects/{project_id}/versions")).await;
    assert_eq!(versions.as_array().unwrap().len(), 2, "refused saves store nothing");

    api.post(
        "/api/messages",
        json!({"projectId": project_id, "message": "Please read the page"}),
    )
    .await;
    api.replies(&project_id, 3, Duration::from_secs(60)).await;
    let read = model
        .requests()
        .into_iter()
        .rfind(|body| !is_naming(body) && last_user_text(body).contains("read the page") && iteration(body) == 2)
        .unwrap();
    assert!(
        tool_answers(&read).pop().unwrap().contains(edited),
        "the agent reads the hand edit"
    );
}
