//! End-to-end tests of the mock backend over real sockets on 127.0.0.1.
//! Timing assertions are lower bounds only: the machine is noisy.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use synthforge_mock_backend::{spawn, MockArgs};

struct Server {
    base: String,
    client: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(args: MockArgs) -> Self {
        let args = MockArgs {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..args
        };
        let (addr, task) = spawn(args).await.expect("mock starts");
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            task,
        }
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    async fn chat(&self, body: Value) -> Value {
        let r = self.post("/v1/chat/completions", body).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }
}

fn user(text: &str) -> Value {
    json!({"model": "mock-model", "messages": [{"role": "user", "content": text}]})
}

fn content(resp: &Value, i: usize) -> &str {
    resp["choices"][i]["message"]["content"].as_str().unwrap()
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

#[tokio::test]
async fn text_is_deterministic_and_prompt_dependent() {
    let s = Server::start(MockArgs::default()).await;
    let a = s.chat(user("Tell me about rivers.")).await;
    let b = s.chat(user("Tell me about rivers.")).await;
    let c = s.chat(user("Tell me about mountains.")).await;
    assert_eq!(content(&a, 0), content(&b, 0));
    assert_ne!(content(&a, 0), content(&c, 0));
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["model"], "mock-model");
    assert_eq!(a["choices"][0]["message"]["role"], "assistant");
    assert!(a["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_ne!(a["id"], b["id"], "ids are unique per response");

    let mut seeded = user("Tell me about rivers.");
    seeded["seed"] = json!(7);
    let d = s.chat(seeded.clone()).await;
    assert_ne!(content(&a, 0), content(&d, 0), "request seed changes text");
    assert_eq!(content(&d, 0), content(&s.chat(seeded).await, 0));

    // A fresh server with the same --seed says the same thing.
    let s2 = Server::start(MockArgs::default()).await;
    assert_eq!(
        content(&a, 0),
        content(&s2.chat(user("Tell me about rivers.")).await, 0)
    );
}

#[tokio::test]
async fn n_samples_are_distinct_and_usage_adds_up() {
    let s = Server::start(MockArgs::default()).await;
    let mut body = json!({
        "model": "mock-model",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Write three short facts about bees."}
        ],
        "n": 4,
        "max_tokens": 30
    });
    let r = s.chat(body.clone()).await;
    let choices = r["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    let texts: std::collections::HashSet<&str> = (0..4).map(|i| content(&r, i)).collect();
    assert_eq!(texts.len(), 4, "samples must differ");
    let mut completion = 0;
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        let t = c["message"]["content"].as_str().unwrap();
        let w = words(t);
        assert!((15..=30).contains(&w), "{w} words");
        let expected = if w == 30 { "length" } else { "stop" };
        assert_eq!(c["finish_reason"], expected);
        completion += w;
    }
    assert_eq!(r["usage"]["prompt_tokens"], 3 + 6);
    assert_eq!(r["usage"]["completion_tokens"], completion);
    assert_eq!(r["usage"]["total_tokens"], 9 + completion);

    // max_completion_tokens wins over max_tokens; default comes from the flag.
    body["n"] = json!(1);
    body["max_completion_tokens"] = json!(4);
    let r = s.chat(body).await;
    assert!(words(content(&r, 0)) <= 4);

    let stats = s.get("/stats").await;
    assert_eq!(stats["requests_total"], 2);
    assert_eq!(stats["requests_by_status"]["200"], 2);
    assert_eq!(stats["prompt_tokens_total"], 18);
    assert!(stats["utilization"].is_null(), "unlimited slots");
}

#[tokio::test]
async fn completions_endpoint() {
    let s = Server::start(MockArgs {
        max_tokens_default: 10,
        ..MockArgs::default()
    })
    .await;
    let r = s
        .post(
            "/v1/completions",
            json!({"model": "mock-model", "prompt": "Once upon a time", "n": 2}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "text_completion");
    let t0 = v["choices"][0]["text"].as_str().unwrap();
    let t1 = v["choices"][1]["text"].as_str().unwrap();
    assert_ne!(t0, t1);
    assert!(words(t0) <= 10 && words(t0) >= 5);
    assert_eq!(v["usage"]["prompt_tokens"], 4);
    assert_eq!(v["usage"]["completion_tokens"], words(t0) + words(t1));

    let r = s
        .post(
            "/v1/completions",
            json!({"model": "mock-model", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn unknown_model_is_404_openai_style() {
    let s = Server::start(MockArgs {
        models: vec!["a".into(), "b".into()],
        ..MockArgs::default()
    })
    .await;
    let r = s
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error": {"message": "The model `gpt-9` does not exist.",
                         "type": "NotFoundError", "param": "model", "code": 404}})
    );
    let mut ok = user("hi");
    ok["model"] = json!("b");
    assert_eq!(s.chat(ok).await["model"], "b");

    let models = s.get("/v1/models").await;
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(models["data"][0]["owned_by"], "synthforge-mock");
    assert_eq!(s.get("/stats").await["requests_by_status"]["404"], 1);

    let health = s
        .client
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let bad = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["code"], 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_queue_requests_and_report_utilization() {
    let s = Server::start(MockArgs {
        slots: 2,
        latency_ms: 100,
        ..MockArgs::default()
    })
    .await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let client = s.client.clone();
        let url = format!("{}/v1/chat/completions", s.base);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = client
                .post(url)
                .json(&user(&format!("request {i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            t.elapsed()
        }));
    }
    // While they run, the queue must be visible.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let mid = s.get("/stats").await;
    assert_eq!(mid["slots"], 2);
    assert!(mid["busy_slots"].as_u64().unwrap() <= 2);

    let mut latencies = Vec::new();
    for t in tasks {
        latencies.push(t.await.unwrap());
    }
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(195), "took {total:?}");
    latencies.sort();
    assert!(latencies[0] >= Duration::from_millis(95));
    assert!(
        latencies[3] >= Duration::from_millis(195),
        "the last request waited for a slot: {latencies:?}"
    );

    let stats = s.get("/stats").await;
    assert_eq!(stats["requests_by_status"]["200"], 4);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["queued"], 0);
    let busy = stats["busy_slot_ms_total"].as_f64().unwrap();
    assert!(busy >= 395.0, "busy {busy}");
    let u = stats["utilization"].as_f64().unwrap();
    assert!(u > 0.0 && u <= 1.0, "utilization {u}");

    let reset: Value = s
        .post("/stats/reset", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reset["requests_total"], 0);
    assert_eq!(reset["busy_slot_ms_total"], 0.0);
}

#[tokio::test]
async fn injected_429_and_500() {
    let s = Server::start(MockArgs {
        rate_429: 1.0,
        retry_after_s: 3,
        ..MockArgs::default()
    })
    .await;
    let r = s.post("/v1/chat/completions", user("hi")).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "3");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["type"], "RateLimitError");
    assert_eq!(s.get("/stats").await["requests_by_status"]["429"], 1);

    let s = Server::start(MockArgs {
        rate_500: 1.0,
        ..MockArgs::default()
    })
    .await;
    let r = s.post("/v1/chat/completions", user("hi")).await;
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], 500);
}

#[tokio::test]
async fn hung_requests_never_answer_and_hold_no_slot() {
    let s = Server::start(MockArgs {
        rate_hang: 1.0,
        slots: 1,
        ..MockArgs::default()
    })
    .await;
    let r = s
        .client
        .post(format!("{}/v1/chat/completions", s.base))
        .json(&user("hi"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    let stats = s.get("/stats").await;
    assert_eq!(stats["hung_total"], 1);
    assert_eq!(stats["busy_slots"], 0);
}

#[tokio::test]
async fn reply_rules_script_answers() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(
        &mut file,
        br#"[{"contains": "Rate the answer", "reply": "Score: {hash}"},
            {"contains": "yes or no", "reply": "yes"}]"#,
    )
    .unwrap();
    let s = Server::start(MockArgs {
        reply_rules: Some(file.path().to_path_buf()),
        ..MockArgs::default()
    })
    .await;
    let mut scores = std::collections::HashSet::new();
    for i in 0..30 {
        let r = s
            .chat(user(&format!("Rate the answer {i} from 0 to 9.")))
            .await;
        let c = content(&r, 0).to_string();
        let digit = c.strip_prefix("Score: ").expect("rule reply");
        assert!(digit.len() == 1 && digit.chars().all(|c| c.is_ascii_digit()));
        scores.insert(c);
    }
    assert!(scores.len() > 3, "scores vary: {scores:?}");
    // Only the last user message is matched; same prompt, same digit.
    let a = s.chat(user("Rate the answer 1 from 0 to 9.")).await;
    let b = s.chat(user("Rate the answer 1 from 0 to 9.")).await;
    assert_eq!(content(&a, 0), content(&b, 0));
    let r = s
        .chat(json!({"model": "mock-model", "messages": [
            {"role": "user", "content": "yes or no?"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "something else"}]}))
        .await;
    assert_ne!(content(&r, 0), "yes");
    let r = s
        .post(
            "/v1/completions",
            json!({"model": "mock-model", "prompt": "Answer yes or no: is it?"}),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["text"], "yes");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 1);

    // A missing rules file is a startup error.
    let err = spawn(MockArgs {
        addr: "127.0.0.1:0".parse().unwrap(),
        reply_rules: Some("/nonexistent/rules.json".into()),
        ..MockArgs::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("reply rules"), "{err}");
}

#[tokio::test]
async fn stop_sequences_truncate() {
    let s = Server::start(MockArgs::default()).await;
    let mut body = user("A prompt for stop tests.");
    body["max_tokens"] = json!(60);
    let full = content(&s.chat(body.clone()).await, 0).to_string();
    let stop_word = full.split_whitespace().nth(10).unwrap().to_string();
    let at = full.find(&stop_word).unwrap();

    body["stop"] = json!([stop_word, "zzz-never"]);
    let r = s.chat(body.clone()).await;
    assert_eq!(content(&r, 0), &full[..at]);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["completion_tokens"], words(&full[..at]));

    body["stop"] = json!(stop_word);
    assert_eq!(content(&s.chat(body).await, 0), &full[..at]);
}

#[tokio::test]
async fn json_response_formats_parse() {
    let s = Server::start(MockArgs::default()).await;
    let mut body = user("Give me JSON.");
    body["response_format"] = json!({"type": "json_object"});
    let r = s.chat(body.clone()).await;
    let v: Value = serde_json::from_str(content(&r, 0)).expect("valid JSON");
    assert!(v.is_object());

    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "qa", "schema": {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "answer": {"type": "string"},
            "difficulty": {"type": "integer", "minimum": 1, "maximum": 3},
            "confidence": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "valid": {"type": "boolean"}
        },
        "required": ["question", "answer"]
    }}});
    body["n"] = json!(3);
    let r = s.chat(body).await;
    for i in 0..3 {
        let v: Value = serde_json::from_str(content(&r, i)).expect("valid JSON");
        assert!(v["question"].is_string() && v["answer"].is_string());
        assert!((1..=3).contains(&v["difficulty"].as_i64().unwrap()));
        assert!(v["confidence"].is_number());
        assert!(v["tags"].is_array());
        assert!(v["valid"].is_boolean());
        assert_eq!(r["choices"][i]["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn record_keeps_request_bodies() {
    let s = Server::start(MockArgs {
        record: true,
        rate_429: 1.0,
        ..MockArgs::default()
    })
    .await;
    s.post("/v1/chat/completions", user("first")).await;
    s.post(
        "/v1/completions",
        json!({"model": "mock-model", "prompt": "second"}),
    )
    .await;
    let rec = s.get("/requests").await;
    let rec = rec.as_array().unwrap();
    assert_eq!(rec.len(), 2, "rejected requests are recorded too");
    assert_eq!(rec[0]["messages"][0]["content"], "first");
    assert_eq!(rec[1]["prompt"], "second");
    let r = s
        .client
        .delete(format!("{}/requests", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.get("/requests").await, json!([]));

    let plain = Server::start(MockArgs::default()).await;
    let r = plain
        .client
        .get(format!("{}/requests", plain.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
