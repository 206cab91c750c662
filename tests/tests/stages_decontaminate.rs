//! `decontaminate`: generated samples that quote a benchmark passage (after case and
//! punctuation changes) are removed with reason `decontaminate`, for a JSONL benchmark and a
//! plain-text one; a sample sharing fewer words than the n-gram size is kept.

mod stages_common;

use stages_common::*;
use synthforge_tests::*;

const BENCH_A: &str = "The mitochondrion is the organelle in which cellular respiration releases energy stored in glucose as ATP.";
const BENCH_B: &str = "A prime number is a natural number greater than one that has no positive divisors other than one and itself.";
const BENCH_TXT: &str = "In 1969 the Apollo 11 mission landed two astronauts on the Moon while a third remained in lunar orbit.";

#[test]
fn planted_benchmark_passages_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("bench.jsonl");
    std::fs::write(
        &jsonl,
        format!(
            "{}\n{}\n",
            serde_json::json!({"question": BENCH_A}),
            serde_json::json!({"question": BENCH_B})
        ),
    )
    .unwrap();
    let txt = dir.path().join("bench.txt");
    std::fs::write(&txt, format!("{BENCH_TXT}\n")).unwrap();
    let nine_words: String = BENCH_B.split(' ').take(9).collect::<Vec<_>>().join(" ");
    let rules = rules(
        dir.path(),
        serde_json::json!([
            {"contains": "PLANT-A", "reply": format!("Recall: {}!! That is all.", BENCH_A.to_uppercase().replace(' ', "  "))},
            {"contains": "PLANT-B", "reply": format!("As we know, {}", BENCH_B.replace(',', ";"))},
            {"contains": "PLANT-TXT", "reply": format!("History lesson. {BENCH_TXT}")},
            {"contains": "NEAR-MISS", "reply": format!("{nine_words} -- and then something else entirely.")}
        ]),
    );
    let mock = MockBackend::start(&["--reply-rules", rules.to_str().unwrap()]);
    let mut rows: Vec<(String, String)> = (0..12)
        .map(|i| (format!("clean-{i}"), format!("{} (part {i})", seed_text(i))))
        .collect();
    for tag in ["PLANT-A", "PLANT-B", "PLANT-TXT", "NEAR-MISS"] {
        rows.push((tag.to_lowercase(), format!("Lesson {tag}")));
    }
    let seed = dir.path().join("seed.jsonl");
    let ids = write_rows(&seed, &rows);
    let out = dir.path().join("out");
    let pipeline = format!(
        "  - stage: generate\n    backend: m\n    template: \"Write about {{{{ text }}}}\"\n    max_tokens: 60\n\
         \x20 - stage: decontaminate\n    benchmark: {jsonl:?}\n    benchmark_field: question\n    ngram: 10\n\
         \x20 - stage: decontaminate\n    benchmark: {txt:?}\n"
    );
    let yaml = job_yaml(
        "decon-e2e",
        &seed,
        &out,
        &pipeline,
        &backend("m", &mock, "mock-model"),
    );
    let output = run(dir.path(), "job.yaml", &yaml, &out);

    assert_every_sample_accounted(&output, ids.len() as u64);
    assert_eq!(
        removed(&out).get("decontaminate"),
        Some(&3),
        "{:?}",
        removed(&out)
    );
    let mut kept: Vec<&str> = output.rows.iter().map(|r| r.seed_id.as_str()).collect();
    kept.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("clean-{i}")).collect();
    expected.push("near-miss".into());
    expected.sort();
    assert_eq!(kept, expected);
    assert!(output.failures.is_empty(), "{:?}", output.failures);
}

#[test]
fn missing_benchmark_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&[]);
    let seed = dir.path().join("seed.jsonl");
    write_rows(&seed, &[("a".into(), "text".into())]);
    let out = dir.path().join("out");
    let pipeline = "  - stage: generate\n    backend: m\n    template: \"{{ text }}\"\n  - stage: decontaminate\n    benchmark: /nonexistent/bench.jsonl\n";
    let yaml = job_yaml(
        "decon-missing",
        &seed,
        &out,
        pipeline,
        &backend("m", &mock, "mock-model"),
    );
    let job = dir.path().join("job.yaml");
    std::fs::write(&job, yaml).unwrap();
    let done = synthforge(["run"])
        .arg(&job)
        .args(["--no-progress", "--state-dir"])
        .arg(dir.path().join("state"))
        .run_to_end(RUN_TIMEOUT);
    let text = done.combined();
    assert!(
        text.contains("/nonexistent/bench.jsonl"),
        "the error must name the benchmark file:\n{text}"
    );
}
