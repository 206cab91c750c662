//! Recall and precision of the PII detectors per type on the labelled corpus, and their speed
//! (a benchmark, not a test): `cargo run --release -p synthforge-core --example pii_bench
//! [corpus.jsonl]`. Default corpus: `tests/fixtures/pii/corpus.jsonl` (made by its
//! `make_corpus.py`). Prints Markdown tables (copied into `core/src/stages/README.md`), then
//! every miss and false positive, quoted.

use std::time::Instant;

use synthforge_core::stages::pii_detect::{detect, DEFAULT_KINDS, KINDS};
use synthforge_core::stages::pii_eval::{score, Sample};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/pii/corpus.jsonl"
);

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| CORPUS.to_string());
    let corpus = std::fs::read_to_string(&path)?;
    let report = score(&corpus)?;
    let samples: Vec<Sample> = corpus
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let planted: usize = samples.iter().map(|s| s.pii.len()).sum();
    let decoys: usize = samples.iter().map(|s| s.decoys.len()).sum();
    println!(
        "corpus {path}: {} texts, {planted} planted items, {decoys} decoys\n",
        samples.len()
    );
    println!("{}", report.table());
    println!("{}", report.decoy_table());
    println!("misses ({}):", report.misses.len());
    for m in &report.misses {
        println!("  {m}");
    }
    println!("false positives ({}):", report.false_positives.len());
    for f in &report.false_positives {
        println!("  {f}");
    }

    // Speed: the corpus texts joined and repeated to ~8 MB, one core.
    let joined: String = samples
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let text = joined.repeat((8_000_000 / joined.len()).max(1));
    for (label, kinds) in [("default types", DEFAULT_KINDS), ("all types", KINDS)] {
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        let found = detect(&text, kinds).len();
        let secs = start.elapsed().as_secs_f64();
        let mb = text.len() as f64 / 1e6;
        let cpu = match (cpu_start, cpu_seconds()) {
            (Some(a), Some(b)) if b > a => format!(", {:.1} MB/s of CPU time", mb / (b - a)),
            _ => String::new(),
        };
        println!(
            "\nspeed, {label}: {:.1} MB/s wall{cpu} ({} bytes, {found} findings, {secs:.2}s)",
            mb / secs,
            text.len()
        );
    }
    Ok(())
}

/// This process's user + system CPU seconds (Linux `/proc`), so the figure means something on
/// a shared, loaded machine where wall time does not.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
