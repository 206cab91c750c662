//! The life of one task as pure rules: `(current record, event) → new record | refusal`.
//!
//! A task is `pending → leased(worker, attempt, deadline) → done | failed`, and a leased task
//! returns to pending when its worker gives up with a retryable error or its lease expires
//! (until the job's `max_attempts` is used up). The attempt number is the fencing token: every
//! event names the attempt it was made for, and an event for any other attempt is refused, so a
//! worker whose lease was taken over can neither renew, complete nor fail the task.
//!
//! These functions are the only place the rules are written. Both stores apply them to what they
//! hold (the embedded store under its lock, etcd on the value it compares by revision) and the
//! scheduler applies them to its in-memory view, so memory and store cannot disagree on a rule.
//! They do no I/O and read no clock: the caller passes `now` and the deadlines.
//!
//! Cancelling a job changes no task: the job leaves the running state, the scheduler stops
//! handing out or renewing its leases, and whatever is leased expires by the same rules.

use std::fmt;

use synthforge_core::sink::WrittenFile;

use crate::model::{TaskRecord, TaskState, TaskStats};

/// Something that happens to a task. Each names the attempt (fencing token) it was made for.
#[derive(Debug, Clone, Copy)]
pub enum TaskEvent<'a> {
    /// Lease the pending task to `worker` as the next attempt (`attempt` = stored attempt + 1).
    Claim {
        attempt: u32,
        worker: &'a str,
        deadline_ms: u64,
    },
    /// Undo a claim made optimistically in the scheduler's memory that the store then refused.
    /// Only the scheduler's view uses it; a stored claim is never rolled back.
    Unclaim { attempt: u32, worker: &'a str },
    /// The lease holder is alive: move the deadline.
    Renew { attempt: u32, deadline_ms: u64 },
    /// The lease holder committed `files`. Repeating the accepted completion is refused with
    /// [`RefusalReason::AlreadyCompleted`] so callers can tell a retry from a fenced-off worker.
    Complete {
        attempt: u32,
        files: &'a [WrittenFile],
        stats: &'a TaskStats,
    },
    /// The lease holder gave up: back to pending (`retry`) or failed for good. A retried task
    /// is not leased again before `not_before_ms` (see [`Backoff`]).
    Fail {
        attempt: u32,
        error: &'a str,
        retry: bool,
        not_before_ms: u64,
    },
    /// The clock passed the lease's deadline without a renewal. A requeued task waits
    /// `backoff` (for its attempt) from `now_ms` before it may be leased again.
    Expire {
        now_ms: u64,
        max_attempts: u32,
        backoff: Backoff,
    },
}

/// The kind of an event, for refusals and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Claim,
    Unclaim,
    Renew,
    Complete,
    Fail,
    Expire,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Claim => "claim",
            EventKind::Unclaim => "unclaim",
            EventKind::Renew => "renew",
            EventKind::Complete => "complete",
            EventKind::Fail => "fail",
            EventKind::Expire => "expire",
        }
    }
}

impl TaskEvent<'_> {
    pub fn kind(&self) -> EventKind {
        match self {
            TaskEvent::Claim { .. } => EventKind::Claim,
            TaskEvent::Unclaim { .. } => EventKind::Unclaim,
            TaskEvent::Renew { .. } => EventKind::Renew,
            TaskEvent::Complete { .. } => EventKind::Complete,
            TaskEvent::Fail { .. } => EventKind::Fail,
            TaskEvent::Expire { .. } => EventKind::Expire,
        }
    }
}

/// Why an event does not apply to the task as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalReason {
    /// The event was made for attempt `asked`, which is not the task's: its lease was ended or
    /// taken over (the sender is fenced off), or the sender acted on a stale view.
    StaleAttempt { asked: u32 },
    /// The attempt matches, but the task is not in a state the event applies to.
    WrongState,
    /// This attempt's completion was accepted already: a retried call whose first reply was
    /// lost. Stores refuse to write it twice; the scheduler answers it as success.
    AlreadyCompleted,
    /// An expiry before the lease's deadline (or of a task that holds no lease).
    NotExpired { now_ms: u64, deadline_ms: u64 },
}

/// A typed refusal: the event, the task as it is, and why. Stores report it as
/// `StoreError::Conflict`; the scheduler turns it into its reply to the worker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    pub job_id: String,
    pub task_id: u64,
    pub event: EventKind,
    /// The task's state when the event arrived.
    pub state: TaskState,
    /// The task's attempt when the event arrived.
    pub attempt: u32,
    pub reason: RefusalReason,
}

impl Refusal {
    /// A repeat of the completion already accepted for this attempt (see
    /// [`RefusalReason::AlreadyCompleted`]).
    pub fn is_repeated_completion(&self) -> bool {
        self.reason == RefusalReason::AlreadyCompleted
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (job, task, state, attempt) = (&self.job_id, self.task_id, self.state, self.attempt);
        let event = self.event.as_str();
        write!(
            f,
            "task {job}/{task} is {} at attempt {attempt}: ",
            state.as_str()
        )?;
        match (&self.reason, self.event) {
            (RefusalReason::StaleAttempt { asked }, EventKind::Claim) => {
                write!(f, "cannot claim attempt {asked} (stale view)")
            }
            (RefusalReason::StaleAttempt { asked }, _) => {
                write!(f, "{event} of attempt {asked} refused; attempt {asked} is fenced off")
            }
            (RefusalReason::WrongState, EventKind::Claim) => {
                write!(f, "cannot claim attempt {}: not pending", attempt.saturating_add(1))
            }
            (RefusalReason::WrongState, EventKind::Unclaim) => {
                write!(f, "not reserved by this worker; nothing to undo")
            }
            (RefusalReason::WrongState, _) => write!(
                f,
                "{event} of attempt {attempt} refused; attempt {attempt} holds no lease (fenced off)"
            ),
            (RefusalReason::AlreadyCompleted, _) => {
                write!(f, "attempt {attempt} was completed already")
            }
            (RefusalReason::NotExpired { now_ms, .. }, _) if state != TaskState::Leased => {
                write!(f, "holds no lease to expire at {now_ms} ms")
            }
            (
                RefusalReason::NotExpired {
                    now_ms,
                    deadline_ms,
                },
                _,
            ) => write!(
                f,
                "lease runs until {deadline_ms} ms, not expired at {now_ms} ms"
            ),
        }
    }
}

/// The wait between a task's failed (or expired) attempt and its next one: exponential in the
/// attempt number, capped, and jittered so that the tasks a backend outage failed together do
/// not all come back in the same instant. Without it a backend that is down for a second burns
/// every attempt of every task in a fraction of that second.
///
/// The jitter is derived from the task and attempt, not from a random source, so the machine
/// stays pure and both stores compute the same time as the scheduler's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first attempt (before jitter); 0 turns backoff off.
    pub base_ms: u64,
    /// Upper bound of the delay, whatever the attempt.
    pub cap_ms: u64,
}

impl Backoff {
    /// 1 s after the first attempt, doubling, at most a minute.
    pub const DEFAULT: Backoff = Backoff {
        base_ms: 1_000,
        cap_ms: 60_000,
    };
    /// No wait (tests that are not about backoff).
    pub const NONE: Backoff = Backoff {
        base_ms: 0,
        cap_ms: 0,
    };

    /// The wait after attempt `attempt` (1-based) of a task: `base * 2^(attempt-1)`, capped,
    /// then placed in the upper half of that (`[d/2, d]`) by a hash of the task and attempt.
    pub fn delay_ms(&self, job_id: &str, task_id: u64, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(32);
        let full = self
            .base_ms
            .saturating_mul(1u64 << exp)
            .min(self.cap_ms.max(self.base_ms));
        if full == 0 {
            return 0;
        }
        let half = full / 2;
        half + jitter(job_id, task_id, attempt) % (full - half + 1)
    }
}

/// FNV-1a over the task's identity: a stable, well-spread number for the jitter.
fn jitter(job_id: &str, task_id: u64, attempt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = job_id
        .bytes()
        .chain(task_id.to_le_bytes())
        .chain(attempt.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Attempts per task when a store is not told the job's own limit (the job spec's default).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Whether a task that used `attempt` attempts may get another one.
pub fn retry_allowed(attempt: u32, max_attempts: u32) -> bool {
    attempt < max_attempts
}

/// Whether `rec` holds a lease whose deadline passed before `now_ms` (what [`TaskEvent::Expire`]
/// requires). Cheap, for scans over every task.
pub fn lease_expired(rec: &TaskRecord, now_ms: u64) -> bool {
    rec.state == TaskState::Leased && rec.deadline_ms < now_ms
}

/// The record after `event`, or why the event does not apply. `current` is not changed.
pub fn transition(current: &TaskRecord, event: &TaskEvent<'_>) -> Result<TaskRecord, Refusal> {
    check(current, event).map_err(|reason| Refusal {
        job_id: current.job_id.clone(),
        task_id: current.task_id,
        event: event.kind(),
        state: current.state,
        attempt: current.attempt,
        reason,
    })?;
    let mut next = current.clone();
    apply(&mut next, event);
    Ok(next)
}

/// Whether `event` applies to `t`.
fn check(t: &TaskRecord, event: &TaskEvent<'_>) -> Result<(), RefusalReason> {
    match *event {
        TaskEvent::Claim { attempt, .. } => {
            if t.attempt.checked_add(1) != Some(attempt) {
                return Err(RefusalReason::StaleAttempt { asked: attempt });
            }
            if t.state != TaskState::Pending {
                return Err(RefusalReason::WrongState);
            }
            Ok(())
        }
        TaskEvent::Unclaim { attempt, worker } => {
            expect_leased(t, attempt)?;
            if t.worker != worker {
                return Err(RefusalReason::WrongState);
            }
            Ok(())
        }
        TaskEvent::Renew { attempt, .. } | TaskEvent::Fail { attempt, .. } => {
            expect_leased(t, attempt)
        }
        TaskEvent::Complete { attempt, .. } => {
            // Recognised by attempt alone, as the scheduler always did: the files of one attempt
            // share their names (`part-{task}-{attempt}`), so answering a differing repeat with
            // "fenced off" would make its worker delete the committed files. The stored record
            // keeps the files of the accepted completion either way.
            if t.state == TaskState::Done && t.attempt == attempt {
                return Err(RefusalReason::AlreadyCompleted);
            }
            expect_leased(t, attempt)
        }
        TaskEvent::Expire { now_ms, .. } => {
            if !lease_expired(t, now_ms) {
                return Err(RefusalReason::NotExpired {
                    now_ms,
                    deadline_ms: t.deadline_ms,
                });
            }
            Ok(())
        }
    }
}

/// Leased at `attempt`: the only state renew, complete and fail apply to.
fn expect_leased(t: &TaskRecord, attempt: u32) -> Result<(), RefusalReason> {
    if t.attempt != attempt {
        return Err(RefusalReason::StaleAttempt { asked: attempt });
    }
    if t.state != TaskState::Leased {
        return Err(RefusalReason::WrongState);
    }
    Ok(())
}

/// Changes `t` by an event [`check`] accepted.
fn apply(t: &mut TaskRecord, event: &TaskEvent<'_>) {
    match *event {
        TaskEvent::Claim {
            attempt,
            worker,
            deadline_ms,
        } => {
            t.state = TaskState::Leased;
            t.attempt = attempt;
            t.worker = worker.to_string();
            t.deadline_ms = deadline_ms;
        }
        TaskEvent::Unclaim { .. } => {
            t.state = TaskState::Pending;
            t.attempt = t.attempt.saturating_sub(1);
            t.worker.clear();
        }
        TaskEvent::Renew { deadline_ms, .. } => t.deadline_ms = deadline_ms,
        TaskEvent::Complete { files, stats, .. } => {
            t.state = TaskState::Done;
            t.files = files.to_vec();
            t.stats = stats.clone();
            t.last_error.clear();
        }
        TaskEvent::Fail {
            error,
            retry,
            not_before_ms,
            ..
        } => {
            t.state = if retry {
                TaskState::Pending
            } else {
                TaskState::Failed
            };
            t.not_before_ms = if retry { not_before_ms } else { 0 };
            t.last_error = error.to_string();
            t.worker.clear();
        }
        TaskEvent::Expire {
            now_ms,
            max_attempts,
            backoff,
        } => {
            t.last_error = format!(
                "lease of worker `{}` expired (attempt {})",
                t.worker, t.attempt
            );
            if retry_allowed(t.attempt, max_attempts) {
                t.state = TaskState::Pending;
                t.not_before_ms = now_ms + backoff.delay_ms(&t.job_id, t.task_id, t.attempt);
            } else {
                t.state = TaskState::Failed;
                t.not_before_ms = 0;
            }
            t.worker.clear();
        }
    }
}

#[cfg(test)]
mod tests;
