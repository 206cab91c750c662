//! Speed of the CPU-bound quality stages on one core (a benchmark, not a test):
//! `cargo run --release -p synthforge-core --example stage_throughput`.
//! PII redaction in MB/s of prose with some PII; decontamination index build time and 13-gram
//! checks of 300-word samples per second against a 10,000-passage benchmark.

use std::collections::BTreeMap;
use std::time::Instant;

use synthforge_core::stages::decontaminate::NgramIndex;
use synthforge_core::stages::pii_detect::{redact, KINDS};

fn pii() {
    let line = "Customer Jane (jane.doe@example.com, +44 20 7946 0958) paid with \
                4111 1111 1111 1111 from 192.168.1.20; the rest of this sentence is \
                ordinary prose about tides, bread, volcanoes and the year 2024. ";
    let text = line.repeat(20_000);
    let start = Instant::now();
    let mut counts = BTreeMap::new();
    let out = redact(&text, KINDS, &mut counts);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(counts["email"], 20_000, "every planted e-mail redacted");
    assert!(out.len() < text.len());
    println!(
        "pii redaction: {:.1} MB/s ({} bytes in {secs:.3}s)",
        text.len() as f64 / secs / 1e6,
        text.len()
    );
}

fn decontaminate() {
    let passage = |i: usize| {
        (0..40)
            .map(|w| format!("b{i}x{w}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let bench: Vec<String> = (0..10_000).map(passage).collect();
    let t0 = Instant::now();
    let idx = NgramIndex::build(13, bench.iter().map(String::as_str));
    let build = t0.elapsed().as_secs_f64();
    // 300 fresh words per sample; every tenth sample also quotes a benchmark passage.
    let samples: Vec<String> = (0..2_000)
        .map(|i| {
            let mut words: Vec<String> = (0..300).map(|w| format!("s{}", i * 300 + w)).collect();
            if i % 10 == 0 {
                words.push(bench[i].clone());
            }
            words.join(" ")
        })
        .collect();
    let t1 = Instant::now();
    let hits = samples.iter().filter(|s| idx.contaminated(s)).count();
    let secs = t1.elapsed().as_secs_f64();
    assert_eq!(hits, 200, "every planted passage found, nothing else");
    println!(
        "decontaminate: index of {} 13-grams built in {build:.2}s; {:.0} samples/s",
        idx.len(),
        samples.len() as f64 / secs
    );
}

fn main() {
    pii();
    decontaminate();
}
