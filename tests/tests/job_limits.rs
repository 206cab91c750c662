//! A job file's work is bounded, and each bound fails with a clear message at `validate` and at
//! `run` (real processes): stage count, iteration rounds, template render cost, prompt size,
//! YAML size and depth, output paths that climb out, and output prefixes that hold another
//! job's dataset or a user's README.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use synthforge_tests::*;

/// A 20-row JSONL job against `backend` writing to `<dir>/out`, after `edit` changed its YAML.
fn job(dir: &Path, backend: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let seeds = dir.join("seeds.jsonl");
    write_jsonl_seed(&seeds, 20);
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, backend, dir.join("out"));
    job.rows_per_task = 10;
    let path = job.write_to(dir);
    let yaml = edit(std::fs::read_to_string(&path).unwrap());
    std::fs::write(&path, yaml).unwrap();
    path
}

fn validate(job: &Path, args: &[&str]) -> Finished {
    synthforge(["validate"])
        .arg(job)
        .args(args)
        .run_to_end(QUICK_TIMEOUT)
}

fn run(dir: &Path, job: &Path, args: &[&str]) -> Finished {
    synthforge(["run"])
        .arg(job)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--workers", "1", "--no-progress"])
        .args(args)
        .run_to_end(RUN_TIMEOUT)
}

/// Asserts both `validate` and `run` refuse `job` with every one of `needles` in stderr.
#[track_caller]
fn assert_refused(dir: &Path, job: &Path, needles: &[&str]) {
    for done in [validate(job, &[]), run(dir, job, &[])] {
        done.assert_failure();
        for needle in needles {
            assert!(
                done.stderr.contains(needle),
                "{needle}\n{}",
                done.describe()
            );
        }
    }
}

/// Appends pipeline stages after the generate stage.
fn add_stages(yaml: String, stages: &str) -> String {
    yaml.replacen("backends:\n", &format!("{stages}backends:\n"), 1)
}

#[test]
fn too_many_stages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), "http://127.0.0.1:9/v1", |y| {
        add_stages(y, &"  - {stage: filter, min_words: 1}\n".repeat(300))
    });
    assert_refused(
        dir.path(),
        &job,
        &["field `pipeline`", "has 301 stages; at most 32"],
    );
}

#[test]
fn too_many_rounds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), "http://127.0.0.1:9/v1", |y| {
        add_stages(y, "  - {stage: evolve, backend: mock, rounds: 500}\n")
    });
    assert_refused(dir.path(), &job, &["pipeline[1].rounds", "at most 10"]);
}

#[test]
fn deep_or_huge_yaml_is_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("deep.yaml");
    std::fs::write(&deep, format!("name: {}", "[".repeat(100_000))).unwrap();
    let started = Instant::now();
    assert_refused(dir.path(), &deep, &["nests", "at most 64"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let huge = dir.path().join("huge.yaml");
    std::fs::write(&huge, format!("name: x\n#{}\n", "y".repeat(2 << 20))).unwrap();
    assert_refused(dir.path(), &huge, &["bytes; at most 1048576"]);
}

#[test]
fn an_output_path_climbing_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job = job(dir.path(), "http://127.0.0.1:9/v1", |y| {
        let out = dir.path().join("out").display().to_string();
        y.replace(&format!("\"{out}\""), &format!("\"{out}/../../elsewhere\""))
    });
    assert_refused(
        dir.path(),
        &job,
        &["output.path", "climbs out of its prefix with `..`"],
    );
}

#[test]
fn a_costly_template_is_stopped_in_validate() {
    let dir = tempfile::tempdir().unwrap();
    let nested =
        "{% for a in range(1000) %}{% for b in range(1000) %}{{ text }}{% endfor %}{% endfor %}";
    let job = job(dir.path(), "http://127.0.0.1:9/v1", |y| {
        y.replace(
            &serde_json::to_string(DEFAULT_TEMPLATE).unwrap(),
            &serde_json::to_string(nested).unwrap(),
        )
    });
    let started = Instant::now();
    let done = validate(&job, &[]);
    done.assert_failure();
    assert!(done.stderr.contains("fuel"), "{}", done.describe());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn an_oversized_prompt_becomes_a_failure_row_not_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let job = job(dir.path(), &mock.url(), |y| {
        y.replacen(
            "    api: chat\n",
            "    api: chat\n    max_prompt_tokens: 3\n",
            1,
        )
    });
    let done = run(dir.path(), &job, &[]);
    assert!(
        done.stdout.contains("output rows: 0  failures: 20"),
        "{}",
        done.describe()
    );
    let failures = read_output(&dir.path().join("out"));
    let reasons = format!("{:?}", failures.failures);
    assert!(reasons.contains("over the cap of 3"), "{reasons}");
}

#[test]
fn an_output_holding_another_dataset_or_a_users_readme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("README.md"), "# my notes\n").unwrap();
    let first = job(dir.path(), &mock.url(), |y| y);
    assert_refused(
        dir.path(),
        &first,
        &["README.md not written by synthforge", "--overwrite"],
    );
    validate(&first, &["--overwrite"]).assert_success();
    run(dir.path(), &first, &["--overwrite"]).assert_success();
    // The same job again resumes into its own dataset; another job is refused.
    run(dir.path(), &first, &[]).assert_success();
    let other = job(dir.path(), &mock.url(), |y| {
        y.replacen("name: \"e2e\"", "name: \"other\"", 1)
    });
    assert_refused(
        dir.path(),
        &other,
        &["already holds the dataset of job `e2e", "--overwrite"],
    );
}

#[test]
fn submit_refuses_an_output_holding_another_jobs_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let coord = Coordinator::start(&StateBackend::Dir(dir.path().join("state")), &[]);
    let _worker = coord.worker("limits-worker", &[]);
    let first = job(dir.path(), &mock.url(), |y| y);
    coord.submit_wait(&first, RUN_TIMEOUT).0.assert_success();
    let other = job(dir.path(), &mock.url(), |y| {
        y.replacen("name: \"e2e\"", "name: \"other\"", 1)
    });
    let refused = synthforge(["submit"])
        .arg(&other)
        .args(["--coordinator", &coord.url()])
        .run_to_end(QUICK_TIMEOUT);
    refused.assert_failure();
    assert!(
        refused
            .stderr
            .contains("already holds the dataset of job `e2e")
            && refused.stderr.contains("--overwrite"),
        "{}",
        refused.describe()
    );
    synthforge(["submit"])
        .arg(&other)
        .args(["--coordinator", &coord.url(), "--overwrite"])
        .run_to_end(QUICK_TIMEOUT)
        .assert_success();
}
