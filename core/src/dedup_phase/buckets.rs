//! Bucket tasks' core: from the records of one bucket partition to confirmed duplicate pairs.
//!
//! Exact buckets group records by their normalized-text hash; every member after the first
//! (in survivor order) is an exact duplicate of the first. Band buckets group records whose
//! hash of one MinHash band collides; a collision is only a candidate: the pair counts when the
//! estimated Jaccard of the two signature sketches reaches the threshold (a band collision
//! alone also happens, rarely, to texts of Jaccard 0.5 or below).

use std::collections::HashMap;

use super::{Edge, RecordRef};
use crate::minhash::sketch_jaccard;

/// One record in a band bucket partition.
#[derive(Debug, Clone)]
pub struct BandEntry {
    pub rec: RecordRef,
    /// The record's hash of the task's band.
    pub bucket: u64,
    pub sketch: Vec<u16>,
}

/// Exact-duplicate edges: per hash, the first record (smallest key) to each other one.
pub fn exact_edges(mut entries: Vec<(u128, RecordRef)>) -> Vec<Edge> {
    entries.sort_unstable_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
    let mut edges = Vec::new();
    for group in entries.chunk_by(|x, y| x.0 == y.0) {
        let first = &group[0].1;
        for (_, other) in &group[1..] {
            edges.push(Edge {
                a: first.clone(),
                b: other.clone(),
                exact: true,
            });
        }
    }
    edges
}

/// Near-duplicate edges of one band partition: pairs sharing a bucket whose estimated
/// Jaccard is at least `threshold`.
///
/// Members with identical sketches are linked to the first of them without comparing (they
/// are the common case: exact duplicates, which also have their own exact edges); the
/// distinct sketches of a bucket are then compared pairwise. Every confirmed pair is an edge,
/// so clusters chain: A~B and B~C join A, B and C even when A and C are below the threshold.
/// Cost: quadratic in the distinct sketches of one bucket, which stay few unless very many
/// records are near copies of each other.
pub fn band_edges(mut entries: Vec<BandEntry>, threshold: f64) -> Vec<Edge> {
    entries.sort_unstable_by(|x, y| (x.bucket, &x.rec).cmp(&(y.bucket, &y.rec)));
    let mut edges = Vec::new();
    for group in entries.chunk_by(|x, y| x.bucket == y.bucket) {
        if group.len() < 2 {
            continue;
        }
        // Sorted by key: the first of equal sketches is the one that may survive.
        let mut reps: Vec<&BandEntry> = Vec::new();
        let mut by_sketch: HashMap<&[u16], &RecordRef> = HashMap::new();
        for e in group {
            match by_sketch.get(e.sketch.as_slice()) {
                Some(first) => edges.push(Edge {
                    a: (*first).clone(),
                    b: e.rec.clone(),
                    exact: false,
                }),
                None => {
                    by_sketch.insert(&e.sketch, &e.rec);
                    reps.push(e);
                }
            }
        }
        for (i, x) in reps.iter().enumerate() {
            for y in &reps[i + 1..] {
                if sketch_jaccard(&x.sketch, &y.sketch) >= threshold {
                    edges.push(Edge {
                        a: x.rec.clone(),
                        b: y.rec.clone(),
                        exact: false,
                    });
                }
            }
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seed: u64) -> RecordRef {
        RecordRef {
            seed,
            sample: 0,
            id: format!("s{seed}"),
            part: (seed % 3) as u32,
            row: seed as u32,
        }
    }

    fn sketch_like(base: &[u16], differ: usize) -> Vec<u16> {
        let mut s = base.to_vec();
        for v in s.iter_mut().take(differ) {
            *v = v.wrapping_add(1);
        }
        s
    }

    fn pairs(edges: &[Edge]) -> Vec<(u64, u64, bool)> {
        let mut p: Vec<_> = edges
            .iter()
            .map(|e| (e.a.seed, e.b.seed, e.exact))
            .collect();
        p.sort();
        p
    }

    #[test]
    fn exact_buckets_link_every_copy_to_the_first() {
        let edges = exact_edges(vec![
            (7, rec(9)),
            (5, rec(4)),
            (7, rec(2)),
            (7, rec(6)),
            (8, rec(1)),
        ]);
        assert_eq!(pairs(&edges), vec![(2, 6, true), (2, 9, true)]);
    }

    #[test]
    fn band_collisions_count_only_above_the_threshold() {
        let base: Vec<u16> = (0..100).collect();
        let entries = vec![
            // Bucket 1: 10 is the base, 11 differs in 10 slots (J = 0.9), 12 in 60 (J = 0.4).
            BandEntry {
                rec: rec(11),
                bucket: 1,
                sketch: sketch_like(&base, 10),
            },
            BandEntry {
                rec: rec(12),
                bucket: 1,
                sketch: sketch_like(&base, 60),
            },
            BandEntry {
                rec: rec(10),
                bucket: 1,
                sketch: base.clone(),
            },
            // Bucket 2: two identical sketches (linked without comparing) and a lone record.
            BandEntry {
                rec: rec(21),
                bucket: 2,
                sketch: sketch_like(&base, 99),
            },
            BandEntry {
                rec: rec(20),
                bucket: 2,
                sketch: sketch_like(&base, 99),
            },
            BandEntry {
                rec: rec(30),
                bucket: 3,
                sketch: base.clone(),
            },
        ];
        let edges = band_edges(entries.clone(), 0.7);
        assert_eq!(
            pairs(&edges),
            vec![(10, 11, false), (20, 21, false)],
            "the J = 0.4 collision is not a duplicate; bucket 3 has one member"
        );
        // A threshold of 0 takes every collision, as band collision alone would.
        let all = band_edges(entries, 0.0);
        assert_eq!(
            pairs(&all),
            vec![
                (10, 11, false),
                (10, 12, false),
                (11, 12, false),
                (20, 21, false)
            ]
        );
    }

    #[test]
    fn chained_pairs_are_all_edges() {
        // A~B (J = 0.8), B~C (J = 0.8), A≁C (J = 0.6): both edges come out.
        let a: Vec<u16> = (0..100).collect();
        let mut b = a.clone();
        for v in b.iter_mut().take(20) {
            *v += 1000;
        }
        let mut c = b.clone();
        for v in c.iter_mut().skip(20).take(20) {
            *v += 1000;
        }
        let e = |seed, sketch: &Vec<u16>| BandEntry {
            rec: rec(seed),
            bucket: 5,
            sketch: sketch.clone(),
        };
        let edges = band_edges(vec![e(3, &c), e(1, &a), e(2, &b)], 0.75);
        assert_eq!(pairs(&edges), vec![(1, 2, false), (2, 3, false)]);
    }
}
