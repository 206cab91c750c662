//! `Scheduler` over the in-memory store: leases, expiry, fencing, idempotent completion,
//! attempts, cancellation and finalization. Leases are tens of milliseconds long, so every
//! test runs in well under a second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use synthforge_core::sink::WrittenFile;

use super::*;
use crate::control::store::embedded::EmbeddedStore;

/// A lease short enough to expire within a test.
const SHORT_LEASE_S: f64 = 0.05;
const LONG_LEASE_S: f64 = 600.0;

/// A scheduler over an in-memory store, with a finalizer that records each call.
struct Harness {
    sched: Arc<Scheduler>,
    store: Arc<EmbeddedStore>,
    /// The tasks handed to each call of the finalizer, in call order.
    finalized: Arc<Mutex<Vec<Vec<TaskRecord>>>>,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        Self::with_backoff(Backoff::NONE)
    }

    /// A harness whose retried tasks wait `backoff` before their next lease.
    fn with_backoff(backoff: Backoff) -> Self {
        let store = Arc::new(EmbeddedStore::in_memory());
        let finalized: Arc<Mutex<Vec<Vec<TaskRecord>>>> = Arc::default();
        let calls = finalized.clone();
        let finalizer: Finalizer = Arc::new(move |_job, _spec, tasks, _leader| {
            calls.lock().unwrap().push(tasks);
            Box::pin(async { Ok(Manifest::default()) })
        });
        Harness {
            sched: Scheduler::with_retry_backoff(store.clone(), finalizer, backoff),
            store,
            finalized,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Submits a job of `tasks` one-row tasks; returns its id.
    async fn submit(&self, name: &str, tasks: u64, lease_s: f64, max_attempts: u32) -> String {
        let yaml = self.job_yaml(name, tasks, lease_s, max_attempts);
        let mut view = self.sched.submit(&yaml, None).await.unwrap();
        // Planned in the background: within Submit's grace, unless the machine is loaded.
        while view.record.state == JobState::Planning {
            tokio::time::sleep(Duration::from_millis(5)).await;
            view = self.view(&view.record.id).await;
        }
        assert_eq!(view.record.tasks_total, tasks);
        view.record.id
    }

    /// Writes a seed file of `tasks` rows and returns the spec of a job over it.
    fn job_yaml(&self, name: &str, tasks: u64, lease_s: f64, max_attempts: u32) -> String {
        let seed = self.dir.path().join(format!("{name}.jsonl"));
        let rows: String = (0..tasks)
            .map(|i| format!("{{\"id\": \"r{i}\", \"text\": \"row {i}\"}}\n"))
            .collect();
        std::fs::write(&seed, rows).unwrap();
        let yaml = format!(
            "name: {name}
seed: 1
input:
  path: '{seed}'
  format: jsonl
  rows_per_task: 1
  limit: 1000000
pipeline:
  - stage: generate
    backend: b
    template: '{{{{ text }}}}'
backends:
  b:
    url: http://127.0.0.1:9/v1
    model: m
output:
  path: '{out}'
scheduling:
  lease_s: {lease_s}
  max_attempts: {max_attempts}
",
            seed = seed.display(),
            out = self.dir.path().join(format!("{name}-out")).display(),
        );
        yaml
    }

    async fn lease(&self, worker: &str) -> Lease {
        self.sched
            .lease(worker)
            .await
            .unwrap()
            .expect("a pending task")
    }

    async fn complete(&self, worker: &str, l: &Lease) -> Result<(), String> {
        self.sched
            .complete(worker, &l.job_id, l.task_id, l.attempt, files(l), stats())
            .await
            .unwrap()
    }

    async fn stored(&self, job_id: &str, task_id: u64) -> TaskRecord {
        self.store
            .load_all()
            .await
            .unwrap()
            .tasks
            .into_iter()
            .find(|t| t.job_id == job_id && t.task_id == task_id)
            .expect("stored task")
    }

    async fn view(&self, job_id: &str) -> JobView {
        self.sched.job(job_id).await.expect("known job")
    }

    /// Waits (briefly) for the job to reach a terminal state; finalization runs in a task.
    async fn wait_terminal(&self, job_id: &str) -> JobView {
        for _ in 0..400 {
            let v = self.view(job_id).await;
            if v.record.state.is_terminal() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "job {job_id} did not end: {:?}",
            self.view(job_id).await.record
        );
    }

    fn finalizer_calls(&self) -> usize {
        self.finalized.lock().unwrap().len()
    }
}

/// The files an attempt writes (named by attempt, as workers name them).
fn files(l: &Lease) -> Vec<WrittenFile> {
    vec![WrittenFile {
        path: format!("data/part-{:06}-{}.parquet", l.task_id, l.attempt),
        rows: 1,
        bytes: 10,
        kind: "data".into(),
    }]
}

fn stats() -> TaskStats {
    TaskStats {
        rows_in: 1,
        rows_out: 1,
        seeds: synthforge_core::stats::SeedOutcomes {
            output: 1,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Lets every lease granted so far pass its deadline.
async fn let_leases_expire() {
    tokio::time::sleep(Duration::from_secs_f64(SHORT_LEASE_S * 2.0)).await;
}

#[tokio::test]
async fn an_expired_lease_returns_the_task_to_pending_with_a_new_attempt() {
    let h = Harness::new();
    let job = h.submit("expiry", 1, SHORT_LEASE_S, 3).await;
    let first = h.lease("w1").await;
    assert_eq!((first.task_id, first.attempt), (0, 1));
    assert_eq!(
        h.sched.requeue_expired().await.unwrap(),
        0,
        "not expired yet"
    );

    let_leases_expire().await;
    assert_eq!(h.sched.requeue_expired().await.unwrap(), 1);
    let v = h.view(&job).await;
    assert_eq!((v.tasks_pending, v.tasks_leased), (1, 0));
    let stored = h.stored(&job, 0).await;
    assert_eq!((stored.state, stored.attempt), (TaskState::Pending, 1));
    assert!(
        stored.last_error.contains("expired"),
        "{}",
        stored.last_error
    );

    let second = h.lease("w2").await;
    assert_eq!((second.task_id, second.attempt), (0, 2));
    let stored = h.stored(&job, 0).await;
    assert_eq!(
        (stored.state, stored.attempt, stored.worker.as_str()),
        (TaskState::Leased, 2, "w2")
    );
}

#[tokio::test]
async fn a_fenced_off_attempt_is_refused_and_its_files_never_recorded() {
    let h = Harness::new();
    let job = h.submit("fencing", 1, SHORT_LEASE_S, 3).await;
    let stale = h.lease("w1").await;
    let_leases_expire().await;
    h.sched.requeue_expired().await.unwrap();
    let current = h.lease("w2").await;
    assert_eq!(current.attempt, stale.attempt + 1);

    // The stale holder's heartbeat tells it to stop; its completion and failure are refused.
    let beat = h
        .sched
        .heartbeat("w1", &job, 0, stale.attempt, 1)
        .await
        .unwrap();
    assert_eq!(beat, None);
    let refused = h.complete("w1", &stale).await.unwrap_err();
    assert!(refused.contains("fenced off"), "{refused}");
    h.sched
        .fail("w1", &job, 0, stale.attempt, "late failure", false)
        .await
        .unwrap();
    let stored = h.stored(&job, 0).await;
    assert_eq!(
        (stored.state, stored.attempt, stored.worker.as_str()),
        (TaskState::Leased, current.attempt, "w2"),
        "the stale attempt changed the task"
    );
    assert!(stored.files.is_empty());

    // The current holder renews and completes; only its files are recorded.
    let beat = h
        .sched
        .heartbeat("w2", &job, 0, current.attempt, 1)
        .await
        .unwrap();
    assert!(beat.is_some());
    h.complete("w2", &current).await.unwrap();
    assert_eq!(h.stored(&job, 0).await.files, files(&current));
    let v = h.wait_terminal(&job).await;
    assert_eq!(v.record.state, JobState::Succeeded);
    let finalized = h.finalized.lock().unwrap().clone();
    assert_eq!(finalized.len(), 1);
    assert_eq!(finalized[0][0].files, files(&current));
    // Even after the job ended, the stale attempt stays fenced off.
    assert!(h.complete("w1", &stale).await.is_err());
}

#[tokio::test]
async fn a_repeated_completion_is_accepted_once() {
    let h = Harness::new();
    let job = h.submit("repeat", 2, LONG_LEASE_S, 3).await;
    let l = h.lease("w1").await;
    h.complete("w1", &l).await.unwrap();
    // The worker's retry (its first reply was lost) is answered with success...
    h.complete("w1", &l).await.unwrap();
    // ...and counted once: stats, done tasks, and the store (which refuses a second write).
    let v = h.view(&job).await;
    assert_eq!((v.tasks_done, v.stats.rows_out), (1, 1));
    assert!(matches!(
        h.store
            .complete(&job, l.task_id, l.attempt, &files(&l), &stats())
            .await,
        Err(StoreError::Conflict(_))
    ));
    // A repeat listing other files is answered alike (a refusal would make the worker delete
    // files named like the committed ones) and changes nothing.
    let other = vec![WrittenFile {
        path: "data/other.parquet".into(),
        ..files(&l)[0].clone()
    }];
    let reply = h
        .sched
        .complete("w1", &job, l.task_id, l.attempt, other, stats())
        .await
        .unwrap();
    assert_eq!(reply, Ok(()));
    assert_eq!(h.stored(&job, l.task_id).await.files, files(&l));
    assert_eq!(h.view(&job).await.stats.rows_out, 1);
    assert_eq!(h.finalizer_calls(), 0, "one task is still pending");
}

#[tokio::test]
async fn a_task_out_of_attempts_fails_and_fails_the_job() {
    let h = Harness::new();
    let job = h.submit("attempts", 1, LONG_LEASE_S, 2).await;
    let l1 = h.lease("w1").await;
    h.sched
        .fail("w1", &job, 0, l1.attempt, "backend down", false)
        .await
        .unwrap();
    assert_eq!(
        h.view(&job).await.tasks_pending,
        1,
        "attempt 1 of 2: retried"
    );
    let l2 = h.lease("w1").await;
    assert_eq!(l2.attempt, 2);
    h.sched
        .fail("w1", &job, 0, l2.attempt, "backend still down", false)
        .await
        .unwrap();
    let stored = h.stored(&job, 0).await;
    assert_eq!(
        (stored.state, stored.last_error.as_str()),
        (TaskState::Failed, "backend still down")
    );
    let v = h.wait_terminal(&job).await;
    assert_eq!(v.record.state, JobState::Failed);
    assert!(
        v.record.error.contains("1 of 1 tasks failed"),
        "{}",
        v.record.error
    );
    assert_eq!(v.failed_tasks, vec![(0, "backend still down".to_string())]);
    assert_eq!(h.finalizer_calls(), 1);
}

#[tokio::test]
async fn expiry_at_max_attempts_fails_the_task_and_the_job() {
    let h = Harness::new();
    let job = h.submit("expired-out", 1, SHORT_LEASE_S, 1).await;
    h.lease("w1").await;
    let_leases_expire().await;
    h.sched.requeue_expired().await.unwrap();
    assert_eq!(h.stored(&job, 0).await.state, TaskState::Failed);
    assert!(h.sched.lease("w2").await.unwrap().is_none());
    let v = h.wait_terminal(&job).await;
    assert_eq!(v.record.state, JobState::Failed);
    assert!(v.record.error.contains("expired"), "{}", v.record.error);
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried() {
    let h = Harness::new();
    let job = h.submit("permanent", 1, LONG_LEASE_S, 3).await;
    let l = h.lease("w1").await;
    h.sched
        .fail("w1", &job, 0, l.attempt, "template error", true)
        .await
        .unwrap();
    assert_eq!(h.stored(&job, 0).await.state, TaskState::Failed);
    assert_eq!(h.wait_terminal(&job).await.record.state, JobState::Failed);
}

#[tokio::test]
async fn cancel_stops_leases_renewals_and_completions() {
    let h = Harness::new();
    let job = h.submit("cancel", 2, LONG_LEASE_S, 3).await;
    let l = h.lease("w1").await;
    assert!(h.sched.cancel(&job).await.unwrap());
    assert!(!h.sched.cancel(&job).await.unwrap(), "already cancelled");
    assert!(matches!(
        h.sched.cancel("no-such-job").await,
        Err(SchedError::NoJob(_))
    ));

    assert!(h.sched.lease("w2").await.unwrap().is_none());
    let beat = h
        .sched
        .heartbeat("w1", &job, l.task_id, l.attempt, 1)
        .await
        .unwrap();
    assert_eq!(beat, None, "the worker must stop the cancelled job's task");
    let refused = h.complete("w1", &l).await.unwrap_err();
    assert!(refused.contains("cancelled"), "{refused}");

    let stored = h.store.load_all().await.unwrap();
    let record = stored.jobs.iter().find(|j| j.id == job).unwrap();
    assert_eq!(record.state, JobState::Cancelled);
    assert!(record.finished_ms > 0);
    assert_eq!(h.finalizer_calls(), 0, "a cancelled job is not finalized");
}

#[tokio::test]
async fn a_job_is_finalized_once() {
    let h = Harness::new();
    let job = h.submit("finalize", 3, LONG_LEASE_S, 3).await;
    let leases = [
        h.lease("w1").await,
        h.lease("w2").await,
        h.lease("w3").await,
    ];
    assert!(h.sched.lease("w4").await.unwrap().is_none());
    // Completions race, and each is repeated (retried calls).
    let sched = &h.sched;
    futures::future::join_all(leases.iter().enumerate().flat_map(|(i, l)| {
        let worker = format!("w{}", i + 1);
        (0..2).map(move |_| {
            let worker = worker.clone();
            async move {
                loop {
                    match sched
                        .complete(&worker, &l.job_id, l.task_id, l.attempt, files(l), stats())
                        .await
                    {
                        Ok(reply) => return reply.unwrap(),
                        // The same completion is being stored right now: retry, as workers do.
                        Err(SchedError::Busy(_)) => tokio::task::yield_now().await,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        })
    }))
    .await;
    let v = h.wait_terminal(&job).await;
    assert_eq!(v.record.state, JobState::Succeeded);
    assert_eq!((v.tasks_done, v.stats.rows_out), (3, 3));
    // Nothing later finalizes it again: an expiry pass, a late repeat, a recovering scheduler.
    h.sched.requeue_expired().await.unwrap();
    h.complete("w1", &leases[0]).await.unwrap();
    let restarted = Scheduler::new(h.store.clone(), h.sched.finalizer.clone());
    restarted.recover().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(h.finalizer_calls(), 1);
    let finalized = h.finalized.lock().unwrap()[0].clone();
    assert!(finalized.iter().all(|t| t.state == TaskState::Done));
    assert_eq!(
        h.store
            .load_all()
            .await
            .unwrap()
            .jobs
            .iter()
            .find(|j| j.id == job)
            .unwrap()
            .state,
        JobState::Succeeded
    );
}

#[tokio::test]
async fn recovery_keeps_outstanding_leases_alive() {
    let h = Harness::new();
    let job = h.submit("recover", 2, SHORT_LEASE_S, 3).await;
    let l = h.lease("w1").await;
    let_leases_expire().await;
    // A new leader rebuilds from the store and gives the lease a fresh deadline...
    let leader = Scheduler::new(h.store.clone(), h.sched.finalizer.clone());
    leader.recover().await.unwrap();
    assert_eq!(leader.requeue_expired().await.unwrap(), 0);
    // ...so its worker can keep going, and the other task is still there to lease.
    let beat = leader
        .heartbeat("w1", &job, l.task_id, l.attempt, 1)
        .await
        .unwrap();
    assert!(beat.is_some());
    let next = leader.lease("w2").await.unwrap().expect("the other task");
    assert_ne!(next.task_id, l.task_id);
    assert_eq!(next.attempt, 1);
}

#[tokio::test]
async fn a_retried_task_is_not_leased_again_before_its_backoff() {
    let backoff = Backoff {
        base_ms: 200,
        cap_ms: 10_000,
    };
    let h = Harness::with_backoff(backoff);
    let job = h.submit("backoff", 1, SHORT_LEASE_S, 3).await;
    let l1 = h.lease("w1").await;
    let failed_at = now_ms();
    h.sched
        .fail("w1", &job, 0, l1.attempt, "backend down", false)
        .await
        .unwrap();
    let stored = h.stored(&job, 0).await;
    assert_eq!(stored.state, TaskState::Pending);
    assert!(
        stored.not_before_ms >= failed_at + 100,
        "the store keeps the backoff: {} vs {failed_at}",
        stored.not_before_ms
    );
    assert!(
        h.sched.lease("w1").await.unwrap().is_none(),
        "still backing off"
    );
    assert_eq!(h.view(&job).await.tasks_pending, 1);
    tokio::time::sleep(Duration::from_millis(
        stored.not_before_ms.saturating_sub(now_ms()) + 5,
    ))
    .await;
    let l2 = h.lease("w1").await;
    assert_eq!(l2.attempt, 2);
    // An expired lease backs off too (attempt 2: between 200 and 400 ms).
    tokio::time::sleep(Duration::from_millis(80)).await;
    h.sched.requeue_expired().await.unwrap();
    let stored = h.stored(&job, 0).await;
    assert_eq!(stored.state, TaskState::Pending);
    assert!(stored.not_before_ms >= now_ms() + 100 - 80);
    assert!(
        h.sched.lease("w2").await.unwrap().is_none(),
        "expiry backs off"
    );
}

#[tokio::test]
async fn resubmitting_a_job_whose_input_changed_is_refused_naming_the_file() {
    let h = Harness::new();
    let yaml = h.job_yaml("grown", 2, LONG_LEASE_S, 3);
    let first = h.sched.submit(&yaml, None).await.unwrap();
    let again = h.sched.submit(&yaml, None).await.unwrap();
    assert_eq!(again.record.id, first.record.id, "unchanged input: resumed");
    // The seed file grows from 2 to 4 rows.
    let seed = h.dir.path().join("grown.jsonl");
    let rows: String = (0..4)
        .map(|i| format!("{{\"id\": \"r{i}\", \"text\": \"row {i}\"}}\n"))
        .collect();
    std::fs::write(&seed, rows).unwrap();
    let err = h.sched.submit(&yaml, None).await.unwrap_err();
    assert!(matches!(err, SchedError::InputChanged { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("grown.jsonl: size") && msg.contains("--fresh"),
        "{msg}"
    );
    assert_eq!(
        h.view(&first.record.id).await.record.tasks_total,
        2,
        "job untouched"
    );
}

#[tokio::test]
async fn a_completion_short_of_the_planned_rows_is_refused_and_the_task_retried() {
    let h = Harness::new();
    let job = h.submit("short", 1, LONG_LEASE_S, 3).await;
    let l = h.lease("w1").await;
    // The task covers one seed row; the worker read none (a changed input object).
    let read_none = TaskStats::default();
    let refused = h
        .sched
        .complete("w1", &job, l.task_id, l.attempt, files(&l), read_none)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        refused.contains("covers 1 seed row(s) but the worker read 0"),
        "{refused}"
    );
    let t = h.stored(&job, l.task_id).await;
    assert_eq!(t.state, TaskState::Pending, "retried: {t:?}");
    assert!(t.files.is_empty(), "nothing of the refused attempt is kept");
    assert!(t.last_error.contains("completion refused"), "{t:?}");
    // Rows read but not all accounted for: refused alike.
    let l = h.lease("w1").await;
    let unaccounted = TaskStats {
        rows_in: 1,
        rows_out: 1,
        ..Default::default()
    };
    let refused = h
        .sched
        .complete("w1", &job, l.task_id, l.attempt, files(&l), unaccounted)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        refused.contains("1 seed row(s) in, but 0 output"),
        "{refused}"
    );
    // A whole completion is accepted.
    let l = h.lease("w1").await;
    h.complete("w1", &l).await.unwrap();
    assert_eq!(
        h.wait_terminal(&job).await.record.state,
        JobState::Succeeded
    );
}

/// A claim that reached the store behind this scheduler's back (the previous leader's, around a
/// leadership change) makes the next claim conflict. Memory adopts the stored lease instead of
/// dropping the task: the foreign lease expires like any other and the job still ends (the soak
/// in docs/chaos.md once stalled here).
#[tokio::test]
async fn a_claim_conflict_adopts_the_stored_lease_and_the_job_still_ends() {
    let h = Harness::new();
    let job = h.submit("conflict", 1, SHORT_LEASE_S, 3).await;
    let deadline = synthforge_core::now_ms() + 60_000;
    h.store.claim(&job, 0, 1, "ghost", deadline).await.unwrap();

    let none = h.sched.lease("w1").await.unwrap();
    assert!(none.is_none(), "the conflicting task is not handed out");
    let adopted = &h.view(&job).await;
    assert_eq!(adopted.tasks_leased, 1, "memory shows the stored lease");
    let stored = h.stored(&job, 0).await;
    assert_eq!((stored.state, stored.attempt), (TaskState::Leased, 1));
    assert_eq!(stored.worker, "ghost");

    // The adopted lease got a short deadline the ghost never renews: it expires here.
    let_leases_expire().await;
    assert_eq!(h.sched.requeue_expired().await.unwrap(), 1);
    let l = h.lease("w1").await;
    assert_eq!((l.task_id, l.attempt), (0, 2));
    h.complete("w1", &l).await.unwrap();
    let end = h.wait_terminal(&job).await;
    assert_eq!(end.record.state, JobState::Succeeded);
    assert_eq!(h.finalizer_calls(), 1);
}
