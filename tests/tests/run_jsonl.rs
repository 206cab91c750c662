//! `synthforge run` over a JSON Lines seed, with the output location and state directory given
//! on the command line (overriding the job file).

use synthforge_tests::*;

#[test]
fn run_jsonl_seed_with_output_override() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.jsonl");
    let ids = write_jsonl_seed(&seeds, 300);
    let mock = MockBackend::start(&["--latency-ms", "5"]);
    let in_job = dir.path().join("out-from-job-file");
    let out = dir.path().join("out-from-flag");
    let mut job = JobSpec::new(&seeds, SeedFormat::Jsonl, &mock.url(), &in_job);
    job.rows_per_task = 50;
    let job_file = job.write_to(dir.path());

    let done = synthforge(["run"])
        .arg(&job_file)
        .arg("--output")
        .arg(&out)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--workers", "3", "--no-progress"])
        .run_to_end(RUN_TIMEOUT);
    done.assert_success();
    assert_prints_output(&done, out.to_str().unwrap());
    assert!(
        !in_job.join("_manifest.json").exists(),
        "--output must override the job file's output.path"
    );

    let output = read_output(&out);
    assert_eq!(output.rows.len(), 300);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
    assert_eq!(pyarrow_read_count(&out), 300);
}
