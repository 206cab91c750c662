//! Durable scheduler state: jobs and tasks as the state store keeps them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use synthforge_core::dedup_phase::DedupWork;
use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
/// Task accounting lives in core (the worker accumulates it, the coordinator sums it); kept
/// reachable here so scheduler and store code name it with the rest of the task record.
pub use synthforge_core::stats::TaskStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Stored, its input being cut into tasks in the background (written as they are planned);
    /// no task is leased before planning ends.
    Planning,
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
            JobState::Planning => "planning",
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
    /// The input objects as they were at submit: resuming the job checks them again and
    /// refuses if any changed (empty for jobs stored before fingerprints existed).
    #[serde(default)]
    pub input_fingerprint: InputFingerprint,
    /// Rows removed at finalization (whole-job dedup), by reason: the job's stats add them to
    /// the tasks' sums (see [`TaskStats::count_removed_at_finalize`]). Kept here so they
    /// survive a coordinator restart, which rebuilds the stats from the tasks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub finalize_removed: BTreeMap<String, u64>,
    /// How far planning got, while the job is [`JobState::Planning`] (`None` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planning: Option<PlanningProgress>,
}

/// Progress of a job's background planning, shown by `status`, the dashboard and `/api`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanningProgress {
    /// Input objects listed at submit.
    pub objects_total: u64,
    /// Objects cut into tasks so far.
    pub objects_planned: u64,
    /// Tasks stored so far.
    pub tasks_written: u64,
    /// Seed rows those tasks hold.
    pub rows_planned: u64,
}

/// The input as listed at submit, in a form whose size stays bounded: the job record is one
/// etcd value (1.5 MiB request limit by default) and inputs can have many thousands of objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFingerprint {
    /// Every object, for inputs of up to a thousand objects: changes are named with sizes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<InputObject>,
    /// Larger inputs: a hash of (URL, size, e-tag, mtime) per object, sorted. Changed and added
    /// objects are still named (from a new listing); removed ones are counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<u64>,
    /// Inputs too large even for hashes: one hash over all objects, and their number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<(u64, u64)>,
}

impl InputFingerprint {
    /// True for jobs stored before fingerprints existed (and empty inputs): nothing to check.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty() && self.hashes.is_empty() && self.digest.is_none()
    }
}

/// One input object as listed at submit: enough to tell that it changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputObject {
    pub url: String,
    pub size: u64,
    /// The store's entity tag (local files: inode, mtime and size), when it has one.
    #[serde(default)]
    pub e_tag: Option<String>,
    pub last_modified_ms: i64,
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
    /// A pending task that failed or expired is not leased again before this time (ms since
    /// the epoch; 0 = at once): the retry backoff set by the task machine.
    #[serde(default)]
    pub not_before_ms: u64,
    /// Files of the accepted completion (only the current attempt's).
    pub files: Vec<WrittenFile>,
    pub stats: TaskStats,
    /// The task's kind: `None` for a generation task (its slice holds its seed rows), the
    /// bucket partition for a task of the job's dedup phase (docs/dedup.md). Records stored
    /// before the dedup phase existed read as generation tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupWork>,
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
            not_before_ms: 0,
            files: Vec::new(),
            stats: TaskStats::default(),
            dedup: None,
        }
    }

    /// Whether this is a task of the dedup phase (planned after generation).
    pub fn is_dedup(&self) -> bool {
        self.dedup.is_some()
    }
}
