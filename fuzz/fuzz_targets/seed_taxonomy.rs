//! `qna.yaml` text → `taxonomy::parse_qna` under each kind of taxonomy path, and the
//! knowledge-document chunker. Properties: a path outside the three roots is refused, an
//! accepted entry survives the trip through seed-row columns unchanged, and chunking keeps
//! every paragraph, in order, within the word budget unless a paragraph alone exceeds it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use synthforge_core::input::taxonomy::{chunk_markdown, parse_qna, TaxonomyEntry};

const PATHS: &[&str] = &[
    "knowledge/science/animals/birds",
    "compositional_skills/grounded/summarize",
    "compositional_skills/writing/poem",
    "foundational_skills/reasoning/math",
];

fuzz_target!(|text: &str| {
    for path in PATHS {
        if let Ok(entry) = parse_qna(text, path) {
            assert!(!entry.seed_examples.is_empty());
            let back = TaxonomyEntry::from_columns(&entry.to_columns())
                .expect("columns of a parsed entry read back");
            assert_eq!(back, entry, "seed-row columns round trip");
        }
    }
    assert!(parse_qna(text, "other/place").is_err(), "path outside the taxonomy roots");

    let paragraphs: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    for max_words in [1usize, 7, 200] {
        let chunks = chunk_markdown(text, max_words);
        let mut rejoined = Vec::new();
        for chunk in &chunks {
            let parts: Vec<&str> = chunk.split("\n\n").collect();
            let words = chunk.split_whitespace().count();
            assert!(
                words <= max_words || parts.len() == 1,
                "a chunk of {words} words over {max_words} holds several paragraphs"
            );
            rejoined.extend(parts);
        }
        assert_eq!(rejoined, paragraphs, "chunks keep every paragraph in order");
    }
});
