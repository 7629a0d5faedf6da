//! What keeps one user's work from hurting another's on a shared `forgeai serve`: the disk
//! quota, leftovers after a crash, and a data dir only root can reach.

mod common;

use std::time::Duration;

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

/// Iteration 1 runs `command` with the terminal tool; iteration 2 writes the page; then done.
fn command_then_page_model(command: &'static str) -> impl Fn(&Value) -> MockReply + Send + Sync + 'static {
    move |body| {
        if is_naming(body) {
            return MockReply::text("\"Disk Test\"");
        }
        match iteration(body) {
            1 => MockReply::tool_call("call-cmd", "terminal", json!({ "command": command })),
            2 => MockReply::tool_call(
                "call-write",
                "createOrUpdateFiles",
                json!({"files": [{"path": "index.html", "content": PAGE}]}),
            ),
            _ => MockReply::text("<task_summary>Done.</task_summary>"),
        }
    }
}

/// The text of the tool result the model was given for `call_id`, from its recorded requests.
fn tool_result(model: &MockOpenAi, call_id: &str) -> Option<String> {
    model.requests().iter().find_map(|body| {
        body["messages"].as_array()?.iter().find_map(|message| {
            (message["role"] == "tool" && message["tool_call_id"] == call_id)
                .then(|| message["content"].as_str().unwrap_or_default().to_owned())
        })
    })
}

#[tokio::test]
async fn a_sandbox_that_fills_its_disk_hurts_no_one_else() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(command_then_page_model("dd if=/dev/zero of=big.bin bs=1M count=200")).await;
    let port = free_port();
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start_with(
        data.path(),
        &model.base_url(),
        port,
        &[("FORGEAI_SANDBOX_DISK", "64MiB")],
    )
    .await;
    let api = Api::new(&server, token);

    let filler = api.new_project("Fill the disk").await;
    let replies = api.replies(&filler, 1, Duration::from_secs(60)).await;
    let result = tool_result(&model, "call-cmd").expect("the terminal result reached the model");
    assert!(result.contains("No space left on device"), "{result}");
    assert_eq!(replies[0]["type"], "RESULT", "the run went on after the full disk");

    // Another project's run completes and a new user can sign in.
    let other = api.new_project("Another project").await;
    let replies = api.replies(&other, 1, Duration::from_secs(60)).await;
    assert_eq!(replies[0]["type"], "RESULT");
    let bob = add_user(data.path(), "bob");
    let signed_in = reqwest::Client::new()
        .post(format!("{}/api/session", server.url))
        .json(&json!({ "token": bob }))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 204);
}

#[tokio::test]
async fn a_killed_server_leaves_nothing_of_a_removed_sandbox_after_restart() {
    let _serial = SERIAL.lock().await;
    let data = DataDir::new();
    let model = MockOpenAi::with_responder(builder_model("index.html", PAGE)).await;
    let port = free_port();
    let token = add_user(data.path(), "alice");
    let mut server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let api = Api::new(&server, token);
    let project = api.new_project("Build a page").await;
    api.replies(&project, 1, Duration::from_secs(60)).await;
    let sandbox = api.get(&format!("/api/projects/{project}")).await["sandboxId"]
        .as_str()
        .expect("the project has a sandbox")
        .to_owned();
    let sandboxes = data.path().canonicalize().unwrap().join("sandboxes");
    let short = &sandbox[..10];
    let traces = || {
        let mut found = Vec::new();
        for path in [format!("/run/netns/fa-{short}"), format!("/sys/class/net/fah-{short}")] {
            if std::path::Path::new(&path).exists() {
                found.push(path);
            }
        }
        for path in [
            format!("/sys/fs/cgroup/pids/forgeai/{sandbox}"),
            format!("/sys/fs/cgroup/forgeai/{sandbox}"),
        ] {
            if std::path::Path::new(&path).exists() {
                found.push(path);
            }
        }
        let set = std::process::Command::new("nft")
            .args(["list", "set", "inet", "forgeai", "sb_addrs"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&set.stdout).contains(&format!("fah-{short}")) {
            found.push("nft element".into());
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = sandboxes.join(&sandbox).to_string_lossy().into_owned();
        found.extend(mounts.lines().filter(|l| l.contains(&dir)).map(str::to_owned));
        found
    };
    assert!(!traces().is_empty(), "the sandbox is loaded before the crash");

    server.kill();
    let _ = std::process::Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(sandboxes.join(&sandbox))
        .status();
    let _server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let left = traces();
    assert!(left.is_empty(), "left after restart: {left:#?}");
}

#[tokio::test]
async fn the_full_flow_works_with_the_data_dir_under_a_mode_700_directory() {
    let _serial = SERIAL.lock().await;
    let private = tempfile::Builder::new().prefix("forgeai-700-").tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let data = DataDir::in_dir(private.path());
    let model = MockOpenAi::with_responder(builder_model("index.html", PAGE)).await;
    let port = free_port();
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start(data.path(), &model.base_url(), port).await;
    let api = Api::new(&server, token);
    let project = api.new_project("Build a page").await;
    let replies = api.replies(&project, 1, Duration::from_secs(60)).await;
    assert_eq!(replies[0]["type"], "RESULT", "{replies:?}");
    let sandbox = api.get(&format!("/api/projects/{project}")).await["sandboxId"]
        .as_str()
        .unwrap()
        .to_owned();
    let preview = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("Host", format!("3000-{sandbox}.localhost:{port}"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 200);
    assert_eq!(preview.text().await.unwrap(), PAGE);
}
