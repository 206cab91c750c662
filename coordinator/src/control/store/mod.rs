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

use async_trait::async_trait;
use synthforge_core::sink::WrittenFile;

use crate::control::task_machine::{Backoff, Refusal};
use crate::model::{JobRecord, TaskRecord, TaskStats};

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
    pub tasks: Vec<TaskRecord>,
}

#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Creates a job and all its tasks (pending). Creating an existing job id is a conflict.
    async fn create_job(&self, job: &JobRecord, tasks: &[TaskRecord]) -> Result<(), StoreError>;

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
}
