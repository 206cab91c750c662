//! `taxonomy_qa` over the real InstructLab taxonomy fixtures (tests/fixtures/taxonomy, format
//! v3, copied from instructlab/taxonomy): every qna.yaml parses into a seed row, knowledge
//! prompts carry their context passage (grounding), skill prompts carry the seed examples,
//! replies are parsed into one row per Q&A pair, and an unparsable reply lands in failures
//! with the reply. Documents come from a local folder, never from git.

use std::path::{Path, PathBuf};

use synthforge_tests::*;

const KNOWLEDGE: &str = "knowledge/science/animals/birds/black_capped_chickadee";
const CAUSAL: &str = "foundational_skills/reasoning/logical_reasoning/causal";
const SKILLS: [&str; 3] = [
    "compositional_skills/grounded/linguistics/writing/rewriting",
    "compositional_skills/linguistics/synonyms",
    "foundational_skills/reasoning/common_sense_reasoning",
];
const UNPARSABLE: &str = "I am unable to produce examples right now.";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/taxonomy")
}

/// Knowledge prompts get a JSON list of 2 pairs, skill prompts 2 `Q:`/`A:` blocks (with a
/// `Context:` line for the grounded skill, whose prompt asks for one), and the
/// causal-reasoning leaf a reply without any pair.
fn write_rules(dir: &Path) -> PathBuf {
    let rules = serde_json::json!([
        {"contains": "causal relationships", "reply": UNPARSABLE},
        {"contains": "<context>", "reply": "Here you go:\n```json\n[{\"question\": \"Which family does the bird belong to?\", \"answer\": \"It is a member of the Paridae family.\"}, {\"question\": \"What does it eat?\", \"answer\": \"Insects and seeds.\"}]\n```"},
        {"contains": "the text the question is about", "reply": "1. Context: The cat sat on the mat.\nQ: Rewrite: The cat sat on the mat.\nA: A cat was sitting on the mat.\n\n2. Context: The quick fox ran.\nQ: Give a synonym for quick.\nA: Fast."},
        {"contains": "teaches this skill", "reply": "1. Q: Rewrite: The cat sat on the mat.\nA: A cat was sitting on the mat.\n\n2. Q: Give a synonym for quick.\nA: Fast."}
    ]);
    let p = dir.join("rules.json");
    std::fs::write(&p, rules.to_string()).unwrap();
    p
}

fn job_yaml(input: &Path, url: &str, out: &Path, document_dir: Option<&Path>) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let docs = document_dir
        .map(|d| format!("    document_dir: {}\n", q(d.to_str().unwrap())))
        .unwrap_or_default();
    format!(
        "name: taxonomy-e2e
seed: 3
input:
  path: {input}
  format: taxonomy
  rows_per_task: 2
pipeline:
  - stage: taxonomy_qa
    backend: mock
    pairs: 3
    max_tokens: 400
{docs}backends:
  mock:
    url: {url}
    model: mock-model
    max_concurrency: 8
output:
  path: {out}
",
        input = q(input.to_str().unwrap()),
        url = q(url),
        out = q(out.to_str().unwrap()),
    )
}

fn user_messages(mock: &MockBackend) -> Vec<String> {
    let reqs = mock.requests();
    reqs.as_array()
        .expect("recorded requests are a list")
        .iter()
        .map(|r| {
            let body = r.get("body").unwrap_or(r);
            body["messages"]
                .as_array()
                .and_then(|m| m.last())
                .and_then(|m| m["content"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn col<'a>(row: &'a OutputRow, name: &str) -> &'a str {
    row.columns
        .get(name)
        .and_then(|v| v.as_deref())
        .unwrap_or_else(|| panic!("row {} has no `{name}`: {:?}", row.id, row.columns))
}

#[test]
fn taxonomy_fixtures_parse_ground_prompts_and_generate_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let mock = MockBackend::start(&["--record", "--reply-rules", rules.to_str().unwrap()]);
    let out = dir.path().join("out");
    let job = dir.path().join("job.yaml");
    // One unparsable reply fails its seed row by design, above the default failure budget (1%).
    let yaml = job_yaml(&fixtures(), &mock.url(), &out, None)
        + "scheduling:\n  max_failed_fraction: 0.5\n";
    std::fs::write(&job, yaml).unwrap();
    let done = synthforge(["run"])
        .arg(&job)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--workers", "2", "--no-progress"])
        .run_to_end(RUN_TIMEOUT);
    done.assert_success();

    let knowledge_yaml =
        std::fs::read_to_string(fixtures().join(KNOWLEDGE).join("qna.yaml")).unwrap();
    let contexts = knowledge_yaml.matches("  - context: |").count();
    assert!(contexts >= 3, "fixture has {contexts} contexts");

    // Prompts: one per knowledge context (holding the passage), one per skill leaf (holding
    // its seed examples).
    let prompts = user_messages(&mock);
    assert_eq!(prompts.len(), contexts + SKILLS.len() + 1, "{prompts:#?}");
    let grounded: Vec<&String> = prompts.iter().filter(|p| p.contains("<context>")).collect();
    assert_eq!(grounded.len(), contexts);
    assert!(
        grounded.iter().any(|p| p.contains(
            "nonmigratory, North American [passerine](passerine \"wikilink\") bird that"
        )),
        "the first seed context is not in any knowledge prompt"
    );
    assert!(grounded
        .iter()
        .all(|p| p.contains("Where do black-capped chickadees live?")));
    assert!(prompts
        .iter()
        .any(|p| p.contains("List a synonym for the word attend.")));

    let output = read_output(&out);
    assert!(
        output.manifest_problems().is_empty(),
        "{:?}",
        output.manifest_problems()
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["seed_rows"], 5, "every qna.yaml is a seed row");
    assert_eq!(output.rows.len(), 2 * contexts + 2 * SKILLS.len());

    // Knowledge rows: the answer's context is the passage of the prompt that produced it.
    let knowledge: Vec<&OutputRow> = output
        .rows
        .iter()
        .filter(|r| col(r, "taxonomy_path") == KNOWLEDGE)
        .collect();
    assert_eq!(knowledge.len(), 2 * contexts);
    for r in &knowledge {
        let ctx = col(r, "context");
        assert!(
            r.prompt.as_deref().unwrap().contains(ctx),
            "row {} context not in its prompt",
            r.id
        );
        assert_eq!(r.seed_id, KNOWLEDGE);
    }
    assert!(knowledge
        .iter()
        .any(|r| col(r, "answer") == "It is a member of the Paridae family."));
    assert!(knowledge
        .iter()
        .any(|r| col(r, "question") == "What does it eat?"));
    for skill in SKILLS {
        let rows: Vec<&OutputRow> = output
            .rows
            .iter()
            .filter(|r| col(r, "taxonomy_path") == skill)
            .collect();
        assert_eq!(rows.len(), 2, "{skill}");
        if skill.contains("/grounded/") {
            // A grounded skill's row keeps the text its question is about, and the prompt that
            // produced it carried the seed examples' contexts.
            for r in &rows {
                assert!(
                    !col(r, "context").is_empty(),
                    "row {} has an empty context",
                    r.id
                );
                assert!(col(r, "prompt").contains("[CONTEXT]"), "{:?}", r.columns);
            }
        }
        assert_eq!(
            col(
                rows.iter()
                    .find(|r| col(r, "question").starts_with("Rewrite"))
                    .unwrap(),
                "answer"
            ),
            "A cat was sitting on the mat."
        );
    }
    let ids: std::collections::HashSet<&str> = output.rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), output.rows.len(), "record ids are unique");

    // The unparsable reply is a failure that carries the reply and the leaf.
    assert_eq!(output.failures.len(), 1, "{:?}", output.failures);
    let f = &output.failures[0];
    assert_eq!(f.seed_id.as_deref(), Some(CAUSAL));
    assert!(
        f.error.contains(UNPARSABLE) && f.error.contains(CAUSAL),
        "{}",
        f.error
    );
    assert!(f
        .input
        .as_deref()
        .unwrap_or_default()
        .contains("seed_examples"));
    assert!(out.join("README.md").exists());
}

#[test]
fn knowledge_grounded_in_local_documents() {
    let dir = tempfile::tempdir().unwrap();
    let rules = write_rules(dir.path());
    let mock = MockBackend::start(&["--record", "--reply-rules", rules.to_str().unwrap()]);
    // The leaf's `document.patterns` name chickadee.md; a local copy stands in for the repo.
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    let marker = "ZEBRAMARKER chickadees were observed caching seeds in bark crevices";
    let long_para = "word ".repeat(350);
    std::fs::write(
        docs.join("chickadee.md"),
        format!("# Chickadee\n\n{marker}.\n\n{long_para}\n"),
    )
    .unwrap();
    std::fs::write(docs.join("unrelated.md"), "NOTUSED passage").unwrap();
    let out = dir.path().join("out");
    let job = dir.path().join("job.yaml");
    // Rooted inside the taxonomy: paths still start at `knowledge/`.
    let root = fixtures().join("knowledge");
    std::fs::write(&job, job_yaml(&root, &mock.url(), &out, Some(&docs))).unwrap();
    synthforge(["run"])
        .arg(&job)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--no-progress"])
        .run_to_end(RUN_TIMEOUT)
        .assert_success();

    let knowledge_yaml =
        std::fs::read_to_string(fixtures().join(KNOWLEDGE).join("qna.yaml")).unwrap();
    let contexts = knowledge_yaml.matches("  - context: |").count();
    let prompts = user_messages(&mock);
    // Seed contexts + 2 document passages (the marker paragraph, then the long one).
    assert_eq!(prompts.len(), contexts + 2, "{prompts:#?}");
    assert!(prompts.iter().any(|p| p.contains(marker)));
    assert!(!prompts.iter().any(|p| p.contains("NOTUSED")));
    let output = read_output(&out);
    assert_eq!(output.failures.len(), 0, "{:?}", output.failures);
    assert!(output
        .rows
        .iter()
        .all(|r| col(r, "taxonomy_path") == KNOWLEDGE));
    assert!(output
        .rows
        .iter()
        .any(|r| col(r, "context").contains(marker)));
}

fn edges() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/taxonomy_edges")
}

/// The reader's edges end to end: a version 1 knowledge leaf is read and grounded in its
/// contexts, merge keys give every `ical` example its calendar (in the prompt and in each row),
/// and the leaves that cannot be used are failures that say why (a misspelt key with the key
/// meant, an unknown format version, knowledge with nothing to ground it in).
#[test]
fn taxonomy_edges_are_read_grounded_or_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let rules = serde_json::json!([
        {"contains": "<context>", "reply": "```json\n[{\"question\": \"Who printed with movable type in Mainz?\", \"answer\": \"Gutenberg.\"}]\n```"},
        {"contains": "the text the question is about", "reply": "1. Context: SUMMARY:Board review\nLOCATION:Hall 2\nQ: Where is the event in this ICS file?\nA: Hall 2."}
    ]);
    let rules_file = dir.path().join("rules.json");
    std::fs::write(&rules_file, rules.to_string()).unwrap();
    let mock = MockBackend::start(&["--record", "--reply-rules", rules_file.to_str().unwrap()]);
    let out = dir.path().join("out");
    let job = dir.path().join("job.yaml");
    let yaml =
        job_yaml(&edges(), &mock.url(), &out, None) + "scheduling:\n  max_failed_fraction: 1.0\n";
    std::fs::write(&job, yaml).unwrap();
    synthforge(["run"])
        .arg(&job)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--no-progress"])
        .run_to_end(RUN_TIMEOUT)
        .assert_success();

    let prompts = user_messages(&mock);
    let ical: Vec<&String> = prompts.iter().filter(|p| p.contains("ICS file")).collect();
    assert_eq!(ical.len(), 1, "{prompts:#?}");
    // Every merged example carries the calendar: three examples, three calendars.
    assert_eq!(
        ical[0].matches("SUMMARY:Quarterly planning").count(),
        3,
        "{}",
        ical[0]
    );
    assert!(prompts.iter().any(|p| p.contains("Johannes Gutenberg")));

    let output = read_output(&out);
    let press: Vec<&OutputRow> = output
        .rows
        .iter()
        .filter(|r| col(r, "taxonomy_path") == "knowledge/history/printing_press_v1")
        .collect();
    // Two passages (two examples share the first context), one pair each.
    assert_eq!(press.len(), 2, "{:?}", output.rows);
    assert!(press
        .iter()
        .all(|r| col(r, "context").contains("Gutenberg")));
    let ical_rows: Vec<&OutputRow> = output
        .rows
        .iter()
        .filter(|r| col(r, "taxonomy_path").ends_with("named_entities/ical"))
        .collect();
    assert_eq!(ical_rows.len(), 1, "{:?}", output.rows);
    assert!(col(ical_rows[0], "context").contains("LOCATION:Hall 2"));
    assert!(col(ical_rows[0], "prompt").contains("SUMMARY:Quarterly planning"));

    let failure = |leaf: &str| {
        output
            .failures
            .iter()
            .find(|f| f.seed_id.as_deref() == Some(leaf))
            .unwrap_or_else(|| panic!("no failure for {leaf}: {:?}", output.failures))
            .error
            .clone()
    };
    let e = failure("compositional_skills/linguistics/misspelt");
    assert!(
        e.contains("unknown key `seed examples`") && e.contains("did you mean `seed_examples`?"),
        "{e}"
    );
    let e = failure("knowledge/history/future_version");
    assert!(e.contains("version") && e.contains("4"), "{e}");
    let e = failure("knowledge/history/abacus_v2_no_context");
    assert!(e.contains("document_dir"), "{e}");
    assert_eq!(output.failures.len(), 3, "{:?}", output.failures);
}

/// `validate` parses every leaf, not only the first task's, and reports every bad one at once.
#[test]
fn validate_reports_every_bad_leaf_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.yaml");
    let yaml = job_yaml(
        &edges(),
        "http://127.0.0.1:9/v1",
        &dir.path().join("out"),
        None,
    )
    .replace("rows_per_task: 2", "rows_per_task: 1");
    std::fs::write(&job, yaml).unwrap();
    let done = synthforge(["validate"]).arg(&job).run_to_end(QUICK_TIMEOUT);
    done.assert_failure();
    let text = done.combined();
    for expected in [
        "did you mean `seed_examples`?",
        "future_version",
        "not valid: 2 problems",
        "taxonomy with 5 qna.yaml file(s), 2 unreadable",
    ] {
        assert!(
            text.contains(expected),
            "missing {expected:?}\n{}",
            done.describe()
        );
    }
}
