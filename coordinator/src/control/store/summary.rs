//! What a finished job keeps once its task records are folded away.
//!
//! A finished job's task keys are the bulk of the state store (one record per task, with its
//! files and stats). Once the job's manifest is written those records are no longer needed
//! task by task: the manifest lists the files, and everything a job view, `status`, the
//! dashboard, `/metrics` or a re-submission (resume) shows is a count, a sum or the failed
//! tasks' errors. [`JobSummary`] is that, one record per job; the stores write it before they
//! delete the task records, so a restart at any point of a fold loses nothing.

use serde::{Deserialize, Serialize};

use crate::model::{JobRecord, JobState, TaskRecord, TaskState, TaskStats};

/// Failed tasks named one by one in a summary; beyond this they are only counted. Keeps the
/// summary one etcd value (1.5 MiB request limit by default) whatever the job's size.
pub const MAX_FAILED_LISTED: usize = 1_000;
/// Characters of a failed task's last error kept in the summary.
pub const MAX_ERROR_CHARS: usize = 500;

/// A finished job's task records, folded: per-state counts, the done tasks' summed stats and
/// the failed tasks' last errors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    pub job_id: String,
    pub tasks_pending: u64,
    pub tasks_leased: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    /// The done tasks' stats, summed (without rows removed at finalization, which the job
    /// record keeps in `finalize_removed`).
    pub stats: TaskStats,
    /// (task id, last error) of the first [`MAX_FAILED_LISTED`] failed tasks by id; errors cut
    /// to [`MAX_ERROR_CHARS`].
    pub failed_tasks: Vec<(u64, String)>,
    /// Whether the task records are all deleted; a summary without it marks a fold cut short
    /// (the next fold deletes what is left).
    #[serde(default)]
    pub tasks_deleted: bool,
}

impl JobSummary {
    /// Folds a job's task records (any order).
    pub fn from_tasks<'a>(job_id: &str, tasks: impl IntoIterator<Item = &'a TaskRecord>) -> Self {
        let mut s = JobSummary::empty(job_id);
        for t in tasks {
            s.add(t);
        }
        s.finish()
    }

    /// A summary of no tasks yet, to [`add`](Self::add) a job's tasks to page by page.
    pub fn empty(job_id: &str) -> Self {
        JobSummary {
            job_id: job_id.to_string(),
            ..Default::default()
        }
    }

    /// Counts one task. Memory stays bounded: the failed list is cut back to the lowest
    /// [`MAX_FAILED_LISTED`] ids whenever it doubles.
    pub fn add(&mut self, t: &TaskRecord) {
        match t.state {
            TaskState::Pending => self.tasks_pending += 1,
            TaskState::Leased => self.tasks_leased += 1,
            TaskState::Done => {
                self.tasks_done += 1;
                self.stats.add(&t.stats);
            }
            TaskState::Failed => {
                self.tasks_failed += 1;
                self.failed_tasks.push((t.task_id, cut(&t.last_error)));
                if self.failed_tasks.len() >= 2 * MAX_FAILED_LISTED {
                    self.cut_failed();
                }
            }
        }
    }

    /// The summary once every task is added.
    pub fn finish(mut self) -> Self {
        self.cut_failed();
        self
    }

    fn cut_failed(&mut self) {
        self.failed_tasks.sort_by_key(|(id, _)| *id);
        self.failed_tasks.truncate(MAX_FAILED_LISTED);
    }

    /// Tasks the summary accounts for.
    pub fn tasks(&self) -> u64 {
        self.tasks_pending + self.tasks_leased + self.tasks_done + self.tasks_failed
    }
}

fn cut(error: &str) -> String {
    match error.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &error[..i]),
        None => error.to_string(),
    }
}

/// Whether a job's task records may be folded: it went through finalization and its manifest
/// was written. `succeeded` and `failed` jobs are finalized; a `failed` job whose error starts
/// with `finalizing:` failed *in* finalization (no manifest lists its files, so its task
/// records are the only list of them and stay). Cancelled jobs are never finalized.
pub fn manifest_written(job: &JobRecord) -> bool {
    match job.state {
        JobState::Succeeded => true,
        JobState::Failed => !job.error.starts_with(FINALIZE_FAILED_PREFIX),
        _ => false,
    }
}

/// The prefix `Scheduler` puts before a finalizer's error (control/scheduler/finish.rs).
pub const FINALIZE_FAILED_PREFIX: &str = "finalizing:";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::store::conformance::job;

    #[test]
    fn counts_sums_and_bounded_failures() {
        let (mut j, mut ts) = job("s", 2_405);
        for t in ts.iter_mut() {
            if t.task_id % 2 == 0 {
                t.state = TaskState::Done;
                t.stats.rows_in = 10;
                t.stats.rows_out = 7;
            } else {
                t.state = TaskState::Failed;
                t.last_error = "x".repeat(2 * MAX_ERROR_CHARS);
            }
        }
        ts[3].state = TaskState::Leased;
        let s = JobSummary::from_tasks("s", ts.iter().rev());
        assert_eq!(
            (s.tasks_done, s.tasks_failed, s.tasks_leased),
            (1_203, 1_201, 1)
        );
        assert_eq!(s.tasks(), 2_405);
        assert_eq!(s.stats.rows_out, 1_203 * 7);
        assert_eq!(s.failed_tasks.len(), MAX_FAILED_LISTED);
        assert_eq!(s.failed_tasks[0].0, 1);
        assert_eq!(s.failed_tasks[0].1.chars().count(), MAX_ERROR_CHARS + 1);

        j.state = JobState::Failed;
        j.error = "1201 of 2405 tasks failed".into();
        assert!(manifest_written(&j));
        j.error = format!("{FINALIZE_FAILED_PREFIX} object store down");
        assert!(!manifest_written(&j));
        j.state = JobState::Cancelled;
        assert!(!manifest_written(&j));
        j.state = JobState::Succeeded;
        assert!(manifest_written(&j));
    }
}
