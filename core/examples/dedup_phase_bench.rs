//! The dedup phase at scale: bucket tasks over fingerprint columns, then cluster resolution.
//!
//! ```text
//! cargo run --release -p synthforge-core --example dedup_phase_bench -- write DIR RECORDS PARTS
//! cargo run --release -p synthforge-core --example dedup_phase_bench -- run DIR [PARTITION_ROWS]
//! ```
//!
//! `write` makes PARTS Parquet data parts holding RECORDS records' fingerprint columns as the
//! `dedup` stage writes them, with 2% planted exact duplicates and 1% planted near duplicates
//! (a copy of another record's signature with 10% of its 112 values changed, so Jaccard
//! ≈ 0.9). Signatures are drawn at random instead of hashed from text: this measures the
//! phase (reads, buckets, confirmation, clusters), not MinHash (see docs/minhash-bench.md).
//! `run` plans the phase as the coordinator does, runs every bucket task one after another in
//! this process (as one worker would), resolves the clusters, and prints time per task kind,
//! edges, the records the resolution held, recall of the planted duplicates, distinct records
//! removed by mistake, and this process's peak RSS (each task's memory is freed before the
//! next, so the peak is the largest task or the resolution).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use synthforge_core::dedup_phase::clusters::ClusterBuilder;
use synthforge_core::dedup_phase::fingerprints::bucket_task;
use synthforge_core::dedup_phase::{plan, DedupKind, PartsList};
use synthforge_core::minhash::{encode_bands, encode_sketch, sketch, MinHashConfig, MinHasher};
use synthforge_core::stages::dedup::{BANDS_COLUMN, HASH_COLUMN, SIGNATURE_COLUMN};

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What record `i` is: distinct, an exact copy of `i - d`, or a near copy of `i - d`.
fn fate(i: u64) -> (u8, u64) {
    match i % 100 {
        10 | 60 if i >= 100 => (1, i - 97),
        33 if i >= 100 => (2, i - 71),
        _ => (0, i),
    }
}

fn signature(i: u64, n: usize) -> Vec<u64> {
    let (kind, of) = fate(i);
    let mut s = of.wrapping_mul(0x1234_5678_9abc_def1) ^ 0x5eed;
    let mut sig: Vec<u64> = (0..n).map(|_| splitmix(&mut s) >> 3).collect();
    if kind == 2 {
        let mut t = i ^ 0xfeed;
        for slot in sig.iter_mut().step_by(10) {
            *slot = splitmix(&mut t) >> 3;
        }
    }
    sig
}

fn write(dir: &str, records: u64, parts: u64) {
    std::fs::create_dir_all(format!("{dir}/data")).unwrap();
    let hasher = MinHasher::new(MinHashConfig::default());
    let n = 14 * 8;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("seed_index", DataType::UInt64, false),
        Field::new("sample_index", DataType::UInt32, false),
        Field::new(HASH_COLUMN, DataType::Utf8, false),
        Field::new(BANDS_COLUMN, DataType::Utf8, false),
        Field::new(SIGNATURE_COLUMN, DataType::Utf8, false),
    ]));
    let per = records.div_ceil(parts);
    let mut list = PartsList::default();
    for p in 0..parts {
        let rows: Vec<u64> = (p * per..((p + 1) * per).min(records)).collect();
        let path = format!("data/part-{p:06}-1.parquet");
        let file = std::fs::File::create(format!("{dir}/{path}")).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        for chunk in rows.chunks(8192) {
            let sigs: Vec<Vec<u64>> = chunk.iter().map(|&i| signature(i, n)).collect();
            let hashes: Vec<String> = chunk
                .iter()
                .map(|&i| {
                    let (kind, of) = fate(i);
                    let base = if kind == 1 { of } else { i };
                    let mut s = base ^ 0xabcd;
                    format!("{:016x}{:016x}", splitmix(&mut s), splitmix(&mut s))
                })
                .collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        chunk.iter().map(|i| format!("r{i}")),
                    )),
                    Arc::new(UInt64Array::from_iter_values(chunk.iter().copied())),
                    Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|_| 0))),
                    Arc::new(StringArray::from_iter_values(hashes)),
                    Arc::new(StringArray::from_iter_values(
                        sigs.iter().map(|s| encode_bands(&hasher.bands_of(s))),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        sigs.iter().map(|s| encode_sketch(&sketch(s))),
                    )),
                ],
            )
            .unwrap();
            w.write(&batch).unwrap();
        }
        w.close().unwrap();
        list.parts.push(path);
    }
    std::fs::write(
        format!("{dir}/parts.json"),
        serde_json::to_vec(&list).unwrap(),
    )
    .unwrap();
    println!("wrote {records} records in {parts} parts to {dir}");
}

async fn run(dir: &str, partition_rows: u64) {
    let list: PartsList =
        serde_json::from_slice(&std::fs::read(format!("{dir}/parts.json")).unwrap()).unwrap();
    let root = synthforge_core::storage::open(dir).unwrap();
    let records: u64 = {
        let mut n = 0;
        for p in &list.parts {
            let f = std::fs::File::open(format!("{dir}/{p}")).unwrap();
            let r = parquet::file::reader::SerializedFileReader::new(f).unwrap();
            n += parquet::file::reader::FileReader::metadata(&r)
                .file_metadata()
                .num_rows() as u64;
        }
        n
    };
    let work = plan(records, 14, true, partition_rows);
    println!(
        "{records} records, {} parts, {} dedup tasks",
        list.parts.len(),
        work.len()
    );
    let started = Instant::now();
    let (mut exact_s, mut band_s, mut max_task_s) = (0.0f64, 0.0f64, 0.0f64);
    let mut clusters = ClusterBuilder::default();
    let mut edges_total = 0usize;
    for w in &work {
        let t = Instant::now();
        let edges = bucket_task(&root, &list, w, 0.7, |_| {}).await.unwrap();
        let s = t.elapsed().as_secs_f64();
        max_task_s = max_task_s.max(s);
        match w.kind {
            DedupKind::Exact => exact_s += s,
            DedupKind::Band(_) => band_s += s,
        }
        edges_total += edges.len();
        for e in &edges {
            clusters.add(e);
        }
    }
    let phase_s = started.elapsed().as_secs_f64();
    let held = clusters.len();
    let r = clusters.removals();
    let per = records.div_ceil(list.parts.len() as u64);
    let removed: HashSet<u64> = r
        .by_part
        .iter()
        .flat_map(|(p, rows)| rows.iter().map(move |row| *p as u64 * per + *row as u64))
        .collect();
    let planted_exact: Vec<u64> = (0..records).filter(|&i| fate(i).0 == 1).collect();
    let planted_near: Vec<u64> = (0..records).filter(|&i| fate(i).0 == 2).collect();
    let found = |v: &[u64]| v.iter().filter(|i| removed.contains(i)).count();
    let wrong = removed.iter().filter(|&&i| fate(i).0 == 0).count();
    println!(
        "phase {phase_s:.2} s (exact tasks {exact_s:.2} s, band tasks {band_s:.2} s, slowest task {max_task_s:.2} s)"
    );
    println!(
        "edges {edges_total}, records held by the resolution {held}, removed exact {} near {}",
        r.exact, r.near
    );
    println!(
        "recall: exact {}/{} ({:.2}%), near {}/{} ({:.2}%); distinct records removed: {wrong}",
        found(&planted_exact),
        planted_exact.len(),
        100.0 * found(&planted_exact) as f64 / planted_exact.len().max(1) as f64,
        found(&planted_near),
        planted_near.len(),
        100.0 * found(&planted_near) as f64 / planted_near.len().max(1) as f64,
    );
    println!("peak RSS {:.1} MB", peak_rss_mb());
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(
            &args[2],
            args.get(3).and_then(|s| s.parse().ok()).unwrap_or(300_000),
            args.get(4).and_then(|s| s.parse().ok()).unwrap_or(300),
        ),
        Some("run") => {
            run(
                &args[2],
                args.get(3).and_then(|s| s.parse().ok()).unwrap_or(500_000),
            )
            .await
        }
        _ => eprintln!(
            "usage: dedup_phase_bench write DIR [RECORDS] [PARTS] | run DIR [PARTITION_ROWS]"
        ),
    }
}
