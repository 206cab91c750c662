//! Polling with a deadline: end-to-end tests observe other processes, so they wait for a
//! condition instead of sleeping a guessed amount.

use std::time::{Duration, Instant};

/// Polls `cond` until it returns true (→ `true`) or `timeout` passes (→ `false`).
/// Starts polling fast (5 ms) and backs off to 200 ms so short waits stay short.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Like [`wait_until`] but panics with `what` when the condition is not met in time.
#[track_caller]
pub fn wait_or_panic(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    if !wait_until(timeout, cond) {
        panic!("timed out after {timeout:?} waiting for {what}");
    }
}
