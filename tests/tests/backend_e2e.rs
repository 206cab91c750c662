//! The backend pool inside real `synthforge run` processes: an `auto` backend with one dead and
//! one healthy endpoint, and a backend injecting 429s, 500s and hangs. Every seed row must end in
//! the output or in failures with its reason.

use synthforge_tests::*;

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The job YAML with `max_concurrency: auto` and the backend's `url` replaced by `urls`.
fn auto_job(job: &JobSpec, urls: &[String], extra_backend_yaml: &str) -> String {
    let yaml = job.to_yaml();
    let url_line = format!(
        "    url: {}\n",
        serde_json::to_string(&job.backend_url).unwrap()
    );
    assert!(yaml.contains(&url_line), "{yaml}");
    let urls_yaml = format!(
        "    urls: {}\n{extra_backend_yaml}",
        serde_json::to_string(urls).unwrap()
    );
    yaml.replace(&url_line, &urls_yaml)
        .replace("    max_concurrency: 64\n", "    max_concurrency: auto\n")
}

fn run(dir: &std::path::Path, yaml: &str, out: &std::path::Path) {
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, yaml).unwrap();
    synthforge(["run"])
        .arg(&job_file)
        .arg("--output")
        .arg(out)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--workers", "2", "--no-progress"])
        .run_to_end(RUN_TIMEOUT)
        .assert_success();
}

#[test]
fn auto_backend_with_a_dead_endpoint_completes_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    let ids = write_jsonl_seed(&seeds, 400);
    let mock = MockBackend::start(&["--slots", "8", "--latency-ms", "20"]);
    let out = dir.path().join("out");
    let job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    let dead = format!("http://127.0.0.1:{}/v1", closed_port());
    run(dir.path(), &auto_job(&job, &[dead, mock.url()], ""), &out);

    let output = read_output(&out);
    assert_eq!(output.rows.len(), 400);
    assert!(output.failures.is_empty(), "{:?}", output.failures);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
    assert!(mock.stats()["requests_by_status"]["200"].as_u64().unwrap() >= 400);
}

#[test]
fn faults_end_in_output_or_failures_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    let ids = write_jsonl_seed(&seeds, 300);
    let mock = MockBackend::start(&[
        "--slots",
        "16",
        "--latency-ms",
        "10",
        "--rate-429",
        "0.2",
        "--rate-500",
        "0.2",
        "--rate-hang",
        "0.02",
        "--retry-after-s",
        "0",
    ]);
    let out = dir.path().join("out");
    let job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    // Two attempts with a 1 s timeout: some rows exhaust them and must land in failures.
    let extra = "    timeout_s: 1.0\n    max_attempts: 2\n";
    // Rows failing here is the point: a failure budget above the default (1%) lets the job end.
    let yaml = auto_job(&job, &[mock.url()], extra) + "scheduling:\n  max_failed_fraction: 0.9\n";
    run(dir.path(), &yaml, &out);

    let output = read_output(&out);
    assert_accounted(&ids, &output);
    assert_eq!(output.rows.len() + output.failures.len(), 300);
    assert!(
        !output.failures.is_empty(),
        "42% faults x 2 attempts must fail some rows"
    );
    for f in &output.failures {
        assert!(
            f.error.contains("gave up after 2 attempts")
                && (f.error.contains("HTTP 429")
                    || f.error.contains("HTTP 500")
                    || f.error.contains("timed out")),
            "failure without a clear reason: {}",
            f.error
        );
    }
}
