//! The scheduler's side of store housekeeping: folding finished jobs' task records into their
//! summaries (memory drops them too) and showing a full store on every running job.

use std::collections::HashMap;

use super::state::JobView;
use super::{SchedError, Scheduler};
use crate::control::store::summary::manifest_written;
use crate::control::store::{JobSummary, StoreError};
use crate::model::JobRecord;

/// Summaries of a snapshot by job id.
pub(super) fn summaries_by_job(summaries: Vec<JobSummary>) -> HashMap<String, JobSummary> {
    summaries
        .into_iter()
        .map(|s| (s.job_id.clone(), s))
        .collect()
}

/// What one housekeeping pass over the jobs did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FoldPass {
    /// Jobs whose task records were folded now.
    pub folded: usize,
    /// Jobs ended in memory whose final record the store did not have yet (a write refused,
    /// e.g. for lack of space): stored again, folded on a later pass.
    pub restored: usize,
}

impl Scheduler {
    /// Folds the task records of every job whose manifest is written and whose tasks are not
    /// folded yet ([`crate::control::store::TaskStore::fold_job`]), then drops them from
    /// memory. Run by the leader's housekeeping loop (`control::compaction`); a pass cut short
    /// (a crash, lost leadership, a store error) is finished by a later one.
    pub async fn fold_finished(&self) -> Result<FoldPass, SchedError> {
        let due: Vec<JobRecord> = self
            .inner
            .lock()
            .await
            .jobs
            .values()
            .filter(|e| {
                let unfinished = e.summary.as_ref().is_none_or(|s| !s.tasks_deleted);
                unfinished && manifest_written(&e.record)
            })
            .map(|e| e.record.clone())
            .collect();
        let mut pass = FoldPass::default();
        for record in due {
            let summary = match self.store.fold_job(&record.id).await {
                Ok(s) => s,
                Err(StoreError::Conflict(why)) => {
                    // Memory ended the job but the stored record may lag (its final write
                    // was refused): write it again so the next pass can fold.
                    tracing::info!(job = %record.id, %why, "job not foldable yet; storing its final record again");
                    self.store.update_job(&record).await?;
                    pass.restored += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut inner = self.inner.lock().await;
            if let Some(e) = inner.job_mut(&record.id) {
                e.tasks = Vec::new();
                e.ended = 0;
                e.pending.clear();
                e.delayed.clear();
                e.progress.clear();
                e.summary = Some(summary);
            }
            pass.folded += 1;
        }
        Ok(pass)
    }

    /// `view` with the store's space alarm as its waiting reason while the job has not ended:
    /// its tasks cannot change until space is freed, and this says why and what to do.
    pub(super) fn with_store_alarm(&self, mut view: JobView) -> JobView {
        if view.record.state.is_terminal() {
            return view;
        }
        if let Some(alarm) = self.store.space_alarm() {
            view.waiting = Some(match view.waiting {
                Some(w) => format!("{alarm}\n{w}"),
                None => alarm,
            });
        }
        view
    }

    /// The state store's housekeeping counters (`/metrics`).
    pub fn store_maintenance(&self) -> crate::control::store::MaintenanceStats {
        self.store.maintenance()
    }
}

#[cfg(test)]
#[path = "upkeep_tests.rs"]
mod tests;
