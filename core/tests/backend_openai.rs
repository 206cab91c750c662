//! OpenAI-compatible requests against the mock: chat and completions bodies carry `n`, `stop`,
//! `seed` and `response_format`; responses are parsed per sample; unknown models fail clearly.

mod common;

use common::{backend, chat, Mock};
use synthforge_core::backend::{BackendError, GenRequest};
use synthforge_mock_backend::MockArgs;

fn schema_format() -> serde_json::Value {
    serde_json::json!({
        "type": "json_schema",
        "json_schema": {"name": "qa", "schema": {
            "type": "object",
            "properties": {"question": {"type": "string"}, "score": {"type": "integer"}},
            "required": ["question", "score"]
        }}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_body_and_samples() {
    let mock = Mock::start(MockArgs {
        record: true,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "temperature": 0.7, "max_tokens": 16}));
    let req = GenRequest {
        n: Some(3),
        stop: Some(vec!["\n\n".into()]),
        seed: Some(42),
        response_format: Some(schema_format()),
        ..chat("Write a question.")
    };
    let resp = b.generate(&req).await.unwrap();
    assert_eq!(resp.choices.len(), 3);
    for c in &resp.choices {
        let v: serde_json::Value = serde_json::from_str(&c.text)
            .unwrap_or_else(|e| panic!("structured output is JSON ({e}): {}", c.text));
        assert!(v["question"].is_string() && v["score"].is_i64(), "{v}");
    }
    assert_eq!(resp.attempts, 1);
    assert!(resp.completion_tokens > 0 && resp.prompt_tokens > 0);
    let again = b.generate(&req).await.unwrap();
    assert_eq!(again.choices, resp.choices, "same seed, same samples");

    let sent = mock.get("/requests").await;
    let body = &sent[0];
    assert_eq!(body["model"], "mock-model");
    assert_eq!(body["n"], 3);
    assert_eq!(body["stop"], serde_json::json!(["\n\n"]));
    assert_eq!(body["seed"], 42);
    assert_eq!(
        body["max_tokens"], 8,
        "request overrides the backend default"
    );
    assert!((body["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert_eq!(body["response_format"], schema_format());
    assert_eq!(body["messages"][0]["role"], "user");
    assert_eq!(body["messages"][0]["content"], "Write a question.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_api_and_stop() {
    let mock = Mock::start(MockArgs {
        record: true,
        ..Mock::args()
    })
    .await;
    let b = backend(serde_json::json!({"url": mock.url(), "api": "completions"}));
    let req = GenRequest {
        prompt: Some("Once upon a time".into()),
        max_tokens: Some(32),
        ..GenRequest::default()
    };
    let resp = b.generate(&req).await.unwrap();
    assert_eq!(resp.choices.len(), 1);
    assert!(!resp.choices[0].text.is_empty());
    assert_eq!(resp.model, "mock-model");
    let sent = mock.get("/requests").await;
    assert_eq!(sent[0]["prompt"], "Once upon a time");
    assert!(sent[0].get("messages").is_none());
    assert!(sent[0].get("n").is_none(), "n=1 is not sent");

    // A stop sequence taken from the unconstrained text cuts the reply before it.
    let words: Vec<&str> = resp.choices[0].text.split_whitespace().collect();
    assert!(words.len() > 4, "{words:?}");
    let stop = words[3].to_string();
    let cut = b
        .generate(&GenRequest {
            stop: Some(vec![stop.clone()]),
            ..req.clone()
        })
        .await
        .unwrap();
    assert!(!cut.choices[0].text.contains(&stop), "{cut:?}");
    assert_eq!(cut.choices[0].finish_reason, "stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_a_clear_error() {
    let mock = Mock::start(MockArgs {
        models: vec!["llama-3-8b".into(), "qwen-2".into()],
        ..Mock::args()
    })
    .await;
    let ok = backend(serde_json::json!({"url": mock.url(), "model": "qwen-2"}));
    ok.check_model().await.unwrap();
    let bad = backend(serde_json::json!({"url": mock.url(), "model": "gpt-5"}));
    let err = bad.check_model().await.unwrap_err();
    assert!(matches!(err, BackendError::UnknownModel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("`gpt-5`") && msg.contains("llama-3-8b, qwen-2"),
        "{msg}"
    );
    // Sent anyway, the request fails at once (404 is not retried).
    let e = bad.generate(&chat("x")).await.unwrap_err().to_string();
    assert!(e.contains("HTTP 404"), "{e}");
    assert_eq!(bad.snapshot().retries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_never_shown() {
    let mock = Mock::start(Mock::args()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "sk-secret-123\n").unwrap();
    let credentials = synthforge_core::backend::Credentials::load(
        &[format!("k=file:{}", key_file.display()).parse().unwrap()],
        None,
    )
    .unwrap();
    let spec: synthforge_core::spec::BackendSpec = serde_json::from_value(
        serde_json::json!({"url": mock.url(), "model": "mock-model", "credential": "k"}),
    )
    .unwrap();
    let b =
        synthforge_core::backend::Backend::with_credentials("test", &spec, &credentials).unwrap();
    b.generate(&chat("x")).await.unwrap();
    let shown = format!("{b:?} {:?}", b.snapshot());
    assert!(!shown.contains("sk-secret-123"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_prompt_is_refused_without_a_request() {
    let mock = Mock::start(Mock::args()).await;
    let b = backend(serde_json::json!({"url": mock.url(), "max_prompt_tokens": 100}));
    let e = b.generate(&chat(&"x".repeat(4000))).await.unwrap_err();
    assert!(
        matches!(
            e,
            synthforge_core::backend::BackendError::PromptTooLarge { cap: 100, .. }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("max_prompt_tokens"), "{e}");
    let shown = b.snapshot();
    assert_eq!(
        shown.endpoints.iter().map(|e| e.requests_ok).sum::<u64>(),
        0
    );
    b.generate(&chat(&"x".repeat(300))).await.unwrap();
}
