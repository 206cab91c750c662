//! Durable scheduler state: jobs and tasks as the state store keeps them.

use serde::{Deserialize, Serialize};
use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
/// Task accounting lives in core (the worker accumulates it, the coordinator sums it); kept
/// reachable here so scheduler and store code name it with the rest of the task record.
pub use synthforge_core::stats::TaskStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    /// All tasks ended; the coordinator is writing the manifest and dataset card.
    Finalizing,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(&self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Finalizing => "finalizing",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    /// The validated spec; holds no secrets (backends name env vars, not keys).
    pub spec_yaml: String,
    pub state: JobState,
    pub output: String,
    pub tasks_total: u64,
    pub rows_total: u64,
    pub created_ms: u64,
    pub finished_ms: u64,
    pub error: String,
}

/// Where a task is in its life; the rules that move it are in
/// [`crate::control::task_machine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Pending,
    Leased,
    Done,
    Failed,
}

impl TaskState {
    /// Every state, for tables over all of them.
    pub const ALL: [TaskState; 4] = [
        TaskState::Pending,
        TaskState::Leased,
        TaskState::Done,
        TaskState::Failed,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Leased => "leased",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub job_id: String,
    pub task_id: u64,
    pub slice: TaskSlice,
    pub state: TaskState,
    /// Attempt number of the current or last lease: the fencing token.
    pub attempt: u32,
    pub worker: String,
    pub deadline_ms: u64,
    pub last_error: String,
    /// Files of the accepted completion (only the current attempt's).
    pub files: Vec<WrittenFile>,
    pub stats: TaskStats,
}

impl TaskRecord {
    pub fn new(job_id: &str, task_id: u64, slice: TaskSlice) -> Self {
        TaskRecord {
            job_id: job_id.to_string(),
            task_id,
            slice,
            state: TaskState::Pending,
            attempt: 0,
            worker: String::new(),
            deadline_ms: 0,
            last_error: String::new(),
            files: Vec::new(),
            stats: TaskStats::default(),
        }
    }
}
