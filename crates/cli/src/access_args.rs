//! Sessions and metrics access, from the command line and the environment.

use std::time::Duration;

use forgeai_server::ServerConfig;

/// See the README's security model.
#[derive(clap::Args, Debug, Clone)]
pub struct AccessArgs {
    /// `GET /metrics` needs `Authorization: Bearer <this token>`; without it (and without
    /// `--metrics-listen`) metrics are not served.
    #[arg(long, global = true, env = "FORGEAI_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Also serve `/metrics`, without a token, on this address of its own (e.g.
    /// `127.0.0.1:9100`); keep it off the public network.
    #[arg(long, global = true, env = "FORGEAI_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// How many days a browser session lasts (1 to 30).
    #[arg(long, global = true, env = "FORGEAI_SESSION_DAYS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=30))]
    pub session_days: u64,
}

impl AccessArgs {
    pub fn apply(&self, config: &mut ServerConfig) {
        config.metrics_token = self.metrics_token.clone().filter(|token| !token.trim().is_empty());
        config.session_ttl = Duration::from_secs(self.session_days * 24 * 3600);
    }
}
