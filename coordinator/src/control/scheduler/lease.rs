//! Leasing: hand a pending task to a worker, claiming it in the store without holding the
//! scheduler lock.

use std::sync::Arc;

use synthforge_core::now_ms;

use super::backend_wait::probe_alive;
use super::{Lease, SchedError, Scheduler};
use crate::control::store::StoreError;
use crate::control::task_machine::{self, TaskEvent};
use crate::model::{JobState, TaskState};

impl Scheduler {
    /// Hands the oldest running job's next pending task to `worker`.
    ///
    /// The task is marked leased in memory first and the store's claim runs without holding the
    /// scheduler lock, so many workers' claims overlap their store round trips (etcd latency no
    /// longer serializes the fleet). A claim the store refuses is rolled back, and on a conflict
    /// memory adopts the stored record (see [`Scheduler::adopt_stored`]).
    pub async fn lease(self: &Arc<Self>, worker: &str) -> Result<Option<Lease>, SchedError> {
        loop {
            let Some((lease, key)) = self.reserve(worker).await else {
                return Ok(None);
            };
            let claimed = self
                .store
                .claim(
                    &lease.job_id,
                    lease.task_id,
                    lease.attempt,
                    worker,
                    lease.deadline_ms,
                )
                .await;
            match claimed {
                Ok(()) => {
                    tracing::info!(job = %lease.job_id, task_id = lease.task_id, attempt = lease.attempt, worker, "task leased");
                    return Ok(Some(lease));
                }
                Err(e) => {
                    let requeue = !matches!(e, StoreError::Conflict(_));
                    self.unreserve(worker, &key, &lease, requeue).await;
                    match e {
                        StoreError::Conflict(msg) => {
                            tracing::warn!(job = %lease.job_id, task_id = lease.task_id, %msg, "claim lost; adopting the stored task");
                            self.adopt_stored(&lease.job_id, lease.task_id).await?;
                        }
                        other => return Err(other.into()),
                    }
                }
            }
        }
    }

    /// Picks the next pending task and marks it leased to `worker` in memory.
    async fn reserve(&self, worker: &str) -> Option<(Lease, (u64, String))> {
        let mut inner = self.inner.lock().await;
        let now = now_ms();
        let keys: Vec<(u64, String)> = inner
            .jobs
            .iter()
            .filter(|(_, e)| e.record.state == JobState::Running && e.has_pending())
            // A job waiting for its backend leases one probe at a time, after a pause.
            .filter(|(_, e)| e.backend.may_lease(now, |t| probe_alive(&e.tasks, t)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let entry = inner.jobs.get_mut(&key).expect("key from map");
            // Retries whose backoff is over join the queue; the others are not leased yet.
            entry.release_due(now);
            while let Some(task_id) = entry.pending.pop_front() {
                let lease_ms = (entry.spec.scheduling.lease_s * 1000.0) as u64;
                let t = &mut entry.tasks[task_id as usize];
                let attempt = t.attempt + 1;
                let deadline = now + lease_ms;
                let claim = TaskEvent::Claim {
                    attempt,
                    worker,
                    deadline_ms: deadline,
                };
                // A queue entry the task has moved past (done, failed, already leased): skip it.
                let Ok(next) = task_machine::transition(t, &claim) else {
                    continue;
                };
                *t = next;
                entry.backend.leased(task_id);
                let lease = Lease {
                    job_id: t.job_id.clone(),
                    task_id,
                    attempt,
                    deadline_ms: deadline,
                    spec_yaml: entry.record.spec_yaml.clone(),
                    slice: t.slice.clone(),
                    dedup: t.dedup.clone(),
                };
                entry.progress.insert(task_id, 0);
                if let Some(w) = inner.workers.get_mut(worker) {
                    w.current_task = format!("{}/{}#{}", lease.job_id, task_id, attempt);
                    w.held.insert(format!("{}/{}", lease.job_id, task_id));
                    w.task_rows_done = 0;
                    w.last_seen_ms = now;
                }
                return Some((lease, key));
            }
        }
        if let Some(w) = inner.workers.get_mut(worker) {
            w.current_task.clear();
            w.last_seen_ms = now;
        }
        None
    }

    /// Rolls back a reservation the store refused (`requeue`: the store failed, try again).
    async fn unreserve(&self, worker: &str, key: &(u64, String), lease: &Lease, requeue: bool) {
        let mut inner = self.inner.lock().await;
        if let Some(entry) = inner.jobs.get_mut(key) {
            let unclaim = TaskEvent::Unclaim {
                attempt: lease.attempt,
                worker,
            };
            if let Some(t) = entry.tasks.get_mut(lease.task_id as usize) {
                // Refused when the task moved on meanwhile (e.g. its reservation expired).
                if let Ok(next) = task_machine::transition(t, &unclaim) {
                    *t = next;
                    entry.progress.remove(&lease.task_id);
                    if requeue {
                        entry.pending.push_front(lease.task_id);
                    }
                }
            }
        }
        if let Some(w) = inner.workers.get_mut(worker) {
            w.current_task.clear();
            w.held
                .remove(&format!("{}/{}", lease.job_id, lease.task_id));
        }
    }

    /// Replaces memory's view of a task with the stored record after the store refused a change
    /// computed from a stale view (a claim that landed around a leadership change). Without it
    /// the task would sit pending in memory but queued nowhere, while its stored lease is one
    /// no expiry pass knows of: the job would never end. A stored lease gets a fresh deadline
    /// its worker must keep renewing (as in [`Scheduler::recover`]); a pending task is queued;
    /// an ended one counts as ended.
    pub(super) async fn adopt_stored(
        self: &Arc<Self>,
        job_id: &str,
        task_id: u64,
    ) -> Result<(), SchedError> {
        let lease_ms = {
            let mut inner = self.inner.lock().await;
            let Some(entry) = inner.job_mut(job_id) else {
                return Ok(());
            };
            (entry.spec.scheduling.lease_s * 1000.0) as u64
        };
        let mut stored = self.store.stored_task(job_id, task_id).await?;
        if stored.state == TaskState::Leased {
            let deadline = now_ms() + lease_ms;
            // Also makes the store hold the lease, so its expiry pass covers it.
            if self
                .store
                .renew(job_id, task_id, stored.attempt, deadline)
                .await
                .is_ok()
            {
                let renew = TaskEvent::Renew {
                    attempt: stored.attempt,
                    deadline_ms: deadline,
                };
                if let Ok(next) = task_machine::transition(&stored, &renew) {
                    stored = next;
                }
            }
        }
        let now = now_ms();
        let mut inner = self.inner.lock().await;
        let finished = {
            let Some(entry) = inner.job_mut(job_id) else {
                return Ok(());
            };
            let Some(mem) = entry.tasks.get_mut(task_id as usize) else {
                return Ok(());
            };
            let ended = |s: TaskState| matches!(s, TaskState::Done | TaskState::Failed);
            let newly_ended = ended(stored.state) && !ended(mem.state);
            if stored.state == TaskState::Done && mem.state != TaskState::Done {
                entry.stats.add(&stored.stats);
            }
            *mem = stored.clone();
            if newly_ended {
                entry.ended += 1;
            }
            if stored.state == TaskState::Pending {
                entry.requeue(task_id, now);
            }
            entry.all_ended() && entry.record.state == JobState::Running
        };
        if stored.state == TaskState::Leased {
            if let Some(w) = inner.workers.get_mut(&stored.worker) {
                w.held.insert(format!("{job_id}/{task_id}"));
            }
        }
        drop(inner);
        tracing::info!(job = %job_id, task_id, state = ?stored.state, attempt = stored.attempt, "adopted the stored task after a claim conflict");
        if finished {
            self.clone().spawn_finalize(job_id.to_string()).await;
        }
        Ok(())
    }
}
