//! One behaviour suite every [`TaskStore`] must pass (embedded here; etcd in its own tests).
//! Public so other crates' tests (a real etcd server) can run it too.

use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::InputFormat;

use super::{StoreError, TaskStore};
use crate::model::{JobRecord, JobState, TaskRecord, TaskState, TaskStats};

fn job(id: &str, tasks: u64) -> (JobRecord, Vec<TaskRecord>) {
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
    store.fail(id, 0, 1, "worker lost", true).await.unwrap();
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
    store.fail(id, 0, 1, "bad object", false).await.unwrap();
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
    let changed = store.requeue_expired(500, &max).await.unwrap();
    assert!(!changed.iter().any(|t| t.job_id == id), "not yet expired");
    let changed = store.requeue_expired(2_000, &max).await.unwrap();
    let t = changed.iter().find(|t| t.job_id == id).expect("requeued");
    assert_eq!(t.state, TaskState::Pending);
    store.claim(id, 0, 2, "w2", 3_000).await.unwrap();
    let changed = store.requeue_expired(4_000, &max).await.unwrap();
    let t = changed.iter().find(|t| t.job_id == id).expect("failed");
    assert_eq!(t.state, TaskState::Failed);
    assert!(t.last_error.contains("expired"), "{}", t.last_error);
}
