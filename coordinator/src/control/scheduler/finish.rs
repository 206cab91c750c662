//! Ending jobs: finalization once every task has ended, and cancellation.

use std::sync::Arc;

use synthforge_core::now_ms;

use super::state::JobEntry;
use super::{outcome, LeaderCheck, SchedError, Scheduler};
use crate::control::store::StoreError;
use crate::finalize::dedup_plan;
use crate::model::{JobState, TaskRecord};

/// Dedup phase tasks planned in memory, to be stored and then queued.
struct DedupPhase {
    tasks: Vec<TaskRecord>,
    parts: synthforge_core::dedup_phase::PartsList,
    spec: Arc<synthforge_core::spec::JobSpec>,
}

/// The dedup phase tasks a running job still lacks, once its generation tasks have all ended
/// (all of them the first time; the rest after an interrupted start). They go into memory
/// at once, unqueued, so the job is no longer "all ended"; `None` when nothing is missing.
fn plan_missing_dedup(e: &mut JobEntry) -> Option<DedupPhase> {
    if e.record.state != JobState::Running {
        return None;
    }
    let params = synthforge_core::stages::dedup::job_params(&e.spec).ok()??;
    let planned = dedup_plan::phase_tasks(&e.record.id, &e.spec, &params, &e.tasks);
    let have = e.tasks.iter().filter(|t| t.is_dedup()).count();
    if have >= planned.len() {
        return None;
    }
    let parts = dedup_plan::parts_of(&e.tasks);
    let missing: Vec<TaskRecord> = planned.into_iter().skip(have).collect();
    e.tasks.extend(missing.iter().cloned());
    e.record.tasks_total = e.tasks.len() as u64;
    Some(DedupPhase {
        tasks: missing,
        parts,
        spec: e.spec.clone(),
    })
}

impl Scheduler {
    /// Called whenever every task of the job has ended: starts the dedup phase when the job
    /// has one still to run (docs/dedup.md), else finalizes.
    pub(super) async fn spawn_finalize(self: Arc<Self>, job_id: String) {
        let (record, spec, tasks) = {
            let mut inner = self.inner.lock().await;
            let Some(e) = inner.job_mut(&job_id) else {
                return;
            };
            if e.record.state.is_terminal() {
                return;
            }
            if let Some(phase) = plan_missing_dedup(e) {
                drop(inner);
                tokio::spawn(self.clone().store_dedup_phase(job_id, phase));
                return;
            }
            if !e.all_ended() {
                return; // the dedup phase is running
            }
            e.record.state = JobState::Finalizing;
            (e.record.clone(), e.spec.clone(), e.tasks.clone())
        };
        let _ = self.store.update_job(&record).await;
        let this = self.clone();
        let leader = self.leader_check();
        tokio::spawn(async move {
            let result =
                (this.finalizer)(record.clone(), spec.clone(), tasks.clone(), leader).await;
            let mut inner = this.inner.lock().await;
            let Some(e) = inner.job_mut(&record.id) else {
                return;
            };
            if e.record.state != JobState::Finalizing {
                return;
            }
            e.record.finished_ms = now_ms();
            match result {
                Ok(manifest) => {
                    let (state, error) = outcome::judge(
                        e.record.rows_total,
                        &spec.scheduling,
                        &tasks,
                        &e.stats,
                        &manifest.failure_reasons,
                    );
                    e.record.state = state;
                    e.record.error = error;
                    let (stats, removed) =
                        crate::finalize::dedup::stats_after_finalize(&tasks, &manifest);
                    e.stats = stats;
                    e.record.finalize_removed = removed;
                }
                Err(err) => {
                    e.record.state = JobState::Failed;
                    e.record.error = format!("finalizing: {err}");
                }
            }
            let rec = e.record.clone();
            drop(inner);
            if let Err(err) = this.store.update_job(&rec).await {
                tracing::error!(job = %rec.id, error = %err, "cannot store final job state");
            }
            tracing::info!(job = %rec.id, state = rec.state.as_str(), error = %rec.error, "job finished");
            this.changed.notify_waiters();
        });
    }

    /// Writes the dedup phase's parts list, stores its tasks, then queues them. Retried until
    /// it succeeds, the job ends, or this coordinator is no longer the leader (the next leader
    /// plans the same phase from the same tasks and adds what is missing).
    async fn store_dedup_phase(self: Arc<Self>, job_id: String, phase: DedupPhase) {
        let mut wait = std::time::Duration::from_millis(200);
        loop {
            match self.try_store_dedup_phase(&job_id, &phase).await {
                Ok(()) => break,
                Err(StoreError::Conflict(why)) | Err(StoreError::NotFound(why)) => {
                    tracing::warn!(job = %job_id, %why, "dedup phase not started here");
                    return;
                }
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "starting the dedup phase failed; retrying");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(10));
            let inner = self.inner.lock().await;
            match inner.job(&job_id) {
                Some(e) if e.record.state == JobState::Running => {}
                _ => return,
            }
        }
        let record = {
            let mut inner = self.inner.lock().await;
            let Some(e) = inner.job_mut(&job_id) else {
                return;
            };
            if e.record.state != JobState::Running {
                return;
            }
            let now = now_ms();
            for t in &phase.tasks {
                e.requeue(t.task_id, now);
            }
            e.record.clone()
        };
        if let Err(err) = self.store.update_job(&record).await {
            tracing::warn!(job = %job_id, error = %err, "cannot store the job's task count");
        }
        tracing::info!(job = %job_id, tasks = phase.tasks.len(), parts = phase.parts.parts.len(), "dedup phase started");
        self.changed.notify_waiters();
    }

    async fn try_store_dedup_phase(
        &self,
        job_id: &str,
        phase: &DedupPhase,
    ) -> Result<(), StoreError> {
        self.store.check_leader().await?;
        dedup_plan::write_parts(&phase.spec, &phase.parts)
            .await
            .map_err(StoreError::Io)?;
        self.store.add_tasks(job_id, &phase.tasks).await
    }

    /// The leadership check handed to the finalizer: the store's own fence.
    fn leader_check(&self) -> LeaderCheck {
        let store = self.store.clone();
        Arc::new(move || {
            let store = store.clone();
            Box::pin(async move { store.check_leader().await.map_err(|e| e.to_string()) })
        })
    }

    pub async fn cancel(&self, job_id: &str) -> Result<bool, SchedError> {
        let mut inner = self.inner.lock().await;
        let Some(e) = inner.job_mut(job_id) else {
            return Err(SchedError::NoJob(job_id.into()));
        };
        if e.record.state.is_terminal() {
            return Ok(false);
        }
        e.record.state = JobState::Cancelled;
        e.record.finished_ms = now_ms();
        e.pending.clear();
        e.delayed.clear();
        let rec = e.record.clone();
        drop(inner);
        self.store.update_job(&rec).await?;
        self.changed.notify_waiters();
        tracing::info!(job = job_id, "job cancelled");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use synthforge_core::dedup_phase::{DedupKind, PartsList, PARTS_PATH};
    use synthforge_core::manifest::Manifest;
    use synthforge_core::sink::WrittenFile;
    use synthforge_core::stats::{SeedOutcomes, TaskStats};

    use super::*;
    use crate::control::scheduler::{Finalizer, Lease};
    use crate::control::store::embedded::EmbeddedStore;
    use crate::control::store::TaskStore;
    use crate::control::task_machine::Backoff;

    type Calls = Arc<Mutex<Vec<Vec<TaskRecord>>>>;

    fn scheduler(store: Arc<EmbeddedStore>) -> (Arc<Scheduler>, Calls) {
        let calls: Calls = Arc::default();
        let seen = calls.clone();
        let finalizer: Finalizer = Arc::new(move |_job, _spec, tasks, _leader| {
            seen.lock().unwrap().push(tasks);
            Box::pin(async { Ok(Manifest::default()) })
        });
        (
            Scheduler::with_retry_backoff(store, finalizer, Backoff::NONE),
            calls,
        )
    }

    fn job_yaml(dir: &std::path::Path, rows: u64) -> String {
        let seed = dir.join("seed.jsonl");
        let body: String = (0..rows)
            .map(|i| format!("{{\"id\": \"r{i}\", \"text\": \"row {i}\"}}\n"))
            .collect();
        std::fs::write(&seed, body).unwrap();
        format!(
            "name: phased\ninput:\n  path: '{}'\n  format: jsonl\n  rows_per_task: 1\n  limit: 1000000\npipeline:\n  - stage: generate\n    backend: b\n    template: '{{{{ text }}}}'\n  - stage: dedup\nbackends:\n  b:\n    url: http://127.0.0.1:9/v1\n    model: m\noutput:\n  path: '{}'\nscheduling:\n  lease_s: 600\n",
            seed.display(),
            dir.join("out").display()
        )
    }

    async fn lease(s: &Arc<Scheduler>) -> Lease {
        s.lease("w1").await.unwrap().expect("a pending task")
    }

    async fn complete_generation(s: &Arc<Scheduler>, l: &Lease) {
        let files = vec![WrittenFile {
            path: format!("data/part-{:06}-{}.parquet", l.task_id, l.attempt),
            rows: 1,
            bytes: 10,
            kind: "data".into(),
        }];
        let stats = TaskStats {
            rows_in: 1,
            rows_out: 1,
            seeds: SeedOutcomes {
                output: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        s.complete("w1", &l.job_id, l.task_id, l.attempt, files, stats)
            .await
            .unwrap()
            .unwrap();
    }

    async fn complete_dedup(s: &Arc<Scheduler>, l: &Lease) {
        assert!(l.dedup.is_some(), "a dedup task");
        let edges = vec![WrittenFile {
            path: format!("_dedup/edges/part-{:06}-{}.jsonl", l.task_id, l.attempt),
            rows: 0,
            bytes: 0,
            kind: "dedup_edges".into(),
        }];
        s.complete(
            "w1",
            &l.job_id,
            l.task_id,
            l.attempt,
            edges,
            TaskStats::default(),
        )
        .await
        .unwrap()
        .unwrap();
    }

    async fn phase_stored(store: &EmbeddedStore) -> usize {
        let tasks = store.load_all().await.unwrap().tasks;
        tasks.iter().filter(|t| t.is_dedup()).count()
    }

    async fn wait_for(what: &str, mut cond: impl AsyncFnMut() -> bool) {
        for _ in 0..400 {
            if cond().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn dedup_phase_is_planned_after_generation_leased_and_then_finalized() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::in_memory());
        let (sched, calls) = scheduler(store.clone());
        let job = sched
            .submit(&job_yaml(dir.path(), 3), None)
            .await
            .unwrap()
            .record
            .id;
        for _ in 0..3 {
            let l = lease(&sched).await;
            assert!(l.dedup.is_none(), "generation first");
            complete_generation(&sched, &l).await;
        }
        // Generation ended: 1 exact + 14 band tasks (3 records, one hash range) follow.
        wait_for("the dedup phase to be stored", async || {
            phase_stored(store.as_ref()).await == 15
        })
        .await;
        let view = sched.job(&job).await.unwrap();
        assert_eq!(view.record.tasks_total, 18);
        assert_eq!(view.record.state, JobState::Running);
        assert_eq!(view.dedup_phase.map(|p| (p.done, p.total)), Some((0, 15)));
        assert!(calls.lock().unwrap().is_empty(), "not finalized yet");
        let parts: PartsList = serde_json::from_slice(
            &std::fs::read(dir.path().join("out").join(PARTS_PATH)).unwrap(),
        )
        .unwrap();
        assert_eq!(parts.parts.len(), 3);
        let stored = store.load_all().await.unwrap().tasks;
        assert_eq!(stored.iter().filter(|t| t.is_dedup()).count(), 15);

        // A coordinator that takes over now finds the phase stored and adds nothing.
        let (again, again_calls) = scheduler(store.clone());
        again.recover().await.unwrap();
        assert_eq!(again.job(&job).await.unwrap().record.tasks_total, 18);

        let mut first = None;
        wait_for("a dedup task to be queued", async || {
            first = sched.lease("w1").await.unwrap();
            first.is_some()
        })
        .await;
        let first = first.unwrap();
        assert_eq!(first.task_id, 3);
        assert_eq!(first.dedup.as_ref().unwrap().kind, DedupKind::Exact);
        let mut l = Some(first);
        while let Some(cur) = l {
            assert!(cur.dedup.is_some());
            complete_dedup(&sched, &cur).await;
            l = sched.lease("w1").await.unwrap();
        }
        wait_for("finalization", async || {
            sched.job(&job).await.unwrap().record.state.is_terminal()
        })
        .await;
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].len(), 18);
        assert!(again_calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_interrupted_phase_start_is_completed_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::in_memory());
        let (sched, _) = scheduler(store.clone());
        let job = sched
            .submit(&job_yaml(dir.path(), 2), None)
            .await
            .unwrap()
            .record
            .id;
        for _ in 0..2 {
            let l = lease(&sched).await;
            complete_generation(&sched, &l).await;
        }
        wait_for("the dedup phase to be stored", async || {
            phase_stored(store.as_ref()).await == 15
        })
        .await;
        // As if a crash had stored only the first 4 phase tasks: a new leader adds the rest.
        let snapshot = store.load_all().await.unwrap();
        let partial = Arc::new(EmbeddedStore::in_memory());
        let record = snapshot.jobs[0].clone();
        let (generation, phase): (Vec<_>, Vec<_>) =
            snapshot.tasks.into_iter().partition(|t| !t.is_dedup());
        partial.create_job(&record, &generation).await.unwrap();
        partial.add_tasks(&job, &phase[..4]).await.unwrap();
        // Adding the same tasks again changes nothing (stored ones are left as they are).
        partial.add_tasks(&job, &phase[..4]).await.unwrap();
        let (next, calls) = scheduler(partial.clone());
        next.recover().await.unwrap();
        // The stored ones run; when they have ended, the rest of the plan is added.
        assert_eq!(next.job(&job).await.unwrap().tasks_pending, 4);
        for _ in 0..4 {
            let l = lease(&next).await;
            complete_dedup(&next, &l).await;
        }
        wait_for("the missing phase tasks", async || {
            phase_stored(partial.as_ref()).await == 15
        })
        .await;
        let stored = partial.load_all().await.unwrap().tasks;
        let ids: Vec<u64> = stored.iter().map(|t| t.task_id).collect();
        assert_eq!(ids, (0..17).collect::<Vec<u64>>());
        let added: Vec<TaskRecord> = stored.iter().skip(6).cloned().collect();
        assert_eq!(added, phase[4..]);
        assert!(calls.lock().unwrap().is_empty());
    }
}
