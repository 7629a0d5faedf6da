//! How the binary reports a plain user error: one line with the chain of causes, exit code 1, and
//! no stack trace, even with `RUST_BACKTRACE=1` in the environment; the trace only with debug
//! logging. No root, sandbox or model needed.

use std::process::{Command, Output};

fn forgeai(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forgeai"));
    command
        .env("FORGEAI_DATA_DIR", data_dir)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("FORGEAI_LOG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("DATABASE_URL");
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_user_error_is_one_line_without_a_stack_trace() {
    let data = tempfile::tempdir().unwrap();
    let output = forgeai(data.path()).args(["run", "Build a page"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: no model is configured: set OPENAI_API_KEY"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("Backtrace"),
        "{stderr}"
    );
}

#[test]
fn causes_are_chained_on_one_line() {
    // A data dir below a regular file cannot be created: the store's error and its cause.
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let output = forgeai(&file.join("data"))
        .args(["users", "add", "alice"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(
        stderr.starts_with("error: cannot open the project database: cannot create the data directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Not a directory"),
        "the cause is on the same line: {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("acktrace"), "{stderr}");
}

#[test]
fn debug_logging_shows_the_stack_trace() {
    let data = tempfile::tempdir().unwrap();
    let output = forgeai(data.path())
        .env("FORGEAI_LOG", "debug")
        .args(["run", "Build a page"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr(&output);
    assert!(stderr.contains("error: no model is configured"), "{stderr}");
    assert!(stderr.contains("Stack backtrace:"), "{stderr}");
}
