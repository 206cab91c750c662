//! A job whose backend is down waits instead of burning attempts.
//!
//! A worker that cannot reach a backend at all (every endpoint refused the connection or timed
//! out; not an HTTP error from a live server) reports the backend's name with its failure
//! ([`Scheduler::backend_unreachable`]). That attempt is given back — it does not count
//! against `max_attempts` — and the job's leasing pauses: its state reads "waiting for
//! backend NAME" (status, API, dashboard) and only one task at a time is leased as a probe,
//! after a growing pause (1 s, 2 s, 4 s … at most [`PROBE_CAP_MS`]). The first sign that the
//! backend answers (a completion, a heartbeat with rows done, or a failure of another kind)
//! ends the wait and leasing resumes at full speed.
//!
//! The count of given-back attempts lives in memory only: after a leader change a task's
//! attempt number still includes them, so it may have fewer attempts left than a fresh one.

use std::collections::HashMap;
use std::sync::Arc;

use synthforge_core::now_ms;

use super::{SchedError, Scheduler};
use crate::control::store::StoreError;
use crate::control::task_machine::{self, TaskEvent};
use crate::model::TaskState;

/// First pause before probing an unreachable backend again.
pub const PROBE_FIRST_MS: u64 = 1_000;
/// Longest pause between probes of an unreachable backend.
pub const PROBE_CAP_MS: u64 = 30_000;

/// One job's backend outage, if any, and the attempts it gave back.
#[derive(Debug, Default)]
pub(super) struct BackendPause {
    waiting: Option<Waiting>,
    /// task id → attempts that ended on an unreachable backend (not counted as used).
    given_back: HashMap<u64, u32>,
}

#[derive(Debug)]
struct Waiting {
    backend: String,
    error: String,
    since_ms: u64,
    /// Probes that found the backend still down.
    probes: u32,
    /// No probe is leased before this time.
    next_probe_ms: u64,
    /// The task leased as the current probe (one at a time).
    probe: Option<u64>,
}

impl BackendPause {
    /// Records that `backend` was unreachable for an attempt of `task_id` and schedules the
    /// next probe.
    pub(super) fn unreachable(&mut self, task_id: u64, backend: &str, error: &str, now_ms: u64) {
        *self.given_back.entry(task_id).or_default() += 1;
        let w = self.waiting.get_or_insert_with(|| Waiting {
            backend: backend.to_string(),
            error: String::new(),
            since_ms: now_ms,
            probes: 0,
            next_probe_ms: 0,
            probe: None,
        });
        if w.probe.take().is_some() {
            w.probes += 1;
        }
        w.backend = backend.to_string();
        w.error = error.to_string();
        w.next_probe_ms = now_ms + probe_pause_ms(w.probes);
    }

    /// The backend answered: leasing resumes.
    pub(super) fn answered(&mut self) {
        if let Some(w) = self.waiting.take() {
            tracing::info!(backend = %w.backend, waited_ms = now_ms().saturating_sub(w.since_ms), "backend reachable again; leasing resumes");
        }
    }

    /// Attempts of `task_id` that count against `max_attempts`.
    pub(super) fn attempts_used(&self, task_id: u64, attempt: u32) -> u32 {
        attempt.saturating_sub(self.given_back.get(&task_id).copied().unwrap_or(0))
    }

    /// The most attempts any one task gave back: the allowance the lease-expiry pass (which
    /// works per job, in the store) adds to `max_attempts`.
    pub(super) fn most_given_back(&self) -> u32 {
        self.given_back.values().copied().max().unwrap_or(0)
    }

    /// Whether a task may be leased now. While waiting, one probe at a time once its pause is
    /// over; `probe_alive` says whether the current probe's lease is still held (a probe whose
    /// worker died must not stall the job).
    pub(super) fn may_lease(&self, now_ms: u64, probe_alive: impl Fn(u64) -> bool) -> bool {
        match &self.waiting {
            None => true,
            Some(w) => match w.probe {
                Some(task) if probe_alive(task) => false,
                _ => now_ms >= w.next_probe_ms,
            },
        }
    }

    /// Marks `task_id` as the probe when the job is waiting.
    pub(super) fn leased(&mut self, task_id: u64) {
        if let Some(w) = &mut self.waiting {
            w.probe = Some(task_id);
        }
    }

    /// "waiting for backend NAME (...)" while paused; `None` otherwise.
    pub(super) fn describe(&self, now_ms: u64) -> Option<String> {
        let w = self.waiting.as_ref()?;
        let next = if w.probe.is_some() {
            "probing now".to_string()
        } else {
            let s = w.next_probe_ms.saturating_sub(now_ms).div_ceil(1000);
            format!("next probe in {s} s")
        };
        Some(format!(
            "waiting for backend {}: unreachable for {} s ({}); {next}",
            w.backend,
            now_ms.saturating_sub(w.since_ms) / 1000,
            w.error
        ))
    }
}

/// Pause before the next probe after `probes` failed ones: doubling from
/// [`PROBE_FIRST_MS`] up to [`PROBE_CAP_MS`].
pub fn probe_pause_ms(probes: u32) -> u64 {
    PROBE_FIRST_MS
        .saturating_mul(1u64 << probes.min(20))
        .min(PROBE_CAP_MS)
}

impl Scheduler {
    /// A worker could not reach `backend` for this attempt: give the attempt back (the task is
    /// pending again, its attempt not counted as used) and pause the job's leasing until a
    /// probe finds the backend up. A stale attempt is ignored, as for any failure.
    pub async fn backend_unreachable(
        self: &Arc<Self>,
        worker: &str,
        job_id: &str,
        task_id: u64,
        attempt: u32,
        backend: &str,
        error: &str,
    ) -> Result<(), SchedError> {
        let mut inner = self.inner.lock().await;
        let Some(entry) = inner.job_mut(job_id) else {
            return Ok(());
        };
        let Some(t) = entry.tasks.get(task_id as usize) else {
            return Ok(());
        };
        let now = now_ms();
        // No backoff of its own: the job-wide probe pause decides when it is leased again.
        let event = TaskEvent::Fail {
            attempt,
            error,
            retry: true,
            not_before_ms: now,
        };
        let Ok(next) = task_machine::transition(t, &event) else {
            return Ok(());
        };
        match self
            .store
            .fail(job_id, task_id, attempt, error, true, now)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        entry.progress.remove(&task_id);
        entry.tasks[task_id as usize] = next;
        entry.requeue(task_id, now);
        entry.backend.unreachable(task_id, backend, error, now);
        if let Some(w) = inner.workers.get_mut(worker) {
            w.current_task.clear();
            w.held.remove(&format!("{job_id}/{task_id}"));
        }
        drop(inner);
        tracing::warn!(
            job = job_id,
            task_id,
            attempt,
            worker,
            backend,
            error,
            "backend unreachable; attempt given back, job waits for the backend"
        );
        Ok(())
    }
}

/// Whether the probe `task` of a job still holds its lease (for [`BackendPause::may_lease`]).
pub(super) fn probe_alive(tasks: &[crate::model::TaskRecord], task: u64) -> bool {
    tasks
        .get(task as usize)
        .is_some_and(|t| t.state == TaskState::Leased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_back_off_to_a_cap() {
        assert_eq!(probe_pause_ms(0), 1_000);
        assert_eq!(probe_pause_ms(1), 2_000);
        assert_eq!(probe_pause_ms(4), 16_000);
        assert_eq!(probe_pause_ms(5), PROBE_CAP_MS);
        assert_eq!(probe_pause_ms(40), PROBE_CAP_MS);
    }

    #[test]
    fn an_unreachable_backend_pauses_leasing_to_one_probe_at_a_time() {
        let mut p = BackendPause::default();
        assert!(p.may_lease(0, |_| true));
        assert_eq!(p.describe(0), None);

        p.unreachable(3, "gen", "connection refused", 10_000);
        assert_eq!(p.attempts_used(3, 1), 0, "the attempt is given back");
        assert!(
            !p.may_lease(10_500, |_| true),
            "paused until the first probe"
        );
        let state = p.describe(10_500).unwrap();
        assert!(state.starts_with("waiting for backend gen"), "{state}");
        assert!(state.contains("connection refused"), "{state}");

        assert!(p.may_lease(11_000, |_| true));
        p.leased(3);
        assert!(!p.may_lease(11_000, |_| true), "one probe at a time");
        assert!(
            p.may_lease(11_000, |_| false),
            "a probe whose lease is gone does not stall the job"
        );

        // The probe found it down again: the next pause is longer.
        p.unreachable(3, "gen", "connection refused", 12_000);
        assert_eq!(p.attempts_used(3, 2), 0);
        assert!(!p.may_lease(13_500, |_| true));
        assert!(p.may_lease(14_000, |_| true));
        assert_eq!(p.most_given_back(), 2);

        p.answered();
        assert!(p.may_lease(14_000, |_| true));
        assert_eq!(p.describe(14_000), None);
        // Given-back attempts stay given back after the wait.
        assert_eq!(p.attempts_used(3, 3), 1);
    }

    fn scheduler() -> Arc<Scheduler> {
        use crate::control::store::embedded::EmbeddedStore;
        let store = Arc::new(EmbeddedStore::in_memory());
        let finalizer: super::super::Finalizer = Arc::new(|_job, _spec, _tasks, _leader| {
            Box::pin(async { Ok(synthforge_core::manifest::Manifest::default()) })
        });
        Scheduler::with_retry_backoff(
            store,
            finalizer,
            crate::control::task_machine::Backoff::NONE,
        )
    }

    /// A job of two one-row tasks over backend `b`, `max_attempts: 2`.
    async fn submit(sched: &Arc<Scheduler>, dir: &std::path::Path) -> String {
        let seed = dir.join("seed.jsonl");
        std::fs::write(
            &seed,
            "{\"id\": \"r0\", \"text\": \"a\"}\n{\"id\": \"r1\", \"text\": \"b\"}\n",
        )
        .unwrap();
        let yaml = format!(
            "name: wait\nseed: 1\ninput:\n  path: '{}'\n  format: jsonl\n  rows_per_task: 1\n  limit: 1000000\n\
             pipeline:\n  - stage: generate\n    backend: b\n    template: '{{{{ text }}}}'\n\
             backends:\n  b:\n    url: http://127.0.0.1:9/v1\n    model: m\n\
             output:\n  path: '{}'\nscheduling:\n  lease_s: 600\n  max_attempts: 2\n",
            seed.display(),
            dir.join("out").display()
        );
        sched.submit(&yaml, None).await.unwrap().record.id
    }

    #[tokio::test]
    async fn the_scheduler_gives_the_attempt_back_and_leases_one_probe_after_the_pause() {
        let dir = tempfile::tempdir().unwrap();
        let sched = scheduler();
        let id = submit(&sched, dir.path()).await;

        // Both tasks were leased before the backend was found down; both come back.
        let leases = [
            sched.lease("w").await.unwrap().expect("a task"),
            sched.lease("w2").await.unwrap().expect("a task"),
        ];
        for l in &leases {
            sched
                .backend_unreachable("w", &id, l.task_id, l.attempt, "b", "connection refused")
                .await
                .unwrap();
        }
        let v = sched.job(&id).await.unwrap();
        let waiting = v.waiting.expect("the job waits");
        assert!(waiting.starts_with("waiting for backend b:"), "{waiting}");
        assert_eq!((v.tasks_failed, v.tasks_pending), (0, 2));
        assert!(
            sched.lease("w").await.unwrap().is_none(),
            "no lease during the probe pause"
        );

        tokio::time::sleep(std::time::Duration::from_millis(PROBE_FIRST_MS + 100)).await;
        let probe = sched
            .lease("w")
            .await
            .unwrap()
            .expect("a probe after the pause");
        assert!(
            sched.lease("w2").await.unwrap().is_none(),
            "one probe at a time"
        );

        // The probe reached the backend but failed for another reason: the wait ends, and
        // with one attempt given back the task still has one of its two left.
        sched
            .fail("w", &id, probe.task_id, probe.attempt, "disk full", false)
            .await
            .unwrap();
        let v = sched.job(&id).await.unwrap();
        assert_eq!(v.waiting, None);
        assert_eq!(probe.attempt, 2);
        assert_eq!(
            v.tasks_failed, 0,
            "the given-back attempt was counted as used"
        );
        assert!(
            sched.lease("w2").await.unwrap().is_some(),
            "leasing resumed"
        );
    }
}
