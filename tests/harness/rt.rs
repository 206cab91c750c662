//! Running async code from blocking tests.
//!
//! reqwest and object_store are async. Creating a runtime on the caller's thread would panic when
//! the caller is itself inside a Tokio runtime (e.g. a `#[tokio::test]`), so each call runs on a
//! fresh current-thread runtime in a scoped thread. The cost (well under a millisecond) does not
//! matter next to process start-up times.

use std::future::Future;

/// Runs the future built by `make` to completion and returns its output.
pub fn block_on<F, Fut, T>(make: F) -> T
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build tokio runtime")
                .block_on(make())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
