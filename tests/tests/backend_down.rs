//! A backend that is down when a job starts: the job waits ("waiting for backend NAME" in
//! `status`, the JSON API and the dashboard's data) instead of burning its task attempts, and
//! completes — every seed row exactly once — when the backend comes up later on that port.

use synthforge_tests::*;

const ROWS: usize = 300;

#[test]
fn a_job_waits_for_a_backend_that_is_down_and_completes_when_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, ROWS, 100);
    // Nothing listens on this port yet: every connection is refused.
    let port = free_port();
    let backend_url = format!("http://127.0.0.1:{port}/v1");
    let out = dir.path().join("out");
    let job = JobSpec::new(&seeds, SeedFormat::Parquet, &backend_url, &out);
    let job_file = job.write_to(dir.path());

    let mut coord = Coordinator::start(&StateBackend::Dir(dir.path().join("state")), &[]);
    let _workers: Vec<Worker> = (0..2)
        .map(|i| coord.worker(&format!("w{i}"), &[]))
        .collect();
    let job_id = coord.submit(&job_file);

    // The pause is visible over gRPC (`status`) and the JSON API behind the dashboard.
    wait_or_panic("the job to wait for its backend", QUICK_TIMEOUT, || {
        coord.status_json(&job_id)[0]["waiting"]
            .as_str()
            .is_some_and(|w| w.starts_with("waiting for backend mock"))
    });
    let api = http_get_json(&format!("{}/api/jobs/{job_id}", coord.http_url())).unwrap();
    let waiting = api["waiting"].as_str().unwrap_or_default();
    assert!(waiting.starts_with("waiting for backend mock"), "{api}");
    assert!(
        waiting.contains("127.0.0.1"),
        "the state names the endpoint: {waiting}"
    );
    let listed = http_get_json(&format!("{}/api/jobs", coord.http_url())).unwrap();
    assert!(
        listed[0]["waiting"].as_str().is_some_and(|w| !w.is_empty()),
        "{listed}"
    );

    // Stay down well past the job's 3 attempts per task: probes keep finding it down, and
    // none of them uses an attempt.
    wait_or_panic("several probes of the down backend", RUN_TIMEOUT, || {
        let p = coord.proc();
        (p.stdout() + &p.stderr())
            .matches("backend unreachable; attempt given back")
            .count()
            >= 5
    });
    let status = coord.status_json(&job_id);
    assert_eq!(status[0]["state"], "running", "{status}");
    assert_eq!(status[0]["tasks"]["failed"], 0, "{status}");

    // The backend comes up on the port the job names.
    let mut mock = synthforge(["mock-backend", "--addr", &format!("127.0.0.1:{port}")])
        .name("mock-backend")
        .spawn();
    wait_or_panic("the mock backend to answer", QUICK_TIMEOUT, || {
        http_ok(&format!("http://127.0.0.1:{port}/health"))
    });
    wait_or_panic("the job to finish", RUN_TIMEOUT, || {
        let s = coord.status_json(&job_id);
        matches!(s[0]["state"].as_str(), Some("succeeded" | "failed"))
    });
    let status = coord.status_json(&job_id);
    assert_eq!(status[0]["state"], "succeeded", "{status}");
    assert_eq!(status[0]["waiting"], "", "{status}");

    let output = read_output(&out);
    assert_accounted(&ids, &output);
    assert_eq!(output.rows.len(), ROWS);
    assert!(output.failures.is_empty(), "{:?}", output.failures);
    mock.kill();
}
