//! The distributed deployment: a `synthforge coordinator` process and three `synthforge worker`
//! processes over gRPC on 127.0.0.1, a mock backend process, seed and output on SeaweedFS S3.
//! Run once with the embedded state store and once with etcd.

use std::path::Path;

use synthforge_tests::*;

const ROWS: usize = 1200;

#[test]
fn three_workers_embedded_state_s3_io() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateBackend::Dir(dir.path().join("state"));
    run_cluster_job(&state, dir.path());
}

#[test]
fn three_workers_etcd_state_s3_io() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    run_cluster_job(&StateBackend::Etcd(etcd.url()), dir.path());
    assert!(etcd.is_healthy());
}

fn run_cluster_job(state: &StateBackend, dir: &Path) {
    let s3 = S3::start();
    let mock = MockBackend::start(&["--latency-ms", "10"]);
    let seeds = dir.join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, ROWS, 100);
    s3.put_file("seeds/seeds.parquet", &seeds);

    let job = JobSpec::new(
        s3.url("seeds/seeds.parquet"),
        SeedFormat::Parquet,
        &mock.url(),
        s3.url("out/e2e"),
    );
    let job_file = job.write_to(dir);

    let coordinator = Coordinator::start(state, &s3.env());
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| coordinator.worker(&format!("w{i}"), &[]))
        .collect();

    let (done, job_id) = coordinator.submit_wait(&job_file, RUN_TIMEOUT);
    done.assert_success();
    let job_id = job_id.unwrap_or_else(|| panic!("no `job_id:` line\n{}", done.describe()));

    let status = coordinator.status_json(&job_id);
    assert!(
        status.to_string().contains(&job_id),
        "status --json does not mention the job: {status}"
    );
    for w in &mut workers {
        assert!(
            w.proc().is_running(),
            "{} exited during the job",
            w.proc().name()
        );
    }

    let local = dir.join("out");
    s3.download("out/e2e", &local);
    let output = read_output(&local);
    assert_eq!(output.manifest.job_id, job_id);
    assert_eq!(output.rows.len(), ROWS);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
    assert_eq!(pyarrow_read_count(&local), ROWS as u64);
}
