//! Where each seed row of a task went, kept while the task runs: every row read must end as
//! output, removed or failed before the task may complete (in = out + removed + failed). A row
//! that vanished inside the worker (a stage that returned nothing for it) fails the attempt
//! instead of handing in a silently shorter result.
//!
//! A seed row can yield several records (`n` samples, evolve answers): it counts once, as
//! output if any record of it reached the output, else failed (by the stage of its first
//! failure), else removed (by its first removal reason).

use std::collections::HashMap;

use synthforge_core::stats::SeedOutcomes;

/// Rows missing from a ledger's complaint before it summarises.
const SHOWN: usize = 10;

#[derive(Debug, Default)]
struct Seen {
    output: bool,
    failed: Option<String>,
    removed: Option<String>,
}

/// The seed rows a task read, and every outcome seen for each.
#[derive(Debug, Default)]
pub struct SeedLedger {
    expected: Vec<u64>,
    seen: HashMap<u64, Seen>,
}

impl SeedLedger {
    /// A seed row was read.
    pub fn expect(&mut self, index: u64) {
        self.expected.push(index);
    }

    /// A record of row `index` reached the output; true for the row's first outcome.
    pub fn output(&mut self, index: u64) -> bool {
        let (first, s) = self.entry(index);
        s.output = true;
        first
    }

    /// A record of row `index` was removed for `reason`; true for the row's first outcome.
    pub fn removed(&mut self, index: u64, reason: &str) -> bool {
        let (first, s) = self.entry(index);
        s.removed.get_or_insert_with(|| reason.to_string());
        first
    }

    /// A record of row `index` failed in `stage`; true for the row's first outcome.
    pub fn failed(&mut self, index: u64, stage: &str) -> bool {
        let (first, s) = self.entry(index);
        s.failed.get_or_insert_with(|| stage.to_string());
        first
    }

    fn entry(&mut self, index: u64) -> (bool, &mut Seen) {
        let first = !self.seen.contains_key(&index);
        (first, self.seen.entry(index).or_default())
    }

    /// The outcome of every seed row read, or what went wrong: rows with no outcome at all,
    /// outcomes of rows the task never read.
    pub fn outcomes(&self) -> Result<SeedOutcomes, String> {
        let missing: Vec<u64> = self
            .expected
            .iter()
            .copied()
            .filter(|i| !self.seen.contains_key(i))
            .collect();
        let unknown = (self.seen.len() + missing.len()).saturating_sub(self.expected.len());
        if !missing.is_empty() || unknown > 0 {
            let shown: Vec<String> = missing.iter().take(SHOWN).map(u64::to_string).collect();
            let mut why = format!(
                "row accounting: {} seed row(s) in, {} with no output, removal or failure",
                self.expected.len(),
                missing.len()
            );
            if !missing.is_empty() {
                let more = if missing.len() > SHOWN { ", ..." } else { "" };
                why.push_str(&format!(" (rows {}{more})", shown.join(", ")));
            }
            if unknown > 0 {
                why.push_str(&format!(
                    "; {unknown} row(s) with outcomes that the task never read"
                ));
            }
            return Err(why);
        }
        let mut out = SeedOutcomes::default();
        for i in &self.expected {
            let s = &self.seen[i];
            if s.output {
                out.output += 1;
            } else if let Some(stage) = &s.failed {
                *out.failed.entry(stage.clone()).or_default() += 1;
            } else if let Some(reason) = &s.removed {
                *out.removed.entry(reason.clone()).or_default() += 1;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_seed_row_counts_once_output_before_failed_before_removed() {
        let mut l = SeedLedger::default();
        for i in 0..5 {
            l.expect(i);
        }
        assert!(l.output(0));
        assert!(
            !l.failed(0, "judge"),
            "sample 2 of row 0 failed: still output"
        );
        assert!(l.removed(1, "judge"));
        assert!(!l.failed(1, "generate"));
        assert!(l.removed(2, "filter:length"));
        assert!(!l.removed(2, "judge"));
        assert!(l.failed(3, "read"));
        assert!(l.output(4));
        let o = l.outcomes().unwrap();
        assert_eq!(o.output, 2);
        assert_eq!(o.failed.get("generate"), Some(&1));
        assert_eq!(o.failed.get("read"), Some(&1));
        assert_eq!(o.removed.get("filter:length"), Some(&1));
        assert_eq!(o.total(), 5, "in = out + removed + failed");
    }

    #[test]
    fn rows_that_went_nowhere_or_came_from_nowhere_are_named() {
        let mut l = SeedLedger::default();
        for i in 10..15 {
            l.expect(i);
        }
        for i in [10, 11, 11, 13, 14] {
            l.output(i);
        }
        let why = l.outcomes().expect_err("row 12 is missing");
        assert!(
            why.contains("5 seed row(s) in, 1 with no output") && why.contains("(rows 12)"),
            "{why}"
        );
        l.failed(12, "generate");
        assert_eq!(l.outcomes().unwrap().total(), 5);
        l.output(99);
        let why = l.outcomes().unwrap_err();
        assert!(
            why.contains("1 row(s) with outcomes that the task never read"),
            "{why}"
        );
    }
}
