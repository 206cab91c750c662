//! Endpoint pools: a failing endpoint is ejected while the healthy one serves everything, it is
//! probed back in once it recovers, and load spreads over endpoints.

mod common;

use std::time::Duration;

use common::{backend, closed_port, drive, Mock};
use synthforge_mock_backend::MockArgs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_is_ejected_and_probed_back_in() {
    let good = Mock::start(Mock::args()).await;
    let port = closed_port();
    let bad_url = format!("http://127.0.0.1:{port}/v1");
    let b = backend(serde_json::json!({
        "urls": [bad_url, good.url()], "max_concurrency": 8, "max_attempts": 3,
    }));
    let (ok, errs) = drive(&b, 200, 8).await;
    assert_eq!(ok, 200, "{errs:?}");
    let snap = b.snapshot();
    let bad = &snap.endpoints[0];
    assert_eq!(bad.url, bad_url);
    assert!(bad.ejected, "{snap:?}");
    assert!(
        bad.errors_by_code.get(&0).copied().unwrap_or(0) >= 5,
        "{bad:?}"
    );
    assert_eq!(bad.requests_ok, 0);
    assert_eq!(snap.endpoints[1].requests_ok, 200);
    assert!(!snap.endpoints[1].ejected);

    // The endpoint comes back: half-open probes readmit it.
    let revived = Mock::start(MockArgs {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        ..Mock::args()
    })
    .await;
    let mut readmitted = false;
    for _ in 0..100 {
        let (ok, errs) = drive(&b, 20, 4).await;
        assert_eq!(ok, 20, "{errs:?}");
        let s = b.snapshot();
        if !s.endpoints[0].ejected && s.endpoints[0].requests_ok > 0 {
            readmitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(readmitted, "{:?}", b.snapshot());
    drop(revived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_answering_500_is_ejected_and_the_last_one_never() {
    let bad = Mock::start(MockArgs {
        rate_500: 1.0,
        ..Mock::args()
    })
    .await;
    let good = Mock::start(Mock::args()).await;
    let b = backend(serde_json::json!({
        "urls": [bad.url(), good.url()], "max_concurrency": "auto", "max_attempts": 3,
    }));
    let (ok, errs) = drive(&b, 300, 16).await;
    assert_eq!(ok, 300, "{errs:?}");
    let snap = b.snapshot();
    assert!(snap.endpoints[0].ejected, "{snap:?}");
    assert!(snap.endpoints[0].errors_by_code[&500] >= 5);
    assert!(!snap.endpoints[1].ejected);

    // A single endpoint failing everything stays in rotation: requests fail with a reason.
    let only = backend(serde_json::json!({"url": bad.url(), "max_attempts": 2}));
    let (ok, errs) = drive(&only, 12, 4).await;
    assert_eq!(ok, 0);
    assert_eq!(errs.len(), 12);
    assert!(errs.iter().all(|e| e.contains("HTTP 500")), "{errs:?}");
    assert!(!only.snapshot().endpoints[0].ejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spreads_over_endpoints_by_capacity() {
    let small = Mock::start(MockArgs {
        slots: 4,
        latency_ms: 20,
        ..Mock::args()
    })
    .await;
    let large = Mock::start(MockArgs {
        slots: 16,
        latency_ms: 20,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({
        "urls": [small.url(), large.url()], "max_concurrency": "auto",
    }));
    let (ok, errs) = drive(&b, 1500, 256).await;
    assert_eq!(ok, 1500, "{errs:?}");
    let snap = b.snapshot();
    let (s, l) = (snap.endpoints[0].requests_ok, snap.endpoints[1].requests_ok);
    assert_eq!(s + l, 1500);
    assert!(
        l > s,
        "the endpoint with 4x the slots serves more: {s} vs {l}"
    );
    assert!(snap.endpoints[1].latency_p50_ms >= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_check_skips_a_dead_endpoint_but_not_all() {
    let good = Mock::start(Mock::args()).await;
    let dead = format!("http://127.0.0.1:{}/v1", closed_port());
    let b = backend(serde_json::json!({"urls": [dead.clone(), good.url()]}));
    b.check_model().await.unwrap();
    let wrong = backend(serde_json::json!({"urls": [dead.clone(), good.url()], "model": "nope"}));
    let e = wrong.check_model().await.unwrap_err().to_string();
    assert!(e.contains("`nope` is not served"), "{e}");
    let none = backend(serde_json::json!({"url": dead}));
    let e = none.check_model().await.unwrap_err().to_string();
    assert!(e.contains("127.0.0.1"), "{e}");
}
