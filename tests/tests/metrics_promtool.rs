//! `/metrics` passes `promtool check metrics` (Debian package `prometheus`) while a job's
//! workers report backends, and carries the families an operator or autoscaler needs; and
//! `synthforge status --http` prints the numbers the dashboard's API serves.

use std::io::Write;
use std::process::{Command, Stdio};

use synthforge_tests::*;

fn promtool() -> std::path::PathBuf {
    let p = find_tool("promtool");
    assert!(
        Command::new(&p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "promtool not runnable at {} (Debian package `prometheus`; scripts/install-test-deps.sh)",
        p.display()
    );
    p
}

/// The value of the first sample line starting with `prefix` (name plus labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_pass_promtool_and_the_cli_shows_the_same_numbers() {
    let promtool = promtool();
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.parquet");
    write_parquet_seed(&seeds, 240, 40);
    let mock = MockBackend::start(&["--latency-ms", "100"]);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, &mock.url(), &out);
    job.rows_per_task = 40;
    job.max_concurrency = 2;
    // Non-ASCII in the job (it comes back in the API's `spec_yaml`): `status --http` must pass
    // it through intact.
    job.template = format!("{DEFAULT_TEMPLATE} (Grüße, 日本語, ✓)");
    let job_file = job.write_to(dir.path());
    let coord = Coordinator::start(&StateBackend::Dir(dir.path().join("state")), &[]);
    let _w = coord.worker("m1", &["--parallel-tasks", "1"]);
    let job_id = coord.submit(&job_file);
    let base = coord.http_url();
    wait_or_panic("job to succeed", RUN_TIMEOUT, || {
        http_get_json(&format!("{base}/api/jobs/{job_id}"))
            .is_ok_and(|v| v["record"]["state"] == "succeeded")
    });

    let (code, text) = http_get(&format!("{base}/metrics")).unwrap();
    assert_eq!(code, 200);
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics\n{text}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );

    for family in [
        "synthforge_tasks",
        "synthforge_queue_depth",
        "synthforge_rows_generated_total",
        "synthforge_rows_removed_total",
        "synthforge_tokens_total",
        "synthforge_backend_requests_total",
        "synthforge_backend_in_flight",
        "synthforge_backend_concurrency_limit",
        "synthforge_backend_latency_p95_seconds",
        "synthforge_task_duration_seconds",
        "synthforge_lease_expirations_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no TYPE for {family}\n{text}"
        );
    }
    let job = format!("job=\"{job_id}\"");
    assert_eq!(
        sample(&text, &format!("synthforge_tasks{{{job},state=\"done\"}}")),
        Some(6.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("synthforge_rows_generated_total{{{job}}}")),
        Some(240.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "synthforge_task_duration_seconds_count"),
        Some(6.0),
        "{text}"
    );
    assert_eq!(sample(&text, "synthforge_queue_depth"), Some(0.0), "{text}");
    // The worker's heartbeats reported its backend: the endpoint has a limit and answered.
    let ep = format!(
        "synthforge_backend_concurrency_limit{{{job},backend=\"mock\",endpoint=\"{}\"}}",
        mock.url()
    );
    assert!(
        sample(&text, &ep).is_some_and(|v| v >= 1.0),
        "no {ep}\n{text}"
    );

    // `status --http` shows what the dashboard shows.
    let api = http_get_json(&format!("{base}/api/jobs/{job_id}")).unwrap();
    let done = synthforge(["status", &job_id, "--http", &base, "--json"]).run_to_end(QUICK_TIMEOUT);
    done.assert_success();
    let st: serde_json::Value = serde_json::from_str(done.stdout.trim()).unwrap();
    let j = &st["jobs"][0];
    for key in ["rows_done", "progress", "tasks_done", "stats"] {
        assert_eq!(j[key], api[key], "status --http differs on {key}");
    }
    assert_eq!(j["record"]["state"], "succeeded");
    assert_eq!(
        j["record"], api["record"],
        "status --http differs on the record"
    );
    assert!(
        j["record"]["spec_yaml"]
            .as_str()
            .is_some_and(|y| y.contains("Grüße, 日本語, ✓")),
        "non-ASCII template lost: {}",
        j["record"]["spec_yaml"]
    );
    assert!(
        st["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == "m1"),
        "{st}"
    );
    let table = synthforge(["status", &job_id, "--http", &base]).run_to_end(QUICK_TIMEOUT);
    table.assert_success();
    assert!(
        table.stdout.contains("100.0%") && table.stdout.contains("m1"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.contains(&mock.url()),
        "backend endpoint listed: {}",
        table.stdout
    );

    // `inspect` summarizes the finished dataset with the same totals.
    let api_tokens = (
        api["stats"]["prompt_tokens"].as_u64().unwrap(),
        api["stats"]["completion_tokens"].as_u64().unwrap(),
    );
    let ins =
        synthforge(["inspect", out.to_str().unwrap(), "--samples", "2"]).run_to_end(QUICK_TIMEOUT);
    ins.assert_success();
    assert!(
        ins.stdout.contains("seed rows: 240  output rows: 240"),
        "{}",
        ins.stdout
    );
    let tokens = format!(
        "tokens: {} prompt, {} completion",
        api_tokens.0, api_tokens.1
    );
    assert!(
        ins.stdout.contains(&tokens),
        "expected `{tokens}` in\n{}",
        ins.stdout
    );
    assert_eq!(
        ins.stdout.matches("--- sample ").count(),
        2,
        "{}",
        ins.stdout
    );
}
