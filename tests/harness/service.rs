//! Starting a server process and waiting until it serves.
//!
//! Ports are chosen before the server binds them, so another test process can, rarely, take one
//! in between. A server that dies during start-up is therefore started again on fresh ports
//! (chosen by `launch`) instead of failing the test.

use std::time::{Duration, Instant};

use crate::process::Proc;

/// Start attempts before giving up on a server that keeps dying during start-up.
const ATTEMPTS: usize = 3;

/// Calls `launch` to spawn the server (returning it and whatever `ready` needs, typically its
/// ports) and polls `ready` until it returns `Ok`. Panics with the last readiness error and the
/// log tail if the server is not ready within `timeout`, or dies [`ATTEMPTS`] times.
#[track_caller]
pub(crate) fn start_server<T>(
    what: &str,
    timeout: Duration,
    mut launch: impl FnMut() -> (Proc, T),
    ready: impl Fn(&T) -> anyhow::Result<()>,
) -> (Proc, T) {
    for attempt in 1..=ATTEMPTS {
        let (mut proc, ctx) = launch();
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let last_error = match ready(&ctx) {
                Ok(()) => return (proc, ctx),
                Err(e) => e,
            };
            if let Some(status) = proc.try_wait() {
                eprintln!(
                    "{what} exited during start-up (attempt {attempt}/{ATTEMPTS}, {status}); \
                     retrying on new ports\n{}",
                    proc.log_tail(20)
                );
                break;
            }
            if started.elapsed() > timeout {
                // `proc` prints its log tail when dropped during the unwind.
                panic!("{what} not ready after {timeout:?}; last check: {last_error:#}");
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
    panic!("{what} died during start-up {ATTEMPTS} times; see the logs above");
}
