//! `evolve`: every round's instruction is kept with its round number and operator, failed
//! evolutions are eliminated (first round → removed `evolve:eliminated`; later → the last good
//! instruction is answered), and the same job run twice sends the same prompts.

mod stages_common;

use std::collections::BTreeMap;

use stages_common::*;
use synthforge_tests::*;

const OPERATORS: &[&str] = &[
    "add_constraints",
    "deepen",
    "concretize",
    "increase_reasoning",
    "complicate_input",
    "in_breadth",
];
const R1: &str =
    "Explain tides in detail including the roles of both the moon and the sun KEEPLAST";

fn rules_json() -> serde_json::Value {
    serde_json::json!([
        {"contains": "ELIMINATE-ME", "reply": "I'm sorry, as an AI language model I cannot rewrite that."},
        {"contains": format!("Given Prompt#:\n{R1}"), "reply": "#Rewritten Prompt# is not something I can write"},
        {"contains": "KEEPLAST-SEED", "reply": R1}
    ])
}

fn run_once(dir: &std::path::Path, tag: &str) -> (Output, Vec<String>) {
    let rules = rules(dir, rules_json());
    let mock = MockBackend::start(&["--record", "--reply-rules", rules.to_str().unwrap()]);
    let seed = dir.join("seed.jsonl");
    let mut rows: Vec<(String, String)> = (0..8)
        .map(|i| (seed_id(i), format!("Explain {}", seed_text(i))))
        .collect();
    rows.push(("eliminated".into(), "Explain ELIMINATE-ME please".into()));
    rows.push(("keep-last".into(), "Explain tides KEEPLAST-SEED".into()));
    write_rows(&seed, &rows);
    let out = dir.join(format!("out-{tag}"));
    let pipeline = "  - stage: evolve
    backend: m
    instruction_column: text
    rounds: 3
    system_prompt: You are helpful.
    max_tokens: 30
";
    let yaml = job_yaml(
        "evolve-e2e",
        &seed,
        &out,
        pipeline,
        &backend("m", &mock, "mock-model"),
    );
    let output = run(dir, &format!("job-{tag}.yaml"), &yaml, &out);
    let mut sent = received_texts(&mock);
    sent.sort();
    (output, sent)
}

#[test]
fn evolution_is_recorded_eliminated_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, sent_a) = run_once(dir.path(), "a");
    let (b, sent_b) = run_once(dir.path(), "b");

    assert_eq!(sent_a, sent_b, "the same job must send the same prompts");
    assert!(
        sent_a.len() >= 9 * 2,
        "evolution and answer calls: {}",
        sent_a.len()
    );
    let by_id = |o: &Output| -> BTreeMap<String, (Option<String>, Option<String>)> {
        o.rows
            .iter()
            .map(|r| {
                (
                    r.id.clone(),
                    (r.prompt.clone(), r.columns["evolution"].clone()),
                )
            })
            .collect()
    };
    assert_eq!(by_id(&a), by_id(&b));

    assert_every_sample_accounted(&a, 10);
    assert_eq!(removed(&a.root).get("evolve:eliminated"), Some(&1));
    assert!(a.rows.iter().all(|r| r.seed_id != "eliminated"));
    for r in &a.rows {
        let evo: Vec<serde_json::Value> =
            serde_json::from_str(r.columns["evolution"].as_deref().unwrap()).unwrap();
        assert_eq!(evo[0]["round"], 0);
        assert_eq!(evo[0]["operator"], "seed");
        for (i, step) in evo.iter().enumerate().skip(1) {
            assert_eq!(step["round"], i as u64);
            assert!(
                OPERATORS.contains(&step["operator"].as_str().unwrap()),
                "{step}"
            );
        }
        let good = evo
            .iter()
            .skip(1)
            .filter(|s| s.get("eliminated").is_none())
            .count();
        assert_eq!(
            r.columns["evolve_rounds"].as_deref(),
            Some(good.to_string().as_str())
        );
        let last_good = evo
            .iter()
            .rev()
            .find(|s| s.get("eliminated").is_none())
            .unwrap();
        assert_eq!(r.prompt.as_deref(), last_good["instruction"].as_str());
        assert_eq!(
            r.columns["evolved_instruction"].as_deref(),
            last_good["instruction"].as_str()
        );
        assert!(!r.completion.as_deref().unwrap_or("").is_empty());
        if r.seed_id == "keep-last" {
            assert_eq!(good, 1, "{evo:?}");
            assert_eq!(evo.len(), 3, "round 2 eliminated, no round 3: {evo:?}");
            assert!(
                evo[2]["eliminated"].as_str().unwrap().contains("copies"),
                "{evo:?}"
            );
            assert_eq!(r.prompt.as_deref(), Some(R1));
        } else {
            assert_eq!(evo.len(), 4, "three rounds: {evo:?}");
        }
    }
}
