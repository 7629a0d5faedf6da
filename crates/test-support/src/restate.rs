//! A throwaway `restate-server` (installed by `scripts/setup.sh`) for tests of the Restate
//! engine: its own base dir and loopback ports, ready when its admin API answers queries over
//! partitions, killed when dropped. It can be killed with SIGKILL and started again on the same
//! state, as a crash test needs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The binary `scripts/setup.sh` installs (and links as `/usr/local/bin/restate-server`).
pub const RESTATE_SERVER: &str = "/usr/local/lib/forgeai/restate-server-1.7.12/bin/restate-server";

/// A running restate-server.
pub struct TestRestate {
    dir: tempfile::TempDir,
    ingress_port: u16,
    admin_port: u16,
    node_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

impl TestRestate {
    /// Starts a restate-server and waits until it answers queries. Panics when the binary is
    /// missing (run `scripts/setup.sh`) or it does not come up within a minute.
    pub async fn start() -> TestRestate {
        assert!(
            Path::new(RESTATE_SERVER).exists(),
            "{RESTATE_SERVER} is missing: run scripts/setup.sh"
        );
        let mut server = TestRestate {
            dir: tempfile::tempdir().expect("a temp dir"),
            ingress_port: free_port(),
            admin_port: free_port(),
            node_port: free_port(),
            child: None,
        };
        server.resume().await;
        server
    }

    /// The ingress URL (`http://127.0.0.1:<port>`): where invocations are sent.
    pub fn ingress_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingress_port)
    }

    /// The admin API URL: deployments, invocations, queries.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Its base dir (state that survives [`TestRestate::kill`]).
    pub fn base_dir(&self) -> PathBuf {
        self.dir.path().join("base")
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same state and ports (after [`TestRestate::kill`]).
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "restate-server is still running");
        let log = std::fs::File::create(self.dir.path().join("restate.log")).expect("a log file");
        let child = Command::new(RESTATE_SERVER)
            .env("RESTATE_BASE_DIR", self.base_dir())
            // A fixed node name, so a restart reuses the state.
            .env("RESTATE_NODE_NAME", "forgeai-test")
            .env(
                "RESTATE_INGRESS__BIND_ADDRESS",
                format!("127.0.0.1:{}", self.ingress_port),
            )
            .env("RESTATE_ADMIN__BIND_ADDRESS", format!("127.0.0.1:{}", self.admin_port))
            .env("RESTATE_BIND_ADDRESS", format!("127.0.0.1:{}", self.node_port))
            .env("RESTATE_DISABLE_TELEMETRY", "true")
            .env("RESTATE_DEFAULT_NUM_PARTITIONS", "4")
            .env("RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE", "128MB")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("a log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {RESTATE_SERVER}: {e}"));
        self.child = Some(child);
        // /health answers first; queries over every partition work a little later, and just
        // after a restart a query can still reach the previous generation of a partition
        // ("node … was shut down"): ready means several answers in a row.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut answers = 0;
        loop {
            if self.query("SELECT count(*) AS n FROM sys_invocation").await.is_ok() {
                answers += 1;
                if answers == 5 {
                    return;
                }
            } else {
                answers = 0;
            }
            assert!(
                Instant::now() < deadline,
                "restate-server did not come up; its log is {}",
                self.dir.path().join("restate.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs a SQL query over its system tables (admin `/query`); the rows as JSON.
    pub async fn query(&self, sql: &str) -> Result<Vec<Value>, String> {
        let response = reqwest::Client::new()
            .post(format!("{}/query", self.admin_url()))
            .header("accept", "application/json")
            .json(&json!({ "query": sql }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        Ok(body["rows"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for TestRestate {
    fn drop(&mut self) {
        self.kill();
    }
}
