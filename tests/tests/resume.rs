//! Stop everything mid-job and start again with the same state: the job continues from what
//! was committed, and no task is generated twice into the dataset.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use synthforge_tests::faults::*;
use synthforge_tests::*;

const JOB_TIMEOUT: Duration = Duration::from_secs(150);
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// A job of `rows` rows in tasks of 10 over a Parquet seed, with a 2 s lease.
fn setup(dir: &Path, rows: usize, backend: &str) -> (Vec<String>, std::path::PathBuf) {
    let seeds = dir.join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, rows, 10);
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, backend, dir.join("out"));
    job.rows_per_task = 10;
    job.max_concurrency = 2;
    job.extra_yaml = scheduling_yaml(2.0, 20);
    (ids, job.write_to(dir))
}

#[test]
fn kill_everything_mid_job_and_resume_from_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mock = MockBackend::start(&["--latency-ms", "200"]);
    let (ids, job_file) = setup(dir.path(), 300, &mock.url());
    let state = StateBackend::Dir(dir.path().join("state"));

    // First life: kill -9 coordinator and workers once a few tasks are committed.
    let mut coord = Coordinator::start(&state, &[]);
    let job_id = coord.submit(&job_file);
    let workers: Vec<Worker> = ["a", "b"].iter().map(|n| coord.worker(n, &[])).collect();
    wait_for_log(coord.proc(), "task completed", 4, STEP_TIMEOUT);
    coord.proc().kill();
    drop(workers); // SIGKILL
    let done_first = task_ids(&log_lines_with(coord.proc(), &["task completed"]));
    assert!(
        done_first.len() < 30,
        "the job finished before it could be interrupted"
    );

    // Second life: same state dir, new processes.
    let mut coord = Coordinator::start(&state, &[]);
    assert!(coord.proc().output_contains("recovered"));
    let workers: Vec<Worker> = ["c", "d"].iter().map(|n| coord.worker(n, &[])).collect();
    let status = wait_job_end(&coord, &job_id, JOB_TIMEOUT);
    assert_eq!(status["state"], "succeeded", "{status}");

    // Committed tasks were not run again; everything else was.
    let leased_second = task_ids(&log_lines_with(coord.proc(), &["task leased"]));
    let rerun: Vec<&u64> = leased_second
        .iter()
        .filter(|t| done_first.contains(t))
        .collect();
    assert!(
        rerun.is_empty(),
        "committed tasks were leased again: {rerun:?}"
    );
    // No task completed in both lives. (The first life's log may miss a completion committed
    // just before the kill; such a task must then simply not run again, checked above.)
    let done_second = task_ids(&log_lines_with(coord.proc(), &["task completed"]));
    let twice: Vec<&u64> = done_second
        .iter()
        .filter(|t| done_first.contains(t))
        .collect();
    assert!(twice.is_empty(), "tasks completed in both lives: {twice:?}");
    assert!(done_first.len() + done_second.len() <= 30);

    let output = read_output(&out);
    assert_eq!(output.rows.len(), 300);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
    assert_files_match_manifest(&output);
    // Exactly one data file per task, whatever attempt wrote it.
    let tasks: BTreeSet<&str> = output
        .manifest
        .files
        .iter()
        .filter(|f| f.kind == "data")
        .map(|f| {
            f.path
                .rsplit_once('-')
                .map_or(f.path.as_str(), |(task, _)| task)
        })
        .collect();
    let data_files = output
        .manifest
        .files
        .iter()
        .filter(|f| f.kind == "data")
        .count();
    assert_eq!(
        (tasks.len(), data_files),
        (30, 30),
        "{:?}",
        output.manifest.files
    );
    drop(workers);
}

#[test]
fn run_interrupted_with_sigterm_resumes_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mock = MockBackend::start(&["--latency-ms", "200"]);
    let (ids, job_file) = setup(dir.path(), 300, &mock.url());
    let state_dir = dir.path().join("state");
    let run = synthforge(["run"])
        .arg(&job_file)
        .arg("--state-dir")
        .arg(&state_dir)
        .args(["--workers", "2", "--no-progress", "--verbose"]);

    let mut first = run.spawn();
    wait_for_log(&first, "task completed", 3, STEP_TIMEOUT);
    first.terminate();
    let status = first
        .wait_timeout(STEP_TIMEOUT)
        .expect("run did not stop after SIGTERM");
    assert!(
        !status.success(),
        "an interrupted run must not report success"
    );
    assert!(
        first
            .stderr()
            .contains("run the same command again to resume"),
        "{}",
        first.log_tail(20)
    );
    let done_first = task_ids(&log_lines_with(&first, &["task completed"]));
    assert!(done_first.len() < 30, "the job finished before SIGTERM");
    // Graceful: running tasks were finished or handed back, none left to expire.
    assert!(log_lines_with(&first, &["lease expired"]).is_empty());

    let second = run.run_to_end(RUN_TIMEOUT);
    second.assert_success();
    let leased_second = task_ids(
        &second
            .stderr
            .lines()
            .filter(|l| l.contains("task leased"))
            .map(str::to_string)
            .collect::<Vec<_>>(),
    );
    let rerun: Vec<&u64> = leased_second
        .iter()
        .filter(|t| done_first.contains(t))
        .collect();
    assert!(
        rerun.is_empty(),
        "committed tasks were leased again: {rerun:?}"
    );
    assert_eq!(leased_second.len() + done_first.len(), 30);

    let output = read_output(&out);
    assert_eq!(output.rows.len(), 300);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
    assert_files_match_manifest(&output);
}
