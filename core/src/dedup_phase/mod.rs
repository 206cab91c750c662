//! Whole-job dedup as leased work: the shared vocabulary of the coordinator (which plans the
//! phase and resolves clusters) and the workers (which run the bucket tasks). See docs/dedup.md.
//!
//! After generation, the coordinator writes the list of the job's accepted data parts
//! ([`PartsList`], at [`PARTS_PATH`]) and plans one task per (band, hash range) and per exact
//! hash range ([`DedupWork`]). A task reads only the fingerprint columns of the parts
//! ([`fingerprints`]), keeps the records whose bucket hash falls in its range, and writes the
//! confirmed duplicate pairs ([`Edge`]s, [`buckets`]) as its attempt's output. The finalizer
//! then joins the edges into clusters ([`clusters`]) with memory proportional to the number of
//! duplicates and rewrites only the parts that lose rows.

pub mod buckets;
pub mod clusters;
pub mod fingerprints;

use serde::{Deserialize, Serialize};

/// The list of data parts a dedup phase works on, written by the coordinator when it plans
/// the phase (deterministic: the same ended tasks always give the same list).
pub const PARTS_PATH: &str = "_dedup/parts.json";
/// Where bucket tasks write their edges; removed once the manifest is written.
pub const DEDUP_DIR: &str = "_dedup";
/// `WrittenFile::kind` of an edges file: never part of the dataset.
pub const EDGES_KIND: &str = "dedup_edges";

/// Which bucket a dedup task covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupKind {
    /// Records whose exact hash (its high 64 bits) falls in the task's range.
    Exact,
    /// Records whose hash of this MinHash band falls in the task's range.
    Band(u32),
}

/// One dedup task: a bucket kind and a hash range (`range` of `ranges` equal slices of the
/// 64-bit hash space).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupWork {
    pub kind: DedupKind,
    pub range: u32,
    pub ranges: u32,
}

impl DedupWork {
    /// Whether `hash` belongs to this task's range.
    pub fn covers(&self, hash: u64) -> bool {
        range_of(hash, self.ranges) == self.range
    }

    /// A short name for logs and the edges file: `exact-r0of1`, `band3-r1of4`.
    pub fn label(&self) -> String {
        match self.kind {
            DedupKind::Exact => format!("exact-r{}of{}", self.range, self.ranges),
            DedupKind::Band(b) => format!("band{b}-r{}of{}", self.range, self.ranges),
        }
    }
}

/// The range (of `ranges` equal slices of the u64 space) that `hash` falls in.
pub fn range_of(hash: u64, ranges: u32) -> u32 {
    ((hash as u128 * ranges.max(1) as u128) >> 64) as u32
}

/// The tasks of a dedup phase over `records` records: per hash range, the exact bucket, and
/// with `near` one bucket per band. Ranges are chosen so a task holds about `partition_rows`
/// records at most.
pub fn plan(records: u64, bands: usize, near: bool, partition_rows: u64) -> Vec<DedupWork> {
    let ranges = records
        .div_ceil(partition_rows.max(1))
        .clamp(1, u32::MAX as u64) as u32;
    let mut out = Vec::new();
    for range in 0..ranges {
        out.push(DedupWork {
            kind: DedupKind::Exact,
            range,
            ranges,
        });
    }
    if near {
        for band in 0..bands as u32 {
            for range in 0..ranges {
                out.push(DedupWork {
                    kind: DedupKind::Band(band),
                    range,
                    ranges,
                });
            }
        }
    }
    out
}

/// The data parts of a dedup phase: a record is named by its part's index here and its row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartsList {
    pub parts: Vec<String>,
}

/// A record as the dedup phase names it: where it is (part index, row) and its ordering key.
/// Ordered by `(seed_index, sample_index, id)`, the survivor rule: of a cluster, the smallest
/// stays, whatever the task order, worker count or retries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordRef {
    pub seed: u64,
    pub sample: u32,
    pub id: String,
    pub part: u32,
    pub row: u32,
}

impl RecordRef {
    fn key(&self) -> (u64, u32, &str, u32, u32) {
        (self.seed, self.sample, &self.id, self.part, self.row)
    }
}

impl Ord for RecordRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for RecordRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A confirmed duplicate pair: `b` duplicates `a`, and `a` comes first (`a < b`). `exact`:
/// same normalized-text hash, so `b` is an exact duplicate; else a near duplicate whose
/// estimated Jaccard reached the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub a: RecordRef,
    pub b: RecordRef,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exact: bool,
}

/// Edges as JSON lines (one edge a line): the output of a bucket task.
pub fn encode_edges(edges: &[Edge]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in edges {
        serde_json::to_writer(&mut out, e).expect("an edge serializes");
        out.push(b'\n');
    }
    out
}

/// Inverse of [`encode_edges`].
pub fn decode_edges(bytes: &[u8]) -> Result<Vec<Edge>, String> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_slice(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// The edges file of a bucket task's attempt: attempt-named like every task output, so two
/// attempts never write the same object.
pub fn edges_path(task_id: u64, attempt: u32) -> String {
    format!("{DEDUP_DIR}/edges/part-{task_id:06}-{attempt}.jsonl")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_hash_space_once() {
        for ranges in [1u32, 2, 3, 7] {
            for h in [0u64, 1, u64::MAX / 3, u64::MAX / 2, u64::MAX - 1, u64::MAX] {
                let r = range_of(h, ranges);
                assert!(r < ranges);
                let tasks = plan(ranges as u64, 2, true, 1);
                let covering = tasks
                    .iter()
                    .filter(|w| w.kind == DedupKind::Exact && w.covers(h))
                    .count();
                assert_eq!(covering, 1);
            }
        }
        assert_eq!(range_of(u64::MAX, 4), 3);
        assert_eq!(range_of(0, 4), 0);
    }

    #[test]
    fn plan_sizes_ranges_by_records() {
        assert_eq!(plan(10, 14, true, 500_000).len(), 15);
        assert_eq!(plan(10, 14, false, 500_000).len(), 1);
        let p = plan(1_000_001, 14, true, 500_000);
        assert_eq!(p.len(), 3 * 15);
        assert!(p.iter().all(|w| w.ranges == 3));
        assert_eq!(plan(0, 2, true, 10).len(), 3);
    }

    #[test]
    fn edges_round_trip() {
        let r = |seed| RecordRef {
            seed,
            sample: 0,
            id: format!("r{seed}"),
            part: 1,
            row: seed as u32,
        };
        let edges = vec![
            Edge {
                a: r(1),
                b: r(2),
                exact: true,
            },
            Edge {
                a: r(1),
                b: r(3),
                exact: false,
            },
        ];
        assert_eq!(decode_edges(&encode_edges(&edges)).unwrap(), edges);
        assert!(decode_edges(b"{").is_err());
        assert_eq!(edges_path(3, 2), "_dedup/edges/part-000003-2.jsonl");
    }
}
