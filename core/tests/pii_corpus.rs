//! Recall and precision floors per PII type on the labelled corpus in
//! `tests/fixtures/pii/corpus.jsonl` (see `make_corpus.py` there). The floors sit a little
//! under the measured figures (`cargo run -p synthforge-core --example pii_bench`), so a
//! detector change that loses recall or lets look-alikes through fails here.

use synthforge_core::stages::pii_eval::{score, Sample};

const CORPUS: &str = include_str!("../../tests/fixtures/pii/corpus.jsonl");

/// (type, recall floor, precision floor).
const FLOORS: &[(&str, f64, f64)] = &[
    ("email", 0.95, 0.95),
    ("phone", 0.95, 0.95),
    ("credit_card", 0.95, 0.95),
    ("us_ssn", 0.95, 0.95),
    ("uk_nino", 0.9, 0.9),
    ("ipv4", 0.93, 0.93),
    ("ipv6", 0.9, 0.9),
    ("iban", 0.93, 0.93),
    ("street_address", 0.9, 0.9),
    ("person_name", 0.8, 0.9),
];

#[test]
fn the_corpus_is_big_enough() {
    let samples: Vec<Sample> = CORPUS
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let planted: usize = samples.iter().map(|s| s.pii.len()).sum();
    let decoys: usize = samples.iter().map(|s| s.decoys.len()).sum();
    assert!(planted >= 200, "{planted} planted items");
    assert!(decoys >= 100, "{decoys} decoys");
}

#[test]
fn every_type_meets_its_recall_and_precision_floor() {
    let report = score(CORPUS).unwrap();
    let mut failures = Vec::new();
    for &(kind, recall, precision) in FLOORS {
        let s = report.kinds[kind];
        assert!(s.planted >= 10, "{kind}: only {} planted", s.planted);
        if s.recall() < recall {
            failures.push(format!("{kind}: recall {:.3} < {recall}", s.recall()));
        }
        if s.precision() < precision {
            failures.push(format!(
                "{kind}: precision {:.3} < {precision}",
                s.precision()
            ));
        }
    }
    assert_eq!(report.kinds.len(), FLOORS.len(), "a type without a floor");
    assert!(
        failures.is_empty(),
        "{}\n\n{}\nmisses: {:#?}\nfalse positives: {:#?}",
        failures.join("\n"),
        report.table(),
        report.misses,
        report.false_positives
    );
}

#[test]
fn decoys_of_the_held_out_false_positives_are_left_alone() {
    let report = score(CORPUS).unwrap();
    for kind in [
        "isbn13",
        "section_number",
        "dotted_long",
        "sku_or_order",
        "iban_bad_checksum",
        "spoken_at_prose",
    ] {
        let (n, touched) = report.decoys[kind];
        assert!(n > 0, "{kind}: no decoys");
        assert_eq!(touched, 0, "{kind}: {touched} of {n} decoys redacted");
    }
}
