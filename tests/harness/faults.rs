//! Helpers for fault and security tests: waiting for log lines, finding the files of an output
//! directory or a secret in a tree, and a recording TCP relay that shows which headers a
//! client really sent to a backend (e.g. that an API key reached `Authorization`).
//!
//! Signals themselves are on [`crate::Proc`] (`pause`, `resume`, `terminate`, `kill`).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::process::Proc;
use crate::wait::wait_until;

/// How many times `needle` occurs in the process's stdout and stderr so far.
pub fn log_count(proc: &Proc, needle: &str) -> usize {
    proc.stdout().matches(needle).count() + proc.stderr().matches(needle).count()
}

/// Waits until the process has logged `needle` at least `times` times; panics with the log
/// tail of the process when it does not happen within `timeout`.
#[track_caller]
pub fn wait_for_log(proc: &Proc, needle: &str, times: usize, timeout: Duration) {
    if !wait_until(timeout, || log_count(proc, needle) >= times) {
        panic!(
            "timed out after {timeout:?} waiting for {times}× `{needle}` in the logs of {} (seen {}×)\n{}",
            proc.name(),
            log_count(proc, needle),
            proc.log_tail(40)
        );
    }
}

/// Log lines of the process (stdout then stderr) that contain every one of `needles`.
pub fn log_lines_with(proc: &Proc, needles: &[&str]) -> Vec<String> {
    let (out, err) = (proc.stdout(), proc.stderr());
    out.lines()
        .chain(err.lines())
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Every regular file under `dir` (recursively), sorted. A missing `dir` gives none.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// The files under `dir` whose bytes contain `needle` (binary files included: Parquet pages
/// may be uncompressed, and a secret in a state log is a secret whatever the encoding).
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
        .collect()
}

/// Paths relative to `root` of the files under `root/sub` (e.g. `data/part-000001-2.parquet`).
pub fn relative_files(root: &Path, sub: &str) -> Vec<String> {
    files_under(&root.join(sub))
        .iter()
        .filter_map(|p| p.strip_prefix(root).ok())
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .collect()
}

/// Asserts the data and failure files on disk are exactly the manifest's: nothing of a killed
/// or fenced-off attempt may be left beside the dataset.
#[track_caller]
pub fn assert_files_match_manifest(output: &crate::Output) {
    let mut on_disk = relative_files(&output.root, "data");
    on_disk.extend(relative_files(&output.root, "failures"));
    on_disk.sort();
    let mut listed: Vec<String> = output
        .manifest
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed, "files on disk differ from the manifest");
}

/// The bytes one relayed connection's client has sent so far.
type ConnBytes = Arc<Mutex<Vec<u8>>>;

/// A TCP relay on 127.0.0.1 in front of an HTTP server that keeps a copy of every byte the
/// clients sent, so a test can check what went over the wire (headers included) without the
/// server having to expose it. Plain HTTP only; bytes are forwarded unchanged both ways.
pub struct RecordingRelay {
    port: u16,
    /// Per connection, the bytes its client sent.
    sent: Arc<Mutex<Vec<ConnBytes>>>,
    stop: Arc<AtomicBool>,
}

impl RecordingRelay {
    /// Starts relaying connections to `127.0.0.1:upstream_port`.
    #[track_caller]
    pub fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().expect("relay address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sent2, stop2) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let conn = Arc::new(Mutex::new(Vec::new()));
                        sent2.lock().expect("relay connections").push(conn.clone());
                        std::thread::spawn(move || relay(client, upstream_port, conn));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { port, sent, stop }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL for a job's backend through the relay.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Values of every `Authorization` request header seen so far (header names compared
    /// case-insensitively), in order.
    pub fn authorization_headers(&self) -> Vec<String> {
        let conns = self.sent.lock().expect("relay connections").clone();
        let mut values = Vec::new();
        for conn in conns {
            let bytes = conn.lock().expect("relay buffer").clone();
            let text = String::from_utf8_lossy(&bytes);
            values.extend(text.split("\r\n").filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("authorization")
                    .then(|| value.trim().to_string())
            }));
        }
        values
    }

    /// Bytes the clients sent so far, over all connections.
    pub fn bytes_sent(&self) -> usize {
        let conns = self.sent.lock().expect("relay connections").clone();
        conns
            .iter()
            .map(|c| c.lock().expect("relay buffer").len())
            .sum()
    }
}

impl Drop for RecordingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay(client: TcpStream, upstream_port: u16, sent: ConnBytes) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (Ok(client_r), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || pipe(upstream, client, None));
    pipe(client_r, upstream_w, Some(sent));
    let _ = back.join();
}

/// Copies `from` → `to` until EOF, keeping a copy in `record`; then half-closes `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream, record: Option<ConnBytes>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = &record {
            r.lock().expect("relay buffer").extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Polls `synthforge status JOB --json` on `coord` until the job is in a terminal state
/// (succeeded, failed, cancelled) and returns its status object; panics on timeout.
#[track_caller]
pub fn wait_job_end(
    coord: &crate::Coordinator,
    job_id: &str,
    timeout: Duration,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ended = wait_until(timeout, || {
        let v = coord.status_json(job_id);
        last = v.get(0).cloned().unwrap_or(v);
        matches!(
            last["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        )
    });
    assert!(
        ended,
        "job {job_id} did not end within {timeout:?}; last status: {last}"
    );
    last
}

/// The `task_id=N` values of log lines, in order (as logged by the coordinator's scheduler).
pub fn task_ids(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("task_id=")? + "task_id=".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// YAML for a job's `scheduling:` section (appended to [`crate::JobSpec::extra_yaml`]).
pub fn scheduling_yaml(lease_s: f64, max_attempts: u32) -> String {
    format!("scheduling:\n  lease_s: {lease_s}\n  max_attempts: {max_attempts}\n")
}
