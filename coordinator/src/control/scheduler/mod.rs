//! The scheduler: leases tasks to workers with fencing, takes completions exactly once,
//! requeues expired leases, and finalizes jobs.
//!
//! In-memory state is a cache of the store: every change goes to the store first (which checks
//! the expected state), then to memory. Both apply the same rules, those of
//! [`crate::control::task_machine`]: the scheduler computes a transition on its view, the store
//! applies the same event to what it holds, and memory takes the new record once the store has
//! accepted it (expired leases: memory takes the records the store changed). A coordinator that starts — or takes over as leader —
//! rebuilds memory from the store and gives every outstanding lease a fresh deadline.

use std::collections::HashMap;
use std::sync::Arc;

use synthforge_core::manifest::Manifest;
use synthforge_core::now_ms;
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::JobSpec;
use tokio::sync::Mutex;

use crate::control::planner;
use crate::control::store::{StoreError, TaskStore};
use crate::control::task_machine::{self, Backoff, TaskEvent};
use crate::model::{JobRecord, JobState, TaskRecord, TaskState, TaskStats};

mod admission;
mod backend_wait;
mod finish;
mod lease;
mod outcome;
mod planning;
mod state;
mod submit;
mod upkeep;
mod workers;

use state::{Inner, JobEntry};
pub use state::{JobView, Lease, WorkerInfo};
pub use submit::job_id_for;

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("invalid job: {0}")]
    InvalidJob(String),
    #[error("planning: {0}")]
    Plan(#[from] planner::PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no job `{0}`")]
    NoJob(String),
    /// Transient: the caller should retry shortly.
    #[error("busy: {0}")]
    Busy(String),
    /// The job exists, but its input changed since it was submitted: resuming it would mix
    /// old and new input (start over with a new job id, `synthforge run --fresh`).
    #[error("input of job `{job}` changed since it was submitted: {}; run with --fresh to start over", changes.join("; "))]
    InputChanged { job: String, changes: Vec<String> },
}

/// Asked right before each side effect outside the state store (finalization's object-store
/// writes and deletes): `Err` when this coordinator is no longer the leader and must stop.
/// Built from [`TaskStore::check_leader`].
pub type LeaderCheck =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Called when a job's tasks have all ended, to write the manifest (and run whole-job steps).
/// Returns the stored manifest, whose failure reasons the job's outcome summarises.
pub type Finalizer = Arc<
    dyn Fn(
            JobRecord,
            Arc<JobSpec>,
            Vec<TaskRecord>,
            LeaderCheck,
        ) -> futures::future::BoxFuture<'static, Result<Manifest, String>>
        + Send
        + Sync,
>;

pub struct Scheduler {
    store: Arc<dyn TaskStore>,
    inner: Mutex<Inner>,
    finalizer: Finalizer,
    pub heartbeat_interval_ms: u64,
    /// Wait between a task's failed or expired attempt and its next lease.
    retry_backoff: Backoff,
    /// Silence (ms) after which a worker is no longer listed ([`Scheduler::workers`]).
    worker_grace_ms: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
    /// Jobs being planned in the background now ([`planning`]).
    planning_runs: planning::PlanningRuns,
}

impl Scheduler {
    pub fn new(store: Arc<dyn TaskStore>, finalizer: Finalizer) -> Arc<Self> {
        Self::with_retry_backoff(store, finalizer, Backoff::DEFAULT)
    }

    /// A scheduler whose retried tasks wait `retry_backoff` ([`Backoff::NONE`] in tests that are
    /// not about backoff, so they stay fast).
    pub fn with_retry_backoff(
        store: Arc<dyn TaskStore>,
        finalizer: Finalizer,
        retry_backoff: Backoff,
    ) -> Arc<Self> {
        Arc::new(Scheduler {
            store,
            inner: Mutex::new(Inner::default()),
            finalizer,
            heartbeat_interval_ms: 2_000,
            retry_backoff,
            worker_grace_ms: std::sync::atomic::AtomicU64::new(workers::DEFAULT_GRACE_MS),
            changed: tokio::sync::Notify::new(),
            planning_runs: Default::default(),
        })
    }

    /// Rebuilds memory from the store (start or leader takeover). Outstanding leases get a
    /// fresh deadline so their workers can keep going; jobs stuck in finalizing are finalized.
    pub async fn recover(self: &Arc<Self>) -> Result<(), SchedError> {
        let snap = self.store.load_all().await?;
        let mut folded = upkeep::summaries_by_job(snap.summaries);
        let mut by_job: HashMap<String, Vec<TaskRecord>> = HashMap::new();
        for t in snap.tasks {
            by_job.entry(t.job_id.clone()).or_default().push(t);
        }
        let mut inner = Inner::default();
        let (mut to_finalize, mut to_plan) = (Vec::new(), Vec::new());
        for record in snap.jobs {
            let spec = match JobSpec::from_yaml(&record.spec_yaml, &record.id) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::error!(job = %record.id, error = %e, "stored job spec no longer valid; skipping");
                    continue;
                }
            };
            let mut tasks = by_job.remove(&record.id).unwrap_or_default();
            tasks.sort_by_key(|t| t.task_id);
            let lease_ms = (spec.scheduling.lease_s * 1000.0) as u64;
            for t in tasks.iter_mut().filter(|t| t.state == TaskState::Leased) {
                let deadline = now_ms() + lease_ms;
                if self
                    .store
                    .renew(&t.job_id, t.task_id, t.attempt, deadline)
                    .await
                    .is_ok()
                {
                    let renew = TaskEvent::Renew {
                        attempt: t.attempt,
                        deadline_ms: deadline,
                    };
                    if let Ok(next) = task_machine::transition(t, &renew) {
                        *t = next;
                    }
                }
            }
            let summary = folded.remove(&record.id);
            let mut stats = summary
                .as_ref()
                .map(|s| s.stats.clone())
                .unwrap_or_default();
            for t in tasks.iter().filter(|t| t.state == TaskState::Done) {
                stats.add(&t.stats);
            }
            if record.state.is_terminal() {
                stats.count_removed_at_finalize(&record.finalize_removed);
            }
            let pending: Vec<u64> = tasks
                .iter()
                .filter(|t| t.state == TaskState::Pending)
                .map(|t| t.task_id)
                .collect();
            let ended = tasks
                .iter()
                .filter(|t| matches!(t.state, TaskState::Done | TaskState::Failed))
                .count();
            let mut entry = JobEntry {
                record,
                spec,
                tasks,
                pending: Default::default(),
                delayed: Default::default(),
                stats,
                progress: HashMap::new(),
                ended,
                backend: Default::default(),
                summary,
            };
            let now = now_ms();
            for task_id in pending {
                entry.requeue(task_id, now);
            }
            if planning::needs_planning(&entry.record) {
                to_plan.push(entry.record.id.clone());
            } else if !entry.record.state.is_terminal() && entry.all_ended() {
                to_finalize.push(entry.record.id.clone());
            }
            inner.insert(entry);
        }
        let jobs = inner.jobs.len();
        *self.inner.lock().await = inner;
        tracing::info!(jobs, "scheduler state recovered from store");
        for id in to_finalize {
            self.clone().spawn_finalize(id).await;
        }
        for id in to_plan {
            // Runs on by itself; its end is not awaited here.
            drop(self.clone().spawn_planning(id, None));
        }
        Ok(())
    }

    pub async fn register_worker(&self, id: &str, address: &str, slots: u32) {
        let mut inner = self.inner.lock().await;
        let now = now_ms();
        let w = inner
            .workers
            .entry(id.to_string())
            .or_insert_with(|| WorkerInfo {
                id: id.to_string(),
                registered_ms: now,
                ..Default::default()
            });
        w.address = address.to_string();
        w.slots = slots;
        w.last_seen_ms = now;
    }

    /// Extends a lease; `Ok(None)` means the lease is gone and the worker must stop the task.
    pub async fn heartbeat(
        &self,
        worker: &str,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        rows_done: u64,
    ) -> Result<Option<u64>, SchedError> {
        let mut inner = self.inner.lock().await;
        let now = now_ms();
        if let Some(w) = inner.workers.get_mut(worker) {
            w.last_seen_ms = now;
            w.task_rows_done = rows_done;
        }
        let Some(entry) = inner.job_mut(job_id) else {
            return Ok(None);
        };
        if entry.record.state != JobState::Running {
            return Ok(None);
        }
        let lease_ms = (entry.spec.scheduling.lease_s * 1000.0) as u64;
        let Some(t) = entry.tasks.get(task_id as usize) else {
            return Ok(None);
        };
        let deadline = now + lease_ms;
        let renew = TaskEvent::Renew {
            attempt,
            deadline_ms: deadline,
        };
        let Ok(next) = task_machine::transition(t, &renew) else {
            return Ok(None);
        };
        match self.store.renew(job_id, task_id, attempt, deadline).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) | Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        entry.tasks[task_id as usize] = next;
        entry.progress.insert(task_id, rows_done);
        if rows_done > 0 {
            entry.backend.answered();
        }
        Ok(Some(deadline))
    }

    /// Workers that hold a lease of `job_id` and were heard from recently: the fleet sharing
    /// the job's backends (and their per-minute budgets).
    pub async fn fleet_workers(&self, job_id: &str) -> u32 {
        let inner = self.inner.lock().await;
        let now = now_ms();
        let prefix = format!("{job_id}/");
        let recent = (self.heartbeat_interval_ms * 5).max(10_000);
        inner
            .workers
            .values()
            .filter(|w| w.held.iter().any(|k| k.starts_with(&prefix)))
            .filter(|w| now.saturating_sub(w.last_seen_ms) <= recent)
            .count()
            .max(1) as u32
    }

    /// The share of `job_id`'s per-minute budgets a worker takes when it leases one of its
    /// tasks, before any heartbeat: every live worker may be starting on the job at the same
    /// moment, so all of them count (at least the job's lease holders). Heartbeats then refine
    /// it to the lease holders ([`Scheduler::fleet_workers`]).
    pub async fn starting_fleet(&self, job_id: &str) -> u32 {
        let holders = self.fleet_workers(job_id).await;
        let inner = self.inner.lock().await;
        let now = now_ms();
        let recent = (self.heartbeat_interval_ms * 5).max(10_000);
        let live = inner
            .workers
            .values()
            .filter(|w| now.saturating_sub(w.last_seen_ms) <= recent)
            .count() as u32;
        holders.max(live).max(1)
    }

    /// Accepts a completion only from the current attempt; returns whether it was accepted.
    pub async fn complete(
        self: &Arc<Self>,
        worker: &str,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        files: Vec<WrittenFile>,
        stats: TaskStats,
    ) -> Result<Result<(), String>, SchedError> {
        let key = (job_id.to_string(), task_id);
        let mut inner = self.inner.lock().await;
        if inner.completing.contains(&key) {
            // The same completion is being stored right now (a client retry): let it retry.
            return Err(SchedError::Busy(format!(
                "completion of task {task_id} is being stored; retry"
            )));
        }
        let Some(entry) = inner.job_mut(job_id) else {
            return Ok(Err(format!("no job `{job_id}`")));
        };
        let Some(t) = entry.tasks.get(task_id as usize) else {
            return Ok(Err(format!("no task {task_id}")));
        };
        let event = TaskEvent::Complete {
            attempt,
            files: &files,
            stats: &stats,
        };
        let next = match task_machine::transition(t, &event) {
            Ok(next) => next,
            // Idempotent: a retried completion whose first call was accepted (its reply lost)
            // must not be told "fenced off", or the worker would delete committed files.
            Err(refusal) if refusal.is_repeated_completion() => return Ok(Ok(())),
            Err(refusal) => {
                let why = refusal.to_string();
                tracing::warn!(job = job_id, task_id, attempt, worker, %why, "completion rejected");
                return Ok(Err(why));
            }
        };
        if entry.record.state != JobState::Running {
            return Ok(Err(format!("job is {}", entry.record.state.as_str())));
        }
        if let Some(why) = outcome::completion_mismatch(t.slice.planned_rows(), &stats) {
            // Never a silently shorter dataset: the attempt fails (retried) and says why.
            tracing::error!(job = job_id, task_id, attempt, worker, %why, "completion refused");
            drop(inner);
            self.fail(worker, job_id, task_id, attempt, &why, false)
                .await?;
            return Ok(Err(why));
        }
        inner.completing.insert(key.clone());
        drop(inner);
        let stored = self
            .store
            .complete(job_id, task_id, attempt, &files, &stats)
            .await;
        let mut inner = self.inner.lock().await;
        inner.completing.remove(&key);
        match stored {
            Ok(()) => {}
            Err(StoreError::Conflict(m)) => return Ok(Err(m)),
            Err(e) => return Err(e.into()),
        }
        let Some(entry) = inner.job_mut(job_id) else {
            return Ok(Ok(()));
        };
        entry.stats.add(&stats);
        entry.progress.remove(&task_id);
        entry.backend.answered();
        // The store accepted the transition computed from this view; memory takes it too.
        let t = &mut entry.tasks[task_id as usize];
        if !matches!(t.state, TaskState::Done | TaskState::Failed) {
            entry.ended += 1;
        }
        *t = next;
        let done = entry.all_ended() && entry.record.state == JobState::Running;
        if let Some(w) = inner.workers.get_mut(worker) {
            w.current_task.clear();
            w.held.remove(&format!("{job_id}/{task_id}"));
            w.rows_done_total += stats.rows_in;
            w.tasks_done += 1;
        }
        drop(inner);
        tracing::info!(
            job = job_id,
            task_id,
            attempt,
            worker,
            rows = stats.rows_out,
            "task completed"
        );
        if done {
            self.clone().spawn_finalize(job_id.to_string()).await;
        }
        self.changed.notify_waiters();
        Ok(Ok(()))
    }

    /// A worker gave up on a task: retry elsewhere (transient) or fail it (permanent, or out of
    /// attempts).
    pub async fn fail(
        self: &Arc<Self>,
        worker: &str,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        error: &str,
        permanent: bool,
    ) -> Result<(), SchedError> {
        let mut inner = self.inner.lock().await;
        let Some(entry) = inner.job_mut(job_id) else {
            return Ok(());
        };
        let Some(t) = entry.tasks.get(task_id as usize) else {
            return Ok(());
        };
        let used = entry.backend.attempts_used(task_id, t.attempt);
        let retry =
            !permanent && task_machine::retry_allowed(used, entry.spec.scheduling.max_attempts);
        let now = now_ms();
        let not_before_ms = now + self.retry_backoff.delay_ms(job_id, task_id, attempt);
        let event = TaskEvent::Fail {
            attempt,
            error,
            retry,
            not_before_ms,
        };
        let Ok(next) = task_machine::transition(t, &event) else {
            return Ok(());
        };
        match self
            .store
            .fail(job_id, task_id, attempt, error, retry, not_before_ms)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        entry.progress.remove(&task_id);
        entry.tasks[task_id as usize] = next;
        // A failure of another kind got past the backend check: it answers.
        entry.backend.answered();
        if retry {
            entry.requeue(task_id, now);
        } else {
            entry.ended += 1;
        }
        let done = entry.all_ended();
        if let Some(w) = inner.workers.get_mut(worker) {
            w.current_task.clear();
            w.held.remove(&format!("{job_id}/{task_id}"));
        }
        drop(inner);
        tracing::warn!(
            job = job_id,
            task_id,
            attempt,
            worker,
            error,
            retry,
            "task failed"
        );
        if done {
            self.clone().spawn_finalize(job_id.to_string()).await;
        }
        Ok(())
    }

    /// Returns expired leases to pending (or fails them after `max_attempts`).
    pub async fn requeue_expired(self: &Arc<Self>) -> Result<usize, SchedError> {
        let mut inner = self.inner.lock().await;
        let attempts: HashMap<String, u32> = inner
            .jobs
            .values()
            // Attempts given back for an unreachable backend do not count.
            .map(|e| {
                let allowed = e.spec.scheduling.max_attempts + e.backend.most_given_back();
                (e.record.id.clone(), allowed)
            })
            .collect();
        let now = now_ms();
        let changed = self
            .store
            .requeue_expired(now, &attempts, self.retry_backoff)
            .await?;
        let mut finished = Vec::new();
        for t in &changed {
            let Some(entry) = inner.job_mut(&t.job_id) else {
                continue;
            };
            tracing::warn!(job = %t.job_id, task_id = t.task_id, attempt = t.attempt, state = ?t.state, "lease expired");
            entry.progress.remove(&t.task_id);
            let mut lost_by = None;
            if let Some(mem) = entry.tasks.get_mut(t.task_id as usize) {
                if t.state == TaskState::Failed && mem.state != TaskState::Failed {
                    entry.ended += 1;
                }
                lost_by = Some(std::mem::take(&mut mem.worker));
                *mem = t.clone();
            }
            if t.state == TaskState::Pending {
                entry.requeue(t.task_id, now);
            }
            let ended_now = entry.all_ended() && entry.record.state == JobState::Running;
            if let Some(w) = lost_by.and_then(|w| inner.workers.get_mut(&w)) {
                w.held.remove(&format!("{}/{}", t.job_id, t.task_id));
            }
            if ended_now {
                finished.push(t.job_id.clone());
            }
        }
        drop(inner);
        finished.dedup();
        for id in finished {
            self.clone().spawn_finalize(id).await;
        }
        Ok(changed.len())
    }

    pub async fn job(&self, id: &str) -> Option<JobView> {
        let view = self.inner.lock().await.job(id).map(|e| e.view());
        view.map(|v| self.with_store_alarm(v))
    }

    /// The validated spec a job runs (the dashboard's funnel follows its pipeline).
    pub async fn job_spec(&self, id: &str) -> Option<Arc<JobSpec>> {
        self.inner.lock().await.job(id).map(|e| e.spec.clone())
    }

    pub async fn jobs(&self) -> Vec<JobView> {
        self.inner
            .lock()
            .await
            .jobs
            .values()
            .map(|e| self.with_store_alarm(e.view()))
            .collect()
    }

    /// True when every known job has ended (used by all-in-one runs to stop workers).
    pub async fn all_terminal(&self) -> bool {
        self.inner
            .lock()
            .await
            .jobs
            .values()
            .all(|e| e.record.state.is_terminal())
    }

    /// Waits until something changes (a completion, a job ending) or the timeout passes.
    pub async fn wait_change(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }
}

#[cfg(test)]
mod tests;
