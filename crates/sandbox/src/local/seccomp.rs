//! The seccomp filters every sandboxed process runs under, handed to bubblewrap, which loads
//! them just before it executes the sandbox's command (its own set-up still mounts).
//!
//! A deny list: what a Next.js dev server, npm and the template build never call, and what
//! gives code in a sandbox a way at the kernel beyond its namespaces (loading BPF or modules,
//! kernel keyrings, userfaultfd and perf as exploit primitives, new mounts, tracing, nested
//! user namespaces). Those fail with EPERM. `clone3` fails with ENOSYS instead: its flags sit
//! in memory a filter cannot read, and ENOSYS makes the C library fall back to `clone`, whose
//! flags the filter checks.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

/// Calls that fail with EPERM whatever their arguments.
const DENIED: &[(&str, i64)] = &[
    ("bpf", libc::SYS_bpf),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("open_tree", libc::SYS_open_tree),
    ("move_mount", libc::SYS_move_mount),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    // Every process a sandbox can see is its own (a PID namespace), so this only takes away
    // tracing as a way at the kernel; no dev server or package manager traces.
    ("ptrace", libc::SYS_ptrace),
];

/// Calls that fail with EPERM when their flags (argument `index`) ask for a new user
/// namespace: a nested one would hand the sandbox capabilities over fresh namespaces.
const DENIED_NEW_USER_NAMESPACE: &[(&str, i64, u8)] =
    &[("unshare", libc::SYS_unshare, 0), ("clone", libc::SYS_clone, 0)];

/// The compiled filters, in the byte form bubblewrap reads from `--add-seccomp-fd`.
#[derive(Debug, Clone)]
pub struct SeccompFilters {
    pub programs: Vec<Vec<u8>>,
}

impl SeccompFilters {
    /// Compiles the filters for the machine's architecture.
    pub fn new() -> Result<Self> {
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| Error::Unsupported {
            what: format!("no seccomp filter for {}: {e}", std::env::consts::ARCH),
            hint: "run on x86_64, aarch64 or riscv64".into(),
        })?;
        let compile = |what: &str, rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i64| -> Result<Vec<u8>> {
            let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch)
                .and_then(BpfProgram::try_from)
                .map_err(|e| Error::Provider(format!("cannot compile the seccomp filter ({what}): {e}")))?;
            Ok(filter
                .iter()
                .flat_map(|op| {
                    let mut bytes = [0u8; 8];
                    bytes[..2].copy_from_slice(&op.code.to_ne_bytes());
                    bytes[2] = op.jt;
                    bytes[3] = op.jf;
                    bytes[4..].copy_from_slice(&op.k.to_ne_bytes());
                    bytes
                })
                .collect())
        };
        let mut denied: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
        for (_, nr, index) in DENIED_NEW_USER_NAMESPACE {
            let new_user = SeccompCondition::new(
                *index,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(libc::CLONE_NEWUSER as u64),
                libc::CLONE_NEWUSER as u64,
            )
            .and_then(|condition| SeccompRule::new(vec![condition]))
            .map_err(|e| Error::Provider(format!("cannot build the seccomp rule: {e}")))?;
            denied.insert(*nr, vec![new_user]);
        }
        let clone3 = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
        Ok(SeccompFilters {
            programs: vec![
                compile("denied calls", denied, i64::from(libc::EPERM))?,
                compile("clone3", clone3, i64::from(libc::ENOSYS))?,
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile_to_whole_bpf_instructions() {
        let filters = SeccompFilters::new().expect("filters");
        assert_eq!(filters.programs.len(), 2);
        for program in &filters.programs {
            assert!(!program.is_empty() && program.len() % 8 == 0);
        }
    }
}
