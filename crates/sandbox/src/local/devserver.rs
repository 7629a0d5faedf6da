//! Keeps a template's dev server running in its sandbox: started with the sandbox, restarted
//! with backoff whenever it exits, stopped on kill. Its output goes to `dev.log` next to the
//! sandbox (outside the sandbox's view), truncated at each start; readers take it from an
//! offset, and never more than its last [`DEV_OUTPUT_MAX_BYTES`].

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::exec::{Launch, Output, SpawnSpec};
use super::spawner::SandboxProcess;
use crate::provider::{DEV_OUTPUT_MAX_BYTES, DevServerOutput, PROJECT_DIR};

/// A supervised dev server.
pub struct DevServer {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    starts: Arc<AtomicU64>,
}

impl DevServer {
    /// Starts supervising `command` in the sandbox described by `spec`.
    pub fn start(spec: Arc<SpawnSpec>, command: String, log: PathBuf) -> Self {
        let cancel = CancellationToken::new();
        let starts = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(supervise(spec, command, log, cancel.clone(), starts.clone()));
        DevServer { cancel, task, starts }
    }

    /// How many times the dev server has been started (1 + restarts).
    pub fn starts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed)
    }

    /// Stops the dev server and waits for its process tree to be gone.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

async fn supervise(
    spec: Arc<SpawnSpec>,
    command: String,
    log: PathBuf,
    cancel: CancellationToken,
    starts: Arc<AtomicU64>,
) {
    const MIN_BACKOFF: Duration = Duration::from_millis(250);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    // A server that stayed up this long was healthy: restart it promptly next time.
    const HEALTHY_RUN: Duration = Duration::from_secs(30);
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        starts.fetch_add(1, Ordering::Relaxed);
        match spawn(&spec, &command, &log).await {
            Ok(mut child) => {
                tokio::select! {
                    status = child.wait() => {
                        tracing::info!(?status, %command, "sandbox dev server exited; restarting");
                    }
                    _ = cancel.cancelled() => {
                        // SIGKILL to bwrap; --die-with-parent takes the server's tree down with it.
                        let _ = child.start_kill();
                        let _ = child.wait().await;
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, %command, "cannot start sandbox dev server"),
        }
        if started.elapsed() > HEALTHY_RUN {
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = cancel.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The dev server's log from byte `from` on (from its start when it is shorter: the server
/// restarted and truncated it), at most its last [`DEV_OUTPUT_MAX_BYTES`]. No log yet is empty.
pub fn read_output(log: &Path, from: u64) -> crate::Result<DevServerOutput> {
    let mut file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(DevServerOutput {
                text: String::new(),
                end: 0,
            });
        }
        Err(e) => return Err(crate::Error::io(format!("open {}", log.display()), e)),
    };
    let read = |file: &mut std::fs::File| -> std::io::Result<DevServerOutput> {
        let len = file.metadata()?.len();
        let start = if from > len { 0 } else { from }.max(len.saturating_sub(DEV_OUTPUT_MAX_BYTES));
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity((len - start) as usize);
        file.take(len - start).read_to_end(&mut bytes)?;
        Ok(DevServerOutput {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            end: len,
        })
    };
    read(&mut file).map_err(|e| crate::Error::io(format!("read {}", log.display()), e))
}

async fn spawn(spec: &Arc<SpawnSpec>, command: &str, log: &Path) -> crate::Result<SandboxProcess> {
    let launch = Launch {
        script: command.to_owned(),
        cwd: PROJECT_DIR.to_owned(),
        extra_env: BTreeMap::new(),
        output: Output::Log(log.to_path_buf()),
        what: format!("the dev server `{command}`"),
    };
    Ok(spec.spawn(launch).await?.process)
}
