//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core from npm (tests/browser/dashboard.mjs) against a coordinator, two worker
//! processes and a slow mock backend. Checks that progress advances, the chart draws, planted
//! generated markup shows as text and never runs, the page asks for a token and keeps it out of
//! cookies, and cancel needs the admin token (a read token is refused). Before the watched job,
//! finished jobs fill more than a page of the (collapsed, paginated) job list, and one of them
//! has failed rows (unreadable seed lines), a filter's removals and whole-job dedup removals:
//! the page shows its failure reasons with an example, its per-stage funnel and the dedup
//! removals in its stats. A worker killed mid-way leaves the worker list after the grace
//! (`--worker-grace-s`). After the job ends (cancelled from the page) its chart and backend
//! table stay. Saves `target/dashboard.png` (and `target/dashboard-cancelled.png`).

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
/// Rows the mock answers with one fixed text: whole-job dedup keeps one of them.
const DUPLICATE: &str = "DUPLICATE-ME";
/// Rows the mock answers with one word: the filter (`min_words: 3`) removes them.
const SHORT: &str = "SHORT-ME";
/// Finished jobs run before the watched one: more than a page of the job list (8).
const FINISHED_JOBS: usize = 9;
/// Seconds of silence after which the coordinator stops listing a worker.
const WORKER_GRACE_S: u64 = 3;

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

/// 30 seed rows and 2 unreadable lines (after rows 4 and 14): rows 3, 13, 23 get the same
/// reply (2 dedup removals), rows 5, 15, 25 a one-word reply (3 filter removals).
fn write_reasons_seeds(path: &Path) {
    let mut s = String::new();
    for i in 0..30 {
        let text = match i % 10 {
            3 => format!("{DUPLICATE} {}", seed_text(i)),
            5 => format!("{SHORT} {}", seed_text(i)),
            _ => seed_text(i),
        };
        s.push_str(&serde_json::json!({"id": format!("r{i}"), "text": text}).to_string());
        s.push('\n');
        if i == 4 || i == 14 {
            s.push_str("{not json\n");
        }
    }
    std::fs::write(path, s).unwrap();
}

/// A job over [`write_reasons_seeds`]: generate, a length filter, whole-job exact dedup.
fn reasons_job(dir: &Path, mock_url: &str) -> PathBuf {
    let seeds = dir.join("reasons.jsonl");
    write_reasons_seeds(&seeds);
    let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap();
    let yaml = format!(
        "name: reasons-demo
input:
  path: {seeds}
  format: jsonl
  rows_per_task: 10
pipeline:
  - stage: generate
    backend: mock
    template: '{{{{ text }}}}'
    max_tokens: 32
  - stage: filter
    min_words: 3
  - stage: dedup
    columns: [completion]
    near: false
backends:
  mock:
    url: {url}
    model: mock-model
    max_concurrency: 8
output:
  path: {out}
scheduling:
  max_failed_fraction: 0.5
",
        seeds = q(&seeds),
        url = serde_json::to_string(mock_url).unwrap(),
        out = q(&dir.join("reasons-out")),
    );
    let path = dir.join("reasons.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// GET `path` on the coordinator's API with the read token, as JSON.
fn api(base: &str, path: &str) -> serde_json::Value {
    let auth = format!("Bearer {READ_TOKEN}");
    let (code, body) = http_with_headers(
        "GET",
        &format!("{base}{path}"),
        &[("authorization", &auth)],
        None,
    )
    .unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Runs the jobs that fill the finished list; returns the id of the one with reasons.
fn run_finished_jobs(coord: &Coordinator, dir: &Path, mock_url: &str) -> String {
    let job_dir = dir.join("finished");
    std::fs::create_dir_all(&job_dir).unwrap();
    let seeds = job_dir.join("small.jsonl");
    let small: String = (0..4)
        .map(|i| serde_json::json!({"id": seed_id(i), "text": seed_text(i)}).to_string() + "\n")
        .collect();
    std::fs::write(&seeds, small).unwrap();
    for n in 0..FINISHED_JOBS - 1 {
        let mut job = JobSpec::new(
            &seeds,
            SeedFormat::Jsonl,
            mock_url,
            job_dir.join(format!("out-{n}")),
        );
        job.name = format!("finished-{n}");
        let file = job_dir.join(format!("job-{n}.yaml"));
        job.write(&file);
        let (done, _) = coord.submit_wait(&file, Duration::from_secs(120));
        done.assert_success();
    }
    let (done, id) = coord.submit_wait(&reasons_job(&job_dir, mock_url), Duration::from_secs(120));
    done.assert_success();
    id.expect("submit printed the job id")
}

/// The reasons job's stats over the API: failed rows by reason with an example, and the
/// finalization's dedup removals in `stats.removed` (taken out of `rows_out`).
fn check_reasons_job(base: &str, id: &str) {
    let v = api(base, &format!("/api/jobs/{id}"));
    let st = &v["stats"];
    assert_eq!(v["record"]["state"], "succeeded", "{v}");
    assert_eq!(st["rows_failed"], 2, "{st}");
    let failed = st["failed"].as_object().expect("failed by reason");
    assert_eq!(
        failed.len(),
        1,
        "both unreadable lines fail the same way: {st}"
    );
    let (reason, n) = failed.iter().next().unwrap();
    assert!(reason.starts_with("read: "), "{reason}");
    assert_eq!(n, 2);
    let example = &st["failed_examples"][reason];
    assert!(
        example["source"]
            .as_str()
            .unwrap()
            .contains("reasons.jsonl:"),
        "{example}"
    );
    assert_eq!(st["removed"]["filter:length"], 3, "{st}");
    assert_eq!(st["removed"]["dedup_exact"], 2, "{st}");
    assert_eq!(st["rows_in"], 32, "{st}");
    assert_eq!(st["rows_out"], 32 - 2 - 3 - 2, "{st}");
    let funnel = v["funnel"].as_array().expect("funnel");
    let stages: Vec<&str> = funnel
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["read", "generate", "filter", "dedup"],
        "{funnel:?}"
    );
    assert_eq!(funnel[2]["rows_in"], 30);
    assert_eq!(funnel[2]["rows_out"], 27);
    assert_eq!(funnel[3]["rows_out"], 25);
    assert!(v["elapsed_s"].as_f64().unwrap() > 0.0, "{v}");
}

/// A third worker that dies (kill -9) is listed, then no longer after the grace.
fn check_dead_worker_leaves(coord: &Coordinator, base: &str) {
    let listed = |id: &str| {
        api(base, "/api/workers")
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == id)
    };
    let mut w3 = coord.worker("w3-dies", &["--parallel-tasks", "1"]);
    assert!(
        wait_until(Duration::from_secs(30), || listed("w3-dies")),
        "the third worker registered"
    );
    w3.proc().kill();
    let killed = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(WORKER_GRACE_S + 10), || !listed(
            "w3-dies"
        )),
        "a dead worker is still listed {WORKER_GRACE_S} s after it died"
    );
    let gone_after = killed.elapsed();
    eprintln!("dead worker unlisted after {gone_after:?} (grace {WORKER_GRACE_S} s)");
    assert!(
        gone_after >= Duration::from_secs(WORKER_GRACE_S - 1),
        "unlisted before the grace: {gone_after:?}"
    );
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
        serde_json::json!([
            {"contains": MARKER, "reply": PLANTED},
            {"contains": DUPLICATE, "reply": "The same answer for every duplicated row."},
            {"contains": SHORT, "reply": "Short."},
        ])
        .to_string(),
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
    // Several tasks of exact size (line scan): the bar moves as tasks end.
    job.limit = Some(1_000_000);
    job.max_concurrency = 2;
    let job_file = job.write_to(dir.path());

    let env = vec![("SYNTHFORGE_TOKEN".to_string(), TOKEN.to_string())];
    let grace = WORKER_GRACE_S.to_string();
    let coord = Coordinator::start_with_args(
        &StateBackend::Dir(dir.path().join("state")),
        &env,
        &["--read-token", READ_TOKEN, "--worker-grace-s", &grace],
    );
    let _w1 = coord.worker("w1", &["--parallel-tasks", "1"]);
    let _w2 = coord.worker("w2", &["--parallel-tasks", "1"]);
    let base = coord.http_url();
    let fast_mock = MockBackend::start(&["--reply-rules", rules.to_str().unwrap()]);
    let reasons_id = run_finished_jobs(&coord, dir.path(), &fast_mock.url());
    check_reasons_job(&base, &reasons_id);
    check_dead_worker_leaves(&coord, &base);
    let job_id = coord.submit(&job_file);

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
        .env("REASONS_JOB_ID", &reasons_id)
        .env("FINISHED_JOBS", FINISHED_JOBS.to_string())
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
