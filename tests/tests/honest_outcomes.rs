//! Honest outcomes through `synthforge run`: a job whose rows all fail ends `failed` with a
//! non-zero exit, its manifest and card saying why; a job whose seed file changed is not
//! resumed from the old result.

use std::path::Path;
use std::time::Duration;

use synthforge_tests::faults::*;
use synthforge_tests::*;

/// Waiting for one step of a multi-process scenario.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// `synthforge run JOB --state-dir DIR/state --workers 2 --no-progress` to its end.
fn run(dir: &Path, job_file: &Path, extra: &[&str]) -> Finished {
    synthforge(["run"])
        .arg(job_file)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--workers", "2", "--no-progress"])
        .args(extra)
        .run_to_end(RUN_TIMEOUT)
}

#[test]
fn a_job_whose_every_row_fails_ends_failed_with_a_non_zero_exit_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    write_jsonl_seed(&seeds, 20);
    // Every request answers 500; one backend attempt per row keeps the test short.
    let mock = MockBackend::start(&["--rate-500", "1"]);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    job.rows_per_task = 10;
    let yaml = job
        .to_yaml()
        .replace("    api: chat\n", "    api: chat\n    max_attempts: 1\n");
    let job_file = dir.path().join("job.yaml");
    std::fs::write(&job_file, yaml).unwrap();

    let done = run(dir.path(), &job_file, &[]);
    done.assert_failure();
    let text = done.combined();
    assert!(text.contains("(failed)"), "{}", done.describe());
    assert!(
        text.contains("20 of 20 seed rows failed") && text.contains("top reasons: generate"),
        "{}",
        done.describe()
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rows"], 0, "{manifest:#}");
    assert_eq!(manifest["failures"], 20, "{manifest:#}");
    let accounting = &manifest["accounting"];
    assert_eq!(
        (
            accounting["seed_rows"].as_u64(),
            accounting["difference"].as_i64()
        ),
        (Some(20), Some(0)),
        "every seed row is accounted for: {manifest:#}"
    );
    let reasons = manifest["failure_reasons"].as_object().unwrap();
    assert_eq!(
        reasons.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        20,
        "{manifest:#}"
    );
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("Failures by reason") && card.contains("Every seed row is accounted for"),
        "{card}"
    );
}

#[test]
fn a_grown_seed_file_is_refused_on_resume_and_fresh_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    write_jsonl_seed(&seeds, 8);
    let mock = MockBackend::start(&["--latency-ms", "5"]);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    job.rows_per_task = 4;
    let job_file = job.write_to(dir.path());

    run(dir.path(), &job_file, &[]).assert_success();
    assert_eq!(read_output(&out).rows.len(), 8);

    // The seed file grows from 8 to 32 rows: running the same job again must not hand back
    // the old 8-row result.
    let ids = write_jsonl_seed(&seeds, 32);
    let again = run(dir.path(), &job_file, &[]);
    again.assert_failure();
    let text = again.combined();
    assert!(
        text.contains("changed since it was submitted")
            && text.contains("seeds.jsonl: size")
            && text.contains("--fresh"),
        "{}",
        again.describe()
    );
    assert_eq!(
        read_output(&out).rows.len(),
        8,
        "the old result is untouched"
    );

    run(dir.path(), &job_file, &["--fresh"]).assert_success();
    let output = read_output(&out);
    assert_eq!(output.rows.len(), 32);
    assert_accounted(&ids, &output);
}

#[test]
fn a_task_out_of_attempts_is_recorded_in_the_manifest_and_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    write_jsonl_seed(&seeds, 20);
    // Requests take 1.5 s, so a worker frozen right after leasing still holds its task when its
    // 1 s lease runs out; one attempt per task, so that expiry fails the task.
    let mock = MockBackend::start(&["--latency-ms", "1500"]);
    let out = dir.path().join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &out);
    job.rows_per_task = 10;
    // Two tasks of 10 rows (line scan): the failed task's rows are known and counted.
    job.limit = Some(1_000_000);
    job.extra_yaml = scheduling_yaml(1.0, 1);
    let job_file = job.write_to(dir.path());
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut coord = Coordinator::start(&state, &[]);
    let job_id = coord.submit(&job_file);

    let mut victim = coord.worker("victim", &["--parallel-tasks", "1"]);
    let leased_by_victim = |coord: &mut Coordinator| {
        log_lines_with(coord.proc(), &["task leased", "worker=\"victim\""])
    };
    wait_or_panic("the victim to lease a task", STEP_TIMEOUT, || {
        !leased_by_victim(&mut coord).is_empty()
    });
    victim.proc().pause();
    let lost_task = task_ids(&leased_by_victim(&mut coord))[0];
    let _steady = coord.worker("steady", &[]);
    let status = wait_job_end(&coord, &job_id, STEP_TIMEOUT);
    victim.proc().resume();
    assert_eq!(status["state"], "failed", "{status}");
    let error = status["error"].as_str().unwrap_or_default();
    assert!(error.contains("1 of 2 tasks failed"), "{status}");

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let failed = manifest["failed_tasks"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{manifest:#}");
    assert_eq!(failed[0]["task_id"], lost_task, "{manifest:#}");
    assert_eq!(failed[0]["rows"], 10, "{manifest:#}");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("expired"),
        "{manifest:#}"
    );
    assert_eq!(manifest["rows"], 10, "{manifest:#}");
    assert_eq!(
        manifest["accounting"]["failed_task_rows"], 10,
        "{manifest:#}"
    );
    assert_eq!(manifest["accounting"]["difference"], 0, "{manifest:#}");
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("Failed tasks (their seed rows are missing)")
            && card.contains("10 rows from row")
            && card.contains("| rows of failed tasks | 10 |"),
        "{card}"
    );
}
