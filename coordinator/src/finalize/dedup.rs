//! Whole-job deduplication, the coordinator half of the `dedup` stage.
//!
//! Workers fingerprint each record (exact hash of normalized text, MinHash LSH band hashes,
//! see `synthforge_core::stages::dedup`); duplicates can sit in any two tasks, so only a step
//! that sees the whole job can remove them. After generation the finalizer:
//! 1. reads just the fingerprint columns (plus the ordering key) of every data file — Parquet
//!    column projection, a few dozen bytes per row;
//! 2. removes exact duplicates: per normalized-text hash, all but the first record;
//! 3. finds near-duplicate clusters among the rest: band by band (each band an independent
//!    shard, processed in parallel), records sharing a bucket are linked to the bucket's first
//!    record, and a union-find over those links gives the clusters; all but the first go;
//! 4. rewrites only the data files that lost rows, under new names (`…-d.parquet`).
//!
//! "First" is the smallest `(seed_index, sample_index, id)`: deterministic whatever the task
//! order, worker count or retries. Exact removals count as `dedup_exact`, the others as
//! `dedup_near`. Near duplicates are band collisions (no pairwise verification), as in FineWeb.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{Array, BooleanArray, RecordBatch};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use synthforge_core::input::ObjectReader;
use synthforge_core::manifest::Manifest;
use synthforge_core::minhash::decode_bands;
use synthforge_core::sink::{ParquetFileSink, WrittenFile};
use synthforge_core::spec::{JobSpec, StageSpec};
use synthforge_core::stages::dedup::{DedupParams, BANDS_COLUMN, HASH_COLUMN};
use synthforge_core::stats::TaskStats;

use crate::model::{TaskRecord, TaskState};
use synthforge_core::storage::Location;

/// A finalized job's stats: its completed tasks' sums plus the rows the finalizer removed
/// beyond what the tasks reported (`dedup_exact`, `dedup_near`: the manifest's removals minus
/// the tasks'), and those removals by reason (kept in the job record, to survive a restart). So
/// `stats.removed` shows every removal and `rows_out` the rows the dataset really has.
pub fn stats_after_finalize(
    tasks: &[TaskRecord],
    manifest: &Manifest,
) -> (TaskStats, BTreeMap<String, u64>) {
    let mut stats = TaskStats::default();
    for t in tasks.iter().filter(|t| t.state == TaskState::Done) {
        stats.add(&t.stats);
    }
    let removed: BTreeMap<String, u64> = manifest
        .removed
        .iter()
        .map(|(reason, n)| {
            let by_tasks = stats.removed.get(reason).copied().unwrap_or(0);
            (reason.clone(), n.saturating_sub(by_tasks))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    stats.count_removed_at_finalize(&removed);
    (stats, removed)
}

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("dedup: reading `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("dedup: writing `{path}`: {message}")]
    Write { path: String, message: String },
    #[error("dedup: job spec: {0}")]
    Spec(String),
}

/// The `dedup` entry of a job's pipeline, if it has one.
pub fn job_params(spec: &JobSpec) -> Result<Option<DedupParams>, DedupError> {
    let dedup = spec.pipeline.iter().find_map(|s| match s {
        StageSpec::Dedup(d) => Some(d),
        _ => None,
    });
    match dedup {
        None => Ok(None),
        Some(d) => d
            .params()
            .map(Some)
            .map_err(|e| DedupError::Spec(e.to_string())),
    }
}

/// What deduplication did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DedupOutcome {
    /// The dataset's files after dedup: rewritten data files replace their originals.
    pub files: Vec<WrittenFile>,
    pub exact: u64,
    pub near: u64,
    /// Original files that were rewritten: delete them once the new manifest is written.
    pub replaced: Vec<String>,
}

/// One record's fingerprint and ordering key.
#[derive(Debug, Clone)]
pub struct Fingerprint {
    pub file: u32,
    pub row: u32,
    pub seed_index: u64,
    pub sample_index: u32,
    pub id: String,
    /// Exact-duplicate key; `None` when the record has none (never an exact duplicate).
    pub hash: Option<u128>,
    pub bands: Vec<u64>,
}

/// Why a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Exact,
    Near,
}

/// Decides which records to remove. Returns one entry per input fingerprint.
pub fn find_duplicates(fps: &[Fingerprint], near: bool, shards: usize) -> Vec<Option<Removal>> {
    let mut order: Vec<usize> = (0..fps.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&fps[a], &fps[b]);
        (x.seed_index, x.sample_index, &x.id).cmp(&(y.seed_index, y.sample_index, &y.id))
    });
    let mut out = vec![None; fps.len()];
    // Exact: the first (in key order) of each hash stays.
    let mut seen: HashSet<u128> = HashSet::with_capacity(fps.len());
    let mut survivors: Vec<usize> = Vec::with_capacity(fps.len());
    for &i in &order {
        if fps[i].hash.is_some_and(|h| !seen.insert(h)) {
            out[i] = Some(Removal::Exact);
        } else {
            survivors.push(i);
        }
    }
    if !near || survivors.is_empty() {
        return out;
    }
    // Near: ranks are positions in `survivors` (key order), so smaller rank = first.
    let bands = survivors
        .iter()
        .map(|&i| fps[i].bands.len())
        .max()
        .unwrap_or(0);
    let edges = band_edges_sharded(fps, &survivors, bands, shards.max(1));
    let mut uf = UnionFind::new(survivors.len());
    for (a, b) in edges {
        uf.union(a, b);
    }
    for (rank, &i) in survivors.iter().enumerate() {
        if uf.find(rank) != rank {
            out[i] = Some(Removal::Near);
        }
    }
    out
}

/// Links of one band shard: for every bucket, each member (by rank) to the bucket's first.
/// Shards are independent (they share nothing), so they run in parallel here and could run
/// on separate machines given the same fingerprints.
pub fn band_shard_edges(
    fps: &[Fingerprint],
    survivors: &[usize],
    bands: std::ops::Range<usize>,
) -> Vec<(usize, usize)> {
    let mut edges = Vec::new();
    for band in bands {
        let mut first: HashMap<u64, usize> = HashMap::with_capacity(survivors.len());
        for (rank, &i) in survivors.iter().enumerate() {
            let Some(&h) = fps[i].bands.get(band) else {
                continue;
            };
            match first.get(&h) {
                Some(&f) => edges.push((f, rank)),
                None => {
                    first.insert(h, rank);
                }
            }
        }
    }
    edges
}

fn band_edges_sharded(
    fps: &[Fingerprint],
    survivors: &[usize],
    bands: usize,
    shards: usize,
) -> Vec<(usize, usize)> {
    let per = bands.div_ceil(shards).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..bands)
            .step_by(per)
            .map(|start| {
                let range = start..(start + per).min(bands);
                s.spawn(move || band_shard_edges(fps, survivors, range))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("band shard panicked"))
            .collect()
    })
}

/// Union-find whose root is always the smallest member, so a cluster keeps its first record.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent[hi] = lo;
        }
    }
}

fn read_err(path: &str) -> impl Fn(String) -> DedupError + '_ {
    move |message| DedupError::Read {
        path: path.to_string(),
        message,
    }
}

/// The fingerprint columns of one data file.
pub async fn read_fingerprints(
    root: &Location,
    file: u32,
    path: &str,
) -> Result<Vec<Fingerprint>, DedupError> {
    let err = read_err(path);
    let loc = root.child(path);
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| err(e.to_string()))?;
    let cols = [
        "id",
        "seed_index",
        "sample_index",
        HASH_COLUMN,
        BANDS_COLUMN,
    ];
    for c in cols {
        if builder.schema().field_with_name(c).is_err() {
            return Err(err(format!(
                "no column `{c}` (was the job run with a `dedup` stage last in the pipeline?)"
            )));
        }
    }
    let mask = ProjectionMask::columns(builder.parquet_schema(), cols);
    let batches: Vec<RecordBatch> = builder
        .with_projection(mask)
        .build()
        .map_err(|e| err(e.to_string()))?
        .try_collect()
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for b in &batches {
        let col = |n: &str| b.column_by_name(n).expect("projected column present");
        let ids = col("id").as_string::<i32>();
        let seeds = col("seed_index").as_primitive::<UInt64Type>();
        let samples = col("sample_index").as_primitive::<UInt32Type>();
        let hashes = col(HASH_COLUMN).as_string::<i32>();
        let bands = col(BANDS_COLUMN).as_string::<i32>();
        for r in 0..b.num_rows() {
            let row = out.len() as u32;
            let band_text = if bands.is_null(r) { "" } else { bands.value(r) };
            let decoded = decode_bands(band_text)
                .ok_or_else(|| err(format!("row {row}: bad `{BANDS_COLUMN}` value")))?;
            out.push(Fingerprint {
                file,
                row,
                seed_index: seeds.value(r),
                sample_index: samples.value(r),
                id: ids.value(r).to_string(),
                hash: if hashes.is_null(r) || hashes.value(r).is_empty() {
                    None
                } else {
                    Some(
                        u128::from_str_radix(hashes.value(r), 16)
                            .map_err(|_| err(format!("row {row}: bad `{HASH_COLUMN}` value")))?,
                    )
                },
                bands: decoded,
            });
        }
    }
    Ok(out)
}

/// Name of the rewritten version of a data file.
pub fn deduped_name(path: &str) -> String {
    match path.strip_suffix(".parquet") {
        Some(stem) => format!("{stem}-d.parquet"),
        None => format!("{path}-d"),
    }
}

/// Writes `path` without the rows in `drop` (sorted row numbers) as [`deduped_name`].
async fn rewrite(
    root: &Location,
    spec: &JobSpec,
    path: &str,
    drop: &[u32],
) -> Result<Option<WrittenFile>, DedupError> {
    let err = read_err(path);
    let loc = root.child(path);
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| err(e.to_string()))?;
    let schema = builder.schema().clone();
    let mut stream = builder.build().map_err(|e| err(e.to_string()))?;
    let new_path = deduped_name(path);
    let werr = |m: String| DedupError::Write {
        path: new_path.clone(),
        message: m,
    };
    let mut sink = ParquetFileSink::new(
        root,
        &new_path,
        "data",
        schema,
        &spec.output.compression,
        spec.output.batch_rows.max(1) * 8,
    )
    .map_err(|e| werr(e.to_string()))?;
    let mut row = 0u32;
    let mut d = drop.iter().peekable();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|_| {
                let gone = d.peek() == Some(&&row);
                if gone {
                    d.next();
                }
                row += 1;
                Some(!gone)
            })
            .collect();
        let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
            .map_err(|e| werr(e.to_string()))?;
        sink.write_batch(&kept)
            .await
            .map_err(|e| werr(e.to_string()))?;
    }
    sink.finish().await.map_err(|e| werr(e.to_string()))
}

/// Deduplicates the job's data files. Failure files are passed through unchanged.
pub async fn run(
    root: &Location,
    spec: &JobSpec,
    dp: &DedupParams,
    files: Vec<WrittenFile>,
) -> Result<DedupOutcome, DedupError> {
    let data: Vec<&WrittenFile> = files.iter().filter(|f| f.kind == "data").collect();
    // Owned inputs: a stream of futures borrowing from here would not be `Send` for all
    // lifetimes, which the scheduler's boxed finalizer future requires.
    let jobs: Vec<(u32, String)> = data
        .iter()
        .enumerate()
        .map(|(i, f)| (i as u32, f.path.clone()))
        .collect();
    let per_file: Vec<Vec<Fingerprint>> = futures::stream::iter(jobs)
        .map(|(i, path)| {
            let root = root.clone();
            async move { read_fingerprints(&root, i, &path).await }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let fps: Vec<Fingerprint> = per_file.into_iter().flatten().collect();
    let shards = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let fps = Arc::new(fps);
    let near = dp.near;
    let fps2 = fps.clone();
    let decisions = tokio::task::spawn_blocking(move || find_duplicates(&fps2, near, shards))
        .await
        .map_err(|e| DedupError::Spec(format!("dedup task panicked: {e}")))?;
    let mut drops: Vec<Vec<u32>> = vec![Vec::new(); data.len()];
    let mut outcome = DedupOutcome::default();
    for (fp, d) in fps.iter().zip(&decisions) {
        match d {
            Some(Removal::Exact) => outcome.exact += 1,
            Some(Removal::Near) => outcome.near += 1,
            None => continue,
        }
        drops[fp.file as usize].push(fp.row);
    }
    let mut rewritten: HashMap<String, Option<WrittenFile>> = HashMap::new();
    for (i, f) in data.iter().enumerate() {
        if drops[i].is_empty() {
            continue;
        }
        drops[i].sort_unstable();
        let new = rewrite(root, spec, &f.path, &drops[i]).await?;
        tracing::info!(file = %f.path, removed = drops[i].len(), "dedup rewrote data file");
        rewritten.insert(f.path.clone(), new);
        outcome.replaced.push(f.path.clone());
    }
    for f in files {
        match rewritten.remove(&f.path) {
            Some(Some(new)) => outcome.files.push(new),
            Some(None) => {} // every row of the file was a duplicate
            None => outcome.files.push(f),
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(seed: u64, hash: u128, bands: &[u64]) -> Fingerprint {
        Fingerprint {
            file: 0,
            row: seed as u32,
            seed_index: seed,
            sample_index: 0,
            id: format!("id{seed}"),
            hash: Some(hash),
            bands: bands.to_vec(),
        }
    }

    #[test]
    fn removals_at_finalize_are_what_the_manifest_adds_to_the_tasks() {
        let (job, mut tasks) = crate::control::store::conformance::job("j", 3);
        for (i, t) in tasks.iter_mut().enumerate() {
            t.stats = TaskStats {
                rows_in: 10,
                rows_out: 8,
                removed: BTreeMap::from([("judge".to_string(), 2)]),
                ..Default::default()
            };
            // The third task failed: its stats do not count.
            t.state = if i < 2 {
                TaskState::Done
            } else {
                TaskState::Failed
            };
        }
        let mut m = Manifest::new(&job.id, &job.name, Vec::new());
        m.removed = BTreeMap::from([
            ("judge".to_string(), 4),
            ("dedup_exact".to_string(), 5),
            ("dedup_near".to_string(), 0),
        ]);
        let (stats, removed) = stats_after_finalize(&tasks, &m);
        assert_eq!(removed, BTreeMap::from([("dedup_exact".to_string(), 5)]));
        assert_eq!((stats.rows_in, stats.rows_out), (20, 11));
        assert_eq!(stats.removed["judge"], 4);
        assert_eq!(stats.removed["dedup_exact"], 5);
    }

    #[test]
    fn keeps_first_of_each_cluster_whatever_the_input_order() {
        // 3 is an exact copy of 1; 4 shares a band with 2, 5 with 4 (a chain); 6 is distinct.
        let mut fps = vec![
            fp(5, 0xe, &[50, 41]),
            fp(3, 0xa, &[10, 11]),
            fp(1, 0xa, &[10, 11]),
            fp(2, 0xb, &[20, 21]),
            fp(4, 0xd, &[20, 41]),
            fp(6, 0xf, &[60, 61]),
        ];
        let d = find_duplicates(&fps, true, 2);
        let by_seed: HashMap<u64, Option<Removal>> = fps
            .iter()
            .map(|f| f.seed_index)
            .zip(d.iter().copied())
            .collect();
        assert_eq!(by_seed[&1], None);
        assert_eq!(by_seed[&3], Some(Removal::Exact));
        assert_eq!(by_seed[&2], None);
        assert_eq!(by_seed[&4], Some(Removal::Near));
        assert_eq!(by_seed[&5], Some(Removal::Near));
        assert_eq!(by_seed[&6], None);
        // Same decisions in another order and shard count.
        fps.reverse();
        let d2 = find_duplicates(&fps, true, 1);
        let by_seed2: HashMap<u64, Option<Removal>> = fps
            .iter()
            .map(|f| f.seed_index)
            .zip(d2.iter().copied())
            .collect();
        assert_eq!(by_seed, by_seed2);
        // Exact only.
        let d3 = find_duplicates(&fps, false, 1);
        assert_eq!(d3.iter().filter(|x| x.is_some()).count(), 1);
    }

    #[test]
    fn rewritten_names_are_distinct() {
        assert_eq!(
            deduped_name("data/part-000003-1.parquet"),
            "data/part-000003-1-d.parquet"
        );
    }
}
