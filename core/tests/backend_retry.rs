//! Retries: `Retry-After` is honoured, attempts are capped, transient faults are ridden out,
//! per-request timeouts fire, and per-minute budgets pace requests. Lower time bounds only.

mod common;

use std::time::{Duration, Instant};

use common::{backend, chat, drive, Mock};
use synthforge_mock_backend::MockArgs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_attempts_capped() {
    let mock = Mock::start(MockArgs {
        rate_429: 1.0,
        retry_after_s: 1,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_attempts": 3}));
    let t0 = Instant::now();
    let err = b.generate(&chat("hi")).await.unwrap_err().to_string();
    let took = t0.elapsed();
    assert!(err.contains("gave up after 3 attempts"), "{err}");
    assert!(err.contains("429"), "{err}");
    // Two retries, each at least the server's Retry-After of 1 s later.
    assert!(
        took >= Duration::from_secs(2),
        "retries came too soon: {took:?}"
    );
    let stats = mock.get("/stats").await;
    assert_eq!(stats["requests_by_status"]["429"], 3, "{stats}");
    let snap = b.snapshot();
    assert_eq!(snap.retries, 2);
    assert_eq!(snap.endpoints[0].errors_by_code.get(&429), Some(&3));
    assert!(!snap.endpoints[0].ejected, "429 is load, not ill health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_until_success() {
    let mock = Mock::start(MockArgs {
        rate_500: 0.3,
        rate_429: 0.1,
        retry_after_s: 0,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_attempts": 12}));
    let (ok, errs) = drive(&b, 200, 16).await;
    assert_eq!(ok, 200, "{errs:?}");
    let snap = b.snapshot();
    assert!(snap.retries > 0);
    let stats = mock.get("/stats").await;
    let served = stats["requests_by_status"]["200"].as_u64().unwrap();
    assert_eq!(served, 200);
    assert_eq!(
        stats["requests_total"].as_u64().unwrap(),
        200 + snap.retries,
        "every retry reached the server once: {stats}"
    );
    // Usage is counted from the responses' `usage`.
    assert_eq!(
        snap.completion_tokens,
        stats["completion_tokens_total"].as_u64().unwrap()
    );
    assert!(snap.prompt_tokens > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_request_times_out_with_a_reason() {
    let mock = Mock::start(MockArgs {
        rate_hang: 1.0,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "timeout_s": 0.2, "max_attempts": 2}));
    let t0 = Instant::now();
    let err = b.generate(&chat("hi")).await.unwrap_err().to_string();
    assert!(t0.elapsed() >= Duration::from_millis(400));
    assert!(err.contains("gave up after 2 attempts"), "{err}");
    assert!(err.to_lowercase().contains("timed out"), "{err}");
    assert_eq!(b.snapshot().endpoints[0].errors_by_code.get(&0), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_budget_paces_requests() {
    let mock = Mock::start(Mock::args()).await;
    // 120/min = 2/s with a burst of 20: 26 requests need at least 3 s.
    let b = backend(serde_json::json!({"url": mock.url(), "requests_per_minute": 120}));
    let t0 = Instant::now();
    let (ok, errs) = drive(&b, 26, 26).await;
    assert_eq!(ok, 26, "{errs:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_minute_budget_paces_requests() {
    let mock = Mock::start(Mock::args()).await;
    // 6000 tokens/min = 100/s, burst 1000; each request is charged ~ 3 + 8 tokens up front and
    // then its real usage. 150 requests of ~20 tokens need well over a second.
    let b = backend(serde_json::json!({"url": mock.url(), "tokens_per_minute": 6000}));
    let t0 = Instant::now();
    let (ok, errs) = drive(&b, 150, 32).await;
    assert_eq!(ok, 150, "{errs:?}");
    let used = b.snapshot().prompt_tokens + b.snapshot().completion_tokens;
    let min_secs = (used.saturating_sub(1000)) as f64 / 100.0;
    assert!(
        min_secs > 0.5,
        "test needs more tokens than the burst: {used}"
    );
    assert!(
        t0.elapsed().as_secs_f64() >= min_secs * 0.9,
        "{used} tokens in {:?}",
        t0.elapsed()
    );
}
