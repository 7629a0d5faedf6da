//! The `forgeai-v1` template cache CI keeps between runs (`FORGEAI_TEMPLATE_CACHE`): tests that
//! need real Next.js sandboxes take the template from there, building it once per recipe.

use std::path::{Path, PathBuf};

use forgeai_sandbox::{Template, forgeai_v1_recipe};

/// The variable naming the cache directory (a forgeai data dir).
pub const TEMPLATE_CACHE_VAR: &str = "FORGEAI_TEMPLATE_CACHE";

/// The cache directory, when [`TEMPLATE_CACHE_VAR`] names one.
pub fn template_cache() -> Option<PathBuf> {
    std::env::var_os(TEMPLATE_CACHE_VAR)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}

/// `forgeai-v1` from the template cache `cache` (a data dir), built into it first when
/// `Template::load` fails there or the cached one was built by another recipe (its
/// `forgeai-template.json` names the recipe, see [`forgeai_v1_recipe`]); also says whether it
/// was built. Concurrent callers (test binaries run one after another, but tests in one binary
/// run in parallel) wait for one build under a lock file.
///
/// The build runs npm in a sandbox whose files live in the build's data dir, which the sandbox
/// user must be able to reach — a cache under `$HOME` often is not (`/root` is 0700). So it
/// builds in a scratch data dir under the temp dir, then moves the finished template into the
/// cache under a temporary name and renames it into place. An interrupted
/// run leaves at most the scratch dir (whose build sandbox, mounts and files the next build
/// there sweeps away) and temporary directories the next run removes.
pub async fn cached_forgeai_v1(cache: &Path) -> (Template, bool) {
    let hash = |v: &dyn Fn(&mut std::hash::DefaultHasher)| {
        use std::hash::Hasher;
        let mut h = std::hash::DefaultHasher::new();
        v(&mut h);
        format!("{:016x}", h.finish())
    };
    let templates = cache.join("templates");
    std::fs::create_dir_all(&templates).unwrap_or_else(|e| panic!("create {}: {e}", templates.display()));
    let _lock = FileLock::exclusive(&templates.join(".cache-forgeai-v1.lock"));
    if let Ok(t) = Template::load(cache, "forgeai-v1")
        && t.config.recipe.as_deref() == Some(forgeai_v1_recipe().as_str())
    {
        return (t, false);
    }
    // Named after the cache so the next run builds in the same place and cleans up after an
    // interrupted one.
    let scratch = std::env::temp_dir().join(format!(
        "forgeai-v1-build-{}",
        hash(&|h| std::hash::Hash::hash(cache, h))
    ));
    eprintln!(
        "building forgeai-v1 in {} for the cache {} (npm, ~500 MB)",
        scratch.display(),
        cache.display()
    );
    let built = forgeai_sandbox::build_template("forgeai-v1", &scratch)
        .await
        .expect("build forgeai-v1");
    let (dest, incoming, stale) = (
        templates.join("forgeai-v1"),
        templates.join(".incoming-forgeai-v1"),
        templates.join(".stale-forgeai-v1"),
    );
    let remove = |d: &Path| match std::fs::remove_dir_all(d) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove {}: {e}", d.display()),
        _ => {}
    };
    remove(&incoming);
    remove(&stale);
    if let Err(e) = std::fs::rename(&built.dir, &incoming) {
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EXDEV),
            "move {} to {}: {e}",
            built.dir.display(),
            incoming.display()
        );
        // Another filesystem: copy, keeping the sandbox user's ownership.
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&built.dir)
            .arg(&incoming)
            .status()
            .unwrap();
        assert!(st.success(), "copy {} to {}", built.dir.display(), incoming.display());
    }
    if dest.exists() {
        std::fs::rename(&dest, &stale).unwrap_or_else(|e| panic!("move {} aside: {e}", dest.display()));
    }
    std::fs::rename(&incoming, &dest).unwrap_or_else(|e| panic!("install {}: {e}", dest.display()));
    remove(&stale);
    // The build's provider keeps its sandboxes directory mounted on itself (see the crate's
    // `mounts.rs`); nothing is mounted under it any more, so it can go.
    let _ = std::process::Command::new("umount")
        .arg(scratch.join("sandboxes"))
        .status();
    remove(&scratch);
    (
        Template::load(cache, "forgeai-v1").expect("load the installed template"),
        true,
    )
}

/// An exclusive flock(2) on a file, released on drop (or when the process dies).
struct FileLock(std::fs::File);
impl FileLock {
    fn exclusive(path: &Path) -> FileLock {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap();
        // SAFETY: flock(2) on a descriptor we own. Blocking the thread is fine: the caller waits
        // for the template anyway.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "lock {}", path.display());
        FileLock(f)
    }
}
impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}
