//! Taking a job in: validate, fingerprint the input, admit and store it, then plan it in the
//! background (`planning.rs`) -- or, for a job already known, resume it if its input is unchanged.

use std::collections::HashMap;
use std::sync::Arc;

use synthforge_core::now_ms;
use synthforge_core::spec::JobSpec;

use super::state::JobEntry;
use super::{planning, JobView, SchedError, Scheduler};
use crate::control::store::StoreError;
use crate::control::{fingerprint, planner};
use crate::model::{InputObject, JobRecord, JobState, PlanningProgress, TaskStats};

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

/// How long Submit waits for planning to end before it answers with the job still in
/// `planning`: small inputs (most jobs) are answered with their tasks counted, large ones at once.
const SUBMIT_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// [`SUBMIT_GRACE`], or `SYNTHFORGE_SUBMIT_GRACE_MS` from the coordinator's environment: 0
/// answers every Submit at once in `planning` (how the end-to-end tests see that state whatever
/// the machine's speed; planning a few thousand footers can fit in 250 ms).
fn submit_grace() -> std::time::Duration {
    static GRACE: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();
    *GRACE.get_or_init(|| {
        std::env::var("SYNTHFORGE_SUBMIT_GRACE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(SUBMIT_GRACE, std::time::Duration::from_millis)
    })
}

impl Scheduler {
    /// Validates and stores a job, and starts planning it in the background (answering once
    /// planning ended or [`SUBMIT_GRACE`] passed). Errors found without reading the input
    /// (spec, columns, credentials, listing) come back here; planning's own (an unreadable
    /// object, too many tasks) fail the job, and come back here too when planning fails within
    /// the grace. Submitting the same spec again returns the same job (planned again if its
    /// planning failed).
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
        // A job whose planning failed is planned again: it never ran, and its failure was
        // Submit's own error before planning moved to the background.
        let replan = match existing {
            Some(view) if planning::failed_in_planning(&view.record) => true,
            Some(view) => return Self::resume(view, &input_now),
            None => false,
        };
        self.check_credentials(&spec).await?;
        // Checked now, from the first object's footer or first lines (a cheap read); the
        // input is cut into tasks in the background.
        let listed = planner::list(&spec).await?;
        let seed_columns = planner::seed_columns(&spec, &listed).await?;
        spec.check_columns(seed_columns.as_ref(), "job")
            .map_err(|e| SchedError::InvalidJob(e.to_string()))?;
        let progress = PlanningProgress {
            objects_total: listed.len() as u64,
            ..Default::default()
        };
        let input_fingerprint = fingerprint::record(input_now);
        if replan {
            self.restart_planning(&id, input_fingerprint, progress)
                .await?;
        } else if let Some(view) = self
            .store_new_job(&id, spec, input_fingerprint, progress)
            .await?
        {
            // Created meanwhile by another submit.
            return Ok(view);
        }
        tracing::info!(job = %id, objects = listed.len(), "job stored; planning");
        self.clone().answer_after_planning(id, listed).await
    }

    /// Stores a new job in `planning` and takes it into memory; `Some(view)` when another
    /// submit created it first (nothing stored here then).
    async fn store_new_job(
        &self,
        id: &str,
        spec: JobSpec,
        input_fingerprint: crate::model::InputFingerprint,
        progress: PlanningProgress,
    ) -> Result<Option<JobView>, SchedError> {
        let record = JobRecord {
            id: id.to_string(),
            name: spec.name.clone(),
            spec_yaml: spec.to_yaml(),
            state: JobState::Planning,
            output: spec.output.path.clone(),
            tasks_total: 0,
            rows_total: 0,
            created_ms: now_ms(),
            finished_ms: 0,
            error: String::new(),
            input_fingerprint,
            finalize_removed: Default::default(),
            planning: Some(progress),
        };
        if let Some(e) = self.inner.lock().await.job(id) {
            return Ok(Some(e.view()));
        }
        // The store refuses a second creation of the same id, so two racing submits cannot
        // both create it. Its tasks follow as planning proceeds.
        match self.store.create_job(&record, &[]).await {
            Ok(()) => {}
            Err(StoreError::Conflict(m)) => {
                return match self.inner.lock().await.job(id) {
                    Some(e) => Ok(Some(e.view())),
                    None => Err(SchedError::Busy(format!(
                        "job `{id}` is being created by another submit: {m}"
                    ))),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let mut inner = self.inner.lock().await;
        if let Some(e) = inner.job(id) {
            return Ok(Some(e.view()));
        }
        inner.insert(JobEntry {
            pending: Default::default(),
            delayed: Default::default(),
            record,
            spec: Arc::new(spec),
            tasks: Vec::new(),
            stats: TaskStats::default(),
            progress: HashMap::new(),
            ended: 0,
            backend: Default::default(),
            summary: None,
        });
        Ok(None)
    }

    /// Plans a stored job in the background and answers once planning ended or
    /// [`SUBMIT_GRACE`] passed: a small input (most jobs) is answered with its tasks counted,
    /// and a planning failure within the grace with Submit's error as before; a large input is
    /// answered in `planning`.
    async fn answer_after_planning(
        self: Arc<Self>,
        id: String,
        objects: Vec<(synthforge_core::storage::Location, u64)>,
    ) -> Result<JobView, SchedError> {
        let planned = self.clone().spawn_planning(id.clone(), Some(objects));
        let _ = tokio::time::timeout(submit_grace(), planned).await;
        self.changed.notify_waiters();
        let view = self
            .job(&id)
            .await
            .ok_or_else(|| SchedError::NoJob(id.clone()))?;
        if planning::failed_in_planning(&view.record) {
            return Err(SchedError::InvalidJob(view.record.error));
        }
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
