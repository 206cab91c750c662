//! Replies with fewer choices than asked. None at all is an error (retried like an undecodable
//! reply, then a failure row naming both counts); fewer than `n` is asked again once, one `n = 1`
//! request per missing sample, so a server that ignores `n` (llama.cpp) loses nothing; only what
//! is still missing after that is reported as a shortfall for the stage's failure rows.

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
    assert!(err.contains("returned 0 of 1 choices"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_n_is_asked_again_for_each_missing_sample() {
    let mock = Mock::start(MockArgs {
        ignore_n: true,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_attempts": 1}));
    let mut req = chat("tell me something");
    req.n = Some(4);
    req.seed = Some(42);
    let resp = b
        .generate(&req)
        .await
        .expect("a full reply after the top-up");
    assert_eq!(resp.choices.len(), 4);
    assert!(b.shortfall(&resp, 4).is_none());
    let mut texts: Vec<&str> = resp.choices.iter().map(|c| c.text.as_str()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 4, "top-ups are new samples, not repeats");
    assert_eq!(b.snapshot().retries, 0, "a top-up is not a retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_still_missing_after_the_top_up_is_a_named_shortfall() {
    // Every reply is one short: 3 of 4, and the `n = 1` top-up comes back empty.
    let mock = Mock::start(MockArgs {
        rate_short_n: 1.0,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_attempts": 2}));
    let mut req = chat("hi");
    req.n = Some(4);
    let resp = b.generate(&req).await.expect("three samples are kept");
    assert_eq!(resp.choices.len(), 3);
    let short = b
        .shortfall(&resp, 4)
        .expect("one sample missing")
        .to_string();
    assert!(short.contains("returned 3 of 4 choices"), "{short}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occasional_short_replies_are_made_whole() {
    let mock = Mock::start(MockArgs {
        rate_short_n: 0.3,
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
}
