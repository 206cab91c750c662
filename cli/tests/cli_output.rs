//! What the command prints when its output is not a terminal: progress lines for a redirected
//! `run`, no colour codes, and a quiet exit when the reader of stdout goes away.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_synthforge"));
    c.env_remove("RUST_LOG");
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sf-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A job of `rows` seed rows against a backend at `port`, output under `dir`.
fn write_job(dir: &Path, rows: usize, port: u16) -> PathBuf {
    let input = dir.join("seeds.jsonl");
    let lines: Vec<String> = (0..rows)
        .map(|i| format!(r#"{{"id": "r{i}", "text": "seed passage number {i}"}}"#))
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let job = dir.join("job.yaml");
    std::fs::write(
        &job,
        format!(
            "name: progress-lines\nseed: 1\ninput:\n  path: {}\n  format: jsonl\n  \
             id_column: id\n  text_column: text\n  rows_per_task: 4\npipeline:\n  \
             - stage: generate\n    backend: mock\n    template: \"Rewrite: {{{{ text }}}}\"\n    \
             max_tokens: 8\nbackends:\n  mock:\n    url: http://127.0.0.1:{port}/v1\n    \
             model: mock-model\n    max_concurrency: 4\noutput:\n  path: {}\n",
            input.display(),
            dir.join("out").display()
        ),
    )
    .unwrap();
    job
}

struct Mock(Child);

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The mock backend as a process, answering after `latency_ms`.
fn start_mock(latency_ms: u64) -> (Mock, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = bin()
        .args([
            "mock-backend",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--latency-ms",
            &latency_ms.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mock-backend");
    let mock = Mock(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mock backend did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (mock, port)
}

#[test]
fn redirected_run_prints_progress_lines_without_colour() {
    let dir = temp_dir("progress");
    let (_mock, port) = start_mock(150);
    let job = write_job(&dir, 24, port);
    let out = bin()
        .current_dir(&dir)
        .args(["run", "--verbose", "--progress-every", "0.2", "--state-dir"])
        .arg(dir.join("state"))
        .arg(&job)
        .output()
        .expect("run synthforge run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed:\n{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    // One line at the start, more while it runs (24 rows at 150 ms, 2 workers), one at the end.
    assert!(lines.len() >= 3, "too few progress lines:\n{err}");
    for l in &lines {
        // A JSONL input is planned by byte ranges: its row count is known as tasks read it,
        // so a line before the end may count tasks instead.
        let counted = l.contains("/24 rows (") || (l.contains(" rows, ") && l.contains(" tasks ("));
        assert!(counted, "no row or task count in `{l}`");
        for part in [" rows/s ", " ETA ", " failed ", " elapsed "] {
            assert!(l.contains(part), "`{part}` missing from `{l}`");
        }
    }
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("24/24 rows (100.0%)")),
        "the last line counts every row: {lines:?}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("progress: 24/24 rows (100.0%)"),
        "{err}"
    );
    // --verbose logs at info level: the logs are there, without ANSI colour codes.
    assert!(err.contains("INFO"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in redirected stderr:\n{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_into_a_closed_pipe_exits_quietly() {
    let dir = temp_dir("pipe");
    let job = write_job(&dir, 8, 9);
    let mut child = bin()
        .current_dir(&dir)
        .args(["validate", "--show", "8"])
        .arg(&job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run synthforge validate");
    // `| head -0`: the reader goes away before anything is written.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("Broken pipe"), "{err}");
    assert!(status.success(), "{status}: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn client_help_has_no_server_tls_flag_and_every_flag_is_explained() {
    for sub in ["submit", "status", "cancel", "worker"] {
        let out = bin().args([sub, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(!text.contains("--tls-client-ca"), "{sub}:\n{text}");
        assert!(text.contains("--tls-ca"), "{sub}:\n{text}");
    }
    let out = bin().args(["worker", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("--exit-when-idle"), "{text}");
    let out = bin().args(["run", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    for flag in ["<JOB>", "--no-progress", "--progress-every"] {
        let i = lines
            .iter()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{text}"));
        // Help follows on the same line (short layout) or the next one (long layout).
        let same = lines[i].trim_start()[flag.len()..].trim();
        let same = same.strip_prefix("<SECONDS>").unwrap_or(same).trim();
        let help = if same.is_empty() {
            lines.get(i + 1).map_or("", |l| l.trim())
        } else {
            same
        };
        assert!(
            !help.is_empty() && !help.starts_with('-') && !help.starts_with('<'),
            "{flag} has no help:\n{text}"
        );
    }
}
