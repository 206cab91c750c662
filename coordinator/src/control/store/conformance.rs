//! One behaviour suite every [`TaskStore`] must pass (embedded here; etcd in its own tests).
//! Public so other crates' tests (a real etcd server) can run it too.

use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::InputFormat;

mod fold;

use super::{StoreError, TaskStore};
use crate::control::task_machine::{self, Backoff, TaskEvent};
use crate::model::{JobRecord, JobState, TaskRecord, TaskState, TaskStats};

/// A job `id` of `tasks` pending one-row tasks, as the suite creates them.
pub(crate) fn job(id: &str, tasks: u64) -> (JobRecord, Vec<TaskRecord>) {
    let j = JobRecord {
        id: id.into(),
        name: "conformance".into(),
        spec_yaml: "name: x".into(),
        state: JobState::Running,
        output: "/tmp/x".into(),
        tasks_total: tasks,
        rows_total: tasks * 10,
        created_ms: 1,
        finished_ms: 0,
        error: String::new(),
        input_fingerprint: Default::default(),
        finalize_removed: Default::default(),
        planning: None,
    };
    let ts = (0..tasks)
        .map(|i| {
            TaskRecord::new(
                id,
                i,
                TaskSlice {
                    object_url: "/tmp/seed.jsonl".into(),
                    format: InputFormat::Jsonl,
                    row_start: i * 10,
                    row_count: 10,
                    byte_start: 0,
                    byte_end: 0,
                    row_groups: vec![],
                    global_row_start: i * 10,
                },
            )
        })
        .collect();
    (j, ts)
}

fn task<'a>(s: &'a super::Snapshot, job: &str, id: u64) -> &'a TaskRecord {
    s.tasks
        .iter()
        .find(|t| t.job_id == job && t.task_id == id)
        .expect("task present")
}

/// Runs every check with fresh job ids (so it can run against a shared etcd).
pub async fn run_all(store: &dyn TaskStore) {
    let prefix = format!("c{}", synthforge_core::now_ms());
    create_and_load(store, &format!("{prefix}-a")).await;
    claim_is_fenced(store, &format!("{prefix}-b")).await;
    complete_only_current_attempt(store, &format!("{prefix}-c")).await;
    fail_and_retry(store, &format!("{prefix}-d")).await;
    expiry_requeues_then_fails(store, &format!("{prefix}-e")).await;
    transitions_follow_the_machine(store, &format!("{prefix}-f")).await;
    fold::fold_keeps_the_summary_and_drops_the_tasks(store, &format!("{prefix}-g")).await;
    fold::only_finalized_jobs_fold(store, &format!("{prefix}-h")).await;
    planned_tasks_follow_their_job(store, &format!("{prefix}-i")).await;
}

/// A planning job is stored without tasks; they follow in batches, and putting a batch again
/// (planning again after a leader change) leaves one record per task id.
async fn planned_tasks_follow_their_job(store: &dyn TaskStore, id: &str) {
    let (mut j, ts) = job(id, 6);
    assert!(matches!(
        store.put_planned_tasks(id, &ts[..3]).await,
        Err(StoreError::NotFound(_))
    ));
    j.state = JobState::Planning;
    store.create_job(&j, &[]).await.unwrap();
    store.put_planned_tasks(id, &ts[..3]).await.unwrap();
    store.put_planned_tasks(id, &ts[..3]).await.unwrap();
    store.put_planned_tasks(id, &ts[3..]).await.unwrap();
    let snap = store.load_all().await.unwrap();
    let mut stored: Vec<&TaskRecord> = snap.tasks.iter().filter(|t| t.job_id == id).collect();
    stored.sort_by_key(|t| t.task_id);
    assert_eq!(stored, ts.iter().collect::<Vec<_>>());
    store.claim(id, 4, 1, "w", 10).await.unwrap();
}

async fn create_and_load(store: &dyn TaskStore, id: &str) {
    let (j, ts) = job(id, 25);
    store.create_job(&j, &ts).await.unwrap();
    assert!(matches!(
        store.create_job(&j, &ts).await,
        Err(StoreError::Conflict(_))
    ));
    let snap = store.load_all().await.unwrap();
    assert!(snap.jobs.iter().any(|x| x == &j));
    assert_eq!(snap.tasks.iter().filter(|t| t.job_id == id).count(), 25);
    let mut j2 = j.clone();
    j2.state = JobState::Succeeded;
    store.update_job(&j2).await.unwrap();
    let snap = store.load_all().await.unwrap();
    assert_eq!(
        snap.jobs.iter().find(|x| x.id == id).unwrap().state,
        JobState::Succeeded
    );
}

async fn claim_is_fenced(store: &dyn TaskStore, id: &str) {
    let (j, ts) = job(id, 2);
    store.create_job(&j, &ts).await.unwrap();
    store.claim(id, 0, 1, "w1", 100).await.unwrap();
    // A second claim of the same task (another coordinator, stale view) loses.
    assert!(matches!(
        store.claim(id, 0, 1, "w2", 100).await,
        Err(StoreError::Conflict(_))
    ));
    // Skipping an attempt number is refused too.
    assert!(matches!(
        store.claim(id, 1, 2, "w2", 100).await,
        Err(StoreError::Conflict(_))
    ));
    store.renew(id, 0, 1, 200).await.unwrap();
    assert!(matches!(
        store.renew(id, 0, 2, 300).await,
        Err(StoreError::Conflict(_))
    ));
    let snap = store.load_all().await.unwrap();
    let t = task(&snap, id, 0);
    assert_eq!(
        (t.state, t.attempt, t.worker.as_str()),
        (TaskState::Leased, 1, "w1")
    );
}

async fn complete_only_current_attempt(store: &dyn TaskStore, id: &str) {
    let (j, ts) = job(id, 1);
    store.create_job(&j, &ts).await.unwrap();
    store.claim(id, 0, 1, "w1", 100).await.unwrap();
    store.fail(id, 0, 1, "worker lost", true, 0).await.unwrap();
    store.claim(id, 0, 2, "w2", 100).await.unwrap();
    let files = vec![WrittenFile {
        path: "data/part-000000-1.parquet".into(),
        rows: 10,
        bytes: 1,
        kind: "data".into(),
    }];
    let stats = TaskStats {
        rows_in: 10,
        rows_out: 10,
        ..Default::default()
    };
    // The late first attempt is fenced off.
    assert!(matches!(
        store.complete(id, 0, 1, &files, &stats).await,
        Err(StoreError::Conflict(_))
    ));
    let files2 = vec![WrittenFile {
        path: "data/part-000000-2.parquet".into(),
        ..files[0].clone()
    }];
    store.complete(id, 0, 2, &files2, &stats).await.unwrap();
    // Completing twice is refused (exactly once).
    assert!(matches!(
        store.complete(id, 0, 2, &files2, &stats).await,
        Err(StoreError::Conflict(_))
    ));
    let snap = store.load_all().await.unwrap();
    let t = task(&snap, id, 0);
    assert_eq!(t.state, TaskState::Done);
    assert_eq!(t.files, files2);
    assert_eq!(t.stats.rows_out, 10);
}

async fn fail_and_retry(store: &dyn TaskStore, id: &str) {
    let (j, ts) = job(id, 1);
    store.create_job(&j, &ts).await.unwrap();
    store.claim(id, 0, 1, "w1", 100).await.unwrap();
    store.fail(id, 0, 1, "bad object", false, 0).await.unwrap();
    let snap = store.load_all().await.unwrap();
    let t = task(&snap, id, 0);
    assert_eq!(t.state, TaskState::Failed);
    assert_eq!(t.last_error, "bad object");
    assert!(store.claim(id, 0, 2, "w1", 100).await.is_err());
}

async fn expiry_requeues_then_fails(store: &dyn TaskStore, id: &str) {
    let (j, ts) = job(id, 1);
    store.create_job(&j, &ts).await.unwrap();
    let max: std::collections::HashMap<String, u32> = [(id.to_string(), 2)].into();
    store.claim(id, 0, 1, "w1", 1_000).await.unwrap();
    let changed = store
        .requeue_expired(500, &max, Backoff::NONE)
        .await
        .unwrap();
    assert!(!changed.iter().any(|t| t.job_id == id), "not yet expired");
    let changed = store
        .requeue_expired(2_000, &max, Backoff::NONE)
        .await
        .unwrap();
    let t = changed.iter().find(|t| t.job_id == id).expect("requeued");
    assert_eq!(t.state, TaskState::Pending);
    store.claim(id, 0, 2, "w2", 3_000).await.unwrap();
    let changed = store
        .requeue_expired(4_000, &max, Backoff::NONE)
        .await
        .unwrap();
    let t = changed.iter().find(|t| t.job_id == id).expect("failed");
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.last_error.contains("expired"), "{}", t.last_error);
}

/// The deadline every lease of [`transitions_follow_the_machine`] is claimed with.
const LEASE_UNTIL: u64 = 1_000;

/// Drives a fresh one-task job `id` through the store into `state` (at attempt 1 unless it is
/// a never-leased pending task) and returns the stored record.
async fn drive_to(store: &dyn TaskStore, id: &str, state: TaskState, fresh: bool) -> TaskRecord {
    let (j, ts) = job(id, 1);
    store.create_job(&j, &ts).await.unwrap();
    if !(state == TaskState::Pending && fresh) {
        store.claim(id, 0, 1, "w1", LEASE_UNTIL).await.unwrap();
        match state {
            TaskState::Leased => {}
            TaskState::Pending => store.fail(id, 0, 1, "transient", true, 0).await.unwrap(),
            TaskState::Failed => store.fail(id, 0, 1, "permanent", false, 0).await.unwrap(),
            TaskState::Done => {
                let f = files_of(1);
                store.complete(id, 0, 1, &f, &stats_of()).await.unwrap();
            }
        }
    }
    let snap = store.load_all().await.unwrap();
    task(&snap, id, 0).clone()
}

fn files_of(attempt: u32) -> Vec<WrittenFile> {
    vec![WrittenFile {
        path: format!("data/part-000000-{attempt}.parquet"),
        rows: 10,
        bytes: 1,
        kind: "data".into(),
    }]
}

fn stats_of() -> TaskStats {
    TaskStats {
        rows_in: 10,
        rows_out: 10,
        ..Default::default()
    }
}

/// Sends `event` for task 0 of job `id` through the store's own operation; `Ok(false)` when an
/// expiry changed nothing.
async fn send(store: &dyn TaskStore, id: &str, event: &TaskEvent<'_>) -> Result<bool, StoreError> {
    match *event {
        TaskEvent::Claim {
            attempt,
            worker,
            deadline_ms,
        } => store.claim(id, 0, attempt, worker, deadline_ms).await,
        TaskEvent::Renew {
            attempt,
            deadline_ms,
        } => store.renew(id, 0, attempt, deadline_ms).await,
        TaskEvent::Complete {
            attempt,
            files,
            stats,
        } => store.complete(id, 0, attempt, files, stats).await,
        TaskEvent::Fail {
            attempt,
            error,
            retry,
            not_before_ms,
        } => {
            store
                .fail(id, 0, attempt, error, retry, not_before_ms)
                .await
        }
        TaskEvent::Expire {
            now_ms,
            max_attempts,
            backoff,
        } => {
            let max = [(id.to_string(), max_attempts)].into();
            let changed = store.requeue_expired(now_ms, &max, backoff).await?;
            return Ok(changed.iter().any(|t| t.job_id == id));
        }
        TaskEvent::Unclaim { .. } => unreachable!("the scheduler's memory only"),
    }
    .map(|()| true)
}

/// Every state a store can hold × every event it takes: the store accepts exactly what the
/// task machine accepts, stores the record the machine computes, and leaves a refused task
/// as it was.
async fn transitions_follow_the_machine(store: &dyn TaskStore, prefix: &str) {
    let done_files = files_of(1);
    let other_files = files_of(9);
    let stats = stats_of();
    let starts = [
        ("fresh pending", TaskState::Pending, true),
        ("pending", TaskState::Pending, false),
        ("leased", TaskState::Leased, false),
        ("done", TaskState::Done, false),
        ("failed", TaskState::Failed, false),
    ];
    for (n, (label, state, fresh)) in starts.into_iter().enumerate() {
        // Events for a task stored at attempt `a` (built per start: they name its attempt).
        let events = |a: u32| {
            vec![
                (
                    "claim next",
                    TaskEvent::Claim {
                        attempt: a + 1,
                        worker: "w2",
                        deadline_ms: 5_000,
                    },
                ),
                (
                    "claim current",
                    TaskEvent::Claim {
                        attempt: a,
                        worker: "w2",
                        deadline_ms: 5_000,
                    },
                ),
                (
                    "renew",
                    TaskEvent::Renew {
                        attempt: a,
                        deadline_ms: 5_000,
                    },
                ),
                (
                    "renew other attempt",
                    TaskEvent::Renew {
                        attempt: a + 1,
                        deadline_ms: 5_000,
                    },
                ),
                (
                    "complete",
                    TaskEvent::Complete {
                        attempt: a,
                        files: &done_files,
                        stats: &stats,
                    },
                ),
                (
                    "complete other files",
                    TaskEvent::Complete {
                        attempt: a,
                        files: &other_files,
                        stats: &stats,
                    },
                ),
                (
                    "complete other attempt",
                    TaskEvent::Complete {
                        attempt: a + 1,
                        files: &done_files,
                        stats: &stats,
                    },
                ),
                (
                    "fail retry",
                    TaskEvent::Fail {
                        attempt: a,
                        error: "e",
                        retry: true,
                        not_before_ms: 0,
                    },
                ),
                (
                    "fail final",
                    TaskEvent::Fail {
                        attempt: a,
                        error: "e",
                        retry: false,
                        not_before_ms: 0,
                    },
                ),
                (
                    "fail other attempt",
                    TaskEvent::Fail {
                        attempt: a + 1,
                        error: "e",
                        retry: true,
                        not_before_ms: 0,
                    },
                ),
                (
                    "expire",
                    TaskEvent::Expire {
                        now_ms: LEASE_UNTIL + 1,
                        max_attempts: 3,
                        backoff: Backoff::NONE,
                    },
                ),
                (
                    "expire at max attempts",
                    TaskEvent::Expire {
                        now_ms: LEASE_UNTIL + 1,
                        max_attempts: 1,
                        backoff: Backoff::NONE,
                    },
                ),
                (
                    "expire before deadline",
                    TaskEvent::Expire {
                        now_ms: LEASE_UNTIL - 1,
                        max_attempts: 3,
                        backoff: Backoff::NONE,
                    },
                ),
            ]
        };
        let count = events(0).len();
        for e in 0..count {
            let id = format!("{prefix}-{n}-{e}");
            let start = drive_to(store, &id, state, fresh).await;
            assert_eq!(start.state, state, "{label}: driven to the wrong state");
            let (event_label, event) = events(start.attempt).swap_remove(e);
            let want = task_machine::transition(&start, &event);
            let sent = send(store, &id, &event).await;
            let snap = store.load_all().await.unwrap();
            let mut stored = task(&snap, &id, 0).clone();
            let case = format!("{label} × {event_label}");
            match want {
                Ok(mut next) => {
                    assert!(matches!(sent, Ok(true)), "{case}: store refused: {sent:?}");
                    if matches!(event, TaskEvent::Renew { .. }) {
                        // Renewals may live in the store's memory only (etcd): not durable.
                        next.deadline_ms = 0;
                        stored.deadline_ms = 0;
                    }
                    assert_eq!(
                        stored, next,
                        "{case}: stored record differs from the machine's"
                    );
                }
                Err(refusal) => {
                    match event {
                        TaskEvent::Expire { .. } => {
                            assert!(matches!(sent, Ok(false)), "{case}: {sent:?}")
                        }
                        _ => assert!(
                            matches!(sent, Err(StoreError::Conflict(_))),
                            "{case}: the machine refuses ({refusal}), the store said {sent:?}"
                        ),
                    }
                    assert_eq!(stored, start, "{case}: a refused event changed the task");
                }
            }
        }
    }
}
