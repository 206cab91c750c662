//! The scheduler's durable state, behind one trait shaped around the scheduler's operations.
//!
//! Every state change is checked against the stored state (a claim must find the task pending
//! at the expected attempt; a completion must match the current attempt), so two coordinators
//! racing over one store — a deposed leader and its successor — cannot both win. The in-memory
//! scheduler is rebuilt from [`TaskStore::load_all`] at start (crash-only design). The checks are
//! the rules of [`crate::control::task_machine`], applied to the stored record.

pub mod conformance;
pub mod embedded;
pub mod etcd;
pub mod summary;

use async_trait::async_trait;
use synthforge_core::sink::WrittenFile;

use crate::control::task_machine::{Backoff, Refusal};
use crate::model::{JobRecord, TaskRecord, TaskStats};
pub use summary::JobSummary;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored state is not what the operation expected (lost race, stale attempt).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("state store I/O: {0}")]
    Io(String),
}

/// A transition the task machine refuses is a conflict: the stored task is not what the caller
/// expected.
impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> Self {
        StoreError::Conflict(r.to_string())
    }
}

/// Everything the store holds, for rebuilding the scheduler.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub jobs: Vec<JobRecord>,
    /// Tasks of jobs that are not folded.
    pub tasks: Vec<TaskRecord>,
    /// Folded jobs ([`TaskStore::fold_job`]): their summaries stand for their tasks.
    pub summaries: Vec<JobSummary>,
}

/// The message every caller shows when etcd refuses writes for lack of space; the store's
/// errors carry it and [`TaskStore::space_alarm`] returns it while the alarm lasts.
pub const NOSPACE_HINT: &str =
    "etcd is out of space (NOSPACE alarm; writes refused, nothing lost, \
     the job continues once space is freed): raise --quota-backend-bytes, compact, defrag, \
     disarm the alarm (docs/sizing.md)";

/// Housekeeping counters of a store, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceStats {
    /// Jobs whose task records were folded into a summary.
    pub jobs_folded: u64,
    /// Task records deleted by folds.
    pub task_records_deleted: u64,
    /// History compactions done (etcd).
    pub compactions: u64,
    /// The revision history was last compacted to (etcd; 0: never).
    pub compacted_revision: i64,
    /// Whether writes are refused for lack of space now (etcd NOSPACE alarm).
    pub out_of_space: bool,
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates a job and all its tasks (pending). Creating an existing job id is a conflict.
    async fn create_job(&self, job: &JobRecord, tasks: &[TaskRecord]) -> Result<(), StoreError>;

    /// Writes tasks (pending) of a job whose record exists: a job is stored first, in the
    /// `planning` state, and its tasks follow in batches as planning proceeds. Keyed by task id,
    /// so planning again (after a leader change) puts the same keys. `NotFound` without the job.
    async fn put_planned_tasks(&self, job_id: &str, tasks: &[TaskRecord])
        -> Result<(), StoreError>;

    /// Adds pending tasks to an existing job (a later phase: dedup), in task id order; a
    /// task already stored is left as it is, so an interrupted caller may add them again.
    async fn add_tasks(&self, job_id: &str, tasks: &[TaskRecord]) -> Result<(), StoreError>;

    /// Replaces a job's record (state changes, finish time, error).
    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError>;

    /// Leases a pending task: requires state pending and stored attempt == `attempt - 1`.
    async fn claim(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        worker: &str,
        deadline_ms: u64,
    ) -> Result<(), StoreError>;

    /// Extends a lease: requires state leased at `attempt`.
    async fn renew(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        deadline_ms: u64,
    ) -> Result<(), StoreError>;

    /// Marks done with the attempt's files: requires state leased at `attempt`.
    async fn complete(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        files: &[WrittenFile],
        stats: &TaskStats,
    ) -> Result<(), StoreError>;

    /// Ends a lease with an error: back to pending (`retry`, not to be leased before
    /// `not_before_ms`) or failed. Requires leased at `attempt`.
    async fn fail(
        &self,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        error: &str,
        retry: bool,
        not_before_ms: u64,
    ) -> Result<(), StoreError>;

    /// Returns every leased task whose deadline is before `now_ms` to pending (or failed once
    /// the job's entry in `max_attempts` is reached, default
    /// [`DEFAULT_MAX_ATTEMPTS`](crate::control::task_machine::DEFAULT_MAX_ATTEMPTS)); a requeued
    /// task waits `backoff` before its next lease. Returns the tasks it changed.
    async fn requeue_expired(
        &self,
        now_ms: u64,
        max_attempts: &std::collections::HashMap<String, u32>,
        backoff: Backoff,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    async fn load_all(&self) -> Result<Snapshot, StoreError>;

    /// The task as stored now: what a scheduler adopts when the store refused a change because
    /// its memory was stale (e.g. a claim that landed around a leadership change).
    async fn stored_task(&self, job_id: &str, task_id: u64) -> Result<TaskRecord, StoreError>;

    /// Whether this coordinator may still act as the leader, asked right before a side effect
    /// outside the store (finalization's object-store writes). `Conflict` when it may not. A
    /// store without an election (embedded, a single etcd coordinator) always answers yes.
    async fn check_leader(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Folds a finished job's task records into one [`JobSummary`] and deletes them: the
    /// summary is written first, then the tasks are deleted in batches, so a fold interrupted
    /// at any point is finished by calling it again (an existing summary is kept as it is).
    /// Requires the stored job to have its manifest written ([`summary::manifest_written`]);
    /// otherwise `Conflict`. Returns the job's summary.
    async fn fold_job(&self, job_id: &str) -> Result<JobSummary, StoreError>;

    /// Drops history older than the previous call (etcd: compacts to the revision seen then),
    /// so history is kept for about one interval of the caller. Returns the revision compacted
    /// to, if any. A store without history does nothing.
    async fn compact_history(&self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// Asks the store whether writes are refused for lack of space and remembers the answer
    /// for [`TaskStore::space_alarm`] (etcd: its alarm list). A store without quota: no.
    async fn refresh_space_alarm(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// While writes are refused for lack of space: the message to show on jobs and the
    /// dashboard ([`NOSPACE_HINT`]).
    fn space_alarm(&self) -> Option<String> {
        None
    }

    /// Housekeeping counters (folds, compactions, the space alarm).
    fn maintenance(&self) -> MaintenanceStats {
        MaintenanceStats::default()
    }
}
