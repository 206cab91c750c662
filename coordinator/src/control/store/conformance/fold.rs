//! Conformance of [`TaskStore::fold_job`]: what a finished job keeps once its task records
//! are folded, and what is refused.

use super::job;
use crate::control::store::summary::FINALIZE_FAILED_PREFIX;
use crate::control::store::{StoreError, TaskStore};
use crate::model::{JobState, TaskStats};

/// Tasks of the folded job: more than one delete batch of the etcd store (2,000 task ids).
const TASKS: u64 = 2_150;

/// A finished job's tasks fold into counts, summed stats and failed tasks' errors; the task
/// records are gone from the store and from snapshots; folding again changes nothing.
pub(super) async fn fold_keeps_the_summary_and_drops_the_tasks(store: &dyn TaskStore, id: &str) {
    let (mut j, ts) = job(id, TASKS);
    store.create_job(&j, &ts).await.unwrap();
    let stats = TaskStats {
        rows_in: 10,
        rows_out: 7,
        prompt_tokens: 3,
        ..Default::default()
    };
    for t in 0..5 {
        store.claim(id, t, 1, "w1", 100).await.unwrap();
        store.complete(id, t, 1, &[], &stats).await.unwrap();
    }
    store.claim(id, 5, 1, "w1", 100).await.unwrap();
    store.fail(id, 5, 1, "bad object", false, 0).await.unwrap();
    store.claim(id, 6, 1, "w1", 100).await.unwrap();

    // Not before the manifest is written.
    assert!(matches!(
        store.fold_job(id).await,
        Err(StoreError::Conflict(_))
    ));
    j.state = JobState::Failed;
    j.error = format!("{FINALIZE_FAILED_PREFIX} object store unreachable");
    store.update_job(&j).await.unwrap();
    assert!(matches!(
        store.fold_job(id).await,
        Err(StoreError::Conflict(_))
    ));
    let snap = store.load_all().await.unwrap();
    assert_eq!(
        snap.tasks.iter().filter(|t| t.job_id == id).count() as u64,
        TASKS,
        "a refused fold keeps every task"
    );

    j.error = "1 of 2150 tasks failed".into();
    store.update_job(&j).await.unwrap();
    let before = store.maintenance();
    let s = store.fold_job(id).await.unwrap();
    assert_eq!(s.job_id, id);
    assert_eq!(
        (
            s.tasks_done,
            s.tasks_failed,
            s.tasks_leased,
            s.tasks_pending
        ),
        (5, 1, 1, TASKS - 7)
    );
    assert_eq!((s.stats.rows_out, s.stats.prompt_tokens), (35, 15));
    assert_eq!(s.failed_tasks, vec![(5, "bad object".to_string())]);
    assert!(s.tasks_deleted);
    let after = store.maintenance();
    assert_eq!(after.jobs_folded, before.jobs_folded + 1);
    assert_eq!(
        after.task_records_deleted,
        before.task_records_deleted + TASKS
    );

    let snap = store.load_all().await.unwrap();
    assert!(snap.tasks.iter().all(|t| t.job_id != id), "tasks deleted");
    assert_eq!(snap.summaries.iter().find(|x| x.job_id == id), Some(&s));
    assert!(snap.jobs.iter().any(|x| x == &j), "the job record stays");
    assert!(matches!(
        store.stored_task(id, 0).await,
        Err(StoreError::NotFound(_))
    ));
    // A late worker's change finds no task.
    assert!(store.complete(id, 6, 1, &[], &stats).await.is_err());

    // Idempotent: the same summary, nothing more deleted.
    assert_eq!(store.fold_job(id).await.unwrap(), s);
    assert_eq!(store.maintenance(), after);
}

/// Cancelled and running jobs are never folded; an unknown job is not found.
pub(super) async fn only_finalized_jobs_fold(store: &dyn TaskStore, id: &str) {
    let (mut j, ts) = job(id, 3);
    store.create_job(&j, &ts).await.unwrap();
    j.state = JobState::Cancelled;
    store.update_job(&j).await.unwrap();
    assert!(matches!(
        store.fold_job(id).await,
        Err(StoreError::Conflict(_))
    ));
    let snap = store.load_all().await.unwrap();
    assert_eq!(snap.tasks.iter().filter(|t| t.job_id == id).count(), 3);
    assert!(snap.summaries.iter().all(|s| s.job_id != id));
    assert!(matches!(
        store.fold_job(&format!("{id}-none")).await,
        Err(StoreError::NotFound(_))
    ));
}
