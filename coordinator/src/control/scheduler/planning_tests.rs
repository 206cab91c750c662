//! Background planning over the embedded store: Submit answers while the job plans, tasks are
//! leased only once planning ended, a planning failure fails the job with Submit's old error,
//! and a new leader plans a `planning` job again to the same tasks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use synthforge_core::manifest::Manifest;
use synthforge_core::sink::WrittenFile;
use tokio::sync::Semaphore;

use super::super::{Finalizer, JobView, Scheduler};
use crate::control::store::embedded::EmbeddedStore;
use crate::control::store::{Snapshot, StoreError, TaskStore};
use crate::control::task_machine::Backoff;
use crate::model::{JobRecord, JobState, TaskRecord, TaskState, TaskStats};

/// A store whose planned-task writes each wait for a permit: the test decides when each
/// planning step may be stored, so the `planning` state lasts as long as it needs.
struct GatedStore {
    inner: Arc<EmbeddedStore>,
    gate: Semaphore,
}

#[async_trait]
impl TaskStore for GatedStore {
    async fn create_job(&self, job: &JobRecord, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        self.inner.create_job(job, tasks).await
    }
    async fn put_planned_tasks(&self, j: &str, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        self.gate.acquire().await.expect("gate open").forget();
        self.inner.put_planned_tasks(j, tasks).await
    }
    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.inner.update_job(job).await
    }
    async fn add_tasks(&self, j: &str, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        self.inner.add_tasks(j, tasks).await
    }
    async fn fold_job(&self, j: &str) -> Result<crate::control::store::JobSummary, StoreError> {
        self.inner.fold_job(j).await
    }
    async fn claim(&self, j: &str, t: u64, a: u32, w: &str, d: u64) -> Result<(), StoreError> {
        self.inner.claim(j, t, a, w, d).await
    }
    async fn renew(&self, j: &str, t: u64, a: u32, d: u64) -> Result<(), StoreError> {
        self.inner.renew(j, t, a, d).await
    }
    async fn complete(
        &self,
        j: &str,
        t: u64,
        a: u32,
        f: &[WrittenFile],
        s: &TaskStats,
    ) -> Result<(), StoreError> {
        self.inner.complete(j, t, a, f, s).await
    }
    async fn fail(
        &self,
        j: &str,
        t: u64,
        a: u32,
        e: &str,
        r: bool,
        nb: u64,
    ) -> Result<(), StoreError> {
        self.inner.fail(j, t, a, e, r, nb).await
    }
    async fn requeue_expired(
        &self,
        now: u64,
        max: &HashMap<String, u32>,
        backoff: Backoff,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.requeue_expired(now, max, backoff).await
    }
    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        self.inner.load_all().await
    }
    async fn stored_task(&self, job_id: &str, task_id: u64) -> Result<TaskRecord, StoreError> {
        self.inner.stored_task(job_id, task_id).await
    }
}

fn finalizer() -> Finalizer {
    Arc::new(|_job, _spec, _tasks, _leader| Box::pin(async { Ok(Manifest::default()) }))
}

/// A scheduler whose planning writes wait for permits, over `store`.
fn gated(store: &Arc<EmbeddedStore>) -> (Arc<Scheduler>, Arc<GatedStore>) {
    let gated = Arc::new(GatedStore {
        inner: store.clone(),
        gate: Semaphore::new(0),
    });
    let sched = Scheduler::with_retry_backoff(gated.clone(), finalizer(), Backoff::NONE);
    (sched, gated)
}

/// `files` JSONL files of `rows` rows each under `dir`, and a job of one-row tasks over them.
fn jsonl_job(dir: &Path, files: usize, rows: usize) -> String {
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds).unwrap();
    for f in 0..files {
        let text: String = (0..rows)
            .map(|r| format!("{{\"text\": \"file {f} row {r}\"}}\n"))
            .collect();
        std::fs::write(seeds.join(format!("part-{f:04}.jsonl")), text).unwrap();
    }
    job_yaml(&format!("{}/*.jsonl", seeds.display()), "jsonl", dir)
}

fn job_yaml(input: &str, format: &str, dir: &Path) -> String {
    format!(
        "name: planned
input:
  path: '{input}'
  format: {format}
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
  lease_s: 600
",
        out = dir.join("out").display(),
    )
}

async fn wait_for(
    sched: &Scheduler,
    id: &str,
    what: &str,
    done: impl Fn(&JobView) -> bool,
) -> JobView {
    for _ in 0..1_000 {
        let v = sched.job(id).await.expect("known job");
        if done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "job {id}: {what}: {:?}",
        sched.job(id).await.map(|v| v.record)
    );
}

/// Runs every task of a job to completion (one row each) and waits for it to succeed.
async fn run_to_end(sched: &Arc<Scheduler>, id: &str, tasks: u64) {
    for _ in 0..tasks {
        let l = sched.lease("w").await.unwrap().expect("a pending task");
        let stats = TaskStats {
            rows_in: 1,
            rows_out: 1,
            seeds: synthforge_core::stats::SeedOutcomes {
                output: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let done = sched
            .complete("w", &l.job_id, l.task_id, l.attempt, Vec::new(), stats)
            .await
            .unwrap();
        assert_eq!(done, Ok(()));
    }
    let v = wait_for(sched, id, "ends", |v| v.record.state.is_terminal()).await;
    assert_eq!(v.record.state, JobState::Succeeded, "{:?}", v.record);
}

#[tokio::test]
async fn submit_answers_while_planning_and_tasks_are_leased_once_planned() {
    let dir = tempfile::tempdir().unwrap();
    // 300 one-row objects: three planning steps (128, 128, 44 tasks).
    let yaml = jsonl_job(dir.path(), 300, 1);
    let store = Arc::new(EmbeddedStore::in_memory());
    let (sched, gate) = gated(&store);

    let view = sched.submit(&yaml, None).await.unwrap();
    let id = view.record.id.clone();
    assert_eq!(view.record.state, JobState::Planning);
    assert_eq!(view.record.planning.as_ref().unwrap().objects_total, 300);
    let stored = store.load_all().await.unwrap();
    assert_eq!(
        stored.jobs[0].state,
        JobState::Planning,
        "stored before planning ends"
    );
    assert!(
        sched.lease("w").await.unwrap().is_none(),
        "no lease while planning"
    );

    // One step stored: its progress shows, its tasks are held but not leased yet.
    gate.gate.add_permits(1);
    let v = wait_for(&sched, &id, "first step stored", |v| {
        v.record
            .planning
            .as_ref()
            .is_some_and(|p| p.tasks_written == 128)
    })
    .await;
    let p = v.record.planning.clone().unwrap();
    assert_eq!((p.objects_planned, p.rows_planned), (128, 128));
    assert_eq!(v.record.state, JobState::Planning);
    assert!(
        sched.lease("w").await.unwrap().is_none(),
        "no lease while planning"
    );
    // Resubmitting the same job while it plans answers with it, as for a running job.
    let again = sched.submit(&yaml, None).await.unwrap();
    assert_eq!(again.record.id, id);
    assert_eq!(again.record.state, JobState::Planning);

    gate.gate.add_permits(2);
    let v = wait_for(&sched, &id, "runs", |v| v.record.state == JobState::Running).await;
    assert_eq!((v.record.tasks_total, v.record.rows_total), (300, 300));
    assert_eq!(v.record.planning, None);
    assert_eq!(v.tasks_pending, 300);
    let stored = store.load_all().await.unwrap();
    assert_eq!(stored.jobs[0].state, JobState::Running);
    let mut ids: Vec<u64> = stored.tasks.iter().map(|t| t.task_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..300).collect::<Vec<_>>(), "every task stored once");
    run_to_end(&sched, &id, 300).await;
}

#[tokio::test]
async fn a_small_input_is_planned_within_submit() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = jsonl_job(dir.path(), 3, 2);
    let sched = Scheduler::with_retry_backoff(
        Arc::new(EmbeddedStore::in_memory()),
        finalizer(),
        Backoff::NONE,
    );
    let view = sched.submit(&yaml, None).await.unwrap();
    // Planned within Submit's grace (allowing for a loaded machine, it may still be planning).
    let v = wait_for(&sched, &view.record.id, "runs", |v| {
        v.record.state == JobState::Running
    })
    .await;
    assert_eq!((v.record.tasks_total, v.record.rows_total), (6, 6));
    run_to_end(&sched, &view.record.id, 6).await;
}

/// Writes a one-column Parquet file of `rows` rows.
fn write_parquet(path: &Path, rows: usize) {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    let text: ArrayRef = Arc::new(StringArray::from(
        (0..rows).map(|i| format!("row {i}")).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_from_iter([("text", text)]).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// `valid` Parquet files of 4 rows under `dir/seeds`, then one that is not Parquet (its name
/// sorts last, so it is planned last), and a job over them.
fn parquet_job_with_a_bad_file(dir: &Path, valid: usize) -> String {
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds).unwrap();
    // The first object (read at submit for its columns) is valid; the last one is not.
    for f in 0..valid {
        write_parquet(&seeds.join(format!("a{f:04}.parquet")), 4);
    }
    std::fs::write(seeds.join("b.parquet"), b"not a parquet file at all").unwrap();
    job_yaml(&format!("{}/*.parquet", seeds.display()), "parquet", dir)
}

#[tokio::test]
async fn a_planning_failure_after_submit_answered_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    // Two planning steps; the bad object is in the second.
    let yaml = parquet_job_with_a_bad_file(dir.path(), 130);
    let store = Arc::new(EmbeddedStore::in_memory());
    let (sched, gate) = gated(&store);

    let view = sched
        .submit(&yaml, None)
        .await
        .expect("submit takes the job in");
    assert_eq!(view.record.state, JobState::Planning);
    gate.gate.add_permits(10);
    let v = wait_for(&sched, &view.record.id, "fails", |v| {
        v.record.state.is_terminal()
    })
    .await;
    assert_eq!(v.record.state, JobState::Failed);
    assert!(
        v.record.error.starts_with("planning: ") && v.record.error.contains("b.parquet"),
        "{}",
        v.record.error
    );
    assert!(sched.lease("w").await.unwrap().is_none());
    let stored = store.load_all().await.unwrap();
    assert_eq!(stored.jobs[0].state, JobState::Failed);
    assert_eq!(stored.jobs[0].error, v.record.error);
}

#[tokio::test]
async fn a_quick_planning_failure_is_submits_error_and_a_resubmission_plans_again() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = parquet_job_with_a_bad_file(dir.path(), 1);
    let id =
        super::super::job_id_for(&synthforge_core::spec::JobSpec::from_yaml(&yaml, "job").unwrap());
    let store = Arc::new(EmbeddedStore::in_memory());
    let sched = Scheduler::with_retry_backoff(store.clone(), finalizer(), Backoff::NONE);

    // Planning fails within Submit's grace (or, on a loaded machine, just after it).
    match sched.submit(&yaml, None).await {
        Err(e) => assert!(
            e.to_string().contains("planning: ") && e.to_string().contains("b.parquet"),
            "{e}"
        ),
        Ok(v) => assert_eq!(v.record.state, JobState::Planning),
    }
    let v = wait_for(&sched, &id, "fails", |v| v.record.state.is_terminal()).await;
    assert_eq!(v.record.state, JobState::Failed);
    assert!(v.record.error.contains("b.parquet"), "{}", v.record.error);

    // Errors found without planning still come back from Submit itself.
    let bad_column = yaml
        .replace("{{ text }}", "{{ missing_column }}")
        .replace("planned", "other");
    let err = sched.submit(&bad_column, None).await.unwrap_err();
    assert!(err.to_string().contains("missing_column"), "{err}");

    // The file repaired, the same job submitted again is planned again (it never ran).
    write_parquet(&dir.path().join("seeds").join("b.parquet"), 4);
    sched.submit(&yaml, None).await.expect("planned again");
    let v = wait_for(&sched, &id, "runs", |v| v.record.state == JobState::Running).await;
    assert_eq!((v.record.tasks_total, v.record.rows_total), (8, 8));
    assert_eq!(v.record.error, "");
    run_to_end(&sched, &id, 8).await;
}

#[tokio::test]
async fn a_new_leader_plans_a_planning_job_again_to_the_same_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = jsonl_job(dir.path(), 300, 1);
    let store = Arc::new(EmbeddedStore::in_memory());
    // The first leader stores one step of tasks, then stalls (and never resumes: deposed).
    let (first, gate) = gated(&store);
    let id = first.submit(&yaml, None).await.unwrap().record.id;
    gate.gate.add_permits(1);
    wait_for(&first, &id, "first step stored", |v| {
        v.record
            .planning
            .as_ref()
            .is_some_and(|p| p.tasks_written == 128)
    })
    .await;
    let held = store.load_all().await.unwrap();
    assert_eq!(held.jobs[0].state, JobState::Planning);
    assert_eq!(held.tasks.len(), 128);

    let second = Scheduler::with_retry_backoff(store.clone(), finalizer(), Backoff::NONE);
    second.recover().await.unwrap();
    let v = wait_for(&second, &id, "runs", |v| {
        v.record.state == JobState::Running
    })
    .await;
    assert_eq!((v.record.tasks_total, v.tasks_pending), (300, 300));

    // The same tasks a planning from scratch makes, each stored once.
    let fresh = Arc::new(EmbeddedStore::in_memory());
    let reference = Scheduler::with_retry_backoff(fresh.clone(), finalizer(), Backoff::NONE);
    reference.submit(&yaml, None).await.unwrap();
    wait_for(&reference, &id, "runs", |v| {
        v.record.state == JobState::Running
    })
    .await;
    let sorted = |mut t: Vec<TaskRecord>| {
        t.sort_by_key(|t| t.task_id);
        t
    };
    let replanned = sorted(store.load_all().await.unwrap().tasks);
    assert_eq!(replanned, sorted(fresh.load_all().await.unwrap().tasks));
    assert!(replanned.iter().all(|t| t.state == TaskState::Pending));
    run_to_end(&second, &id, 300).await;
}

#[tokio::test]
async fn cancelling_a_planning_job_stops_its_planning() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = jsonl_job(dir.path(), 300, 1);
    let store = Arc::new(EmbeddedStore::in_memory());
    let (sched, gate) = gated(&store);
    let id = sched.submit(&yaml, None).await.unwrap().record.id;
    assert!(sched.cancel(&id).await.unwrap());
    gate.gate.add_permits(10);
    // Planning notices at its next step and stops; the job stays cancelled, nothing leased.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let v = sched.job(&id).await.unwrap();
    assert_eq!(v.record.state, JobState::Cancelled);
    assert!(sched.lease("w").await.unwrap().is_none());
    assert_eq!(
        store.load_all().await.unwrap().jobs[0].state,
        JobState::Cancelled
    );
}
