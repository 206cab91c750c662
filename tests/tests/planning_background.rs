//! Submit answers before planning ends: 2,000 Parquet files (a footer read each) are planned in
//! the background while `submit` has already returned with the job in `planning`; the job then
//! runs to the end. A planning failure after Submit answered fails the job: `status` shows the
//! error and `submit --wait` exits non-zero with it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use synthforge_tests::faults::wait_job_end;
use synthforge_tests::*;

/// Input objects: enough footer reads that planning takes well past Submit's grace.
const FILES: usize = 2_000;
const JOB_TIMEOUT: Duration = Duration::from_secs(400);

/// Writes `files` one-row Parquet files (`id`, `text`) under `dir`; returns the seed ids.
fn write_parquet_files(dir: &Path, files: usize) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    (0..files)
        .map(|f| {
            let id = format!("file-{f:05}");
            let ids: ArrayRef = Arc::new(StringArray::from(vec![id.clone()]));
            let texts: ArrayRef = Arc::new(StringArray::from(vec![seed_text(f)]));
            let batch = RecordBatch::try_from_iter([("id", ids), ("text", texts)]).unwrap();
            let file = std::fs::File::create(dir.join(format!("part-{f:05}.parquet"))).unwrap();
            let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            id
        })
        .collect()
}

/// Submit answers without waiting for planning: the test sees `planning` however fast this
/// machine plans 2,000 footers.
fn answer_at_once() -> Vec<(String, String)> {
    vec![("SYNTHFORGE_SUBMIT_GRACE_MS".into(), "0".into())]
}

fn job_file(dir: &Path, seeds: &Path, backend: &str) -> std::path::PathBuf {
    let input = format!("{}/*.parquet", seeds.display());
    let job = JobSpec::new(&input, SeedFormat::Parquet, backend, dir.join("out"));
    job.write_to(dir)
}

#[test]
fn submit_answers_while_2000_files_are_planned_and_the_job_runs_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds");
    let ids = write_parquet_files(&seeds, FILES);
    let mock = MockBackend::start(&[]);
    let job = job_file(dir.path(), &seeds, &mock.url());
    let mut coord = Coordinator::start(
        &StateBackend::Dir(dir.path().join("state")),
        &answer_at_once(),
    );

    let started = Instant::now();
    let submitted = synthforge(["submit"])
        .arg(&job)
        .args(["--coordinator", &coord.url()])
        .run_to_end(QUICK_TIMEOUT);
    let submit_s = started.elapsed().as_secs_f64();
    submitted.assert_success();
    assert!(
        submitted.stdout.contains("state: planning"),
        "Submit answered only after planning ended:\n{}",
        submitted.describe()
    );
    let job_id = last_line_value(&submitted.stdout, "job_id").expect("job id printed");

    // `status` shows the planning job and its progress until it runs.
    let first = coord.status_json(&job_id)[0].clone();
    if first["state"] == "planning" {
        assert_eq!(first["planning"]["objects_total"], FILES, "{first}");
        let table = synthforge(["status", &job_id, "--coordinator", &coord.url()])
            .run_to_end(QUICK_TIMEOUT);
        table.assert_success();
        assert!(
            table.stdout.contains("planning: ") && table.stdout.contains("input objects"),
            "{}",
            table.describe()
        );
    }
    let workers: Vec<Worker> = ["a", "b"].iter().map(|n| coord.worker(n, &[])).collect();
    let status = wait_job_end(&coord, &job_id, JOB_TIMEOUT);
    drop(workers);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["tasks"]["total"], FILES, "{status}");

    // How long planning took in the coordinator, for the log.
    let log = format!("{}{}", coord.proc().stdout(), coord.proc().stderr());
    let planned = log
        .lines()
        .find(|l| l.contains("planned") && l.contains("tasks=2000"))
        .expect("the coordinator logs the end of planning");
    let planning_ms: f64 = planned
        .split("ms=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("planning time logged");
    eprintln!("submit answered in {submit_s:.2} s (process start included); planning took {planning_ms} ms");

    let output = read_output(&dir.path().join("out"));
    assert_eq!(output.rows.len(), FILES);
    assert_accounted(&ids, &output);
}

#[test]
fn a_planning_failure_after_submit_answered_fails_the_job_and_submit_wait() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds");
    write_parquet_files(&seeds, FILES);
    // Sorted last: found only after Submit answered.
    std::fs::write(seeds.join("zz-damaged.parquet"), b"not a parquet file").unwrap();
    let job = job_file(dir.path(), &seeds, "http://127.0.0.1:9/v1");
    let coord = Coordinator::start(
        &StateBackend::Dir(dir.path().join("state")),
        &answer_at_once(),
    );

    let (done, job_id) = coord.submit_wait(&job, JOB_TIMEOUT);
    done.assert_failure();
    assert!(
        done.stdout.contains("state: planning"),
        "Submit answered only after planning ended:\n{}",
        done.describe()
    );
    assert!(
        done.stderr.contains("failed: planning: ") && done.stderr.contains("zz-damaged.parquet"),
        "{}",
        done.describe()
    );
    let status = coord.status_json(&job_id.expect("job id printed"))[0].clone();
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("planning: ") && error.contains("zz-damaged.parquet"),
        "{status}"
    );
}
