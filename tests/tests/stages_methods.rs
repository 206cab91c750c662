//! `distill` writes chat `messages` ([system, user, assistant]) with several samples per
//! instruction; `revise` runs draft → critique → revise rounds with the critic on another
//! backend, keeping the draft, the critiques and the round count.

mod stages_common;

use stages_common::*;
use synthforge_tests::*;

#[test]
fn distill_writes_chat_messages_per_sample() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let seed = dir.path().join("seed.jsonl");
    let rows: Vec<(String, String)> = (0..7)
        .map(|i| (seed_id(i), format!("Explain {}", seed_text(i))))
        .collect();
    let ids = write_rows(&seed, &rows);
    let out = dir.path().join("out");
    let pipeline = "  - stage: distill
    backend: teacher
    instruction_column: text
    system_prompt: You are a careful teacher.
    samples: 3
    max_tokens: 20
";
    let yaml = job_yaml(
        "distill-e2e",
        &seed,
        &out,
        pipeline,
        &backend("teacher", &mock, "mock-model"),
    );
    let output = run(dir.path(), "job.yaml", &yaml, &out);

    assert_every_sample_accounted(&output, 21);
    assert!(output.failures.is_empty());
    let msgs = messages(&output);
    for r in &output.rows {
        assert!(ids.contains(&r.seed_id));
        let i: usize = r.seed_id.trim_start_matches("seed-").parse().unwrap();
        let instruction = format!("Explain {}", seed_text(i));
        assert_eq!(r.prompt.as_deref(), Some(instruction.as_str()));
        let m = &msgs[&r.id];
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            m[0],
            (
                "system".to_string(),
                "You are a careful teacher.".to_string()
            )
        );
        assert_eq!(m[1], ("user".to_string(), instruction));
        assert_eq!(m[2].0, "assistant");
        assert_eq!(Some(m[2].1.as_str()), r.completion.as_deref());
    }
    for id in &ids {
        let n = output.rows.iter().filter(|r| &r.seed_id == id).count();
        assert_eq!(n, 3, "{id}: 3 samples");
    }
}

#[test]
fn revise_uses_the_critic_backend_and_keeps_critiques() {
    let dir = tempfile::tempdir().unwrap();
    let writer = MockBackend::start(&["--record"]);
    let critic = MockBackend::start(&["--record", "--models", "critic-model"]);
    let seed = dir.path().join("seed.jsonl");
    let rows: Vec<(String, String)> = (0..6).map(|i| (seed_id(i), seed_text(i))).collect();
    write_rows(&seed, &rows);
    let out = dir.path().join("out");
    let pipeline = "  - stage: revise
    backend: writer
    critic_backend: critic
    template: \"Teach me about {{ text }}\"
    rounds: 2
    max_tokens: 24
";
    let backends = format!(
        "{}{}",
        backend("writer", &writer, "mock-model"),
        backend("critic", &critic, "critic-model")
    );
    let yaml = job_yaml("revise-e2e", &seed, &out, pipeline, &backends);
    let output = run(dir.path(), "job.yaml", &yaml, &out);

    assert_every_sample_accounted(&output, 6);
    let critic_reqs = critic.requests().as_array().unwrap().len();
    let writer_reqs = writer.requests().as_array().unwrap().len();
    assert_eq!(critic_reqs, 6 * 2, "one critique per row and round");
    assert_eq!(
        writer_reqs,
        6 * (1 + 2),
        "a draft and one revision per round"
    );
    for text in received_texts(&critic) {
        assert!(text.contains("## Critique"), "{text}");
    }
    let msgs = messages(&output);
    for r in &output.rows {
        let crit: Vec<String> =
            serde_json::from_str(r.columns["critiques"].as_deref().unwrap()).unwrap();
        assert_eq!(crit.len(), 2);
        assert!(crit.iter().all(|c| !c.is_empty()));
        assert_eq!(r.columns["revision_rounds"].as_deref(), Some("2"));
        assert_eq!(r.columns["critic_model"].as_deref(), Some("critic-model"));
        assert_ne!(
            r.columns["draft"], r.completion,
            "the final answer is the revision"
        );
        assert_eq!(
            msgs[&r.id].last().unwrap().1.as_str(),
            r.completion.as_deref().unwrap()
        );
        // Five calls' tokens (draft, 2 critiques, 2 revisions), not only the draft's.
        assert!(
            r.prompt_tokens.unwrap()
                > 2 * r.prompt.as_deref().unwrap().split_whitespace().count() as i64
        );
    }
}

#[test]
fn revise_an_earlier_completion_then_judge_with_a_json_schema() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&["--record"]);
    let seed = dir.path().join("seed.jsonl");
    let rows: Vec<(String, String)> = (0..5).map(|i| (seed_id(i), seed_text(i))).collect();
    let ids = write_rows(&seed, &rows);
    let out = dir.path().join("out");
    // The judge uses its built-in prompt and asks for structured output; the mock fills the
    // schema with a random integer score in range, which the parser reads as JSON.
    let pipeline = "  - stage: generate
    backend: m
    template: \"Teach me about {{ text }}\"
    max_tokens: 24
  - stage: revise
    backend: m
    rounds: 1
    max_tokens: 24
  - stage: judge
    backend: m
    scale: \"1-10\"
    response_format:
      type: json_schema
      json_schema:
        name: verdict
        schema:
          type: object
          properties:
            score: {type: integer, minimum: 1, maximum: 10}
            rationale: {type: string}
          required: [score, rationale]
";
    let yaml = job_yaml(
        "revise-chain",
        &seed,
        &out,
        pipeline,
        &backend("m", &mock, "mock-model"),
    );
    let output = run(dir.path(), "job.yaml", &yaml, &out);

    assert_accounted(&ids, &output);
    assert!(output.failures.is_empty(), "{:?}", output.failures);
    let sent = received_texts(&mock);
    assert_eq!(
        sent.iter().filter(|t| t.contains("## Critique")).count(),
        5 * 2
    );
    assert_eq!(
        sent.iter()
            .filter(|t| t.contains("impartial judge"))
            .count(),
        5
    );
    for r in &output.rows {
        assert_eq!(
            r.stage.as_deref(),
            Some("generate"),
            "revise keeps the record's identity"
        );
        let draft = r.columns["draft"].as_deref().unwrap();
        assert!(
            sent.iter().any(|t| t.contains(draft)),
            "the critic saw the generated draft"
        );
        let score: f64 = r.columns["score"].as_deref().unwrap().parse().unwrap();
        assert!((1.0..=10.0).contains(&score));
        assert!(!r.columns["judge_rationale"].as_deref().unwrap().is_empty());
    }
}
