//! The memory budget with real Next.js sandboxes: more `forgeai-v1` projects than the budget
//! holds, opened one after another, keep the sandboxes' memory within it, and every project
//! still answers prompts and previews. Needs the template cache CI keeps
//! (`FORGEAI_TEMPLATE_CACHE`); skipped without it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use forgeai_test_support::{MockOpenAi, MockReply};
use serde_json::{Value, json};

const BUDGET: u64 = 1 << 30;

/// Writes a page saying which prompt it answers ("Project 2", "Project 1 again").
fn page_model(body: &Value) -> MockReply {
    if is_naming(body) {
        return MockReply::text("\"Budget Page\"");
    }
    let prompt = last_user_text(body);
    match iteration(body) {
        1 => MockReply::tool_call(
            "call-write",
            "createOrUpdateFiles",
            json!({"files": [{
                "path": "app/page.tsx",
                "content": format!("export default function Page() {{\n  return <h1>Budget: {prompt}</h1>;\n}}\n"),
            }]}),
        ),
        _ => MockReply::text("<task_summary>Wrote the page.</task_summary>"),
    }
}

/// Anonymous and tmpfs memory of every sandbox in `data_dir`, from their cgroups.
fn sandboxes_memory(data_dir: &Path) -> u64 {
    let field = |stat: &str, key: &str| -> u64 {
        stat.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    let ids = std::fs::read_dir(data_dir.join("sandboxes"))
        .into_iter()
        .flatten()
        .flatten();
    ids.map(|entry| {
        let id = entry.file_name();
        let v1 = Path::new("/sys/fs/cgroup/memory/forgeai").join(&id).join("memory.stat");
        let v2 = Path::new("/sys/fs/cgroup/forgeai").join(&id).join("memory.stat");
        match (std::fs::read_to_string(v1), std::fs::read_to_string(v2)) {
            (Ok(stat), _) => field(&stat, "total_rss") + field(&stat, "total_shmem"),
            (_, Ok(stat)) => field(&stat, "anon") + field(&stat, "shmem"),
            _ => 0,
        }
    })
    .sum()
}

async fn preview_text(server: &Forgeai, api: &Api, sandbox_url: &str) -> (u16, String) {
    let host = sandbox_url.trim_start_matches("http://").trim_end_matches('/');
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap()
        .get(format!("{}/", server.url))
        .header("Host", host)
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn forgeai_v1_projects_beyond_the_memory_budget_all_keep_working() {
    let _serial = SERIAL.lock().await;
    let Some(data) = forgeai_v1_data_dir().await else {
        return;
    };
    let model = MockOpenAi::with_responder(page_model).await;
    let port = free_port();
    let token = add_user(data.path(), "alice");
    let server = Forgeai::start_with(
        data.path(),
        &model.base_url(),
        port,
        &[
            ("FORGEAI_SANDBOX_TEMPLATE", "forgeai-v1"),
            ("FORGEAI_SANDBOX_MEMORY_BUDGET", "1GiB"),
        ],
    )
    .await;
    let api = Api::new(&server, token);

    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, dir) = (peak.clone(), data.path().to_owned());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(sandboxes_memory(&dir), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let mut projects = Vec::new();
    for n in 1..=4 {
        let started = std::time::Instant::now();
        let project = api.new_project(&format!("Project {n}")).await;
        let reply = &api.replies(&project, 1, Duration::from_secs(180)).await[0];
        assert_eq!(reply["type"], "RESULT", "{reply}");
        let url = reply["codeFragment"]["sandboxUrl"].as_str().unwrap().to_owned();
        let (status, page) = preview_text(&server, &api, &url).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains(&format!("Budget: Project {n}")), "project {n}: {page}");
        eprintln!(
            "project {n}: answered and rendered in {:.1}s; sandboxes hold {} MiB",
            started.elapsed().as_secs_f64(),
            sandboxes_memory(data.path()) >> 20
        );
        projects.push((project, url));
    }

    // The first project was unloaded to make room; its preview and a new prompt bring it back.
    let (first, first_url) = &projects[0];
    let (status, page) = preview_text(&server, &api, first_url).await;
    assert_eq!(status, 200);
    assert!(page.contains("Budget: Project 1"), "{page}");
    api.post(
        "/api/messages",
        json!({"projectId": first, "message": "Project 1 again"}),
    )
    .await;
    let replies = api.replies(first, 2, Duration::from_secs(180)).await;
    assert_eq!(replies[1]["type"], "RESULT", "{replies:?}");
    let url = replies[1]["codeFragment"]["sandboxUrl"].as_str().unwrap();
    let (_, page) = preview_text(&server, &api, url).await;
    assert!(page.contains("Budget: Project 1 again"), "{page}");

    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "peak memory of the sandboxes: {} MiB (budget {} MiB)",
        peak >> 20,
        BUDGET >> 20
    );
    assert!(
        peak <= BUDGET,
        "sandboxes held {} MiB, over the 1 GiB budget",
        peak >> 20
    );
}
