//! The binary's command surface. Also makes `cargo test`/`cargo nextest run` build
//! `target/<profile>/synthforge`, which the end-to-end tests in tests/ run as a process.

use std::process::Command;

#[test]
fn help_lists_every_subcommand() {
    let out = Command::new(env!("CARGO_BIN_EXE_synthforge"))
        .arg("--help")
        .output()
        .expect("run synthforge --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "run",
        "coordinator",
        "worker",
        "submit",
        "status",
        "cancel",
        "validate",
        "inspect",
        "mock-backend",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "`{cmd}` missing from --help:\n{text}"
        );
    }
}

#[test]
fn unknown_job_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_synthforge"))
        .args(["validate", "/nonexistent/job.yaml"])
        .output()
        .expect("run synthforge validate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/job.yaml"), "{err}");
}
