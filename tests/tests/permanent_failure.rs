//! A failure that would recur on every attempt is not retried: a stage whose configuration
//! cannot be built on the worker (a `decontaminate` benchmark file that does not exist; the
//! coordinator does not open it at submit) fails its task after one attempt, even with
//! `max_attempts: 3`, and the job fails naming the cause.

mod stages_common;

use stages_common::*;
use synthforge_tests::*;

/// The last record the embedded store wrote for each task of the log in `state_dir`, as JSON.
fn final_task_records(state_dir: &std::path::Path) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(state_dir.join("state.log")).expect("state.log");
    let mut last: std::collections::BTreeMap<u64, serde_json::Value> = Default::default();
    for line in log.lines().filter(|l| !l.is_empty()) {
        let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        for t in entry["Tasks"].as_array().into_iter().flatten() {
            last.insert(t["task_id"].as_u64().expect("task_id"), t.clone());
        }
    }
    last.into_values().collect()
}

#[test]
fn a_stage_config_error_fails_the_task_after_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let seed = dir.path().join("seed.jsonl");
    write_rows(&seed, &[("a".into(), "text".into())]);
    let out = dir.path().join("out");
    let pipeline = "  - stage: generate\n    backend: m\n    template: \"{{ text }}\"\n  - stage: decontaminate\n    benchmark: /nonexistent/bench.jsonl\n";
    let yaml = format!(
        "{}scheduling:\n  max_attempts: 3\n",
        job_yaml(
            "permanent",
            &seed,
            &out,
            pipeline,
            &backend("m", &mock, "mock-model"),
        )
    );
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, yaml).unwrap();
    let state = dir.path().join("state");
    let done = synthforge(["run"])
        .arg(&job)
        .args(["--no-progress", "--workers", "1", "--state-dir"])
        .arg(&state)
        .run_to_end(RUN_TIMEOUT);
    let text = done.combined();
    assert!(
        text.contains("/nonexistent/bench.jsonl"),
        "the error must name the benchmark file:\n{text}"
    );

    let tasks = final_task_records(&state);
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(tasks[0]["state"], "failed", "{:#?}", tasks[0]);
    assert_eq!(
        tasks[0]["attempt"], 1,
        "a permanent failure must not be retried: {:#?}",
        tasks[0]
    );
    assert!(
        tasks[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("/nonexistent/bench.jsonl")),
        "{:#?}",
        tasks[0]
    );
}
