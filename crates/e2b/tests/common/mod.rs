//! The E2B tests' harness: a mock E2B over local sandboxes on a throwaway data dir, whose
//! sandboxes are all killed when the harness is dropped (also when a test panics).
#![allow(dead_code)]

use std::time::Duration;

use forgeai_e2b::{E2bConfig, E2bProvider};
use forgeai_sandbox::local::Limits;
use forgeai_sandbox::{LocalConfig, LocalProvider};
use forgeai_test_support::MockE2b;

pub struct E2bEnv {
    pub mock: MockE2b,
    pub local: LocalProvider,
    pub dir: tempfile::TempDir,
}

impl E2bEnv {
    pub async fn new() -> E2bEnv {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the E2B tests run local sandboxes and must run as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("forgeai-e2b-test-")
            .tempdir()
            .expect("tempdir");
        let mut config = LocalConfig::new(dir.path());
        config.limits = Limits {
            memory_bytes: Some(512 << 20),
            pids: Some(256),
            cpu_cores: None,
            cpu_shares: Some(512),
        };
        let local = LocalProvider::new(config).await.expect("local provider");
        local.ensure_static_template().await.expect("static template");
        let mock = MockE2b::start(local.clone(), &["static"]).await;
        E2bEnv { mock, local, dir }
    }

    /// The E2B provider pointed at the mock, as `FORGEAI_SANDBOX_PROVIDER=e2b` with the mock's
    /// `E2B_*` variables would make it.
    pub fn config(&self) -> E2bConfig {
        let mut config = E2bConfig::new(self.mock.api_key());
        config.domain = self.mock.domain().to_owned();
        config.api_url = Some(self.mock.api_url());
        config.sandbox_url = Some(self.mock.sandbox_url());
        config.request_timeout = Duration::from_secs(30);
        config
    }

    pub fn provider(&self) -> E2bProvider {
        E2bProvider::new(self.config()).expect("E2B provider")
    }
}

impl Drop for E2bEnv {
    fn drop(&mut self) {
        let local = self.local.clone();
        let cleanup = || {
            tokio::runtime::Handle::current().block_on(async move {
                if let Err(e) = local.kill_all().await {
                    eprintln!("sandbox cleanup failed: {e}");
                }
            })
        };
        tokio::task::block_in_place(cleanup);
    }
}
