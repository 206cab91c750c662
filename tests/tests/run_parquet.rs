//! `synthforge run` (coordinator and workers in one process) over a Parquet seed with several
//! row groups, against the mock backend running as its own process.

use synthforge_tests::*;

#[test]
fn run_parquet_seed_produces_one_record_per_row() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = dir.path().join("seeds.parquet");
    // 8 row groups of 128 rows (the last one 104): tasks are cut along row groups.
    let ids = write_parquet_seed(&seeds, 1000, 128);
    let mock = MockBackend::start(&["--latency-ms", "5"]);
    let out = dir.path().join("out");
    let job = JobSpec::new(&seeds, SeedFormat::Parquet, &mock.url(), &out);
    let job_file = job.write_to(dir.path());

    let done = synthforge(["run"])
        .arg(&job_file)
        .args(["--workers", "2", "--no-progress"])
        .run_to_end(RUN_TIMEOUT);
    done.assert_success();
    assert_prints_output(&done, out.to_str().unwrap());

    let output = read_output(&out);
    assert_eq!(output.rows.len(), 1000);
    assert!(output.failures.is_empty(), "{:?}", output.failures);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
    assert_eq!(pyarrow_read_count(&out), 1000);
}
