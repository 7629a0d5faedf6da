//! Many projects prompted at once through the HTTP API, against one run alone (issue 16's
//! acceptance line: 200 projects at once within 1.5× the time of one run).
//!
//! Run it as root (it makes real sandboxes from the `static` template):
//!
//! ```text
//! cargo bench -p forgeai --bench http_projects
//! ```
//!
//! It starts the real `forgeai serve` binary (embedded engine, local sandboxes, `static`
//! template, SQLite) and a mock OpenAI-compatible model that answers every call after 1 s: runs
//! of 3 iterations (write `index.html`, write `page-2.html`, give the task summary), then the
//! project-naming call, also after 1 s as with a real model, so one run holds 4 s of model time.
//! For each N in [`BATCHES`] a fresh server on a fresh data dir (so no earlier sandbox runs)
//! makes one warm-up run (not timed: the first sandbox of a server also sets up the host), times
//! one run alone, then N projects prompted at once: one concurrent `POST /api/projects` each,
//! each followed by its status channel (`/api/projects/{id}/realtime?topic=projectInfo`) until
//! its last status. It prints `N projects at once: X s vs Y s for one run = Z×` (with when the
//! last of the N POSTs was answered) and asserts nothing about the figures, but panics when a
//! POST is refused or a run does not end in "Demo is ready" with a RESULT reply.
//!
//! Limits: the server has no per-user limit on running projects and no rate limit on prompts
//! (see the README's security model), so all projects belong to one user made with
//! `forgeai users add`; no setting is changed but `FORGEAI_LOG=warn` (quieter output).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Api, DataDir, Forgeai, PAGE, add_user, free_port, is_naming, iteration};
use forgeai_code_agent::{CANCELLED_STATUS, ERRORS_STATUS, FAILED_STATUS, READY_STATUS};
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

/// How long the model takes to answer any call.
const MODEL_LATENCY: Duration = Duration::from_secs(1);
/// Coding iterations per run; the last one gives the task summary.
const ITERATIONS: usize = 3;
/// How many projects are prompted at once, each on a fresh server.
const BATCHES: [usize; 2] = [50, 200];

/// A run of [`ITERATIONS`] iterations, every answer after [`MODEL_LATENCY`].
fn model(body: &Value) -> MockReply {
    let reply = if is_naming(body) {
        MockReply::text("Bench Page")
    } else {
        match iteration(body) {
            1 => MockReply::tool_call(
                "call-1",
                "createOrUpdateFiles",
                json!({"files": [{"path": "index.html", "content": PAGE}]}),
            ),
            n if n < ITERATIONS => MockReply::tool_call(
                format!("call-{n}"),
                "createOrUpdateFiles",
                json!({"files": [{"path": format!("page-{n}.html"), "content": "<p>bench</p>"}]}),
            ),
            _ => MockReply::text("<task_summary>Built the page.</task_summary>"),
        }
    };
    reply.delay(MODEL_LATENCY)
}

/// Prompts a new project and follows its status channel until its run ended; panics unless it
/// ended well. Answers the project's id and when (since `started`) its POST was answered.
async fn prompt_and_wait(api: Arc<Api>, n: usize, started: Instant) -> (String, Duration) {
    let project_id = api.new_project(&format!("Build page number {n}")).await;
    let posted = started.elapsed();
    let terminal = [READY_STATUS, ERRORS_STATUS, FAILED_STATUS, CANCELLED_STATUS];
    let statuses = api
        .events_until(&project_id, "projectInfo", "0", |data| {
            terminal.contains(&data.as_str().unwrap_or_default())
        })
        .await;
    let last = &statuses.last().expect("a status").1;
    assert_eq!(last, READY_STATUS, "project {project_id}: {statuses:?}");
    (project_id, posted)
}

/// Prompts `count` projects at once; answers how long until every run ended and until every
/// POST was answered, after checking that each run stored a RESULT reply.
async fn prompt_at_once(api: &Arc<Api>, count: usize) -> (Duration, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|n| tokio::spawn(prompt_and_wait(api.clone(), n, started)))
        .collect();
    let (mut project_ids, mut all_posted) = (Vec::with_capacity(count), Duration::ZERO);
    for task in tasks {
        let (project_id, posted) = task.await.expect("a run failed (see the panic above)");
        project_ids.push(project_id);
        all_posted = all_posted.max(posted);
    }
    let elapsed = started.elapsed();
    for project_id in &project_ids {
        let replies = api.replies(project_id, 1, Duration::from_secs(10)).await;
        assert_eq!(replies[0]["type"], "RESULT", "project {project_id}: {}", replies[0]);
    }
    (elapsed, all_posted)
}

async fn batch(model: &MockOpenAi, count: usize) {
    let data = DataDir::new();
    let token = add_user(data.path(), "bench");
    let server = Forgeai::start_with(data.path(), &model.base_url(), free_port(), &[("FORGEAI_LOG", "warn")]).await;
    let api = Arc::new(Api::new(&server, token));
    prompt_at_once(&api, 1).await; // warm-up, not timed
    let (alone, _) = prompt_at_once(&api, 1).await;
    let (together, posted) = prompt_at_once(&api, count).await;
    println!(
        "{count} projects at once: {:.2} s vs {:.2} s for one run = {:.2}× (target 1.5× for 200; \
         model answers after {MODEL_LATENCY:?}, {ITERATIONS} iterations + naming; all {count} POSTs \
         answered after {:.2} s)",
        together.as_secs_f64(),
        alone.as_secs_f64(),
        together.as_secs_f64() / alone.as_secs_f64(),
        posted.as_secs_f64()
    );
    drop(server);
    // Dropping the data dir removes its sandboxes before the next batch starts.
    drop(data);
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let model = MockOpenAi::with_responder(model).await;
        for count in BATCHES {
            batch(&model, count).await;
        }
    });
}
