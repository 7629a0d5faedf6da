//! The two host programs the provider still runs, neither on a sandbox's create or destroy
//! path: `mkfs.ext4` (once per disk size) and `cp -a` (once per template built).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, IoContext, Result};

/// Runs `program` and returns its stdout; a failure carries its stderr.
pub(crate) fn run(program: &Path, args: &[&std::ffi::OsStr]) -> Result<String> {
    let command = format!(
        "{} {}",
        program.display(),
        args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")
    );
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("start `{command}`"))?;
    if !out.status.success() {
        return Err(Error::Tool {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
