//! What `max_concurrency` means, measured over real processes: a fixed value caps the requests
//! in flight of one worker process (its pool for the job's backend, shared by all the tasks it
//! runs at once), not of the cluster. Two workers with `max_concurrency: 4` put 8 requests in
//! flight; one worker, 4 — even when each worker runs two tasks at once. The mock backend
//! answers slowly (300 ms) so every slot fills, and its `/stats` reports the most requests it
//! had in flight at once (`in_flight_peak`).

use std::path::Path;
use std::time::Duration;

use synthforge_tests::*;

const MAX_CONCURRENCY: u32 = 4;
const ROWS: usize = 160;

/// Runs a job of [`ROWS`] rows with `max_concurrency: 4` on `workers` workers (each running two
/// tasks at once) against a slow mock; returns the mock's `in_flight_peak`.
fn peak_in_flight(workers: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    write_seeds(&seeds);
    let mock = MockBackend::start(&["--latency-ms", "300"]);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    // Small tasks, so each worker always has two running and offering rows.
    job.rows_per_task = 10;
    // Tasks of exactly 10 rows (line scan, not one byte range for the whole small file), so
    // both workers get tasks.
    job.limit = Some(1_000_000);
    job.max_concurrency = MAX_CONCURRENCY;
    let job_file = job.write_to(dir.path());

    let coord = Coordinator::start(&StateBackend::Dir(dir.path().join("state")), &[]);
    let _workers: Vec<Worker> = (0..workers)
        .map(|i| coord.worker(&format!("w{i}"), &["--parallel-tasks", "2"]))
        .collect();
    let (done, id) = coord.submit_wait(&job_file, Duration::from_secs(180));
    done.assert_success();
    let status = coord.status_json(&id.expect("submit printed the job id"));
    let status = status.get(0).cloned().unwrap_or(status);
    assert_eq!(status["state"], "succeeded", "{status}");

    let stats = mock.stats();
    assert_eq!(
        stats["requests_total"].as_u64(),
        Some(ROWS as u64),
        "one request per row: {stats}"
    );
    stats["in_flight_peak"]
        .as_u64()
        .unwrap_or_else(|| panic!("the mock's /stats has no in_flight_peak: {stats}"))
}

fn write_seeds(path: &Path) {
    let mut s = String::new();
    for i in 0..ROWS {
        s.push_str(&serde_json::json!({"id": seed_id(i), "text": seed_text(i)}).to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn max_concurrency_caps_each_worker_so_two_workers_double_it() {
    let peak = peak_in_flight(2);
    assert_eq!(
        peak,
        2 * u64::from(MAX_CONCURRENCY),
        "2 workers × max_concurrency {MAX_CONCURRENCY}: the cap is per worker process"
    );
}

#[test]
fn one_worker_stays_within_max_concurrency_across_its_parallel_tasks() {
    let peak = peak_in_flight(1);
    assert_eq!(
        peak,
        u64::from(MAX_CONCURRENCY),
        "1 worker running 2 tasks at once shares one pool capped at {MAX_CONCURRENCY}"
    );
}
