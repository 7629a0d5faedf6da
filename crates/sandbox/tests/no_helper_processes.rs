//! Creating and destroying sandboxes starts no `ip`, `nft`, `iptables`, `tc` or `sysctl`
//! process: the network is made over netlink, in-process.
//!
//! The test runs itself again in a private mount namespace where those programs are replaced
//! (bind mounts) by a script that records each start; the inner run creates and destroys 20
//! sandboxes, then starts `ip` once itself, which shows the recorder was in place.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use common::Env;
use forgeai_sandbox::SandboxProvider;

const TEST: &str = "creating_and_destroying_20_sandboxes_starts_no_network_tool";
const LOG_VAR: &str = "FORGEAI_TEST_TOOL_LOG";
const TOOLS: &[&str] = &["ip", "nft", "iptables", "ip6tables", "tc", "sysctl"];

#[test]
fn creating_and_destroying_20_sandboxes_starts_no_network_tool() {
    if std::env::var_os(LOG_VAR).is_some() {
        return inner();
    }
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("started.log");
    let recorder = dir.path().join("recorder.sh");
    std::fs::write(
        &recorder,
        format!(
            "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> {}\nexit 1\n",
            log.display()
        ),
    )
    .expect("write recorder");
    std::fs::set_permissions(&recorder, std::fs::Permissions::from_mode(0o755)).expect("chmod recorder");
    let mut replaced: Vec<PathBuf> = TOOLS
        .iter()
        .flat_map(|tool| ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(|dir| Path::new(dir).join(tool)))
        .filter_map(|path| path.canonicalize().ok())
        .collect();
    replaced.sort();
    replaced.dedup();
    assert!(
        replaced.iter().any(|p| p.ends_with("ip")),
        "iproute2 is installed (scripts/setup.sh)"
    );

    let mut inner = std::process::Command::new(std::env::current_exe().expect("test binary"));
    inner.args(["--exact", TEST, "--nocapture"]).env(LOG_VAR, &log);
    let recorder_for_child = recorder.clone();
    // SAFETY: runs between fork and exec of a single-threaded child; only makes system calls.
    unsafe {
        inner.pre_exec(move || {
            use rustix::mount::{MountPropagationFlags, mount_bind, mount_change};
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
            mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
            for path in &replaced {
                mount_bind(&recorder_for_child, path)?;
            }
            Ok(())
        });
    }
    let status = inner.status().expect("run the inner test");
    let started = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "the inner run failed; programs started: {started}");
    assert_eq!(
        started.lines().collect::<Vec<_>>(),
        ["ip recorder-check"],
        "only the inner run's own check may start a network tool"
    );
}

fn inner() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let env = Env::new().await;
        let ids = futures::future::join_all((0..20).map(|_| env.create())).await;
        for id in &ids {
            assert!(env.provider.kill(id).await.expect("kill"));
        }
    });
    let _ = std::process::Command::new("ip").arg("recorder-check").status();
}
