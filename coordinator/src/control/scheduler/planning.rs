//! Background planning: a submitted job is stored in the `planning` state and its input is cut
//! into tasks here, a step of objects at a time, each step's tasks stored before the next is
//! planned. Submit does not wait for it (beyond a short grace), `status`, the dashboard and
//! `/api` show its progress, and a failure fails the job with the error Submit gave before.
//!
//! Tasks are keyed by task id and planning is deterministic for an unchanged input, so planning
//! again after a restart or a leader change puts the same keys: the leader that recovers a
//! `planning` job plans it again, skipping tasks the store already holds as planned. Every
//! write is fenced like the scheduler's others; a deposed leader's planning stops at its first
//! refused write. No task is leased before planning ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use synthforge_core::now_ms;
use synthforge_core::storage::Location;

use super::{SchedError, Scheduler};
use crate::control::planner::StepPlanner;
use crate::control::store::StoreError;
use crate::control::{fingerprint, planner};
use crate::model::{
    InputFingerprint, JobRecord, JobState, PlanningProgress, TaskRecord, TaskState,
};

/// Tasks per store call: a step of a large Parquet file can hold many thousands.
const WRITE_CHUNK: usize = 5_000;
/// Store calls that fail with an I/O error are tried this many times before planning fails.
const STORE_TRIES: u32 = 5;
/// Progress is written to the job record at most this often (memory has it at every step; a
/// new leader recounts it as it plans again).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Why planning stopped before its end.
enum Halt {
    /// The job is no longer planned here (cancelled, or this coordinator was fenced off): no
    /// change to the job.
    Stopped(String),
    /// Planning failed: the job fails with this error.
    Failed(String),
}

/// The jobs a scheduler is planning right now: a job recovered again while its planning runs
/// (the same coordinator elected again) is not planned twice at once.
#[derive(Default)]
pub(super) struct PlanningRuns(std::sync::Mutex<HashSet<String>>);

/// Marks a job as being planned for as long as it lives.
struct RunGuard<'a> {
    runs: &'a PlanningRuns,
    job_id: String,
}

impl PlanningRuns {
    fn start(&self, job_id: &str) -> Option<RunGuard<'_>> {
        let fresh = self
            .0
            .lock()
            .expect("planning runs lock")
            .insert(job_id.to_string());
        fresh.then(|| RunGuard {
            runs: self,
            job_id: job_id.to_string(),
        })
    }
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut runs) = self.runs.0.lock() {
            runs.remove(&self.job_id);
        }
    }
}

impl Scheduler {
    /// Plans job `job_id` (stored in `planning`) in the background. `objects`: the input as
    /// listed at submit; `None` (planning again after recovery) lists it again and refuses an
    /// input that changed since submit.
    pub(super) fn spawn_planning(
        self: Arc<Self>,
        job_id: String,
        objects: Option<Vec<(Location, u64)>>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let Some(_run) = self.planning_runs.start(&job_id) else {
                return;
            };
            let started = Instant::now();
            match self.plan_job(&job_id, objects).await {
                Ok(()) => {}
                Err(Halt::Stopped(why)) => {
                    tracing::info!(job = %job_id, %why, "planning stopped");
                }
                Err(Halt::Failed(error)) => self.fail_planning(&job_id, error).await,
            }
            tracing::debug!(job = %job_id, ms = started.elapsed().as_millis() as u64, "planning ended");
            self.changed.notify_waiters();
        })
    }

    async fn plan_job(
        self: &Arc<Self>,
        job_id: &str,
        objects: Option<Vec<(Location, u64)>>,
    ) -> Result<(), Halt> {
        let (spec, submitted) = {
            let mut inner = self.inner.lock().await;
            let e = planning_entry(&mut inner, job_id)?;
            // Tasks an earlier planning stored (recovered from the store) are kept as far as
            // their ids are dense; planning again rewrites only what differs from them.
            let dense = e
                .tasks
                .iter()
                .enumerate()
                .take_while(|(i, t)| t.task_id == *i as u64)
                .count();
            e.tasks.truncate(dense);
            (e.spec.clone(), e.record.input_fingerprint.clone())
        };
        let failed = |e: planner::PlanError| Halt::Failed(format!("planning: {e}"));
        let objects = match objects {
            Some(objects) => objects,
            None => {
                let now = fingerprint::list(&spec)
                    .await
                    .map_err(|e| failed(e.into()))?;
                let changes = fingerprint::changes(&submitted, &now);
                if !changes.is_empty() {
                    return Err(Halt::Failed(format!(
                        "input changed since the job was submitted, before planning ended: {}; \
                         run with --fresh to start over",
                        changes.join("; ")
                    )));
                }
                planner::list(&spec).await.map_err(failed)?
            }
        };
        let started = Instant::now();
        let mut planner = StepPlanner::new(spec.input.clone(), objects);
        let mut progress_stored = Instant::now();
        while let Some(step) = planner.next_step().await.map_err(failed)? {
            let first = planner.tasks() - step.len() as u64;
            let records: Vec<TaskRecord> = step
                .into_iter()
                .enumerate()
                .map(|(i, s)| TaskRecord::new(job_id, first + i as u64, s))
                .collect();
            self.store_step(job_id, records, &planner).await?;
            if progress_stored.elapsed() >= PROGRESS_EVERY {
                self.store_progress(job_id).await?;
                progress_stored = Instant::now();
            }
            self.changed.notify_waiters();
        }
        tracing::info!(
            job = %job_id,
            tasks = planner.tasks(),
            rows = planner.rows(),
            ms = started.elapsed().as_millis() as u64,
            "planned"
        );
        self.end_planning(job_id, &planner).await
    }

    /// Stores one step's tasks (those the store does not already hold as planned), then takes
    /// them into memory with the job's progress.
    async fn store_step(
        &self,
        job_id: &str,
        records: Vec<TaskRecord>,
        planner: &StepPlanner,
    ) -> Result<(), Halt> {
        let (known, unchanged) = {
            let mut inner = self.inner.lock().await;
            let e = planning_entry(&mut inner, job_id)?;
            let unchanged: Vec<bool> = records
                .iter()
                .map(|r| e.tasks.get(r.task_id as usize) == Some(r))
                .collect();
            (e.tasks.len() as u64, unchanged)
        };
        // Tasks past the ones held are all new (the common case: written as they are); below,
        // only those that differ are written again.
        let fresh_from = records.partition_point(|r| r.task_id < known);
        let rewritten: Vec<TaskRecord> = records[..fresh_from]
            .iter()
            .zip(&unchanged)
            .filter(|(_, same)| !**same)
            .map(|(r, _)| r.clone())
            .collect();
        for chunk in rewritten
            .chunks(WRITE_CHUNK)
            .chain(records[fresh_from..].chunks(WRITE_CHUNK))
        {
            self.with_store_tries("storing planned tasks", || {
                self.store.put_planned_tasks(job_id, chunk)
            })
            .await?;
        }
        let mut inner = self.inner.lock().await;
        let e = planning_entry(&mut inner, job_id)?;
        for r in records {
            let i = r.task_id as usize;
            match i.cmp(&e.tasks.len()) {
                std::cmp::Ordering::Less => e.tasks[i] = r,
                std::cmp::Ordering::Equal => e.tasks.push(r),
                std::cmp::Ordering::Greater => {
                    return Err(Halt::Stopped(format!(
                        "task {i} planned past the {} tasks held (state recovered meanwhile)",
                        e.tasks.len()
                    )))
                }
            }
        }
        let p = e.record.planning.get_or_insert_with(Default::default);
        p.objects_total = planner.objects_total();
        p.objects_planned = planner.objects_planned();
        p.tasks_written = planner.tasks();
        p.rows_planned = planner.rows();
        Ok(())
    }

    /// Writes the job record with its planning progress (shown again after a restart).
    async fn store_progress(&self, job_id: &str) -> Result<(), Halt> {
        let record = {
            let mut inner = self.inner.lock().await;
            planning_entry(&mut inner, job_id)?.record.clone()
        };
        self.with_store_tries("storing planning progress", || {
            self.store.update_job(&record)
        })
        .await
    }

    /// Planning ended: the job runs, its tasks queued for leasing (or it is finalized at once
    /// when its input holds no row).
    async fn end_planning(
        self: &Arc<Self>,
        job_id: &str,
        planner: &StepPlanner,
    ) -> Result<(), Halt> {
        let record = {
            let mut inner = self.inner.lock().await;
            let e = planning_entry(&mut inner, job_id)?;
            let mut r = e.record.clone();
            r.state = JobState::Running;
            r.tasks_total = planner.tasks();
            r.rows_total = planner.rows();
            r.planning = None;
            r
        };
        // The store first: a job is leased only once the store says it runs.
        self.with_store_tries("storing the planned job", || self.store.update_job(&record))
            .await?;
        let mut inner = self.inner.lock().await;
        let Some(e) = inner.job_mut(job_id) else {
            return Err(Halt::Stopped("job gone".into()));
        };
        if e.record.state != JobState::Planning {
            // Cancelled while the record above was written: the store must say so too.
            let current = e.record.clone();
            drop(inner);
            let _ = self.store.update_job(&current).await;
            return Err(Halt::Stopped(format!("job {}", current.state.as_str())));
        }
        e.record = record;
        // Tasks held past the plan (an earlier plan of a longer input) are not part of it.
        e.tasks.truncate(planner.tasks() as usize);
        e.pending.clear();
        e.delayed.clear();
        let now = now_ms();
        let pending: Vec<u64> = e
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::Pending)
            .map(|t| t.task_id)
            .collect();
        for task_id in pending {
            e.requeue(task_id, now);
        }
        e.ended = e
            .tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Done | TaskState::Failed))
            .count();
        let empty = e.tasks.is_empty();
        drop(inner);
        if empty {
            self.clone().spawn_finalize(job_id.to_string()).await;
        }
        Ok(())
    }

    /// Puts a job whose planning failed back into `planning` (a resubmission), with the input
    /// as listed now. Stored first; planning itself is started by the caller.
    pub(super) async fn restart_planning(
        &self,
        job_id: &str,
        input_fingerprint: InputFingerprint,
        progress: PlanningProgress,
    ) -> Result<(), SchedError> {
        let record = {
            let inner = self.inner.lock().await;
            let e = inner
                .job(job_id)
                .ok_or_else(|| SchedError::NoJob(job_id.to_string()))?;
            let mut r = e.record.clone();
            r.state = JobState::Planning;
            r.error = String::new();
            r.finished_ms = 0;
            r.input_fingerprint = input_fingerprint;
            r.planning = Some(progress);
            r
        };
        self.store.update_job(&record).await?;
        let mut inner = self.inner.lock().await;
        let e = inner
            .job_mut(job_id)
            .ok_or_else(|| SchedError::NoJob(job_id.to_string()))?;
        if failed_in_planning(&e.record) {
            e.record = record;
        }
        tracing::info!(job = %job_id, "job whose planning failed submitted again; planning again");
        Ok(())
    }

    /// Fails a job whose planning failed, with the error Submit answered with before planning
    /// moved to the background.
    async fn fail_planning(&self, job_id: &str, error: String) {
        let record = {
            let mut inner = self.inner.lock().await;
            let Ok(e) = planning_entry(&mut inner, job_id) else {
                return;
            };
            e.record.state = JobState::Failed;
            e.record.error = error;
            e.record.finished_ms = now_ms();
            // Its tasks will never run: not kept in memory.
            e.tasks = Vec::new();
            e.pending.clear();
            e.delayed.clear();
            e.record.clone()
        };
        tracing::error!(job = %job_id, error = %record.error, "planning failed; job failed");
        if let Err(err) = self.store.update_job(&record).await {
            tracing::error!(job = %job_id, error = %err, "cannot store the failed job");
        }
    }

    /// Runs a store call, again after an I/O error (up to [`STORE_TRIES`] times, waiting longer
    /// each time). A conflict (fenced off) or a vanished job stops planning here.
    async fn with_store_tries<F, Fut>(&self, what: &str, mut call: F) -> Result<(), Halt>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let mut wait = Duration::from_millis(200);
        let mut tried = 0;
        loop {
            tried += 1;
            match call().await {
                Ok(()) => return Ok(()),
                Err(e @ (StoreError::Conflict(_) | StoreError::NotFound(_))) => {
                    return Err(Halt::Stopped(format!("{what}: {e}")))
                }
                Err(e) if tried >= STORE_TRIES => {
                    return Err(Halt::Failed(format!("planning: {what}: {e}")))
                }
                Err(e) => {
                    tracing::warn!(%e, tried, "{what} failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }
}

/// The job's entry while it is still planning; `Stopped` once it is not (cancelled, gone).
fn planning_entry<'a>(
    inner: &'a mut super::state::Inner,
    job_id: &str,
) -> Result<&'a mut super::state::JobEntry, Halt> {
    let e = inner
        .job_mut(job_id)
        .ok_or_else(|| Halt::Stopped("job gone".into()))?;
    if e.record.state != JobState::Planning {
        return Err(Halt::Stopped(format!("job {}", e.record.state.as_str())));
    }
    Ok(e)
}

/// Whether a recovered job must be planned (again): stored in `planning`.
pub(super) fn needs_planning(record: &JobRecord) -> bool {
    record.state == JobState::Planning
}

/// Whether a job failed while it was being planned (it keeps its planning progress then): it
/// never ran, so submitting it again plans it again.
pub(super) fn failed_in_planning(record: &JobRecord) -> bool {
    record.state == JobState::Failed && record.planning.is_some()
}

#[cfg(test)]
#[path = "planning_tests.rs"]
mod tests;
