//! Shared harness for the sandbox tests: a provider on a throwaway data dir whose sandboxes
//! (and with them their mounts, network namespaces, veths, nftables chains and cgroups) are
//! killed when the harness is dropped — also when a test panics.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use forgeai_preview::{PreviewConfig, PreviewProxy};
use forgeai_sandbox::local::Limits;
use forgeai_sandbox::{CommandOptions, CreateOptions, LocalConfig, LocalProvider, SandboxProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Env {
    pub provider: LocalProvider,
    pub dir: tempfile::TempDir,
}

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the sandbox tests create namespaces, mounts and cgroups and must run as root (they do in CI)"
    );
}

impl Env {
    pub async fn new() -> Env {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut LocalConfig)) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("forgeai-sbx-test-")
            .tempdir()
            .expect("tempdir");
        Self::in_dir(dir, tweak).await
    }

    pub async fn in_dir(dir: tempfile::TempDir, tweak: impl FnOnce(&mut LocalConfig)) -> Env {
        require_root();
        let mut cfg = LocalConfig::new(dir.path());
        cfg.limits = Limits {
            memory_bytes: Some(512 << 20),
            pids: Some(256),
            cpu_cores: None,
            cpu_shares: Some(512),
        };
        tweak(&mut cfg);
        let provider = LocalProvider::new(cfg).await.expect("local provider");
        provider.ensure_static_template().await.expect("static template");
        Env { provider, dir }
    }

    pub async fn create(&self) -> String {
        self.provider
            .create("static", CreateOptions::default())
            .await
            .expect("create sandbox")
            .id
    }

    pub async fn run(&self, id: &str, cmd: &str) -> forgeai_sandbox::CommandResult {
        self.provider
            .run_command(id, cmd, CommandOptions::default().with_timeout(Duration::from_secs(30)))
            .await
            .expect("run command")
    }

    /// Starts the preview proxy on a free loopback port.
    pub async fn proxy(&self) -> (u16, tokio::task::JoinHandle<()>) {
        let proxy = PreviewProxy::new(Arc::new(self.provider.clone()), PreviewConfig::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let _ = forgeai_preview::serve(listener, proxy).await;
        });
        (port, task)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let provider = self.provider.clone();
        // Tests use the multi-thread runtime, so blocking here still lets the runtime finish the
        // dev-server tasks kill() waits for.
        let cleanup = || {
            tokio::runtime::Handle::current().block_on(async move {
                if let Err(e) = provider.kill_all().await {
                    eprintln!("sandbox cleanup failed: {e}");
                }
            })
        };
        tokio::task::block_in_place(cleanup);
    }
}

/// GETs `path` from the proxy on `port` with Host `host`; returns (status, body).
pub async fn http_get(port: u16, host: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect proxy");
    // HTTP/1.0: the answer is never chunked, so the body can be read as is.
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn exists(p: impl AsRef<Path>) -> bool {
    p.as_ref().exists()
}

/// What of sandbox `id` still exists on the machine: its network namespace, veth, firewall
/// set element for `addr`, cgroup, subnet lease and mounts under `sandbox_dir`.
pub fn runtime_traces(id: &str, addr: std::net::Ipv4Addr, sandbox_dir: &Path) -> Vec<String> {
    let short = &id[..id.len().min(10)];
    let (netns, veth) = (format!("fa-{short}"), format!("fah-{short}"));
    let mut traces = Vec::new();
    if exists(format!("/run/netns/{netns}")) {
        traces.push(format!("netns {netns}"));
    }
    if exists(format!("/sys/class/net/{veth}")) {
        traces.push(format!("veth {veth}"));
    }
    if exists(format!("/sys/fs/cgroup/pids/forgeai/{id}")) || exists(format!("/sys/fs/cgroup/forgeai/{id}")) {
        traces.push("cgroup".into());
    }
    let set = std::process::Command::new("nft")
        .args(["list", "set", "inet", "forgeai", "sb_addrs"])
        .output()
        .expect("nft");
    if String::from_utf8_lossy(&set.stdout).contains(&format!("\"{veth}\" . {addr}")) {
        traces.push("nft element".into());
    }
    let holder = sandbox_dir.to_string_lossy().into_owned();
    for lease in std::fs::read_dir("/run/forgeai/subnets").expect("lease dir").flatten() {
        if std::fs::read_to_string(lease.path()).is_ok_and(|h| h == holder) {
            traces.push(format!("lease {}", lease.file_name().to_string_lossy()));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    for line in mountinfo.lines() {
        if let Some(point) = line.split(' ').nth(4).filter(|p| p.starts_with(&format!("{holder}/"))) {
            traces.push(format!("mount {point}"));
        }
    }
    traces
}
