//! Worker faults over real processes (one coordinator process, worker processes, the mock
//! backend process): kill -9 mid-task, SIGSTOP past the lease, SIGTERM with a grace period.
//! Each test ends by checking that every seed row is accounted for exactly once.

use std::path::Path;
use std::time::Duration;

use synthforge_tests::faults::*;
use synthforge_tests::*;

/// How long a fault scenario may take overall (leases must expire and tasks re-run).
const JOB_TIMEOUT: Duration = Duration::from_secs(150);
/// Waiting for one log line of a running job.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

/// A Parquet seed of `rows` rows cut into tasks of `per_task` rows, a job against `backend`
/// with a short lease, and its output dir. Returns (seed ids, job file, output dir).
fn setup(
    dir: &Path,
    rows: usize,
    per_task: u64,
    backend: &str,
    concurrency: u32,
    lease_s: f64,
) -> (Vec<String>, std::path::PathBuf, std::path::PathBuf) {
    let seeds = dir.join("seeds.parquet");
    let ids = write_parquet_seed(&seeds, rows, per_task as usize);
    let out = dir.join("out");
    let mut job = JobSpec::new(&seeds, SeedFormat::Parquet, backend, &out);
    job.rows_per_task = per_task;
    job.max_concurrency = concurrency;
    job.extra_yaml = scheduling_yaml(lease_s, 20);
    (ids, job.write_to(dir), out)
}

/// Lines of the coordinator's log saying `what` about worker `id`.
fn coord_lines(coord: &mut Coordinator, what: &str, id: &str) -> Vec<String> {
    log_lines_with(coord.proc(), &[what, &format!("worker=\"{id}\"")])
}

#[test]
fn kill_9_workers_mid_task_repeatedly() {
    let dir = tempfile::tempdir().unwrap();
    // 24 tasks of 20 rows; 4 requests at a time of 250 ms: a task takes about 1.25 s.
    let mock = MockBackend::start(&["--latency-ms", "250"]);
    let (ids, job_file, out) = setup(dir.path(), 480, 20, &mock.url(), 4, 2.0);
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut coord = Coordinator::start(&state, &[]);
    let job_id = coord.submit(&job_file);
    let names = ["w1", "w2", "w3"];
    let mut workers: Vec<Worker> = names.iter().map(|n| coord.worker(n, &[])).collect();

    for round in 0..3 {
        let i = round % names.len();
        let leased_before = coord_lines(&mut coord, "task leased", names[i]).len();
        wait_or_panic(
            &format!("{} to lease a task (round {round})", names[i]),
            STEP_TIMEOUT,
            || coord_lines(&mut coord, "task leased", names[i]).len() > leased_before,
        );
        // Mid-task: requests are in flight at the backend, part of the rows are done.
        std::thread::sleep(Duration::from_millis(600));
        workers[i].proc().kill();
        workers[i].proc().restart();
    }

    let status = wait_job_end(&coord, &job_id, JOB_TIMEOUT);
    assert_eq!(status["state"], "succeeded", "{status}");
    // The kills hit leased tasks: their leases expired and the tasks ran again.
    let expired = log_lines_with(coord.proc(), &["lease expired"]);
    assert!(
        !expired.is_empty(),
        "no lease expired although 3 workers were killed mid-task\n{}",
        coord.proc().log_tail(40)
    );
    let output = read_output(&out);
    assert_eq!(output.rows.len(), 480);
    assert_accounted(&ids, &output);
    assert_default_generate_rows(&output);
    assert_files_match_manifest(&output);
    drop(workers);
}

#[test]
fn worker_paused_past_its_lease_is_fenced_off() {
    let dir = tempfile::tempdir().unwrap();
    // Every request of a task is sent at once and takes 1.5 s: a worker frozen right after
    // leasing gets all its answers while frozen, and completes the moment it thaws.
    let mock = MockBackend::start(&["--latency-ms", "1500"]);
    let (ids, job_file, out) = setup(dir.path(), 80, 10, &mock.url(), 64, 2.0);
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut coord = Coordinator::start(&state, &[]);
    let job_id = coord.submit(&job_file);

    let mut victim = coord.worker("victim", &["--parallel-tasks", "1"]);
    wait_or_panic("the victim to lease a task", STEP_TIMEOUT, || {
        !coord_lines(&mut coord, "task leased", "victim").is_empty()
    });
    let victim_task = task_ids(&coord_lines(&mut coord, "task leased", "victim"))[0];
    wait_or_panic(
        "the victim's 10 requests to reach the backend",
        STEP_TIMEOUT,
        || mock.stats()["requests_total"].as_u64() >= Some(10),
    );
    victim.proc().pause();

    // While it is frozen its lease expires and another worker does the whole job.
    let steady = coord.worker("steady", &[]);
    let status = wait_job_end(&coord, &job_id, JOB_TIMEOUT);
    assert_eq!(status["state"], "succeeded", "{status}");
    let expired = log_lines_with(coord.proc(), &["lease expired"]);
    assert!(
        task_ids(&expired).contains(&victim_task),
        "the frozen worker's lease of task {victim_task} never expired\n{}",
        coord.proc().log_tail(40)
    );
    let paths = |files: &[ManifestFile]| files.iter().map(|f| f.path.clone()).collect::<Vec<_>>();
    let manifest_before = paths(&read_output(&out).manifest.files);

    // Thaw it: whatever it sends for its stale attempt must be refused.
    victim.proc().resume();
    let refused = |coord: &mut Coordinator, victim: &mut Worker| {
        !coord_lines(coord, "completion rejected", "victim").is_empty()
            || victim.proc().output_contains("lease lost")
    };
    wait_or_panic("the thawed worker to be fenced off", STEP_TIMEOUT, || {
        refused(&mut coord, &mut victim)
    });
    let rejected = coord_lines(&mut coord, "completion rejected", "victim");
    if !rejected.is_empty() {
        // The late completion reached the coordinator and was refused; the worker then
        // deletes the files of its attempt.
        assert!(rejected[0].contains("fenced off"), "{rejected:?}");
        wait_or_panic(
            "the worker to report deleting its output",
            STEP_TIMEOUT,
            || victim.proc().output_contains("deleting our output"),
        );
    } else {
        eprintln!("the thawed worker learned from its heartbeat that its lease was lost");
    }

    let output = read_output(&out);
    assert_eq!(
        paths(&output.manifest.files),
        manifest_before,
        "the manifest changed"
    );
    let stale = format!("part-{victim_task:06}-1");
    assert!(
        !output
            .manifest
            .files
            .iter()
            .any(|f| f.path.contains(&stale)),
        "a file of the fenced-off attempt is in the manifest: {:?}",
        output.manifest.files
    );
    assert!(
        !relative_files(&out, "data")
            .iter()
            .any(|f| f.contains(&stale)),
        "a file of the fenced-off attempt remains: {:?}",
        relative_files(&out, "data")
    );
    assert_accounted(&ids, &output);
    assert_files_match_manifest(&output);
    drop(steady);
}

#[test]
fn sigterm_lets_a_worker_finish_its_task_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    // Tasks of 20 rows, 2 requests at a time of 300 ms: about 3 s each.
    let mock = MockBackend::start(&["--latency-ms", "300"]);
    let (ids, job_file, out) = setup(dir.path(), 200, 20, &mock.url(), 2, 2.0);
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut coord = Coordinator::start(&state, &[]);
    let job_id = coord.submit(&job_file);
    let mut leaving = coord.worker("leaving", &["--grace-s", "60"]);
    wait_or_panic("the worker to lease a task", STEP_TIMEOUT, || {
        !coord_lines(&mut coord, "task leased", "leaving").is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    leaving.proc().terminate();
    leaving.proc().wait_success(STEP_TIMEOUT);

    // Every task it held was finished by it, none handed back or left to expire.
    let mut leased = task_ids(&coord_lines(&mut coord, "task leased", "leaving"));
    let mut completed = task_ids(&coord_lines(&mut coord, "task completed", "leaving"));
    leased.sort_unstable();
    completed.sort_unstable();
    assert!(!leased.is_empty());
    assert_eq!(
        leased, completed,
        "tasks leased vs completed by the leaving worker"
    );
    assert!(leaving.proc().output_contains("shutdown signal"));

    let stays = coord.worker("stays", &[]);
    let status = wait_job_end(&coord, &job_id, JOB_TIMEOUT);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(log_lines_with(coord.proc(), &["lease expired"]).is_empty());
    let output = read_output(&out);
    assert_accounted(&ids, &output);
    assert_files_match_manifest(&output);
    drop(stays);
}

#[test]
fn sigterm_past_the_grace_period_hands_the_task_back() {
    let dir = tempfile::tempdir().unwrap();
    // Three tasks of one row; every request takes 20 s, far past a 1 s grace period.
    let mock = MockBackend::start(&["--latency-ms", "20000"]);
    let (ids, job_file, out) = setup(dir.path(), 3, 1, &mock.url(), 4, 30.0);
    let state = StateBackend::Dir(dir.path().join("state"));
    let mut coord = Coordinator::start(&state, &[]);
    let job_id = coord.submit(&job_file);
    let mut leaving = coord.worker("leaving", &["--grace-s", "1", "--parallel-tasks", "1"]);
    wait_or_panic(
        "the worker's request to reach the backend",
        STEP_TIMEOUT,
        || mock.stats()["requests_total"].as_u64() >= Some(1),
    );
    leaving.proc().terminate();
    leaving.proc().wait_success(STEP_TIMEOUT);
    assert!(leaving.proc().output_contains("grace period over"));
    // It left without waiting for its request's answer (no 200 was ever sent), and the
    // coordinator heard it hand the task back instead of waiting 30 s for the lease to expire.
    let stats = mock.stats();
    assert_eq!(stats["requests_by_status"]["200"], 0, "{stats}");
    let handed_back = coord_lines(&mut coord, "task failed", "leaving");
    assert_eq!(handed_back.len(), 1, "{handed_back:?}");
    assert!(handed_back[0].contains("retry=true"), "{handed_back:?}");

    let stays = coord.worker("stays", &["--parallel-tasks", "3"]);
    let status = wait_job_end(&coord, &job_id, JOB_TIMEOUT);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(log_lines_with(coord.proc(), &["lease expired"]).is_empty());
    let output = read_output(&out);
    assert_accounted(&ids, &output);
    assert_files_match_manifest(&output);
    drop(stays);
}
