//! The seccomp filter: inside a sandbox each denied system call fails with EPERM (clone3 with
//! ENOSYS, so the C library falls back to clone), while ordinary work goes on. The forgeai-v1
//! template build (`npm install`, `next build`) and `next dev` run under the same filter in
//! `sandbox.rs::forgeai_v1_template_builds_and_serves` and the end-to-end suites.
//!
//! The probe calls the kernel directly through Python's ctypes (python3 is a host package the
//! sandbox sees read-only), with arguments that would otherwise succeed or fail differently:
//! keyctl on the session keyring, unshare of a user namespace, a umount of /tmp.

mod common;

use common::Env;
use forgeai_sandbox::SandboxProvider;

const PROBE: &str = r#"
import ctypes, errno, os, platform
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
# x86_64 and aarch64 numbers of the calls the filter denies, with harmless arguments.
x86 = platform.machine() == "x86_64"
calls = {
    "bpf": ((321 if x86 else 280), 0, 0, 0),
    "keyctl": ((250 if x86 else 219), 0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": ((248 if x86 else 217), b"user", b"probe", b"x", 1, -3),
    "request_key": ((249 if x86 else 218), b"user", b"probe", 0, 0),
    "userfaultfd": ((323 if x86 else 282), 0),
    "perf_event_open": ((298 if x86 else 241), 0, 0, -1, -1, 0),
    "kexec_load": ((246 if x86 else 104), 0, 0, 0, 0),
    "kexec_file_load": ((320 if x86 else 294), -1, -1, 0, 0, 0),
    "init_module": ((175 if x86 else 105), 0, 0, b""),
    "finit_module": ((313 if x86 else 273), -1, b"", 0),
    "delete_module": ((176 if x86 else 106), b"probe", 0),
    "mount": ((165 if x86 else 40), b"none", b"/tmp", b"tmpfs", 0, 0),
    "umount2": ((166 if x86 else 39), b"/tmp", 0),
    "pivot_root": ((155 if x86 else 41), b"/tmp", b"/tmp"),
    "open_tree": (428, -100, b"/tmp", 0),
    "move_mount": (429, -1, b"", -1, b"", 0),
    "fsopen": (430, b"tmpfs", 0),
    "fsconfig": (431, -1, 0, 0, 0, 0),
    "fsmount": (432, -1, 0, 0),
    "fspick": (433, -100, b"/tmp", 0),
    "ptrace": ((101 if x86 else 117), 16, 1, 0, 0),  # PTRACE_ATTACH to the sandbox's pid 1
    "unshare(CLONE_NEWUSER)": ((272 if x86 else 97), CLONE_NEWUSER),
    "clone(CLONE_NEWUSER)": ((56 if x86 else 220), CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0),
    "clone3": (435, 0, 0),
}
for name, (nr, *args) in calls.items():
    ctypes.set_errno(0)
    ret = libc.syscall(nr, *[ctypes.c_long(a) if isinstance(a, int) else ctypes.c_char_p(a) for a in args])
    err = ctypes.get_errno()
    if ret == 0 and name.startswith("clone"):
        os._exit(0)  # a child that should never have been made
    print(f"{name} {ret} {errno.errorcode.get(err, err)}")
status = open("/proc/self/status").read()
print("filters", [l.split()[1] for l in status.splitlines() if l.startswith("Seccomp_filters")][0])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_calls_fail_with_eperm_and_ordinary_work_goes_on() {
    let env = Env::new().await;
    let id = env.create().await;
    env.provider
        .write_file(&id, "probe.py", PROBE.as_bytes())
        .await
        .expect("write probe");
    let out = env.run(&id, "python3 probe.py").await;
    assert_eq!(out.exit_code, 0, "probe failed: {}{}", out.stdout, out.stderr);
    let results: std::collections::BTreeMap<&str, &str> =
        out.stdout.lines().filter_map(|line| line.rsplit_once(' ')).collect();
    for call in [
        "bpf",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "perf_event_open",
        "kexec_load",
        "kexec_file_load",
        "init_module",
        "finit_module",
        "delete_module",
        "mount",
        "umount2",
        "pivot_root",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "ptrace",
        "unshare(CLONE_NEWUSER)",
        "clone(CLONE_NEWUSER)",
    ] {
        let line = out.stdout.lines().find(|l| l.starts_with(&format!("{call} ")));
        assert_eq!(
            line,
            Some(format!("{call} -1 EPERM").as_str()),
            "{call}: {}",
            out.stdout
        );
    }
    assert_eq!(results.get("clone3 -1"), Some(&"ENOSYS"), "{}", out.stdout);
    // Two filters are loaded (the EPERM list and clone3); without them this reads 0.
    assert!(out.stdout.contains("filters 2"), "{}", out.stdout);

    // Ordinary work: threads (clone without CLONE_NEWUSER, after clone3's ENOSYS), processes,
    // files, node.
    let work = env
        .run(
            &id,
            "node -e 'const {Worker}=require(\"worker_threads\"); new Worker(\"process.exit(0)\",{eval:true}).on(\"exit\",c=>console.log(\"worker\",c))' \
             && (sleep 0.1 & wait) && echo ok > f && cat f",
        )
        .await;
    assert_eq!(work.exit_code, 0, "{}{}", work.stdout, work.stderr);
    assert_eq!(work.stdout, "worker 0\nok\n");
}
