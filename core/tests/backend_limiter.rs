//! Adaptive concurrency finds a mock GPU server's slot count without being told it; a fixed
//! limit is never exceeded.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{backend, drive, Mock};
use synthforge_mock_backend::MockArgs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_limit_settles_near_the_slot_count() {
    let mock = Mock::start(MockArgs {
        slots: 16,
        latency_ms: 50,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_concurrency": "auto"}));
    // Far more offered than the server can take: only the limiter bounds what is in flight.
    let width = b.concurrency_limit();
    assert!(
        width >= 256,
        "callers are told to offer enough work: {width}"
    );
    let (ok, errs) = drive(&b, 3000, width).await;
    assert_eq!(ok, 3000, "{errs:?}");
    let limit = b.current_limit();
    assert!(
        (12..=48).contains(&limit),
        "limit {limit} not near 16 slots"
    );
    let stats = mock.get("/stats").await;
    assert_eq!(stats["requests_by_status"]["200"], 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_limit_backs_off_on_429() {
    let mock = Mock::start(MockArgs {
        rate_429: 1.0,
        retry_after_s: 0,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({
        "url": mock.url(), "max_concurrency": "auto", "max_attempts": 1,
    }));
    let (ok, _) = drive(&b, 100, 64).await;
    assert_eq!(ok, 0);
    let limit = b.current_limit();
    assert!(limit < 8, "limit {limit} should fall below the initial 8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_limit_is_never_exceeded() {
    let mock = Mock::start(MockArgs {
        latency_ms: 5,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_concurrency": 4}));
    assert_eq!(b.concurrency_limit(), 4);
    let max_seen = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (b, max_seen, done) = (b.clone(), max_seen.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                max_seen.fetch_max(b.snapshot().in_flight, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let (ok, errs) = drive(&b, 400, 64).await;
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    assert_eq!(ok, 400, "{errs:?}");
    let m = max_seen.load(Ordering::Relaxed);
    assert!((1..=4).contains(&m), "in flight peaked at {m}");
    assert_eq!(b.current_limit(), 4);
}
