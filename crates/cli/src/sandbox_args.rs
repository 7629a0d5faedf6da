//! The local sandbox provider's limits, from the command line and the environment.

use std::time::Duration;

use forgeai_sandbox::LocalConfig;

use crate::size::Limit;

/// Limits every sandbox is held to; see the README's security model.
#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Size of each sandbox's own disk, enforced by the kernel (e.g. `2GiB`; `off` for none).
    #[arg(long, global = true, env = "FORGEAI_SANDBOX_DISK", default_value = "2GiB")]
    pub sandbox_disk: Limit,
    /// No sandbox is created while the data dir's disk has less free space than this.
    #[arg(long, global = true, env = "FORGEAI_MIN_FREE_DISK", default_value = "2GiB")]
    pub min_free_disk: Limit,
    /// Anonymous memory all loaded sandboxes may use together; least recently used idle ones
    /// are unloaded to stay within it (default: half of this machine's memory; `off` for none).
    #[arg(long, global = true, env = "FORGEAI_SANDBOX_MEMORY_BUDGET")]
    pub sandbox_memory_budget: Option<Limit>,
    /// Idle sandboxes are unloaded (processes stopped, memory given back) after this long.
    #[arg(long, global = true, env = "FORGEAI_SANDBOX_IDLE_UNLOAD", default_value = "30m", value_parser = humantime::parse_duration)]
    pub sandbox_idle_unload: Duration,
}

impl SandboxArgs {
    pub fn apply(&self, config: &mut LocalConfig) {
        config.disk_bytes = self.sandbox_disk.0;
        config.min_free_disk_bytes = self.min_free_disk.0.unwrap_or(0);
        if let Some(budget) = &self.sandbox_memory_budget {
            config.memory_budget_bytes = budget.0;
        }
        config.idle_unload = self.sandbox_idle_unload;
    }
}
