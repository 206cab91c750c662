//! The scheduler's in-memory state and the views it hands out (leases, jobs, workers).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use synthforge_core::input::TaskSlice;
use synthforge_core::spec::JobSpec;

use super::backend_wait::BackendPause;
use crate::control::store::JobSummary;
use crate::model::{JobRecord, TaskRecord, TaskState, TaskStats};

/// A task handed to a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    pub job_id: String,
    pub task_id: u64,
    pub attempt: u32,
    pub deadline_ms: u64,
    pub spec_yaml: String,
    pub slice: TaskSlice,
    /// Set for a dedup phase task: the bucket partition it reads.
    pub dedup: Option<synthforge_core::dedup_phase::DedupWork>,
}

/// What the dashboard and `status` show about a worker.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkerInfo {
    pub id: String,
    pub address: String,
    pub slots: u32,
    pub registered_ms: u64,
    pub last_seen_ms: u64,
    /// `job/task#attempt` of the current lease, empty when idle.
    pub current_task: String,
    /// Every lease the worker holds now (`job/task`): a worker may run several tasks at once.
    pub held: std::collections::BTreeSet<String>,
    pub task_rows_done: u64,
    pub rows_done_total: u64,
    pub tasks_done: u64,
    /// Names of the credentials the worker's operator configured (values never leave it).
    pub credentials: std::collections::BTreeSet<String>,
}

/// A job's live view: record, task counts and summed stats.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobView {
    pub record: JobRecord,
    pub tasks_pending: u64,
    pub tasks_leased: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    pub stats: TaskStats,
    /// Rows finished by in-flight tasks (from heartbeats), not yet in `stats`.
    pub rows_in_flight: u64,
    pub failed_tasks: Vec<(u64, String)>,
    /// Why leasing is paused ("waiting for backend NAME: ..."), if it is.
    pub waiting: Option<String>,
    /// The dedup phase's progress, once its tasks are planned (docs/dedup.md).
    pub dedup_phase: Option<PhaseProgress>,
}

/// Progress of a phase of tasks after generation (the dedup phase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PhaseProgress {
    pub done: u64,
    pub total: u64,
}

pub(super) struct JobEntry {
    pub(super) record: JobRecord,
    pub(super) spec: Arc<JobSpec>,
    pub(super) tasks: Vec<TaskRecord>,
    pub(super) pending: VecDeque<u64>,
    /// Pending tasks waiting out their retry backoff: (not before, task id), earliest first.
    pub(super) delayed: BTreeSet<(u64, u64)>,
    pub(super) stats: TaskStats,
    /// task id → rows done so far by its current attempt.
    pub(super) progress: HashMap<u64, u64>,
    /// Tasks done or failed: kept as a count so a completion is O(1), not a scan of the job.
    pub(super) ended: usize,
    /// Whether leasing waits for an unreachable backend, and the attempts that gave back.
    pub(super) backend: BackendPause,
    /// Set once the job's task records are folded in the store (`upkeep.rs`): `tasks` is then
    /// empty and the job's view reads this.
    pub(super) summary: Option<JobSummary>,
}

impl JobEntry {
    pub(super) fn count(&self, s: TaskState) -> u64 {
        self.tasks.iter().filter(|t| t.state == s).count() as u64
    }

    pub(super) fn all_ended(&self) -> bool {
        self.ended == self.tasks.len()
    }

    /// Queues a pending task for leasing: at once, or after its backoff (`not_before_ms`).
    pub(super) fn requeue(&mut self, task_id: u64, now_ms: u64) {
        let not_before = self
            .tasks
            .get(task_id as usize)
            .map_or(0, |t| t.not_before_ms);
        if not_before > now_ms {
            self.delayed.insert((not_before, task_id));
        } else {
            self.pending.push_back(task_id);
        }
    }

    /// Moves the tasks whose backoff ended by `now_ms` to the lease queue.
    pub(super) fn release_due(&mut self, now_ms: u64) {
        while let Some(&(at, task_id)) = self.delayed.first() {
            if at > now_ms {
                break;
            }
            self.delayed.pop_first();
            self.pending.push_back(task_id);
        }
    }

    /// Whether a task may be leased now or later (queued or waiting out a backoff).
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty() || !self.delayed.is_empty()
    }

    pub(super) fn view(&self) -> JobView {
        if let Some(s) = &self.summary {
            // Folded: counts and failures from the summary; `stats` kept in memory as ever.
            return JobView {
                record: self.record.clone(),
                tasks_pending: s.tasks_pending,
                tasks_leased: s.tasks_leased,
                tasks_done: s.tasks_done,
                tasks_failed: s.tasks_failed,
                stats: self.stats.clone(),
                rows_in_flight: 0,
                failed_tasks: s.failed_tasks.clone(),
                waiting: None,
                // Folded jobs are finished: no phase in progress.
                dedup_phase: None,
            };
        }
        JobView {
            record: self.record.clone(),
            tasks_pending: self.count(TaskState::Pending),
            tasks_leased: self.count(TaskState::Leased),
            tasks_done: self.count(TaskState::Done),
            tasks_failed: self.count(TaskState::Failed),
            stats: self.stats.clone(),
            rows_in_flight: self.progress.values().sum(),
            failed_tasks: self
                .tasks
                .iter()
                .filter(|t| t.state == TaskState::Failed)
                .map(|t| (t.task_id, t.last_error.clone()))
                .collect(),
            waiting: self
                .backend
                .describe(synthforge_core::now_ms())
                .filter(|_| !self.record.state.is_terminal()),
            dedup_phase: self.dedup_phase(),
        }
    }

    /// Dedup tasks follow the generation tasks, so only the (short) tail is counted.
    fn dedup_phase(&self) -> Option<PhaseProgress> {
        let tail = &self.tasks[self.tasks.partition_point(|t| !t.is_dedup())..];
        (!tail.is_empty()).then(|| PhaseProgress {
            done: tail.iter().filter(|t| t.state == TaskState::Done).count() as u64,
            total: tail.len() as u64,
        })
    }
}

#[derive(Default)]
pub(super) struct Inner {
    /// Insertion (creation) order matters: older jobs are served first.
    pub(super) jobs: BTreeMap<(u64, String), JobEntry>,
    pub(super) index: HashMap<String, (u64, String)>,
    pub(super) workers: BTreeMap<String, WorkerInfo>,
    /// Completions being written to the store right now (job, task).
    pub(super) completing: std::collections::HashSet<(String, u64)>,
}

impl Inner {
    pub(super) fn job_mut(&mut self, id: &str) -> Option<&mut JobEntry> {
        let k = self.index.get(id)?.clone();
        self.jobs.get_mut(&k)
    }

    pub(super) fn job(&self, id: &str) -> Option<&JobEntry> {
        self.jobs.get(self.index.get(id)?)
    }

    pub(super) fn insert(&mut self, e: JobEntry) {
        let key = (e.record.created_ms, e.record.id.clone());
        self.index.insert(e.record.id.clone(), key.clone());
        self.jobs.insert(key, e);
    }
}
