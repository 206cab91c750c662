//! Ending jobs: finalization once every task has ended, and cancellation.

use std::sync::Arc;

use synthforge_core::now_ms;

use super::{outcome, LeaderCheck, SchedError, Scheduler};
use crate::model::JobState;

impl Scheduler {
    pub(super) async fn spawn_finalize(self: Arc<Self>, job_id: String) {
        let (record, spec, tasks) = {
            let mut inner = self.inner.lock().await;
            let Some(e) = inner.job_mut(&job_id) else {
                return;
            };
            if e.record.state.is_terminal() {
                return;
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
