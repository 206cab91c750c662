//! The etcd task store against a real etcd server: the shared conformance suite, two stores
//! racing for one task, leader fencing, and a job large enough to need several creation
//! batches and load pages.

use std::sync::Arc;

use synthforge_coordinator::control::store::etcd::EtcdStore;
use synthforge_coordinator::control::store::{conformance, StoreError, TaskStore};
use synthforge_coordinator::control::task_machine::Backoff;
use synthforge_coordinator::model::{JobRecord, JobState, TaskRecord, TaskState};
use synthforge_tests::Etcd;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn store(etcd: &Etcd, prefix: &str) -> EtcdStore {
    EtcdStore::connect(&[etcd.url()], prefix).await.unwrap()
}

fn job(id: &str, tasks: u64) -> (JobRecord, Vec<TaskRecord>) {
    let j = JobRecord {
        id: id.into(),
        name: "etcd-test".into(),
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
    // Built from JSON: the slice type lives in synthforge-core, which this crate does not use.
    let ts = (0..tasks)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "job_id": id, "task_id": i, "state": "pending", "attempt": 0, "worker": "",
                "deadline_ms": 0, "last_error": "", "files": [], "stats": {
                    "rows_in": 0, "rows_out": 0, "rows_failed": 0, "prompt_tokens": 0,
                    "completion_tokens": 0 },
                "slice": { "object_url": "/tmp/seed.jsonl", "format": "jsonl",
                    "row_start": i * 10, "row_count": 10, "byte_start": 0, "byte_end": 0,
                    "row_groups": [], "global_row_start": i * 10 },
            }))
            .expect("task record JSON")
        })
        .collect();
    (j, ts)
}

#[test]
fn conformance_suite_on_real_etcd() {
    let etcd = Etcd::start();
    rt().block_on(async {
        let s = store(&etcd, "/conf").await;
        conformance::run_all(&s).await;
        // A second store instance on the same prefix sees everything the first wrote.
        let other = store(&etcd, "/conf").await;
        let (a, b) = (s.load_all().await.unwrap(), other.load_all().await.unwrap());
        assert_eq!(a.jobs.len(), b.jobs.len());
        assert_eq!(a.tasks.len(), b.tasks.len());
        assert!(!a.tasks.is_empty());
    });
}

#[test]
fn two_stores_racing_to_claim_one_task_exactly_one_wins() {
    let etcd = Etcd::start();
    rt().block_on(async {
        let a = Arc::new(store(&etcd, "/race").await);
        let b = Arc::new(store(&etcd, "/race").await);
        let (j, ts) = job("race", 20);
        a.create_job(&j, &ts).await.unwrap();
        // Every task is claimed by both stores at once, 20 times over.
        for task in 0..20u64 {
            let (a2, b2) = (a.clone(), b.clone());
            let ha = tokio::spawn(async move { a2.claim("race", task, 1, "wa", 10_000).await });
            let hb = tokio::spawn(async move { b2.claim("race", task, 1, "wb", 10_000).await });
            let (ra, rb) = (ha.await.unwrap(), hb.await.unwrap());
            let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
            assert_eq!(wins, 1, "task {task}: a={ra:?} b={rb:?}");
            for r in [ra, rb] {
                if let Err(e) = r {
                    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
                }
            }
        }
        let snap = a.load_all().await.unwrap();
        let leased: Vec<&TaskRecord> = snap.tasks.iter().filter(|t| t.job_id == "race").collect();
        assert_eq!(leased.len(), 20);
        assert!(leased
            .iter()
            .all(|t| t.state == TaskState::Leased && t.attempt == 1));
        // The loser's completion is refused; the winner's is accepted exactly once.
        let stats = Default::default();
        for t in leased {
            let (winner, loser) = if t.worker == "wa" { (&a, &b) } else { (&b, &a) };
            assert!(matches!(
                loser.complete("race", t.task_id, 2, &[], &stats).await,
                Err(StoreError::Conflict(_))
            ));
            winner
                .complete("race", t.task_id, 1, &[], &stats)
                .await
                .unwrap();
            assert!(matches!(
                loser.complete("race", t.task_id, 1, &[], &stats).await,
                Err(StoreError::Conflict(_))
            ));
        }
    });
}

#[test]
fn deposed_leader_writes_are_fenced_off() {
    let etcd = Etcd::start();
    rt().block_on(async {
        let old = store(&etcd, "/fence").await;
        let (j, ts) = job("fence", 3);
        old.create_job(&j, &ts).await.unwrap();
        // The old leader leads under an election key that then disappears (its lease expired).
        let mut kv = old.client().kv_client();
        kv.put("/fence/leader/a", "old", None).await.unwrap();
        let rev = kv
            .get("/fence/leader/a", None)
            .await
            .unwrap()
            .kvs()
            .first()
            .unwrap()
            .create_revision();
        old.set_fence(Some((b"/fence/leader/a".to_vec(), rev)));
        old.claim("fence", 0, 1, "w1", 10_000).await.unwrap();
        kv.delete("/fence/leader/a", None).await.unwrap();
        // Nothing else touched task 0 or 1, yet the deposed leader can no longer write.
        assert!(matches!(
            old.complete("fence", 0, 1, &[], &Default::default()).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            old.claim("fence", 1, 1, "w1", 10_000).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            old.update_job(&j).await,
            Err(StoreError::Conflict(_))
        ));
        // A standby refuses writes without asking etcd.
        old.set_fence(None);
        assert!(matches!(
            old.claim("fence", 2, 1, "w1", 10_000).await,
            Err(StoreError::Conflict(_))
        ));
        // The successor sees task 0 still leased at attempt 1 and can complete it.
        let new = store(&etcd, "/fence").await;
        let snap = new.load_all().await.unwrap();
        let t0 = snap.tasks.iter().find(|t| t.task_id == 0).unwrap();
        assert_eq!((t0.state, t0.attempt), (TaskState::Leased, 1));
        new.renew("fence", 0, 1, 99_000).await.unwrap();
        new.complete("fence", 0, 1, &[], &Default::default())
            .await
            .unwrap();
    });
}

/// The check the finalizer makes before each object-store side effect follows the same fence
/// as the store's writes.
#[test]
fn the_leader_check_follows_the_election_key() {
    let etcd = Etcd::start();
    rt().block_on(async {
        let s = store(&etcd, "/check").await;
        s.check_leader().await.expect("no election: always leader");
        let mut kv = s.client().kv_client();
        kv.put("/check/leader/a", "me", None).await.unwrap();
        let rev = kv
            .get("/check/leader/a", None)
            .await
            .unwrap()
            .kvs()
            .first()
            .unwrap()
            .create_revision();
        s.set_fence(Some((b"/check/leader/a".to_vec(), rev)));
        s.check_leader().await.expect("leading");
        // Another coordinator's key under the same name does not make this one leader again.
        kv.delete("/check/leader/a", None).await.unwrap();
        assert!(matches!(
            s.check_leader().await,
            Err(StoreError::Conflict(_))
        ));
        kv.put("/check/leader/a", "other", None).await.unwrap();
        assert!(matches!(
            s.check_leader().await,
            Err(StoreError::Conflict(_))
        ));
        s.set_fence(None);
        assert!(matches!(
            s.check_leader().await,
            Err(StoreError::Conflict(_))
        ));
    });
}

#[test]
fn large_job_spans_batches_and_pages_and_renewals_stay_in_memory() {
    let etcd = Etcd::start();
    rt().block_on(async {
        let s = store(&etcd, "/big").await;
        let n = 12_345u64;
        let (j, ts) = job("big", n);
        s.create_job(&j, &ts).await.unwrap();
        let snap = s.load_all().await.unwrap();
        assert_eq!(snap.jobs.len(), 1);
        let mut ids: Vec<u64> = snap.tasks.iter().map(|t| t.task_id).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        assert!(snap.tasks.iter().all(|t| t.state == TaskState::Pending));

        // A lease claimed with a short deadline, renewed to a long one: not expired.
        s.claim("big", 7, 1, "w", 1_000).await.unwrap();
        s.renew("big", 7, 1, 50_000).await.unwrap();
        let max = [("big".to_string(), 3)].into();
        assert!(s
            .requeue_expired(10_000, &max, Backoff::NONE)
            .await
            .unwrap()
            .is_empty());
        let changed = s
            .requeue_expired(60_000, &max, Backoff::NONE)
            .await
            .unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(
            (changed[0].task_id, changed[0].state),
            (7, TaskState::Pending)
        );
        let snap = s.load_all().await.unwrap();
        let t7 = snap.tasks.iter().find(|t| t.task_id == 7).unwrap();
        assert_eq!((t7.state, t7.attempt), (TaskState::Pending, 1));
        assert!(t7.last_error.contains("expired"), "{}", t7.last_error);
    });
}

/// A fold cut short — the summary written, some task keys deleted, then a crash — is finished by
/// the next fold (a new coordinator's): snapshots stand on the summary meanwhile, the leftover
/// keys go, and a standby may not fold.
#[test]
fn an_interrupted_fold_is_finished_by_the_next_one() {
    let etcd = Etcd::start();
    rt().block_on(async {
        let s = store(&etcd, "/fold").await;
        let (mut j, ts) = job("fold", 300);
        s.create_job(&j, &ts).await.unwrap();
        j.state = JobState::Succeeded;
        s.update_job(&j).await.unwrap();
        // The crash: a summary without `tasks_deleted`, and only the first 100 keys gone.
        let summary = serde_json::json!({
            "job_id": "fold", "tasks_pending": 300, "tasks_leased": 0, "tasks_done": 0,
            "tasks_failed": 0, "stats": { "rows_in": 0, "rows_out": 0, "rows_failed": 0,
            "prompt_tokens": 0, "completion_tokens": 0 }, "failed_tasks": [],
        });
        let mut kv = s.client().kv_client();
        kv.put("/fold/summaries/fold", summary.to_string(), None)
            .await
            .unwrap();
        for t in 0..100 {
            kv.delete(format!("/fold/tasks/fold/{t:010}"), None)
                .await
                .unwrap();
        }
        let restarted = store(&etcd, "/fold").await;
        let snap = restarted.load_all().await.unwrap();
        assert!(
            snap.tasks.is_empty(),
            "a folded job's leftover tasks are not loaded"
        );
        let stored = &snap.summaries[0];
        assert!(!stored.tasks_deleted);
        assert_eq!(
            stored.tasks_pending, 300,
            "the summary written first is kept"
        );

        restarted.set_fence(None);
        assert!(matches!(
            restarted.fold_job("fold").await,
            Err(StoreError::Conflict(_))
        ));
        let restarted = store(&etcd, "/fold").await;
        let folded = restarted.fold_job("fold").await.unwrap();
        assert!(folded.tasks_deleted);
        assert_eq!(folded.tasks_pending, 300);
        assert_eq!(restarted.maintenance().task_records_deleted, 200);
        for t in 0..300 {
            assert!(matches!(
                restarted.stored_task("fold", t).await,
                Err(StoreError::NotFound(_))
            ));
        }
        let snap = restarted.load_all().await.unwrap();
        assert!(snap.summaries[0].tasks_deleted);
    });
}
