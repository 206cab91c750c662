//! Cluster resolution: the final step of the dedup phase, over the edges only.
//!
//! Records that appear in no edge are not duplicates and never enter memory: this holds one
//! entry per record that is in some cluster (duplicates and their survivors), not per record
//! of the job. Union-find over the edges gives the clusters (connected components, so A~B and
//! B~C make one cluster even when A and C are not similar enough themselves); of each
//! cluster the smallest `(seed_index, sample_index, id)` survives, the rest are removed. A
//! removed record is counted as an exact duplicate when an earlier record has its exact hash
//! (an exact edge points at it), else as a near duplicate: the same counts as deduplicating
//! exact copies first and near duplicates among what is left.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Edge, RecordRef};

/// Why a record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Exact,
    Near,
}

/// What the clusters remove: per part, the rows that go (sorted), and the counts by reason.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removals {
    pub by_part: BTreeMap<u32, Vec<u32>>,
    pub exact: u64,
    pub near: u64,
}

/// Joins edges into clusters as they arrive (edges files are read one at a time).
#[derive(Default)]
pub struct ClusterBuilder {
    index: HashMap<(u32, u32), usize>,
    records: Vec<RecordRef>,
    parent: Vec<usize>,
    exact_copy: HashSet<usize>,
}

impl ClusterBuilder {
    fn node(&mut self, r: &RecordRef) -> usize {
        if let Some(&i) = self.index.get(&(r.part, r.row)) {
            return i;
        }
        let i = self.records.len();
        self.index.insert((r.part, r.row), i);
        self.records.push(r.clone());
        self.parent.push(i);
        i
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Adds one confirmed pair. The root of a cluster is always its smallest record.
    pub fn add(&mut self, e: &Edge) {
        let (a, b) = (self.node(&e.a), self.node(&e.b));
        if e.exact {
            // `b` has the hash of an earlier record.
            let later = if self.records[a] < self.records[b] {
                b
            } else {
                a
            };
            self.exact_copy.insert(later);
        }
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if self.records[ra] < self.records[rb] {
                (ra, rb)
            } else {
                (rb, ra)
            };
            self.parent[hi] = lo;
        }
    }

    /// Records held: the memory bound (duplicates plus their survivors).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Every record but the first of its cluster, by part.
    pub fn removals(mut self) -> Removals {
        let mut out = Removals::default();
        for i in 0..self.records.len() {
            if self.find(i) == i {
                continue;
            }
            let r = &self.records[i];
            out.by_part.entry(r.part).or_default().push(r.row);
            if self.exact_copy.contains(&i) {
                out.exact += 1;
            } else {
                out.near += 1;
            }
        }
        for rows in out.by_part.values_mut() {
            rows.sort_unstable();
        }
        out
    }
}

/// Resolves a whole set of edges at once (see [`ClusterBuilder`]).
pub fn resolve<'a>(edges: impl IntoIterator<Item = &'a Edge>) -> Removals {
    let mut b = ClusterBuilder::default();
    for e in edges {
        b.add(e);
    }
    b.removals()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seed: u64) -> RecordRef {
        RecordRef {
            seed,
            sample: 0,
            id: format!("s{seed}"),
            part: (seed / 10) as u32,
            row: (seed % 10) as u32,
        }
    }

    fn edge(a: u64, b: u64, exact: bool) -> Edge {
        Edge {
            a: rec(a),
            b: rec(b),
            exact,
        }
    }

    fn removed(r: &Removals) -> Vec<u64> {
        let mut out: Vec<u64> = r
            .by_part
            .iter()
            .flat_map(|(p, rows)| rows.iter().map(move |row| *p as u64 * 10 + *row as u64))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn chains_join_and_the_smallest_survives_in_any_edge_order() {
        // 3 and 1 exact copies; 12 ~ 4 ~ 25 a chain of near pairs (12 and 25 never compared);
        // 13 exact copy of 12, so exact even though its cluster's survivor is 4.
        let mut edges = vec![
            edge(1, 3, true),
            edge(4, 12, false),
            edge(4, 25, false),
            edge(12, 13, true),
            edge(4, 13, false),
        ];
        let r = resolve(&edges);
        assert_eq!(removed(&r), vec![3, 12, 13, 25]);
        assert_eq!((r.exact, r.near), (2, 2));
        assert_eq!(r.by_part[&1], vec![2, 3]);
        edges.reverse();
        assert_eq!(resolve(&edges), r);
        // Duplicate edges (a pair found in several bands) change nothing.
        let doubled: Vec<Edge> = edges.iter().chain(edges.iter()).cloned().collect();
        assert_eq!(resolve(&doubled), r);
    }

    #[test]
    fn memory_holds_only_records_in_edges() {
        let mut b = ClusterBuilder::default();
        assert!(b.is_empty());
        b.add(&edge(100, 200, false));
        b.add(&edge(200, 300, false));
        assert_eq!(b.len(), 3);
        let r = b.removals();
        assert_eq!(removed(&r), vec![200, 300]);
        assert_eq!((r.exact, r.near), (0, 2));
    }

    #[test]
    fn survivor_is_by_seed_then_sample_then_id() {
        let mut x = rec(5);
        x.sample = 1;
        let mut y = rec(6);
        y.seed = 5;
        y.sample = 0;
        let r = resolve(&[Edge {
            a: y.clone(),
            b: x.clone(),
            exact: false,
        }]);
        assert_eq!(r.by_part[&x.part], vec![x.row]);
    }
}
