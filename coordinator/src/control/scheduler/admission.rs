//! Admission checks at submit that need more than the job file: the fleet's credentials and
//! the output location.
//!
//! **Credentials.** Workers report the names (never the values) of their operator's credentials at register.
//! A job naming a credential that no registered worker has is refused at submit, with the
//! names that exist. With no worker registered yet the job is accepted: workers commonly start
//! after a submit (a batch cluster scales up on pending work), and refusing then would make the
//! order of starting matter. A worker that leases such a job without the credential fails the
//! task with "credential `NAME` is not configured on this worker", so the job still ends with
//! a clear reason rather than waiting forever.
//!
//! **Output.** A new job whose output prefix holds another job's dataset (its manifest) or a
//! user's `README.md` is refused unless the submit says `overwrite`; finalization would
//! otherwise delete or overwrite them. A resubmit of a known job is not checked again, and a
//! dataset of the same spec (a resumed or `--fresh` run) is the job's own.

use std::collections::BTreeSet;

use synthforge_core::spec::JobSpec;

use super::{job_id_for, JobView, SchedError, Scheduler};

impl Scheduler {
    /// [`Scheduler::submit`], after refusing (unless `overwrite`) a new job whose output holds
    /// another job's dataset or a user's README.
    pub async fn submit_guarded(
        self: &std::sync::Arc<Self>,
        spec_yaml: &str,
        requested_id: Option<String>,
        overwrite: bool,
    ) -> Result<JobView, SchedError> {
        if !overwrite {
            let spec = JobSpec::from_yaml(spec_yaml, "job")
                .map_err(|e| SchedError::InvalidJob(e.to_string()))?;
            let spec_id = job_id_for(&spec);
            let id = requested_id
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| spec_id.clone());
            let known = self.inner.lock().await.job(&id).is_some();
            if !known {
                let root = synthforge_core::storage::open(&spec.output.path)
                    .map_err(|e| SchedError::InvalidJob(format!("output.path: {e}")))?;
                synthforge_core::output_guard::check_output_free(&root, &spec_id)
                    .await
                    .map_err(|e| SchedError::InvalidJob(e.to_string()))?;
            }
        }
        self.submit(spec_yaml, requested_id).await
    }

    /// Records the credential names worker `id` reported at register.
    pub async fn set_worker_credentials(&self, id: &str, names: Vec<String>) {
        if let Some(w) = self.inner.lock().await.workers.get_mut(id) {
            w.credentials = names.into_iter().collect();
        }
    }

    /// Refuses `spec` when a backend names a credential no registered worker has (see the
    /// module doc for the case of no worker at all).
    pub(super) async fn check_credentials(&self, spec: &JobSpec) -> Result<(), SchedError> {
        let inner = self.inner.lock().await;
        if inner.workers.is_empty() {
            return Ok(());
        }
        let known: BTreeSet<&str> = inner
            .workers
            .values()
            .flat_map(|w| w.credentials.iter().map(String::as_str))
            .collect();
        for (name, backend) in &spec.backends {
            let Some(wanted) = backend.credential.as_deref() else {
                continue;
            };
            if !known.contains(wanted) {
                let known = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                };
                return Err(SchedError::InvalidJob(format!(
                    "backends.{name}.credential: no registered worker has credential `{wanted}` \
                     (workers have: {known}); configure it on the workers with \
                     `--credential {wanted}=env:VAR` (or file:/path)"
                )));
            }
        }
        Ok(())
    }
}
