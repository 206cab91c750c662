//! The task machine as a table: every state × every event, then the fields each accepted
//! event sets.

use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::InputFormat;

use super::*;

/// Attempt of every non-fresh starting record; a stale event names attempt 1.
const A: u32 = 2;
const DEADLINE: u64 = 1_000;

fn files(name: &str) -> Vec<WrittenFile> {
    vec![WrittenFile {
        path: format!("data/{name}.parquet"),
        rows: 10,
        bytes: 100,
        kind: "data".into(),
    }]
}

fn stats() -> TaskStats {
    TaskStats {
        rows_in: 10,
        rows_out: 9,
        ..Default::default()
    }
}

fn fresh() -> TaskRecord {
    TaskRecord::new(
        "j",
        7,
        TaskSlice {
            object_url: "/tmp/seed.jsonl".into(),
            format: InputFormat::Jsonl,
            row_start: 0,
            row_count: 10,
            byte_start: 0,
            byte_end: 0,
            row_groups: vec![],
            global_row_start: 0,
        },
    )
}

/// A record in `state`, reached through the machine itself (attempt 0 when pending and fresh).
fn record(state: TaskState, fresh_pending: bool) -> TaskRecord {
    let mut t = fresh();
    if state == TaskState::Pending && fresh_pending {
        return t;
    }
    for attempt in 1..=A {
        let claim = TaskEvent::Claim {
            attempt,
            worker: "w1",
            deadline_ms: DEADLINE,
        };
        t = transition(&t, &claim).unwrap();
        if attempt < A {
            let fail = TaskEvent::Fail {
                attempt,
                error: "transient",
                retry: true,
                not_before_ms: 0,
            };
            t = transition(&t, &fail).unwrap();
        }
    }
    let done = files("done");
    let s = stats();
    let last = match state {
        TaskState::Leased => None,
        TaskState::Pending => Some(TaskEvent::Fail {
            attempt: A,
            error: "transient",
            retry: true,
            not_before_ms: 0,
        }),
        TaskState::Failed => Some(TaskEvent::Fail {
            attempt: A,
            error: "permanent",
            retry: false,
            not_before_ms: 0,
        }),
        TaskState::Done => Some(TaskEvent::Complete {
            attempt: A,
            files: &done,
            stats: &s,
        }),
    };
    if let Some(e) = last {
        t = transition(&t, &e).unwrap();
    }
    assert_eq!((t.state, t.attempt), (state, A));
    t
}

/// What the table expects of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Accepted: the new state and attempt.
    To(TaskState, u32),
    Stale,
    WrongState,
    Repeat,
    NotExpired,
}

fn outcome(r: Result<TaskRecord, Refusal>) -> Expect {
    match r {
        Ok(t) => Expect::To(t.state, t.attempt),
        Err(f) => match f.reason {
            RefusalReason::StaleAttempt { .. } => Expect::Stale,
            RefusalReason::WrongState => Expect::WrongState,
            RefusalReason::AlreadyCompleted => Expect::Repeat,
            RefusalReason::NotExpired { .. } => Expect::NotExpired,
        },
    }
}

#[test]
fn every_state_and_event() {
    use Expect::*;
    use TaskState::{Done, Failed, Leased, Pending};
    let done = files("done");
    let other = files("other");
    let s = stats();
    // (label, event for a record at attempt `a`)
    type MakeEvent<'a> = Box<dyn Fn(u32) -> TaskEvent<'a> + 'a>;
    let events: Vec<(&str, MakeEvent)> = vec![
        (
            "claim next",
            Box::new(|a| TaskEvent::Claim {
                attempt: a + 1,
                worker: "w2",
                deadline_ms: 5_000,
            }),
        ),
        (
            "claim current",
            Box::new(|a| TaskEvent::Claim {
                attempt: a,
                worker: "w2",
                deadline_ms: 5_000,
            }),
        ),
        (
            "unclaim",
            Box::new(|a| TaskEvent::Unclaim {
                attempt: a,
                worker: "w1",
            }),
        ),
        (
            "unclaim other worker",
            Box::new(|a| TaskEvent::Unclaim {
                attempt: a,
                worker: "w2",
            }),
        ),
        (
            "renew",
            Box::new(|a| TaskEvent::Renew {
                attempt: a,
                deadline_ms: 5_000,
            }),
        ),
        (
            "renew stale",
            Box::new(|_| TaskEvent::Renew {
                attempt: 1,
                deadline_ms: 5_000,
            }),
        ),
        (
            "complete",
            Box::new(|a| TaskEvent::Complete {
                attempt: a,
                files: &done,
                stats: &s,
            }),
        ),
        (
            "complete other files",
            Box::new(|a| TaskEvent::Complete {
                attempt: a,
                files: &other,
                stats: &s,
            }),
        ),
        (
            "complete stale",
            Box::new(|_| TaskEvent::Complete {
                attempt: 1,
                files: &done,
                stats: &s,
            }),
        ),
        (
            "fail retry",
            Box::new(|a| TaskEvent::Fail {
                attempt: a,
                error: "e",
                retry: true,
                not_before_ms: 0,
            }),
        ),
        (
            "fail final",
            Box::new(|a| TaskEvent::Fail {
                attempt: a,
                error: "e",
                retry: false,
                not_before_ms: 0,
            }),
        ),
        (
            "fail stale",
            Box::new(|_| TaskEvent::Fail {
                attempt: 1,
                error: "e",
                retry: true,
                not_before_ms: 0,
            }),
        ),
        (
            "expire",
            Box::new(|_| TaskEvent::Expire {
                now_ms: DEADLINE + 1,
                max_attempts: A + 1,
                backoff: Backoff::NONE,
            }),
        ),
        (
            "expire at max attempts",
            Box::new(|_| TaskEvent::Expire {
                now_ms: DEADLINE + 1,
                max_attempts: A,
                backoff: Backoff::NONE,
            }),
        ),
        (
            "expire at deadline",
            Box::new(|_| TaskEvent::Expire {
                now_ms: DEADLINE,
                max_attempts: A + 1,
                backoff: Backoff::NONE,
            }),
        ),
    ];
    // Starting records: a fresh task (attempt 0) and one per state at attempt A.
    let starts = [
        ("fresh pending", record(Pending, true)),
        ("pending", record(Pending, false)),
        ("leased", record(Leased, false)),
        ("done", record(Done, false)),
        ("failed", record(Failed, false)),
    ];
    #[rustfmt::skip]
    let table: &[(&str, [Expect; 15])] = &[
        //                claim next      claim cur   unclaim         unclaim w2  renew           renew stale complete      compl other complete st fail retry        fail final       fail stale  expire           expire max       expire at dl
        ("fresh pending", [To(Leased, 1), Stale,      WrongState,     WrongState, WrongState,     Stale,      WrongState,   WrongState, Stale,      WrongState,       WrongState,      Stale,      NotExpired,      NotExpired,      NotExpired]),
        ("pending",       [To(Leased, 3), Stale,      WrongState,     WrongState, WrongState,     Stale,      WrongState,   WrongState, Stale,      WrongState,       WrongState,      Stale,      NotExpired,      NotExpired,      NotExpired]),
        ("leased",        [WrongState,    Stale,      To(Pending, 1), WrongState, To(Leased, 2),  Stale,      To(Done, 2),  To(Done, 2), Stale,     To(Pending, 2),   To(Failed, 2),   Stale,      To(Pending, 2),  To(Failed, 2),   NotExpired]),
        ("done",          [WrongState,    Stale,      WrongState,     WrongState, WrongState,     Stale,      Repeat,       Repeat,     Stale,      WrongState,       WrongState,      Stale,      NotExpired,      NotExpired,      NotExpired]),
        ("failed",        [WrongState,    Stale,      WrongState,     WrongState, WrongState,     Stale,      WrongState,   WrongState, Stale,      WrongState,       WrongState,      Stale,      NotExpired,      NotExpired,      NotExpired]),
    ];
    assert_eq!(table.len(), starts.len());
    let mut checked = 0;
    for ((label, start), (row_label, row)) in starts.iter().zip(table) {
        assert_eq!(label, row_label);
        for ((event_label, make), want) in events.iter().zip(row) {
            let event = make(start.attempt);
            let got = outcome(transition(start, &event));
            assert_eq!(got, *want, "{label} × {event_label}");
            checked += 1;
        }
    }
    // Every state (pending twice: fresh and retried) against every event kind.
    let states: std::collections::BTreeSet<_> =
        starts.iter().map(|(_, t)| t.state.as_str()).collect();
    assert_eq!(states.len(), TaskState::ALL.len());
    assert_eq!(checked, starts.len() * events.len());
}

#[test]
fn a_refusal_leaves_the_record_as_it_was_and_names_the_task() {
    let t = record(TaskState::Leased, false);
    let before = t.clone();
    let err = transition(
        &t,
        &TaskEvent::Complete {
            attempt: 1,
            files: &files("late"),
            stats: &stats(),
        },
    )
    .unwrap_err();
    assert_eq!(t, before);
    assert_eq!(
        (err.job_id.as_str(), err.task_id, err.state, err.attempt),
        ("j", 7, TaskState::Leased, A)
    );
    assert!(err.to_string().contains("j/7"), "{err}");
    assert!(err.to_string().contains("fenced off"), "{err}");
}

#[test]
fn claim_records_the_worker_attempt_and_deadline() {
    let t = transition(
        &fresh(),
        &TaskEvent::Claim {
            attempt: 1,
            worker: "w9",
            deadline_ms: 42,
        },
    )
    .unwrap();
    assert_eq!(
        (t.state, t.attempt, t.worker.as_str(), t.deadline_ms),
        (TaskState::Leased, 1, "w9", 42)
    );
}

#[test]
fn unclaim_restores_the_pending_task() {
    let t = record(TaskState::Pending, false);
    let claimed = transition(
        &t,
        &TaskEvent::Claim {
            attempt: A + 1,
            worker: "w2",
            deadline_ms: 9,
        },
    )
    .unwrap();
    let undone = transition(
        &claimed,
        &TaskEvent::Unclaim {
            attempt: A + 1,
            worker: "w2",
        },
    )
    .unwrap();
    assert_eq!(
        (undone.state, undone.attempt, undone.worker.as_str()),
        (t.state, t.attempt, "")
    );
}

#[test]
fn completion_keeps_files_and_stats_and_clears_the_last_error() {
    let t = record(TaskState::Leased, false);
    assert_eq!(t.last_error, "transient", "attempt 1 failed before");
    let f = files("part");
    let s = stats();
    let done = transition(
        &t,
        &TaskEvent::Complete {
            attempt: A,
            files: &f,
            stats: &s,
        },
    )
    .unwrap();
    assert_eq!(done.files, f);
    assert_eq!(done.stats, s);
    assert_eq!(done.last_error, "");
    assert_eq!(done.worker, "w1", "the record keeps who did it");
    // The same completion again is recognised as a repeat, not as a fenced-off worker.
    let again = transition(
        &done,
        &TaskEvent::Complete {
            attempt: A,
            files: &f,
            stats: &s,
        },
    )
    .unwrap_err();
    assert!(again.is_repeated_completion(), "{again}");
}

#[test]
fn failure_and_expiry_record_why_and_free_the_worker() {
    let t = record(TaskState::Leased, false);
    let failed = transition(
        &t,
        &TaskEvent::Fail {
            attempt: A,
            error: "bad object",
            retry: false,
            not_before_ms: 0,
        },
    )
    .unwrap();
    assert_eq!(
        (failed.last_error.as_str(), failed.worker.as_str()),
        ("bad object", "")
    );
    let expired = transition(
        &t,
        &TaskEvent::Expire {
            now_ms: DEADLINE + 1,
            max_attempts: 3,
            backoff: Backoff::NONE,
        },
    )
    .unwrap();
    assert_eq!(
        expired.last_error,
        "lease of worker `w1` expired (attempt 2)"
    );
    assert_eq!(expired.worker, "");
    assert!(lease_expired(&t, DEADLINE + 1));
    assert!(!lease_expired(&t, DEADLINE));
}

#[test]
fn retries_stop_at_max_attempts() {
    assert!(retry_allowed(1, 3));
    assert!(retry_allowed(2, 3));
    assert!(!retry_allowed(3, 3));
    assert!(!retry_allowed(4, 3));
}

#[test]
fn backoff_doubles_per_attempt_is_capped_and_jittered_in_its_upper_half() {
    let b = Backoff {
        base_ms: 1_000,
        cap_ms: 8_000,
    };
    for (attempt, full) in [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000), (9, 8_000)] {
        for task in 0..50 {
            let d = b.delay_ms("job", task, attempt);
            assert!(
                (full / 2..=full).contains(&d),
                "attempt {attempt}, task {task}: {d} not in [{}, {full}]",
                full / 2
            );
            assert_eq!(d, b.delay_ms("job", task, attempt), "deterministic");
        }
    }
    let spread: std::collections::BTreeSet<u64> =
        (0..50).map(|task| b.delay_ms("job", task, 3)).collect();
    assert!(spread.len() > 10, "jitter spreads tasks: {spread:?}");
    assert_eq!(Backoff::NONE.delay_ms("job", 0, 5), 0);
    assert!(
        Backoff::DEFAULT.delay_ms("job", 0, u32::MAX) <= 60_000,
        "a huge attempt number neither overflows nor passes the cap"
    );
}

#[test]
fn a_retried_failure_and_an_expiry_set_the_earliest_next_lease() {
    let t = record(TaskState::Leased, false);
    let retried = transition(
        &t,
        &TaskEvent::Fail {
            attempt: A,
            error: "backend down",
            retry: true,
            not_before_ms: 5_000,
        },
    )
    .unwrap();
    assert_eq!(
        (retried.state, retried.not_before_ms),
        (TaskState::Pending, 5_000)
    );
    let failed = transition(
        &t,
        &TaskEvent::Fail {
            attempt: A,
            error: "permanent",
            retry: false,
            not_before_ms: 5_000,
        },
    )
    .unwrap();
    assert_eq!(
        failed.not_before_ms, 0,
        "a failed task is never leased again"
    );
    let backoff = Backoff {
        base_ms: 1_000,
        cap_ms: 60_000,
    };
    let expired = transition(
        &t,
        &TaskEvent::Expire {
            now_ms: DEADLINE + 1,
            max_attempts: 3,
            backoff,
        },
    )
    .unwrap();
    assert_eq!(
        expired.not_before_ms,
        DEADLINE + 1 + backoff.delay_ms(&t.job_id, t.task_id, A)
    );
    assert!(
        expired.not_before_ms >= DEADLINE + 1 + 1_000,
        "attempt {A}: at least 1 s"
    );
}
