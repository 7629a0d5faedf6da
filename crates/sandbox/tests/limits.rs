//! The limits that keep one sandbox from hurting the others and the host: the disk quota, the
//! host's free-space reserve, and the memory budget of loaded sandboxes (root required).

mod common;

use std::time::Duration;

use common::*;
use forgeai_sandbox::{CreateOptions, Error, SandboxProvider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_cannot_write_past_its_disk_quota() {
    let env = Env::with(|cfg| cfg.disk_bytes = Some(64 << 20)).await;
    let (full, neighbour) = (env.create().await, env.create().await);
    let host_free_before = host_free_bytes(env.dir.path());

    let r = env.run(&full, "dd if=/dev/zero of=big bs=1M count=200").await;
    assert_ne!(r.exit_code, 0);
    assert!(r.stderr.contains("No space left on device"), "{r:?}");
    // The home directory shares the quota.
    let r = env.run(&full, "head -c 8M /dev/zero > ~/more").await;
    assert!(r.stderr.contains("No space left"), "{r:?}");
    match env.provider.write_file(&full, "big.bin", &vec![b'x'; 16 << 20]).await {
        Err(Error::DiskFull { path }) => assert_eq!(path, "big.bin"),
        other => panic!("expected DiskFull, got {other:?}"),
    }
    let message = Error::DiskFull { path: "x".into() }.to_string();
    assert!(message.contains("No space left on device"), "{message}");

    // Only that sandbox's own filesystem filled up: the host lost at most its quota.
    let host_free_after = host_free_bytes(env.dir.path());
    assert!(
        host_free_before.saturating_sub(host_free_after) <= 80 << 20,
        "host free space went from {host_free_before} to {host_free_after}"
    );
    env.provider.write_file(&neighbour, "page.html", b"fine").await.unwrap();
    let r = env
        .run(&neighbour, "head -c 8M /dev/zero > ok.bin && cat page.html")
        .await;
    assert_eq!((r.exit_code, r.stdout.as_str()), (0, "fine"), "{r:?}");
    let r = env.run(&full, "df -k . | tail -1").await;
    let size_kib: u64 = r
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!((40 << 10..=64 << 10).contains(&size_kib), "df inside: {r:?}");

    // Freeing space makes writes work again, also after the sandbox was unloaded and loaded.
    env.run(&full, "rm -f big ~/more").await;
    env.provider.shutdown().await;
    env.provider.write_file(&full, "small.txt", b"ok").await.unwrap();
    assert_eq!(env.run(&full, "cat small.txt").await.stdout, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sandbox_is_created_when_the_host_disk_is_low() {
    let env = Env::with(|cfg| cfg.min_free_disk_bytes = u64::MAX).await;
    match env.provider.create("static", CreateOptions::default()).await {
        Err(e @ Error::HostDiskLow { .. }) => {
            assert!(e.to_string().contains("kept free for the database"), "{e}")
        }
        other => panic!("expected HostDiskLow, got {other:?}"),
    }
    assert!(env.provider.list().is_empty());
}

/// A template whose dev server holds `mib` MiB of anonymous memory and answers "hog".
fn write_hog_template(data_dir: &std::path::Path, mib: u64) {
    let dir = data_dir.join("templates").join("hog");
    std::fs::create_dir_all(dir.join("project")).unwrap();
    let script = format!(
        "const b = Buffer.alloc({mib} << 20, 1); require('http').createServer((q, s) => s.end('hog ' + b[0])).listen(3000)"
    );
    let config = serde_json::json!({
        "devCommand": format!("exec node -e \"{script}\""),
        "port": 3000,
        "memoryEstimateBytes": mib << 20,
    });
    std::fs::write(dir.join("forgeai-template.json"), config.to_string()).unwrap();
}

async fn create_hog(env: &Env, port: u16) -> String {
    let id = env
        .provider
        .create("hog", CreateOptions::default())
        .await
        .expect("create hog sandbox")
        .id;
    let (status, body) = http_get(port, &format!("3000-{id}.localhost"), "/").await;
    assert_eq!((status, body.as_str()), (200, "hog 1"), "sandbox {id}");
    id
}

async fn loaded_usage(env: &Env, ids: &[String]) -> u64 {
    let mut total = 0;
    for id in ids {
        total += env.provider.memory_usage(id).unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_sandboxes_stay_within_the_memory_budget() {
    const BUDGET: u64 = 256 << 20;
    let env = Env::with(|cfg| cfg.memory_budget_bytes = Some(BUDGET)).await;
    write_hog_template(env.dir.path(), 100);
    let (port, _proxy) = env.proxy().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(create_hog(&env, port).await);
        let used = loaded_usage(&env, &ids).await;
        assert!(
            used <= BUDGET,
            "{} MiB in use after {} sandboxes",
            used >> 20,
            ids.len()
        );
    }
    let mut loaded = Vec::new();
    for id in &ids {
        loaded.push(env.provider.loaded(id).await.unwrap());
    }
    assert_eq!(loaded, [false, false, true, true], "least recently used were unloaded");

    // The first sandbox comes back on demand, with its files, and the budget still holds.
    let (status, body) = http_get(port, &format!("3000-{}.localhost", ids[0]), "/").await;
    assert_eq!((status, body.as_str()), (200, "hog 1"));
    env.provider.write_file(&ids[0], "kept.txt", b"kept").await.unwrap();
    assert_eq!(env.run(&ids[0], "cat kept.txt").await.stdout, "kept");
    assert!(loaded_usage(&env, &ids).await <= BUDGET);
    assert!(
        !env.provider.loaded(&ids[2]).await.unwrap(),
        "the least recently used made room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sandboxes_are_unloaded_and_come_back_on_demand() {
    let env = Env::with(|cfg| cfg.idle_unload = Duration::from_millis(1500)).await;
    let id = env.create().await;
    env.provider.write_file(&id, "index.html", b"still here").await.unwrap();
    assert!(env.provider.loaded(&id).await.unwrap());
    assert!(
        eventually(Duration::from_secs(10), || async {
            !env.provider.loaded(&id).await.unwrap()
        })
        .await,
        "an idle sandbox is unloaded"
    );
    assert_eq!(env.provider.memory_usage(&id).unwrap(), 0);
    let (port, _proxy) = env.proxy().await;
    let (status, body) = http_get(port, &format!("3000-{id}.localhost"), "/index.html").await;
    assert_eq!((status, body.as_str()), (200, "still here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_larger_than_the_whole_budget_is_refused_clearly() {
    let env = Env::with(|cfg| {
        cfg.memory_budget_bytes = Some(64 << 20);
        cfg.memory_wait = Duration::from_millis(500);
    })
    .await;
    write_hog_template(env.dir.path(), 100);
    match env.provider.create("hog", CreateOptions::default()).await {
        Err(e @ Error::MemoryBudget { .. }) => assert!(e.to_string().contains("memory budget of 64 MiB"), "{e}"),
        other => panic!("expected MemoryBudget, got {other:?}"),
    }
    assert!(
        env.provider.list().is_empty(),
        "a refused sandbox leaves nothing behind"
    );
}

fn host_free_bytes(dir: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
