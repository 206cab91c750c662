//! The in-process tier: a standalone cluster (coordinator + workers, embedded store) and the
//! mock backend run inside the test's own process, on ports bound at 0, with readiness by API.
//! They exercise the lease / fence / expiry rules in well under a second or two each; the
//! process-level tests keep what needs real processes (kill -9, SIGSTOP, etcd, S3, a browser).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synthforge::standalone::{Standalone, StandaloneConfig};
use synthforge_coordinator::control::scheduler::JobView;
use synthforge_coordinator::control::store::embedded::EmbeddedStore;
use synthforge_coordinator::control::store::TaskStore;
use synthforge_coordinator::control::task_machine::Backoff;
use synthforge_coordinator::finalize::manifest::manifest_finalizer;
use synthforge_coordinator::model::{JobState, TaskRecord, TaskState};
use synthforge_mock_backend::MockArgs;
use synthforge_proto as pb;
use synthforge_proto::job_service_client::JobServiceClient;
use synthforge_proto::worker_service_client::WorkerServiceClient;
use synthforge_tests::faults::scheduling_yaml;
use synthforge_tests::{assert_accounted, read_output, write_parquet_seed, JobSpec, SeedFormat};
use tokio_util::sync::CancellationToken;

/// Longest wait for anything in these tests; each normally takes a fraction of it.
const WAIT: Duration = Duration::from_secs(10);

/// The mock backend in process: `latency_ms` per request. Returns its `/v1` URL; the server
/// stops when the returned task is aborted (or the test's runtime ends).
async fn mock_backend(latency_ms: u64) -> (String, tokio::task::JoinHandle<()>) {
    let args = MockArgs {
        addr: "127.0.0.1:0".parse().expect("literal address"),
        latency_ms,
        ..MockArgs::default()
    };
    let (addr, task) = synthforge_mock_backend::spawn(args)
        .await
        .expect("mock backend starts");
    (format!("http://{addr}/v1"), task)
}

/// A job named `name` over a fresh Parquet seed of `rows` rows (tasks of `per_task` rows),
/// `concurrency` requests at a time and a lease of `lease_s`. Returns (seed ids, YAML, output).
fn job(
    dir: &Path,
    name: &str,
    rows: usize,
    per_task: u64,
    backend: &str,
    concurrency: u32,
    lease_s: f64,
) -> (Vec<String>, String, PathBuf) {
    let seeds = dir.join(format!("{name}.parquet"));
    let ids = write_parquet_seed(&seeds, rows, per_task as usize);
    let out = dir.join(format!("{name}-out"));
    let mut spec = JobSpec::new(&seeds, SeedFormat::Parquet, backend, &out);
    spec.name = name.into();
    spec.rows_per_task = per_task;
    spec.max_concurrency = concurrency;
    spec.extra_yaml = scheduling_yaml(lease_s, 5);
    (ids, spec.to_yaml(), out)
}

/// A standalone cluster over an embedded store in `dir`; the store is returned too, so tests
/// can read task records.
async fn cluster(
    dir: &Path,
    workers: usize,
    parallel_tasks: usize,
    grace: Duration,
) -> (Standalone, Arc<EmbeddedStore>) {
    let store = Arc::new(EmbeddedStore::open(&dir.join("state")).expect("open state store"));
    let config = StandaloneConfig {
        workers,
        parallel_tasks,
        grace,
        http_addr: None,
        credentials: Default::default(),
        // The scenarios are about leases and fencing, not the retry delay (unit-tested).
        retry_backoff: Backoff::NONE,
    };
    let c = Standalone::start(
        config,
        store.clone(),
        manifest_finalizer(),
        CancellationToken::new(),
    )
    .await
    .expect("standalone cluster starts");
    (c, store)
}

async fn submit(c: &Standalone, yaml: &str) -> String {
    c.scheduler()
        .submit(yaml, None)
        .await
        .expect("job accepted")
        .record
        .id
}

async fn view(c: &Standalone, job_id: &str) -> JobView {
    c.scheduler().job(job_id).await.expect("job is known")
}

async fn task_record(store: &EmbeddedStore, job_id: &str, task_id: u64) -> TaskRecord {
    store
        .load_all()
        .await
        .expect("store readable")
        .tasks
        .into_iter()
        .find(|t| t.job_id == job_id && t.task_id == task_id)
        .expect("task is stored")
}

/// Polls `check` until it holds; panics naming `what` after [`WAIT`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_state(c: &Standalone, job_id: &str, state: JobState) {
    wait_for(
        &format!("job {job_id} to be {}", state.as_str()),
        || async { view(c, job_id).await.record.state == state },
    )
    .await;
}

/// Data files a job's output directory holds (committed or not).
fn parquet_files(out: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(out.join("data")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_completes_with_every_row_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _mock) = mock_backend(0).await;
    let (ids, yaml, out) = job(dir.path(), "all-rows", 80, 20, &backend, 8, 5.0);
    let (c, _store) = cluster(dir.path(), 2, 2, Duration::from_secs(5)).await;
    let job_id = submit(&c, &yaml).await;
    wait_state(&c, &job_id, JobState::Succeeded).await;

    let v = view(&c, &job_id).await;
    assert_eq!((v.tasks_done, v.tasks_failed), (4, 0));
    assert_eq!(v.stats.rows_in, 80);
    assert_accounted(&ids, &read_output(&out));
    let outcomes = c.shutdown().await;
    let completed: u64 = outcomes
        .iter()
        .map(|o| {
            o.result
                .as_ref()
                .expect("worker ended cleanly")
                .tasks_completed
        })
        .sum();
    assert_eq!(completed, 4, "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_lease_is_fenced_off_and_its_late_completion_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _mock) = mock_backend(0).await;
    let (ids, yaml, out) = job(dir.path(), "fenced", 40, 20, &backend, 8, 0.3);
    // No worker yet: a "ghost" worker speaks the worker API by hand, leases a task and then
    // goes silent (no heartbeat), as a paused or partitioned worker would.
    let (mut c, store) = cluster(dir.path(), 0, 1, Duration::from_secs(5)).await;
    let job_id = submit(&c, &yaml).await;
    let mut ghost = WorkerServiceClient::connect(c.grpc_url()).await.unwrap();
    ghost
        .register(pb::RegisterRequest {
            worker_id: "ghost".into(),
            address: "test".into(),
            slots: 1,
            credentials: Vec::new(),
        })
        .await
        .unwrap();
    let lease = ghost
        .lease(pb::LeaseRequest {
            worker_id: "ghost".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .lease
        .expect("a task to lease");

    let telemetry = c.telemetry().clone();
    wait_for("the ghost's lease to expire", || async {
        telemetry.lease_expirations.load(Ordering::Relaxed) >= 1
    })
    .await;
    let expired = task_record(&store, &job_id, lease.task_id).await;
    assert_eq!(expired.state, TaskState::Pending, "{expired:?}");

    // Fenced off: its heartbeat is refused and its late completion discarded.
    let beat = ghost
        .heartbeat(pb::HeartbeatRequest {
            worker_id: "ghost".into(),
            job_id: job_id.clone(),
            task_id: lease.task_id,
            attempt: lease.attempt,
            progress: None,
            backends: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!beat.keep_going, "an expired lease must not be renewed");
    let late = ghost
        .complete(pb::CompleteRequest {
            worker_id: "ghost".into(),
            job_id: job_id.clone(),
            task_id: lease.task_id,
            attempt: lease.attempt,
            files: vec![pb::OutputFile {
                path: "data/ghost.parquet".into(),
                rows: 20,
                bytes: 1,
                kind: "data".into(),
            }],
            stats: Some(pb::TaskStats {
                rows_in: 20,
                rows_out: 20,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!late.accepted, "a fenced-off completion must be rejected");
    assert!(!late.reason.is_empty());

    // A real worker runs the task again under a newer attempt; the dataset is whole, once.
    c.add_worker("w1");
    wait_state(&c, &job_id, JobState::Succeeded).await;
    let rerun = task_record(&store, &job_id, lease.task_id).await;
    assert_eq!(rerun.state, TaskState::Done);
    assert!(rerun.attempt > lease.attempt, "{rerun:?}");
    let output = read_output(&out);
    assert!(
        output
            .manifest
            .files
            .iter()
            .all(|f| f.path != "data/ghost.parquet"),
        "the fenced-off file is in the manifest: {:?}",
        output.manifest.files
    );
    assert_accounted(&ids, &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_job_stops_its_running_task_and_frees_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    // One request at a time of 300 ms: a task of 20 rows would hold the only slot for 6 s.
    let (backend, _mock) = mock_backend(300).await;
    let (_, slow, slow_out) = job(dir.path(), "cancelled", 40, 20, &backend, 1, 1.0);
    let (quick_ids, quick, quick_out) = job(dir.path(), "after", 4, 4, &backend, 4, 1.0);
    let (c, _store) = cluster(dir.path(), 1, 1, Duration::from_secs(5)).await;
    let slow_id = submit(&c, &slow).await;
    wait_for("the slow job's first task to be leased", || async {
        view(&c, &slow_id).await.tasks_leased == 1
    })
    .await;
    let quick_id = submit(&c, &quick).await;

    let cancelled_at = Instant::now();
    let mut jobs = JobServiceClient::connect(c.grpc_url()).await.unwrap();
    let r = jobs
        .cancel(pb::CancelRequest {
            job_id: slow_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.cancelled);
    // The worker's only slot is freed by the cancel (its heartbeat is refused), long before
    // the cancelled task could have finished on its own.
    wait_state(&c, &quick_id, JobState::Succeeded).await;
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(4),
        "the cancelled task kept its slot for {:?}",
        cancelled_at.elapsed()
    );
    let v = view(&c, &slow_id).await;
    assert_eq!(v.record.state, JobState::Cancelled);
    assert_eq!(v.tasks_done, 0);
    assert!(
        parquet_files(&slow_out).is_empty(),
        "the stopped task left output: {:?}",
        parquet_files(&slow_out)
    );
    assert_accounted(&quick_ids, &read_output(&quick_out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_shut_down_mid_task_hands_its_task_back() {
    let dir = tempfile::tempdir().unwrap();
    // 4 rows, one request at a time of 300 ms: the task runs for about 1.2 s.
    let (backend, _mock) = mock_backend(300).await;
    let (ids, yaml, out) = job(dir.path(), "handed-back", 4, 4, &backend, 1, 30.0);
    let (mut c, store) = cluster(dir.path(), 1, 1, Duration::ZERO).await;
    let job_id = submit(&c, &yaml).await;
    wait_for("the task to be leased", || async {
        view(&c, &job_id).await.tasks_leased == 1
    })
    .await;

    // No grace: the running task is handed back at once, not left to its 30 s lease.
    let stopped = c
        .stop_worker("local-0")
        .await
        .expect("worker local-0 exists");
    let summary = stopped.result.expect("worker ended cleanly");
    assert_eq!((summary.tasks_completed, summary.tasks_failed), (0, 1));
    let v = view(&c, &job_id).await;
    assert_eq!((v.tasks_leased, v.tasks_pending), (0, 1));
    let handed_back = task_record(&store, &job_id, 0).await;
    assert_eq!(handed_back.state, TaskState::Pending);
    assert!(
        handed_back
            .last_error
            .contains("shut down before finishing"),
        "{handed_back:?}"
    );
    assert_eq!(c.telemetry().lease_expirations.load(Ordering::Relaxed), 0);

    c.add_worker("local-1");
    wait_state(&c, &job_id, JobState::Succeeded).await;
    assert_accounted(&ids, &read_output(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_shut_down_within_its_grace_finishes_its_task() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _mock) = mock_backend(100).await;
    let (ids, yaml, out) = job(dir.path(), "graceful", 4, 4, &backend, 1, 30.0);
    let (mut c, _store) = cluster(dir.path(), 1, 1, Duration::from_secs(10)).await;
    let job_id = submit(&c, &yaml).await;
    wait_for("the task to be leased", || async {
        view(&c, &job_id).await.tasks_leased == 1
    })
    .await;

    let stopped = c
        .stop_worker("local-0")
        .await
        .expect("worker local-0 exists");
    let summary = stopped.result.expect("worker ended cleanly");
    assert_eq!((summary.tasks_completed, summary.tasks_failed), (1, 0));
    wait_state(&c, &job_id, JobState::Succeeded).await;
    assert_accounted(&ids, &read_output(&out));
}
