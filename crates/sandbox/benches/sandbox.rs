//! Benchmarks of the local sandbox provider (root required; prints figures, asserts nothing):
//! sandbox create p50/p99 one after another and 200 at once, command round trip vs a plain
//! process spawn, and preview proxy throughput vs a direct connection to the sandbox's dev
//! server.
//!
//! Run: `cargo bench -p forgeai-sandbox --bench sandbox`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use forgeai_preview::{PreviewConfig, PreviewProxy};
use forgeai_sandbox::{CommandOptions, CreateOptions, LocalConfig, LocalProvider, SandboxProvider};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Sends `total` GETs with `concurrency` workers; returns (requests/s, MB/s).
async fn load(
    client: &Client<HttpConnector, Body>,
    url: &str,
    host: &str,
    total: usize,
    concurrency: usize,
) -> (f64, f64) {
    let started = Instant::now();
    let per = total / concurrency;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, host) = (client.clone(), url.to_string(), host.to_string());
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0usize;
            for _ in 0..per {
                let req = hyper::Request::get(&url)
                    .header("host", &host)
                    .body(Body::empty())
                    .expect("request");
                let resp = client.request(req).await.expect("response");
                assert_eq!(resp.status(), 200);
                bytes += resp.into_body().collect().await.expect("body").to_bytes().len();
            }
            bytes
        }));
    }
    let mut bytes = 0;
    for t in tasks {
        bytes += t.await.expect("worker");
    }
    let secs = started.elapsed().as_secs_f64();
    ((per * concurrency) as f64 / secs, bytes as f64 / secs / 1e6)
}

/// Creates and kills `n` sandboxes one after another and prints create and kill p50/p99.
async fn create_and_kill(provider: &LocalProvider, n: usize, label: &str) {
    let (mut create, mut kill) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let info = provider
            .create("static", CreateOptions::default())
            .await
            .expect("create");
        create.push(t.elapsed());
        let t = Instant::now();
        provider.kill(&info.id).await.expect("kill");
        kill.push(t.elapsed());
    }
    println!(
        "sandbox create{label}   n={n}  p50 {}  p99 {}",
        ms(pct(&mut create, 0.5)),
        ms(pct(&mut create, 0.99))
    );
    println!(
        "sandbox kill{label}     n={n}  p50 {}  p99 {}",
        ms(pct(&mut kill, 0.5)),
        ms(pct(&mut kill, 0.99))
    );
}

/// Creates `n` sandboxes at once (as many projects prompted together do), prints when the last
/// was created and the p50/p99 of one create among them, then kills them all.
async fn create_at_once(provider: &LocalProvider, n: usize) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let info = provider
                    .create("static", CreateOptions::default())
                    .await
                    .expect("create");
                (info.id, t.elapsed())
            })
        })
        .collect();
    let (mut ids, mut create) = (Vec::new(), Vec::new());
    for task in tasks {
        let (id, took) = task.await.expect("create task");
        ids.push(id);
        create.push(took);
    }
    let all = started.elapsed();
    println!(
        "{n} sandboxes created at once: all in {:.2} s, one create p50 {}  p99 {}",
        all.as_secs_f64(),
        ms(pct(&mut create, 0.5)),
        ms(pct(&mut create, 0.99))
    );
    let kills: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.kill(&id).await.expect("kill") })
        })
        .collect();
    for kill in kills {
        kill.await.expect("kill task");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("sandbox bench skipped: needs root (namespaces, mounts, cgroups)");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("forgeai-sbx-bench-")
        .tempdir()
        .expect("tempdir");
    let provider = LocalProvider::new(LocalConfig::new(dir.path()))
        .await
        .expect("provider");
    provider.ensure_static_template().await.expect("static template");

    // Sandbox create (and kill), with the default disk quota, then without one.
    let n = 30;
    create_and_kill(&provider, n, "").await;
    create_at_once(&provider, 200).await;
    let no_quota_dir = tempfile::Builder::new()
        .prefix("forgeai-sbx-bench-")
        .tempdir()
        .expect("tempdir");
    let mut no_quota = LocalConfig::new(no_quota_dir.path());
    no_quota.disk_bytes = None;
    let no_quota = LocalProvider::new(no_quota).await.expect("provider");
    no_quota.ensure_static_template().await.expect("static template");
    create_and_kill(&no_quota, n, " (no disk quota)").await;
    no_quota.shutdown().await;

    // Command round trip vs plain spawn.
    let id = provider
        .create("static", CreateOptions::default())
        .await
        .expect("create")
        .id;
    let (mut sandboxed, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let r = provider
            .run_command(&id, "true", CommandOptions::default())
            .await
            .expect("run");
        assert_eq!(r.exit_code, 0);
        sandboxed.push(t.elapsed());
        let t = Instant::now();
        let s = tokio::process::Command::new("/bin/bash")
            .args(["-c", "true"])
            .status()
            .await
            .expect("spawn");
        assert!(s.success());
        plain.push(t.elapsed());
    }
    let (s50, p50) = (pct(&mut sandboxed, 0.5), pct(&mut plain, 0.5));
    println!(
        "command `true`   sandboxed p50 {}  p99 {} | plain bash p50 {} | overhead p50 {}",
        ms(s50),
        ms(pct(&mut sandboxed, 0.99)),
        ms(p50),
        ms(s50.saturating_sub(p50))
    );

    // Proxy throughput vs direct.
    let page = "x".repeat(16 * 1024);
    provider
        .write_file(&id, "index.html", page.as_bytes())
        .await
        .expect("write");
    provider
        .write_file(&id, "big.bin", &vec![7u8; 4 << 20])
        .await
        .expect("write");
    let (_, addr) = provider.network(&id).await.expect("network");
    let proxy = PreviewProxy::new(Arc::new(provider.clone()), PreviewConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let _ = forgeai_preview::serve(listener, proxy).await;
    });
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let host = format!("3000-{id}.localhost:{port}");
    // Warm up (the dev server may still be starting).
    let _ = load(&client, &format!("http://127.0.0.1:{port}/"), &host, 4, 1).await;
    for (label, path, total) in [("16 KiB page", "/", 2000usize), ("4 MiB file", "/big.bin", 100)] {
        for conc in [1usize, 8] {
            let (d_rps, d_mbs) = load(
                &client,
                &format!("http://{addr}:3000{path}"),
                &format!("{addr}:3000"),
                total,
                conc,
            )
            .await;
            let (p_rps, p_mbs) = load(&client, &format!("http://127.0.0.1:{port}{path}"), &host, total, conc).await;
            println!(
                "{label:<11} c={conc}  direct {d_rps:>7.0} req/s {d_mbs:>7.1} MB/s | proxy {p_rps:>7.0} req/s {p_mbs:>7.1} MB/s ({:.0}%)",
                100.0 * p_rps / d_rps
            );
        }
    }
    server.abort();
    provider.kill_all().await.expect("cleanup");
}
