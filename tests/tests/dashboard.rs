//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core from npm (tests/browser/dashboard.mjs) against a coordinator, two worker
//! processes and a slow mock backend. Checks that progress advances, the chart draws, planted
//! generated markup shows as text and never runs, the page asks for a token and keeps it out of
//! cookies, and cancel needs the admin token (a read token is refused). Saves
//! `target/dashboard.png` (and `target/dashboard-cancelled.png`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use synthforge_tests::*;

const TOKEN: &str = "dash-secret-token";
/// The read-only token the page is given at its login form.
const READ_TOKEN: &str = "dash-read-token";
/// What the mock backend answers for planted rows: markup that would run if inserted as HTML.
const PLANTED: &str = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;
const MARKER: &str = "PLANTED-XSS-ROW";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// `npm install` in tests/browser when playwright-core is missing (CI: scripts/install-test-deps.sh
/// does it first). Fails loudly rather than skipping: the browser test is part of "done".
fn ensure_playwright(node: &Path) {
    let dir = browser_dir();
    if dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return;
    }
    let npm = node.with_file_name("npm");
    let npm = if npm.is_file() { npm } else { find_tool("npm") };
    let st = Command::new(&npm)
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", npm.display()));
    assert!(
        st.success(),
        "`npm install` in {} failed; run scripts/install-test-deps.sh",
        dir.display()
    );
}

fn chromium() -> PathBuf {
    let p = std::env::var_os("SYNTHFORGE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.is_file(),
        "Chromium not found at {} (Debian package `chromium`: apt-get install -y chromium, \
         or scripts/install-test-deps.sh; or set SYNTHFORGE_CHROMIUM)",
        p.display()
    );
    p
}

/// 600 rows in tasks of 20; every 4th row's text carries the marker the mock answers with
/// [`PLANTED`].
fn write_seeds(path: &Path) {
    let mut s = String::new();
    for i in 0..600 {
        let text = if i % 4 == 0 {
            format!("{MARKER} {}", seed_text(i))
        } else {
            seed_text(i)
        };
        s.push_str(&serde_json::json!({"id": seed_id(i), "text": text}).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn dashboard_in_headless_chromium() {
    let node = find_tool("node");
    let chromium = chromium();
    ensure_playwright(&node);

    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    write_seeds(&seeds);
    let rules = dir.path().join("rules.json");
    std::fs::write(
        &rules,
        serde_json::json!([{"contains": MARKER, "reply": PLANTED}]).to_string(),
    )
    .unwrap();
    // ~20 rows/s in total (2 workers × 2 in flight / 0.2 s): the job runs about 30 s, long
    // enough to watch it, and is cancelled from the page before it ends.
    let mock = MockBackend::start(&[
        "--latency-ms",
        "200",
        "--reply-rules",
        rules.to_str().unwrap(),
    ]);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    job.name = "dashboard <b>demo</b>".into();
    job.rows_per_task = 20;
    job.max_concurrency = 2;
    let job_file = job.write_to(dir.path());

    let env = vec![("SYNTHFORGE_TOKEN".to_string(), TOKEN.to_string())];
    let coord = Coordinator::start_with_args(
        &StateBackend::Dir(dir.path().join("state")),
        &env,
        &["--read-token", READ_TOKEN],
    );
    let _w1 = coord.worker("w1", &["--parallel-tasks", "1"]);
    let _w2 = coord.worker("w2", &["--parallel-tasks", "1"]);
    let job_id = coord.submit(&job_file);
    let base = coord.http_url();

    // Reads need a token; cancel without the admin token is refused over plain HTTP too.
    let (code, _) = http_get(&format!("{base}/api/jobs")).unwrap();
    assert_eq!(code, 401, "reads without a token must be refused");
    let (code, _) = http_with_headers(
        "POST",
        &format!("{base}/api/jobs/{job_id}/cancel"),
        &[("content-type", "application/json")],
        Some(Vec::new()),
    )
    .unwrap();
    assert_eq!(code, 401, "cancel without a token must be refused");

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let mut cmd = Command::new(&node);
    cmd.arg(browser_dir().join("dashboard.mjs"))
        .current_dir(browser_dir())
        .env("DASHBOARD_URL", format!("{base}/"))
        .env("JOB_ID", &job_id)
        .env("TOKEN", TOKEN)
        .env("READ_TOKEN", READ_TOKEN)
        .env("PLANTED", PLANTED)
        .env("SCREENSHOT", &shot)
        .env("CHROMIUM", &chromium);
    let run = run_with_timeout(cmd, Duration::from_secs(300));
    assert!(
        run.0,
        "browser test failed:\n--- stdout\n{}\n--- stderr\n{}",
        run.1, run.2
    );
    assert!(run.1.contains("\"ok\":true"), "no success line: {}", run.1);
    eprintln!("browser: {}", run.1.trim());
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.len() > 10_000 && png.starts_with(b"\x89PNG"),
        "screenshot is a real PNG"
    );

    // The page's cancel reached the coordinator.
    let auth = format!("Bearer {READ_TOKEN}");
    let (code, body) = http_with_headers(
        "GET",
        &format!("{base}/api/jobs/{job_id}"),
        &[("authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["record"]["state"], "cancelled", "{view}");
    assert!(view["rows_done"].as_u64().unwrap() > 0, "{view}");
}

/// Runs `cmd` to its end (killing it after `timeout`): (success, stdout, stderr).
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (bool, String, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn node");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let ok = wait_until(timeout, || child.try_wait().ok().flatten().is_some());
    if !ok {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait node");
    (
        ok && status.success(),
        t_out.join().unwrap(),
        t_err.join().unwrap(),
    )
}
