//! Starting sandbox processes without forking the server.
//!
//! A `fork` copies the page tables of the whole server, makes every page either process
//! touches before the exec a copy-on-write fault, and shoots down TLBs on every core; with
//! hundreds of sandboxes starting at once that was about a third of the machine's CPU. Like
//! `posix_spawn`, a child is instead cloned with `CLONE_VM | CLONE_VFORK`: it runs on the
//! server's memory, makes only system calls on data prepared before the clone (the
//! [`ChildPlan`]), and execs, while the thread that cloned it waits.
//!
//! Those threads are a few long-lived spawner threads owned by the provider, with every signal
//! blocked: bwrap's `--die-with-parent` fires when the *thread* that created it ends, so
//! children cannot come from tokio's blocking pool, whose threads come and go; and no signal
//! handler of the server may run in a child that shares its memory.
//!
//! A child is then watched through its pidfd ([`SandboxProcess`]), which tokio's reactor polls.

use std::ffi::{CString, c_int, c_void};
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use rustix::io::FdFlags;
use rustix::process::{Signal, WaitId, WaitIdOptions, WaitIdStatus};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// How many children may be starting at once. Each start waits on the kernel (cgroup v1 joins
/// wait for an RCU grace period), so a few run side by side.
const SPAWNER_THREADS: usize = 8;
/// Stack of a child between clone and exec: it runs a handful of system calls.
const CHILD_STACK_BYTES: usize = 256 * 1024;

type Job = Box<dyn FnOnce(&mut ChildStack) + Send>;

/// The provider's spawner threads; they end when it is dropped (and with them, through
/// `--die-with-parent`, every sandbox process they started).
pub(super) struct Spawner {
    jobs: Sender<Job>,
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Spawner")
    }
}

impl Spawner {
    pub(super) fn new() -> Result<Spawner> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..SPAWNER_THREADS {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("sandbox-spawner-{n}"))
                .spawn(move || serve(&queue))
                .map_err(|e| Error::io("start a sandbox spawner thread", e))?;
        }
        Ok(Spawner { jobs })
    }

    /// Makes `plan()` on a spawner thread and starts the child it describes.
    pub(super) async fn spawn(
        &self,
        plan: impl FnOnce() -> Result<ChildPlan> + Send + 'static,
    ) -> Result<SandboxProcess> {
        let (done, started) = oneshot::channel();
        let job: Job = Box::new(move |stack| {
            let _ = done.send(
                plan().and_then(|plan| start(&plan, stack).map_err(|e| Error::io(format!("start {}", plan.what), e))),
            );
        });
        let gone = || Error::Provider("the sandbox spawner threads are gone".into());
        self.jobs.send(job).map_err(|_| gone())?;
        let pidfd = started.await.map_err(|_| gone())??;
        let pidfd = watch(pidfd).map_err(|e| Error::io("watch a sandbox process", e))?;
        Ok(SandboxProcess { pidfd, status: None })
    }
}

fn serve(queue: &Mutex<Receiver<Job>>) {
    let mut stack = ChildStack(vec![0u8; CHILD_STACK_BYTES]);
    // SAFETY: an all-ones set blocks every signal of this thread only; sigfillset initializes it.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    loop {
        let job = match super::slot::lock(queue).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job(&mut stack);
    }
}

/// Memory a child runs on until it execs; reused by its spawner thread.
pub(super) struct ChildStack(Vec<u8>);

/// Everything a child does between clone and exec, prepared beforehand: the child allocates
/// nothing and takes no lock.
pub(super) struct ChildPlan {
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Become the child's stdin, stdout and stderr.
    pub stdio: [OwnedFd; 3],
    /// Inherited by the program (the child clears their close-on-exec flag).
    pub inherit: Vec<OwnedFd>,
    /// Runs in the child after its stdio is set, before the exec; must only make system calls.
    pub setup: Box<dyn Fn() -> io::Result<()> + Send + Sync>,
    /// What is being started, for error messages.
    pub what: String,
}

struct ChildContext<'a> {
    plan: &'a ChildPlan,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// The errno the child failed with before its exec; 0 if it exec'd.
    error: AtomicI32,
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Clones and execs the child of `plan`; returns its pidfd once it exec'd.
fn start(plan: &ChildPlan, stack: &mut ChildStack) -> io::Result<OwnedFd> {
    let context = ChildContext {
        plan,
        argv: null_terminated(&plan.argv),
        envp: null_terminated(&plan.envp),
        error: AtomicI32::new(0),
    };
    let mut pidfd: c_int = -1;
    // Stacks grow down on every architecture Linux runs this on; the top is 16-byte aligned.
    let top = (stack.0.as_mut_ptr() as usize + stack.0.len()) & !15;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: the child runs `child_main` on its own stack with the context alive: CLONE_VFORK
    // suspends this thread (and so keeps `context`, `plan` and `stack` in place) until the child
    // execs or exits. Every signal is blocked in this thread, so in the child too until it has
    // reset their handlers.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut c_void,
            flags,
            &context as *const ChildContext as *mut c_void,
            &mut pidfd as *mut c_int,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    match context.error.load(Ordering::SeqCst) {
        0 => Ok(pidfd),
        errno => {
            // The child exited without exec'ing: collect it, then report why.
            let _ = rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

extern "C" fn child_main(context: *mut c_void) -> c_int {
    // SAFETY: `start` passes a context that outlives the child's life before exec.
    let context = unsafe { &*(context as *const ChildContext) };
    let error = prepare_child(context.plan).err().unwrap_or_else(|| {
        // SAFETY: program, argv and envp are NUL-terminated strings and NULL-terminated arrays
        // owned by the plan; execve returns only on failure.
        unsafe {
            libc::execve(
                context.plan.program.as_ptr(),
                context.argv.as_ptr(),
                context.envp.as_ptr(),
            )
        };
        io::Error::last_os_error()
    });
    context
        .error
        .store(error.raw_os_error().unwrap_or(libc::EINVAL).max(1), Ordering::SeqCst);
    // SAFETY: _exit ends the child without running the server's exit handlers.
    unsafe { libc::_exit(127) }
}

/// In the child: default signal handling, stdio, inherited descriptors, then the plan's setup.
fn prepare_child(plan: &ChildPlan) -> io::Result<()> {
    // The kernel's `struct sigaction` all zero is SIG_DFL with no flags and an empty mask, on
    // every architecture; the raw call also reaches the signals libc keeps for itself (32, 33),
    // which the server may have ignored.
    let default = [0u64; 4];
    let no_signals = 0u64;
    // SAFETY: resetting dispositions and the mask of this (new, single-threaded) process from
    // live buffers of the kernel's size; SIGKILL and SIGSTOP only fail.
    unsafe {
        for signal in 1..=libc::SIGRTMAX() {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null::<c_void>(),
                8,
            );
        }
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &no_signals as *const u64,
            std::ptr::null::<c_void>(),
            8,
        );
    }
    let [stdin, stdout, stderr] = &plan.stdio;
    rustix::stdio::dup2_stdin(stdin)?;
    rustix::stdio::dup2_stdout(stdout)?;
    rustix::stdio::dup2_stderr(stderr)?;
    for fd in &plan.inherit {
        rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
    }
    (plan.setup)()
}

/// A process started in a sandbox. Dropping it kills it (and, through bwrap, its whole tree).
pub struct SandboxProcess {
    pidfd: AsyncFd<OwnedFd>,
    status: Option<ExitStatus>,
}

impl SandboxProcess {
    /// Waits for the process to end.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        loop {
            let mut ready = self.pidfd.readable().await?;
            match rustix::process::waitid(
                WaitId::PidFd(self.pidfd.get_ref().as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            )? {
                Some(status) => {
                    let status = exit_status(&status);
                    self.status = Some(status);
                    return Ok(status);
                }
                None => ready.clear_ready(),
            }
        }
    }

    /// Sends SIGKILL, unless the process has been collected already.
    pub fn start_kill(&mut self) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        match rustix::process::pidfd_send_signal(self.pidfd.get_ref(), Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        if self.status.is_some() {
            return;
        }
        let _ = self.start_kill();
        // Collected in the background so no zombie is left; SIGKILL makes that quick.
        let Ok(pidfd) = rustix::io::dup(self.pidfd.get_ref()) else {
            tracing::warn!("cannot keep a killed sandbox process to collect it");
            return;
        };
        let collect = |pidfd: &OwnedFd| {
            let _ = rustix::process::waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Ok(pidfd) = watch(pidfd) {
                        // Readable once it has exited, so collecting it does not block.
                        let _ = pidfd.readable().await;
                        collect(pidfd.get_ref());
                    }
                });
            }
            Err(_) => collect(&pidfd),
        }
    }
}

/// Registers a pidfd with tokio's reactor: it turns readable when the process has exited.
fn watch(pidfd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is open and keeps its one descriptor until the `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// The exit status `waitid` reported, as the standard library represents it.
fn exit_status(status: &WaitIdStatus) -> ExitStatus {
    let raw = match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => (code & 0xff) << 8,
        (None, Some(signal)) if status.dumped() => signal | 0x80,
        (None, Some(signal)) => signal,
        (None, None) => 0,
    };
    ExitStatus::from_raw(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// `/bin/sh -c <script>` with stdout into a pipe; answers the process and what it printed.
    async fn run(
        spawner: &Spawner,
        script: &str,
        setup: impl Fn() -> io::Result<()> + Send + Sync + 'static,
    ) -> Result<(SandboxProcess, String)> {
        let (reader, writer) = io::pipe().expect("pipe");
        let stdin = OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
        let err = writer.try_clone().expect("dup");
        let script = CString::new(script).expect("script");
        let plan = move || {
            Ok(ChildPlan {
                program: c"/bin/sh".into(),
                argv: vec![c"sh".into(), c"-c".into(), script],
                envp: vec![c"PATH=/usr/bin:/bin".into()],
                stdio: [stdin, writer.into(), err.into()],
                inherit: Vec::new(),
                setup: Box::new(setup),
                what: "a test script".into(),
            })
        };
        let process = spawner.spawn(plan).await?;
        let mut output = String::new();
        tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())
            .expect("receiver")
            .read_to_string(&mut output)
            .await
            .expect("output");
        Ok((process, output))
    }

    #[tokio::test]
    async fn exit_codes_and_signals_are_reported() {
        let spawner = Spawner::new().expect("spawner");
        let (mut process, output) = run(&spawner, "echo hello; exit 3", || Ok(())).await.expect("spawn");
        assert_eq!(output, "hello\n");
        assert_eq!(process.wait().await.expect("wait").code(), Some(3));
        // Collected once; asking again answers the same.
        assert_eq!(process.wait().await.expect("wait").code(), Some(3));

        let (mut process, _) = run(&spawner, "exec 1>&- 2>&-; kill -TERM $$", || Ok(()))
            .await
            .expect("spawn");
        assert_eq!(process.wait().await.expect("wait").signal(), Some(libc::SIGTERM));
    }

    #[tokio::test]
    async fn the_child_starts_with_no_signal_blocked_or_ignored() {
        // The test harness ignores SIGPIPE and the spawner threads block every signal; a
        // program that inherited either would misbehave (a pipeline that never ends).
        let spawner = Spawner::new().expect("spawner");
        let (mut process, output) = run(&spawner, "grep -E '^Sig(Blk|Ign)' /proc/self/status", || Ok(()))
            .await
            .expect("spawn");
        assert!(process.wait().await.expect("wait").success());
        assert_eq!(output, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    }

    #[tokio::test]
    async fn a_failure_before_exec_is_an_error_naming_what_was_started() {
        let spawner = Spawner::new().expect("spawner");
        let failed = run(&spawner, "true", || Err(io::Error::from_raw_os_error(libc::EACCES))).await;
        let message = failed.err().expect("an error").to_string();
        assert!(message.contains("a test script"), "{message}");
        assert!(
            message.contains(&io::Error::from_raw_os_error(libc::EACCES).to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_child_that_dies_with_its_parent_lives_as_long_as_the_spawner() {
        // bwrap's --die-with-parent is PR_SET_PDEATHSIG: it fires when the *thread* that
        // started the process ends. Blocking-pool threads that end after 50 ms idle would kill
        // such a child at once; the spawner's own threads keep it until the spawner goes.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_keep_alive(std::time::Duration::from_millis(50))
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let spawner = Spawner::new().expect("spawner");
            let script = "exec setpriv --pdeathsig KILL -- sleep 60 >/dev/null 2>&1";
            let (mut process, _) = run(&spawner, script, || Ok(())).await.expect("spawn");
            let waited = tokio::time::timeout(std::time::Duration::from_secs(1), process.wait()).await;
            assert!(waited.is_err(), "the child died early: {waited:?}");
            drop(spawner);
            let status = tokio::time::timeout(std::time::Duration::from_secs(10), process.wait())
                .await
                .expect("the child died with its spawner thread")
                .expect("wait");
            assert_eq!(status.signal(), Some(libc::SIGKILL));
        });
    }

    #[tokio::test]
    async fn dropping_a_process_kills_and_collects_it() {
        let spawner = Spawner::new().expect("spawner");
        let (reader, writer) = io::pipe().expect("pipe");
        let stdin = OwnedFd::from(std::fs::File::open("/dev/null").expect("/dev/null"));
        let err = writer.try_clone().expect("dup");
        let plan = move || {
            Ok(ChildPlan {
                program: c"/bin/sh".into(),
                argv: vec![c"sh".into(), c"-c".into(), c"echo $$; exec sleep 60".into()],
                envp: vec![c"PATH=/usr/bin:/bin".into()],
                stdio: [stdin, writer.into(), err.into()],
                inherit: Vec::new(),
                setup: Box::new(|| Ok(())),
                what: "sleep".into(),
            })
        };
        let process = spawner.spawn(plan).await.expect("spawn");
        let mut pid = String::new();
        let mut reader = tokio::io::BufReader::new(
            tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).expect("receiver"),
        );
        tokio::io::AsyncBufReadExt::read_line(&mut reader, &mut pid)
            .await
            .expect("pid");
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
        assert!(proc_dir.exists());
        drop(process);
        // Gone entirely (not a zombie) once collected in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while proc_dir.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} still exists",
                proc_dir.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
