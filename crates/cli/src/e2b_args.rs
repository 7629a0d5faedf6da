//! Where sandboxes run, and the E2B settings, named as E2B's SDKs name them.

use std::time::Duration;

use anyhow::{Result, bail};
use forgeai_e2b::E2bConfig;

/// Which sandbox provider runs the projects' sandboxes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderKind {
    /// On this machine: overlayfs copies of the template under bubblewrap (needs root).
    Local,
    /// In E2B's cloud, or a self-hosted E2B: nodes keep no sandbox state.
    E2b,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ProviderArgs {
    /// Where sandboxes run: `local` (this machine) or `e2b` (E2B's cloud or a self-hosted E2B).
    #[arg(
        long,
        global = true,
        env = "FORGEAI_SANDBOX_PROVIDER",
        value_enum,
        default_value = "local"
    )]
    pub sandbox_provider: ProviderKind,
    /// E2B's API key (e2b.dev dashboard, API Keys tab), sent as `X-API-Key`.
    #[arg(long, global = true, env = "E2B_API_KEY", hide_env_values = true)]
    pub e2b_api_key: Option<String>,
    /// E2B's domain: sandboxes are reached at `<port>-<sandbox>.<domain>`.
    #[arg(long, global = true, env = "E2B_DOMAIN", default_value = "e2b.app")]
    pub e2b_domain: String,
    /// E2B's control plane (default `https://api.<E2B_DOMAIN>`).
    #[arg(long, global = true, env = "E2B_API_URL")]
    pub e2b_api_url: Option<String>,
    /// Send every sandbox request (envd and ports) here, routed by the `E2b-Sandbox-Id` and
    /// `E2b-Sandbox-Port` headers, as E2B's proxy does for a self-hosted E2B on loopback.
    #[arg(long, global = true, env = "E2B_SANDBOX_URL")]
    pub e2b_sandbox_url: Option<String>,
}

impl ProviderArgs {
    /// The E2B provider's settings; `keepalive` is the timeout sandboxes are given while used.
    pub fn e2b_config(&self, preview_domain: &str, preview_port: u16, keepalive: Duration) -> Result<E2bConfig> {
        let Some(api_key) = self.e2b_api_key.clone().filter(|key| !key.trim().is_empty()) else {
            bail!(
                "FORGEAI_SANDBOX_PROVIDER=e2b needs E2B's API key: set E2B_API_KEY (e2b.dev dashboard, API Keys tab; \
                 for a self-hosted E2B, a key of that installation)"
            );
        };
        let mut config = E2bConfig::new(api_key);
        config.domain = self.e2b_domain.clone();
        config.api_url = self.e2b_api_url.clone();
        config.sandbox_url = self.e2b_sandbox_url.clone();
        config.keepalive = keepalive;
        config.preview_domain = preview_domain.to_owned();
        config.preview_port = Some(preview_port);
        Ok(config)
    }
}
