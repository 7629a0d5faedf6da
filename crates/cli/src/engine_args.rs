//! Which durable-execution engine runs the code-agent, from the command line and the
//! environment.

use std::net::SocketAddr;

use forgeai_restate::RestateConfig;

/// The engines forgeai can run its runs on.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// In-process, journaled in SQLite in the data dir: one machine, nothing else to run.
    Embedded,
    /// A Restate cluster (restate-server); needs PostgreSQL (`DATABASE_URL`) for projects and
    /// realtime messages, so that every forgeai node sees every run.
    Restate,
}

/// See the README's "Scale out".
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// The durable-execution engine.
    #[arg(long, global = true, env = "FORGEAI_ENGINE", value_enum, default_value_t = EngineKind::Embedded)]
    pub engine: EngineKind,
    /// Restate's ingress, where runs are sent.
    #[arg(
        long,
        global = true,
        env = "RESTATE_INGRESS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub restate_ingress_url: String,
    /// Restate's admin API, where forgeai registers its service and reads its runs.
    #[arg(
        long,
        global = true,
        env = "RESTATE_ADMIN_URL",
        default_value = "http://127.0.0.1:9070"
    )]
    pub restate_admin_url: String,
    /// Where forgeai's Restate service endpoint listens.
    #[arg(
        long,
        global = true,
        env = "FORGEAI_RESTATE_LISTEN",
        default_value = "127.0.0.1:9080"
    )]
    pub restate_listen: SocketAddr,
    /// The URL restate-server reaches that endpoint at (default: `http://<listen address>`; set
    /// it behind NAT or in containers).
    #[arg(long, global = true, env = "FORGEAI_RESTATE_ADVERTISE_URL")]
    pub restate_advertise_url: Option<String>,
}

impl EngineArgs {
    pub fn restate_config(&self) -> RestateConfig {
        RestateConfig {
            ingress_url: self.restate_ingress_url.clone(),
            admin_url: self.restate_admin_url.clone(),
        }
    }

    /// The endpoint's URL as restate-server should call it.
    pub fn restate_endpoint_url(&self) -> String {
        self.restate_advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.restate_listen))
    }
}
