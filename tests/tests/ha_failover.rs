//! HA over real processes: two coordinator replicas on one etcd, two workers that know both,
//! the mock backend. (b) kill -9 the leader mid-job: the standby takes over and the job
//! finishes; (c) restart etcd mid-job: the job finishes. Either way every seed row is in the
//! output or the failures exactly once and no output id repeats. Also: a leader stopped with
//! SIGTERM resigns, so its standby takes over without waiting for the lease TTL.

use std::path::Path;
use std::time::Duration;

use synthforge_tests::*;

const ROWS: usize = 2000;
/// Failover time of the test deployments (the leader's etcd lease TTL).
const TTL: &str = "4";

fn ready(c: &Coordinator) -> bool {
    matches!(http_get(&format!("{}/readyz", c.http_url())), Ok((200, _)))
}

/// The job's view from a coordinator's HTTP API, if it answers.
fn job_view(c: &Coordinator, id: &str) -> Option<serde_json::Value> {
    http_get_json(&format!("{}/api/jobs/{id}", c.http_url())).ok()
}

fn tasks_done(c: &Coordinator, id: &str) -> u64 {
    job_view(c, id)
        .and_then(|v| v["tasks_done"].as_u64())
        .unwrap_or(0)
}

fn job_state(c: &Coordinator, id: &str) -> String {
    job_view(c, id)
        .and_then(|v| v["record"]["state"].as_str().map(String::from))
        .unwrap_or_default()
}

/// A job slow enough to be interrupted: 20 tasks of 100 rows, 4 requests at a time per worker,
/// 50 ms each.
fn slow_job(
    dir: &Path,
    mock: &MockBackend,
) -> (std::path::PathBuf, Vec<String>, std::path::PathBuf) {
    let seeds = dir.join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, ROWS, 100);
    let out = dir.join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, &mock.url(), &out);
    job.max_concurrency = 4;
    job.extra_yaml = "scheduling:\n  lease_s: 10\n".into();
    (job.write_to(dir), ids, out)
}

fn replica(etcd: &Etcd) -> Coordinator {
    Coordinator::start_with_args(
        &StateBackend::Etcd(etcd.url()),
        &[],
        &["--leader-ttl-s", TTL],
    )
}

#[test]
fn kill_leader_mid_job_standby_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start();
    let mock = MockBackend::start(&["--latency-ms", "50"]);
    let (job_file, ids, out) = slow_job(dir.path(), &mock);

    let a = replica(&etcd);
    let b = replica(&etcd);
    wait_or_panic("one replica to lead", QUICK_TIMEOUT, || {
        ready(&a) || ready(&b)
    });
    let (mut leader, standby) = if ready(&a) { (a, b) } else { (b, a) };
    assert!(!ready(&standby), "both replicas claim to lead");

    let both = format!("{},{}", leader.url(), standby.url());
    let _workers: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&both, &format!("w{i}"), &[], &[]))
        .collect();
    let job_id = leader.submit(&job_file);

    // A standby refuses the job API and names the leader.
    let refused =
        synthforge(["status", &job_id, "--coordinator", &standby.url()]).run_to_end(QUICK_TIMEOUT);
    refused.assert_failure();
    assert!(
        refused
            .combined()
            .contains(&format!("standby; leader is {}", leader.url())),
        "{}",
        refused.describe()
    );

    wait_or_panic("a few tasks done before the kill", RUN_TIMEOUT, || {
        tasks_done(&leader, &job_id) >= 4
    });
    assert_eq!(
        job_state(&leader, &job_id),
        "running",
        "job ended before the kill"
    );
    leader.proc().kill();

    wait_or_panic("the standby to take over", QUICK_TIMEOUT, || {
        ready(&standby)
    });
    let mut standby = standby;
    assert!(standby.proc().output_contains("elected leader; serving"));
    wait_or_panic("the job to finish on the new leader", RUN_TIMEOUT, || {
        matches!(
            job_state(&standby, &job_id).as_str(),
            "succeeded" | "failed"
        )
    });
    assert_eq!(job_state(&standby, &job_id), "succeeded");

    let output = read_output(&out);
    assert_eq!(output.manifest.job_id, job_id);
    assert_accounted(&ids, &output);
    assert_eq!(output.rows.len(), ROWS);
}

#[test]
fn etcd_restarted_mid_job_job_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start();
    let mock = MockBackend::start(&["--latency-ms", "50"]);
    let (job_file, ids, out) = slow_job(dir.path(), &mock);

    let a = replica(&etcd);
    let b = replica(&etcd);
    wait_or_panic("one replica to lead", QUICK_TIMEOUT, || {
        ready(&a) || ready(&b)
    });
    let leader = if ready(&a) { &a } else { &b };
    let both = format!("{},{}", a.url(), b.url());
    let _workers: Vec<Worker> = (0..2)
        .map(|i| Worker::start(&both, &format!("w{i}"), &[], &[]))
        .collect();
    let job_id = leader.submit(&job_file);

    wait_or_panic(
        "a few tasks done before the etcd restart",
        RUN_TIMEOUT,
        || tasks_done(leader, &job_id) >= 4,
    );
    assert_eq!(job_state(leader, &job_id), "running");
    // Down for a while (longer than the leader's TTL), then back on the same data and ports.
    etcd.proc().kill();
    std::thread::sleep(Duration::from_secs(5));
    etcd.restart();

    wait_or_panic("a leader after the etcd restart", QUICK_TIMEOUT, || {
        ready(&a) || ready(&b)
    });
    let finished = |c: &Coordinator| job_state(c, &job_id) == "succeeded";
    wait_or_panic("the job to finish", RUN_TIMEOUT, || {
        finished(&a) || finished(&b)
    });
    // etcd was down longer than the TTL: the leader stepped down and an election followed.
    let (mut a, mut b) = (a, b);
    let elections: usize = [a.proc(), b.proc()]
        .iter()
        .map(|p| {
            (p.stdout() + &p.stderr())
                .matches("elected leader; serving")
                .count()
        })
        .sum();
    assert!(
        elections >= 2,
        "expected a re-election after the etcd restart, saw {elections}"
    );

    let output = read_output(&out);
    assert_eq!(output.manifest.job_id, job_id);
    assert_accounted(&ids, &output);
    assert_eq!(output.rows.len(), ROWS);
}

#[test]
fn graceful_stop_of_the_leader_hands_over() {
    let etcd = Etcd::start();
    let a = replica(&etcd);
    let b = replica(&etcd);
    wait_or_panic("one replica to lead", QUICK_TIMEOUT, || {
        ready(&a) || ready(&b)
    });
    let (mut leader, standby) = if ready(&a) { (a, b) } else { (b, a) };
    assert!(!ready(&standby));
    leader.proc().terminate();
    leader.proc().wait_success(QUICK_TIMEOUT);
    // The lease was revoked on the way out, so the standby need not wait for the TTL.
    assert!(
        leader.proc().output_contains("resigned leadership"),
        "{}",
        leader.proc().log_tail(20)
    );
    wait_or_panic("the standby to take over", QUICK_TIMEOUT, || {
        ready(&standby)
    });
}
