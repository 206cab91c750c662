//! Invoking the `synthforge` command and reading what it prints.

use std::ffi::OsStr;
use std::time::Duration;

use crate::binaries::bin_path;
use crate::process::{Finished, ProcSpec};

/// Upper bound for a whole small job (`run`, `submit --wait`): generous for a loaded 2-core CI
/// machine, but a hang still fails well inside the nextest terminate-after limit.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Upper bound for quick commands (`validate`, `status`).
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(30);

/// `synthforge ARGS...`, ready to [`ProcSpec::spawn`] or [`ProcSpec::run_to_end`].
/// Logs are plain and verbose enough to debug from the captured files.
pub fn synthforge<I, S>(args: I) -> ProcSpec
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let name = match args.first() {
        Some(sub) => format!("synthforge-{}", sub.to_string_lossy()),
        None => "synthforge".to_string(),
    };
    ProcSpec::new(name, bin_path())
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        )
}

/// The value of the last line of `text` of the form `key: value` (e.g. `output:` printed last
/// by `run`, `job_id:` printed by `submit`).
pub fn last_line_value(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_string()))
}

/// Asserts `run` printed `output: <url>` naming `expected` (a path or URL; a `file://` prefix
/// and a trailing slash are tolerated).
#[track_caller]
pub fn assert_prints_output(done: &Finished, expected: &str) {
    let printed = last_line_value(&done.stdout, "output")
        .unwrap_or_else(|| panic!("no `output:` line on stdout\n{}", done.describe()));
    let printed = printed.trim_end_matches('/');
    assert!(
        printed.ends_with(expected.trim_end_matches('/')),
        "printed `output: {printed}`, expected {expected}\n{}",
        done.describe()
    );
}
