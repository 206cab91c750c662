//! generate → judge → filter in one job: low scores are removed with reason `judge`, short and
//! refusing answers by the filter, unparsable judge replies land in `failures/` quoting the
//! reply, and every sample is accounted for (output + failures + removed by reason).

mod stages_common;

use stages_common::*;
use synthforge_tests::*;

#[test]
fn judge_then_filter_accounts_for_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    // The judge template shows only the answer, so rules keyed on markers that generation puts
    // into answers reach the judge and not the generator.
    let rules = rules(
        dir.path(),
        serde_json::json!([
            {"contains": "JUDGE-LOW", "reply": "Score: 2/10. Vague and partly wrong."},
            {"contains": "JUDGE-GARBLE", "reply": "Hard to say; it has merits and flaws."},
            {"contains": "Rate this answer", "reply": "{\"score\": 8, \"rationale\": \"clear and correct\"}"},
            {"contains": "ROW-LOW", "reply": "A rambling answer that wanders about JUDGE-LOW without ever getting to the point at all."},
            {"contains": "ROW-GARBLE", "reply": "An answer with enough words in it to pass the length check JUDGE-GARBLE easily."},
            {"contains": "ROW-SHORT", "reply": "Too short."},
            {"contains": "ROW-REFUSE", "reply": "I'm sorry, but as an AI language model I cannot help with that request."}
        ]),
    );
    let mock = MockBackend::start(&["--reply-rules", rules.to_str().unwrap()]);
    let mut rows: Vec<(String, String)> = (0..10).map(|i| (seed_id(i), seed_text(i))).collect();
    for tag in ["ROW-LOW", "ROW-GARBLE", "ROW-SHORT", "ROW-REFUSE"] {
        rows.push((tag.to_lowercase(), format!("Question {tag}")));
    }
    let seed = dir.path().join("seed.jsonl");
    write_rows(&seed, &rows);
    let out = dir.path().join("out");
    let pipeline = "  - stage: generate
    backend: gen
    template: \"Answer: {{ text }}\"
    samples: 2
    max_tokens: 40
  - stage: judge
    backend: judge
    template: \"Rate this answer from 1 to 10: {{ completion }}\"
    scale: \"1-10\"
    threshold: 5
  - stage: filter
    min_words: 5
    max_dup_ngram_ratio: 0.5
    refusal: true
";
    let backends = format!(
        "{}{}",
        backend("gen", &mock, "mock-model"),
        backend("judge", &mock, "mock-model")
    );
    let yaml = job_yaml("judge-e2e", &seed, &out, pipeline, &backends);
    // One garbled row of 14 fails by design, above the default failure budget (1%).
    let yaml = yaml + "scheduling:\n  max_failed_fraction: 0.2\n";
    let output = run(dir.path(), "job.yaml", &yaml, &out);

    // 14 rows × 2 samples.
    assert_every_sample_accounted(&output, 28);
    let removed = removed(&out);
    assert_eq!(removed.get("judge"), Some(&2), "{removed:?}");
    assert_eq!(removed.get("filter:length"), Some(&2), "{removed:?}");
    assert_eq!(removed.get("filter:refusal"), Some(&2), "{removed:?}");
    assert_eq!(output.failures.len(), 2, "{:?}", output.failures);
    for f in &output.failures {
        assert_eq!(f.seed_id.as_deref(), Some("row-garble"));
        assert_eq!(f.stage.as_deref(), Some("judge"));
        assert!(
            f.error.contains("Hard to say; it has merits and flaws."),
            "the failure must quote the reply: {}",
            f.error
        );
    }
    assert_eq!(output.rows.len(), 20);
    for r in &output.rows {
        assert!(
            r.seed_id.starts_with("seed-"),
            "{} should have been removed",
            r.seed_id
        );
        assert_eq!(r.columns["score"].as_deref(), Some("8"));
        assert_eq!(
            r.columns["judge_rationale"].as_deref(),
            Some("clear and correct")
        );
        assert_eq!(r.columns["judge_model"].as_deref(), Some("mock-model"));
    }
    // The judge's tokens are part of each record's totals: more than generation alone.
    let gen_only: i64 = output
        .rows
        .iter()
        .map(|r| r.completion_tokens.unwrap())
        .sum();
    assert!(gen_only > 0);
    let m = manifest_json(&out);
    assert!(m["prompt_tokens"].as_u64().unwrap() > 0);
}
