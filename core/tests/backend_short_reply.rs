//! A 200 reply with fewer choices than the request's `n` (none at all, or one short) is an
//! error naming both counts, retried like an undecodable reply, never a shorter response.

mod common;

use common::{backend, chat, Mock};
use synthforge_mock_backend::MockArgs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_choices_are_an_error_not_an_empty_response() {
    let mock = Mock::start(MockArgs {
        rate_empty_choices: 1.0,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_attempts": 2}));
    let err = b.generate(&chat("hi")).await.unwrap_err().to_string();
    assert!(err.contains("gave up after 2 attempts"), "{err}");
    assert!(err.contains("reply has 0 choice(s), 1 asked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_choices_than_n_are_an_error() {
    let mock = Mock::start(MockArgs {
        rate_short_n: 1.0,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_attempts": 1}));
    let mut req = chat("hi");
    req.n = Some(4);
    let err = b.generate(&req).await.unwrap_err().to_string();
    assert!(err.contains("reply has 3 choice(s), 4 asked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_reply_is_retried_until_a_full_one() {
    let mock = Mock::start(MockArgs {
        rate_short_n: 0.5,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_attempts": 30}));
    for _ in 0..20 {
        let mut req = chat("hi");
        req.n = Some(3);
        let resp = b.generate(&req).await.expect("a full reply comes");
        assert_eq!(resp.choices.len(), 3);
    }
    assert!(b.snapshot().retries > 0, "no short reply was drawn");
}
