//! Taking a job in: validate, fingerprint the input, admit, plan and store it -- or, for a
//! job already known, resume it if its input is unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use synthforge_core::now_ms;
use synthforge_core::spec::JobSpec;

use super::state::JobEntry;
use super::{JobView, SchedError, Scheduler};
use crate::control::store::StoreError;
use crate::control::{fingerprint, planner};
use crate::model::{InputObject, JobRecord, JobState, TaskRecord, TaskStats};

/// Stable, idempotent job id: same name and spec → same id, so re-submitting resumes.
pub fn job_id_for(spec: &JobSpec) -> String {
    use sha2::Digest;
    let slug: String = spec
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let h = sha2::Sha256::digest(spec.to_yaml().as_bytes());
    format!("{slug}-{}", &hex::encode(h)[..10])
}

impl Scheduler {
    /// Validates, plans and stores a job. Submitting the same spec again returns the same job.
    pub async fn submit(
        self: &Arc<Self>,
        spec_yaml: &str,
        requested_id: Option<String>,
    ) -> Result<JobView, SchedError> {
        let spec = JobSpec::from_yaml(spec_yaml, "job")
            .map_err(|e| SchedError::InvalidJob(e.to_string()))?;
        let id = requested_id
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| job_id_for(&spec));
        if !(0.0..=1.0).contains(&spec.scheduling.max_failed_fraction) {
            return Err(SchedError::InvalidJob(format!(
                "scheduling.max_failed_fraction must be between 0 and 1, not {}",
                spec.scheduling.max_failed_fraction
            )));
        }
        let input_now = fingerprint::list(&spec)
            .await
            .map_err(planner::PlanError::from)?;
        let existing = self.inner.lock().await.job(&id).map(|e| e.view());
        if let Some(view) = existing {
            return Self::resume(view, &input_now);
        }
        self.check_credentials(&spec).await?;
        let started = std::time::Instant::now();
        let plan = planner::plan(&spec).await?;
        spec.check_columns(plan.seed_columns.as_ref(), "job")
            .map_err(|e| SchedError::InvalidJob(e.to_string()))?;
        tracing::info!(job = %id, tasks = plan.tasks.len(), rows = plan.rows, ms = started.elapsed().as_millis() as u64, "planned");
        let record = JobRecord {
            id: id.clone(),
            name: spec.name.clone(),
            spec_yaml: spec.to_yaml(),
            state: JobState::Running,
            output: spec.output.path.clone(),
            tasks_total: plan.tasks.len() as u64,
            rows_total: plan.rows,
            created_ms: now_ms(),
            finished_ms: 0,
            error: String::new(),
            input_fingerprint: fingerprint::record(input_now),
            finalize_removed: Default::default(),
        };
        let tasks: Vec<TaskRecord> = plan
            .tasks
            .into_iter()
            .enumerate()
            .map(|(i, s)| TaskRecord::new(&id, i as u64, s))
            .collect();
        if let Some(e) = self.inner.lock().await.job(&id) {
            return Ok(e.view());
        }
        // Written without holding the scheduler lock: creating a 1M-task job takes seconds on
        // etcd, and leasing of other jobs must go on meanwhile. The store refuses a second
        // creation of the same id, so two racing submits cannot both create it.
        match self.store.create_job(&record, &tasks).await {
            Ok(()) => {}
            Err(StoreError::Conflict(m)) => {
                return match self.inner.lock().await.job(&id) {
                    Some(e) => Ok(e.view()),
                    None => Err(SchedError::Busy(format!(
                        "job `{id}` is being created by another submit: {m}"
                    ))),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let mut inner = self.inner.lock().await;
        if let Some(e) = inner.job(&id) {
            return Ok(e.view());
        }
        let entry = JobEntry {
            pending: tasks.iter().map(|t| t.task_id).collect(),
            delayed: Default::default(),
            record,
            spec: Arc::new(spec),
            tasks,
            stats: TaskStats::default(),
            progress: HashMap::new(),
            ended: 0,
            backend: Default::default(),
            summary: None,
        };
        let empty = entry.tasks.is_empty();
        let view = entry.view();
        inner.insert(entry);
        drop(inner);
        if empty {
            self.clone().spawn_finalize(id).await;
        }
        self.changed.notify_waiters();
        Ok(view)
    }

    /// Re-submitting a known job: its view, if the input is as it was at submit.
    fn resume(view: JobView, now: &[InputObject]) -> Result<JobView, SchedError> {
        let stored = &view.record.input_fingerprint;
        if stored.is_empty() {
            // Stored before fingerprints existed: nothing to compare with.
            return Ok(view);
        }
        let changes = fingerprint::changes(stored, now);
        if changes.is_empty() {
            return Ok(view);
        }
        tracing::warn!(job = %view.record.id, ?changes, "re-submitted job refused: input changed");
        Err(SchedError::InputChanged {
            job: view.record.id,
            changes,
        })
    }
}
