//! Folding a finished job over the on-disk embedded store: views before and after the fold
//! and after a restart are the same, and the store keeps a summary instead of the tasks.

use std::sync::Arc;
use std::time::Duration;

use synthforge_core::manifest::Manifest;
use synthforge_core::sink::WrittenFile;

use crate::control::scheduler::Finalizer;
use crate::control::scheduler::{JobView, Lease, Scheduler};
use crate::control::store::embedded::EmbeddedStore;
use crate::control::store::{TaskStore, NOSPACE_HINT};
use crate::control::task_machine::Backoff;
use crate::model::{JobState, TaskStats};

fn finalizer() -> Finalizer {
    Arc::new(|_, _, _, _| Box::pin(async { Ok(Manifest::default()) }))
}

fn scheduler(store: Arc<dyn TaskStore>) -> Arc<Scheduler> {
    Scheduler::with_retry_backoff(store, finalizer(), Backoff::NONE)
}

fn job_yaml(dir: &std::path::Path, tasks: u64) -> String {
    let seed = dir.join("seed.jsonl");
    let rows: String = (0..tasks)
        .map(|i| format!("{{\"id\": \"r{i}\", \"text\": \"row {i}\"}}\n"))
        .collect();
    std::fs::write(&seed, rows).unwrap();
    format!(
        "name: fold
seed: 1
input:
  path: '{}'
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
  path: '{}'
scheduling:
  lease_s: 600
  max_attempts: 1
",
        seed.display(),
        dir.join("out").display()
    )
}

async fn complete(sched: &Arc<Scheduler>, l: &Lease) {
    let files = vec![WrittenFile {
        path: format!("data/part-{:06}-{}.parquet", l.task_id, l.attempt),
        rows: 1,
        bytes: 10,
        kind: "data".into(),
    }];
    let stats = TaskStats {
        rows_in: 1,
        rows_out: 1,
        prompt_tokens: 5,
        seeds: synthforge_core::stats::SeedOutcomes {
            output: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    sched
        .complete("w1", &l.job_id, l.task_id, l.attempt, files, stats)
        .await
        .unwrap()
        .unwrap();
}

async fn wait_terminal(sched: &Scheduler, id: &str) -> JobView {
    for _ in 0..400 {
        let v = sched.job(id).await.unwrap();
        if v.record.state.is_terminal() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job {id} did not end");
}

/// The parts of a view a fold must keep.
fn essentials(v: &JobView) -> impl PartialEq + std::fmt::Debug {
    (
        v.record.clone(),
        (
            v.tasks_pending,
            v.tasks_leased,
            v.tasks_done,
            v.tasks_failed,
        ),
        v.stats.clone(),
        v.failed_tasks.clone(),
    )
}

#[tokio::test]
async fn a_finished_job_folds_and_its_view_survives_fold_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("state")).unwrap());
    let sched = scheduler(store.clone());
    let yaml = job_yaml(dir.path(), 4);
    let id = sched.submit(&yaml, None).await.unwrap().record.id;
    for _ in 0..3 {
        let l = sched.lease("w1").await.unwrap().unwrap();
        complete(&sched, &l).await;
    }
    let l = sched.lease("w1").await.unwrap().unwrap();
    sched
        .fail("w1", &id, l.task_id, l.attempt, "bad object", true)
        .await
        .unwrap();
    let before = wait_terminal(&sched, &id).await;
    assert_eq!(before.record.state, JobState::Failed);
    assert_eq!((before.tasks_done, before.tasks_failed), (3, 1));

    let pass = sched.fold_finished().await.unwrap();
    assert_eq!(pass.folded, 1);
    let after = sched.job(&id).await.unwrap();
    assert_eq!(essentials(&after), essentials(&before));
    assert_eq!(after.failed_tasks, vec![(l.task_id, "bad object".into())]);
    let snap = store.load_all().await.unwrap();
    assert!(snap.tasks.is_empty(), "task records deleted");
    assert_eq!(snap.summaries.len(), 1);
    // Nothing left to fold.
    assert_eq!(sched.fold_finished().await.unwrap().folded, 0);

    drop(sched);
    drop(store);
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("state")).unwrap());
    let sched = scheduler(store.clone());
    sched.recover().await.unwrap();
    let restarted = sched.job(&id).await.unwrap();
    assert_eq!(essentials(&restarted), essentials(&before));
    assert_eq!(sched.fold_finished().await.unwrap().folded, 0);
    // Re-submitting the finished job answers its view (resume), from the summary.
    let again = sched.submit(&yaml, None).await.unwrap();
    assert_eq!(essentials(&again), essentials(&before));
}

#[tokio::test]
async fn running_jobs_are_not_folded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::in_memory());
    let sched = scheduler(store.clone());
    let id = sched
        .submit(&job_yaml(dir.path(), 2), None)
        .await
        .unwrap()
        .record
        .id;
    let l = sched.lease("w1").await.unwrap().unwrap();
    complete(&sched, &l).await;
    assert_eq!(sched.fold_finished().await.unwrap().folded, 0);
    assert_eq!(store.load_all().await.unwrap().tasks.len(), 2);
    assert_eq!(sched.job(&id).await.unwrap().tasks_done, 1);
}

/// A store that reports a space alarm, to see it on views.
struct Full(EmbeddedStore);

#[async_trait::async_trait]
impl TaskStore for Full {
    async fn create_job(
        &self,
        job: &crate::model::JobRecord,
        tasks: &[crate::model::TaskRecord],
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.create_job(job, tasks).await
    }
    async fn update_job(
        &self,
        job: &crate::model::JobRecord,
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.update_job(job).await
    }
    async fn add_tasks(
        &self,
        j: &str,
        tasks: &[crate::model::TaskRecord],
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.add_tasks(j, tasks).await
    }
    async fn put_planned_tasks(
        &self,
        j: &str,
        tasks: &[crate::model::TaskRecord],
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.put_planned_tasks(j, tasks).await
    }
    async fn claim(
        &self,
        j: &str,
        t: u64,
        a: u32,
        w: &str,
        d: u64,
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.claim(j, t, a, w, d).await
    }
    async fn renew(
        &self,
        j: &str,
        t: u64,
        a: u32,
        d: u64,
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.renew(j, t, a, d).await
    }
    async fn complete(
        &self,
        j: &str,
        t: u64,
        a: u32,
        f: &[WrittenFile],
        s: &TaskStats,
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.complete(j, t, a, f, s).await
    }
    async fn fail(
        &self,
        j: &str,
        t: u64,
        a: u32,
        e: &str,
        r: bool,
        nb: u64,
    ) -> Result<(), crate::control::store::StoreError> {
        self.0.fail(j, t, a, e, r, nb).await
    }
    async fn requeue_expired(
        &self,
        now: u64,
        max: &std::collections::HashMap<String, u32>,
        backoff: Backoff,
    ) -> Result<Vec<crate::model::TaskRecord>, crate::control::store::StoreError> {
        self.0.requeue_expired(now, max, backoff).await
    }
    async fn load_all(
        &self,
    ) -> Result<crate::control::store::Snapshot, crate::control::store::StoreError> {
        self.0.load_all().await
    }
    async fn stored_task(
        &self,
        j: &str,
        t: u64,
    ) -> Result<crate::model::TaskRecord, crate::control::store::StoreError> {
        self.0.stored_task(j, t).await
    }
    async fn fold_job(
        &self,
        j: &str,
    ) -> Result<crate::control::store::JobSummary, crate::control::store::StoreError> {
        self.0.fold_job(j).await
    }
    fn space_alarm(&self) -> Option<String> {
        Some(NOSPACE_HINT.into())
    }
}

#[tokio::test]
async fn a_space_alarm_shows_on_running_jobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let sched = scheduler(Arc::new(Full(EmbeddedStore::in_memory())));
    let id = sched
        .submit(&job_yaml(dir.path(), 1), None)
        .await
        .unwrap()
        .record
        .id;
    let v = sched.job(&id).await.unwrap();
    assert_eq!(v.waiting.as_deref(), Some(NOSPACE_HINT));
    assert!(NOSPACE_HINT.contains("--quota-backend-bytes"));
    let l = sched.lease("w1").await.unwrap().unwrap();
    complete(&sched, &l).await;
    let ended = wait_terminal(&sched, &id).await;
    assert_eq!(ended.waiting, None);
    assert!(sched.jobs().await.iter().all(|j| j.waiting.is_none()));
}
