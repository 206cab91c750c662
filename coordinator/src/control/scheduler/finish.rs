//! Ending jobs: finalization once every task has ended, and cancellation.

use std::sync::Arc;

use synthforge_core::now_ms;

use super::{SchedError, Scheduler};
use crate::model::{JobState, TaskState};

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
        tokio::spawn(async move {
            let failed: Vec<String> = tasks
                .iter()
                .filter(|t| t.state == TaskState::Failed)
                .map(|t| format!("task {}: {}", t.task_id, t.last_error))
                .collect();
            let result = (this.finalizer)(record.clone(), spec, tasks).await;
            let mut inner = this.inner.lock().await;
            let Some(e) = inner.job_mut(&record.id) else {
                return;
            };
            if e.record.state != JobState::Finalizing {
                return;
            }
            e.record.finished_ms = now_ms();
            match result {
                Ok(()) if failed.is_empty() => e.record.state = JobState::Succeeded,
                Ok(()) => {
                    e.record.state = JobState::Failed;
                    e.record.error = format!(
                        "{} of {} tasks failed: {}",
                        failed.len(),
                        e.tasks.len(),
                        failed.into_iter().take(5).collect::<Vec<_>>().join("; ")
                    );
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
