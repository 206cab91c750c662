//! MinHash throughput: documents per second per core for ~1,000-word documents.
//!
//! `cargo run --release -p synthforge-core --example minhash_bench -- [DOCS] [THREADS]`
//!
//! Measures, on one thread, the work the `dedup` stage does per record (normalize + exact hash,
//! 5-word shingles, 112-permutation MinHash, 14 band hashes), then the same with THREADS
//! threads to show how it scales. Documents are synthetic but word-like (Zipf-ish draws from a
//! 20,000-word vocabulary), so shingle counts match real prose of the same length.

use std::time::Instant;

use synthforge_core::minhash::{exact_hash, MinHashConfig, MinHasher};

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn make_docs(n: usize, words: usize) -> Vec<String> {
    let vocab: Vec<String> = (0..20_000)
        .map(|i| {
            let mut s = i as u64 + 1;
            let len = 2 + (splitmix(&mut s) % 8) as usize;
            (0..len)
                .map(|_| (b'a' + (splitmix(&mut s) % 26) as u8) as char)
                .collect()
        })
        .collect();
    let mut state = 42u64;
    (0..n)
        .map(|_| {
            let mut doc = String::with_capacity(words * 7);
            for w in 0..words {
                // Zipf-ish: small ranks far more often.
                let u = (splitmix(&mut state) % 1_000_000) as f64 / 1_000_000.0;
                let rank = ((vocab.len() as f64).powf(u) as usize).min(vocab.len() - 1);
                doc.push_str(&vocab[rank]);
                doc.push(if w % 15 == 14 { '.' } else { ' ' });
                if w % 15 == 14 {
                    doc.push(' ');
                }
            }
            doc
        })
        .collect()
}

fn run(hasher: &MinHasher, docs: &[String]) -> u64 {
    let mut acc = 0u64;
    for d in docs {
        let bands = hasher.band_hashes(d);
        let h = exact_hash(d);
        acc ^= bands[0] ^ h.len() as u64;
    }
    acc
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let docs = make_docs(n, 1000);
    let hasher = MinHasher::new(MinHashConfig::default());
    let avg_words: f64 = docs
        .iter()
        .map(|d| d.split_whitespace().count())
        .sum::<usize>() as f64
        / n as f64;
    let avg_shingles: f64 =
        docs.iter().map(|d| hasher.shingles(d).len()).sum::<usize>() as f64 / n as f64;

    // Warm-up, then one thread.
    run(&hasher, &docs[..n.min(100)]);
    let t = Instant::now();
    let sink = run(&hasher, &docs);
    let one = t.elapsed().as_secs_f64();

    // Only band hashes, only exact hashes (to see where the time goes).
    let t = Instant::now();
    let mut x = 0u64;
    for d in &docs {
        x ^= hasher.band_hashes(d)[0];
    }
    let bands_only = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for d in &docs {
        x ^= exact_hash(d).len() as u64;
    }
    let exact_only = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let chunk = n.div_ceil(threads);
    let total: u64 = std::thread::scope(|s| {
        docs.chunks(chunk)
            .map(|c| s.spawn(|| run(&hasher, c)))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .fold(0, |a, b| a ^ b)
    });
    let multi = t.elapsed().as_secs_f64();

    println!("docs: {n}, words/doc: {avg_words:.0}, distinct 5-shingles/doc: {avg_shingles:.0}, permutations: 112 (14 bands x 8 rows)");
    println!("| measurement | threads | docs/s | ms/doc |");
    println!("|---|---|---|---|");
    println!(
        "| exact hash + MinHash bands (dedup stage) | 1 | {:.0} | {:.3} |",
        n as f64 / one,
        one * 1000.0 / n as f64
    );
    println!(
        "| MinHash bands only | 1 | {:.0} | {:.3} |",
        n as f64 / bands_only,
        bands_only * 1000.0 / n as f64
    );
    println!(
        "| exact hash only | 1 | {:.0} | {:.3} |",
        n as f64 / exact_only,
        exact_only * 1000.0 / n as f64
    );
    println!(
        "| exact hash + MinHash bands | {threads} | {:.0} | {:.3} |",
        n as f64 / multi,
        multi * 1000.0 / n as f64
    );
    // Keep the optimizer from discarding the work.
    if sink ^ total ^ x == 1 {
        eprintln!("(unlikely checksum)");
    }
}
