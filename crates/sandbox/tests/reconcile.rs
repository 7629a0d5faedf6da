//! Leftovers of sandboxes whose forgeai died or whose directory was removed are cleaned up by
//! the next provider on the same data dir, and nothing of another data dir is touched.

mod common;

use common::*;
use forgeai_sandbox::{LocalConfig, LocalProvider, SandboxProvider};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_dead_provider_and_a_removed_sandbox_dir_are_removed() {
    require_root();
    let bystander = Env::new().await;
    let other_id = bystander.create().await;
    let (_, other_addr) = bystander.provider.network(&other_id).await.unwrap();
    let other_dir = bystander
        .dir
        .path()
        .canonicalize()
        .unwrap()
        .join("sandboxes")
        .join(&other_id);

    let dir = tempfile::Builder::new()
        .prefix("forgeai-sbx-reconcile-")
        .tempdir()
        .unwrap();
    let crashed = LocalProvider::new(LocalConfig::new(dir.path())).await.unwrap();
    crashed.ensure_static_template().await.unwrap();
    let removed = crashed.create("static", Default::default()).await.unwrap().id;
    let kept = crashed.create("static", Default::default()).await.unwrap().id;
    crashed.write_file(&kept, "kept.txt", b"kept").await.unwrap();
    let mut addrs = Vec::new();
    for id in [&removed, &kept] {
        addrs.push(crashed.network(id).await.unwrap().1);
    }
    let sandboxes = dir.path().canonicalize().unwrap().join("sandboxes");
    // The provider goes away without unloading anything, as when forgeai is killed. Its
    // tasks may hold it for a moment longer; a killed process's lock would be gone at once.
    drop(crashed);
    wait_for_owner_lock(dir.path()).await;
    assert!(!runtime_traces(&removed, addrs[0], &sandboxes.join(&removed)).is_empty());
    // Everything of that sandbox's directory but its mount points goes.
    let _ = std::process::Command::new("rm")
        .arg("-rf")
        .arg("--one-file-system")
        .arg(sandboxes.join(&removed))
        .status();

    let env = Env::in_dir(dir, |_| {}).await;
    for (id, addr) in [(&removed, addrs[0]), (&kept, addrs[1])] {
        let traces = runtime_traces(id, addr, &sandboxes.join(id));
        assert!(traces.is_empty(), "left of {id}: {traces:?}");
    }
    // The sandbox whose directory is intact comes back with its files; the other is gone.
    assert_eq!(env.run(&kept, "cat kept.txt").await.stdout, "kept");
    assert!(env.provider.connect(&removed).await.unwrap_err().is_gone());
    assert!(
        !sandboxes.join(&removed).exists(),
        "what was left of its directory is gone"
    );
    assert_eq!(env.provider.list(), std::slice::from_ref(&kept));
    // Another data dir's live sandbox was not touched.
    let traces = runtime_traces(&other_id, other_addr, &other_dir);
    assert_eq!(
        traces.len(),
        7,
        "netns, veth, cgroup, element, lease, 2 mounts: {traces:?}"
    );
    assert_eq!(bystander.run(&other_id, "echo alive").await.stdout, "alive\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_and_cgroup_of_a_deleted_data_dir_are_removed_by_any_provider() {
    require_root();
    let gone = tempfile::Builder::new().prefix("forgeai-sbx-gone-").tempdir().unwrap();
    let crashed = LocalProvider::new(LocalConfig::new(gone.path())).await.unwrap();
    crashed.ensure_static_template().await.unwrap();
    let id = crashed.create("static", Default::default()).await.unwrap().id;
    let addr = crashed.network(&id).await.unwrap().1;
    let sandbox_dir = gone.path().canonicalize().unwrap().join("sandboxes").join(&id);
    drop(crashed);
    wait_for_owner_lock(gone.path()).await;
    // The whole data dir goes, its mounts first (as a reboot would take them).
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(gone.path().canonicalize().unwrap().to_str().unwrap()))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        // Lazily: the sandbox's processes still hold them.
        let status = std::process::Command::new("umount")
            .arg("-l")
            .arg(&mount)
            .status()
            .unwrap();
        assert!(status.success(), "umount -l {mount}");
    }
    drop(gone);
    let traces = runtime_traces(&id, addr, &sandbox_dir);
    assert_eq!(traces.len(), 5, "netns, veth, cgroup, element, lease: {traces:?}");

    // Any provider's reconcile (at its start, or later) removes them.
    let env = Env::new().await;
    env.provider.reconcile().await.unwrap();
    let traces = runtime_traces(&id, addr, &sandbox_dir);
    assert!(traces.is_empty(), "{traces:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_leaves_no_mount_behind() {
    let env = Env::new().await;
    let id = env.create().await;
    let data_dir = env.dir.path().canonicalize().unwrap();
    env.provider.shutdown().await;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours: Vec<&str> = mountinfo
        .lines()
        .filter(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|p| p.starts_with(data_dir.to_str().unwrap()))
        })
        .collect();
    assert!(ours.is_empty(), "{ours:#?}");
    if let Err(e) = env.provider.connect(&id).await {
        panic!("the sandbox comes back after a shutdown: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_provider_on_the_same_data_dir_leaves_the_owners_sandboxes_alone() {
    let env = Env::new().await;
    let id = env.create().await;
    let (_, addr) = env.provider.network(&id).await.unwrap();
    let sandbox_dir = env.dir.path().canonicalize().unwrap().join("sandboxes").join(&id);
    // As `forgeai template build` does next to a running `forgeai serve`.
    let second = LocalProvider::new(LocalConfig::new(env.dir.path())).await.unwrap();
    assert_eq!(second.reconcile().await.unwrap(), Default::default());
    assert_eq!(runtime_traces(&id, addr, &sandbox_dir).len(), 7);
    assert_eq!(env.run(&id, "echo alive").await.stdout, "alive\n");
}

/// Waits until no provider holds the data dir's owner lock.
async fn wait_for_owner_lock(data_dir: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(data_dir.join("sandboxes.lock")).unwrap();
    let free = eventually(std::time::Duration::from_secs(10), || async {
        // SAFETY: flock on a descriptor this function owns; closing it releases the lock.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    })
    .await;
    assert!(free, "the dropped provider still holds the data dir");
    // SAFETY: as above.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
}
