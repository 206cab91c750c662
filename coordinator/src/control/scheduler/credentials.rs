//! Which credentials the fleet has, by name, and refusing a job that names one it lacks.
//!
//! Workers report the names (never the values) of their operator's credentials at register.
//! A job naming a credential that no registered worker has is refused at submit, with the
//! names that exist. With no worker registered yet the job is accepted: workers commonly start
//! after a submit (a batch cluster scales up on pending work), and refusing then would make the
//! order of starting matter. A worker that leases such a job without the credential fails the
//! task with "credential `NAME` is not configured on this worker", so the job still ends with
//! a clear reason rather than waiting forever.

use std::collections::BTreeSet;

use synthforge_core::spec::JobSpec;

use super::{SchedError, Scheduler};

impl Scheduler {
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
