//! Where each seed row of a task went: every row read must end as output, removed or failed
//! before the task may complete (in = out + removed + failed). A row that vanished inside the
//! worker (a stage that returned nothing for it) fails the attempt instead of handing in a
//! silently shorter result.
//!
//! A seed row can yield several records (`n` samples, evolve answers): it counts once, as
//! output if any record of it reached the output, else failed (by the stage of its first
//! failure), else removed (by its first removal reason).
//!
//! Memory follows the rows in flight, not the task: a row is kept from its read until the
//! pipeline says it ended ([`SeedLedger::ended`]), then folded into the counters.

use std::collections::HashMap;

use synthforge_core::stats::SeedOutcomes;

/// Rows missing from a ledger's complaint before it summarises.
const SHOWN: usize = 10;

#[derive(Debug, Default)]
struct Seen {
    any: bool,
    output: bool,
    failed: Option<String>,
    removed: Option<String>,
}

/// The seed rows a task read: counters for the rows that ended, and every outcome seen so far
/// for the rows still in flight.
#[derive(Debug, Default)]
pub struct SeedLedger {
    read: u64,
    in_flight: HashMap<u64, Seen>,
    settled: SeedOutcomes,
    /// Rows that ended without any outcome (the first few named), and outcomes of rows that
    /// were never read or had ended already.
    missing: u64,
    missing_shown: Vec<u64>,
    strays: u64,
}

impl SeedLedger {
    /// A seed row was read.
    pub fn expect(&mut self, index: u64) {
        self.read += 1;
        self.in_flight.entry(index).or_default();
    }

    /// Seed rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.read
    }

    /// Rows read whose end has not been seen yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A record of row `index` reached the output; true for the row's first outcome.
    pub fn output(&mut self, index: u64) -> bool {
        self.record(index, |s| s.output = true)
    }

    /// A record of row `index` was removed for `reason`; true for the row's first outcome.
    pub fn removed(&mut self, index: u64, reason: &str) -> bool {
        self.record(index, |s| {
            s.removed.get_or_insert_with(|| reason.to_string());
        })
    }

    /// A record of row `index` failed in `stage`; true for the row's first outcome.
    pub fn failed(&mut self, index: u64, stage: &str) -> bool {
        self.record(index, |s| {
            s.failed.get_or_insert_with(|| stage.to_string());
        })
    }

    fn record(&mut self, index: u64, note: impl FnOnce(&mut Seen)) -> bool {
        let Some(s) = self.in_flight.get_mut(&index) else {
            self.strays += 1;
            return false;
        };
        let first = !s.any;
        s.any = true;
        note(s);
        first
    }

    /// Row `index` has no more outcomes to come: its outcome is counted and the row forgotten.
    pub fn ended(&mut self, index: u64) {
        let Some(s) = self.in_flight.remove(&index) else {
            self.strays += 1;
            return;
        };
        let out = &mut self.settled;
        if s.output {
            out.output += 1;
        } else if let Some(stage) = s.failed {
            *out.failed.entry(stage).or_default() += 1;
        } else if let Some(reason) = s.removed {
            *out.removed.entry(reason).or_default() += 1;
        } else {
            self.missing += 1;
            if self.missing_shown.len() < SHOWN {
                self.missing_shown.push(index);
            }
        }
    }

    /// The outcome of every seed row read, or what went wrong: rows with no outcome at all
    /// (ended without one, or never ended), outcomes of rows the task never read.
    pub fn outcomes(&self) -> Result<SeedOutcomes, String> {
        let mut shown = self.missing_shown.clone();
        let mut unended: Vec<u64> = self.in_flight.keys().copied().collect();
        unended.sort();
        shown.extend(unended.iter().take(SHOWN.saturating_sub(shown.len())));
        let missing = self.missing + unended.len() as u64;
        if missing == 0 && self.strays == 0 {
            return Ok(self.settled.clone());
        }
        let mut why = format!(
            "row accounting: {} seed row(s) in, {missing} with no output, removal or failure",
            self.read
        );
        if missing > 0 {
            let more = if missing > shown.len() as u64 {
                ", ..."
            } else {
                ""
            };
            let shown: Vec<String> = shown.iter().map(u64::to_string).collect();
            why.push_str(&format!(" (rows {}{more})", shown.join(", ")));
        }
        if self.strays > 0 {
            why.push_str(&format!(
                "; {} row(s) with outcomes that the task never read",
                self.strays
            ));
        }
        Err(why)
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
        for i in 0..5 {
            l.ended(i);
        }
        assert_eq!(l.in_flight(), 0, "ended rows are forgotten");
        let o = l.outcomes().unwrap();
        assert_eq!(o.output, 2);
        assert_eq!(o.failed.get("generate"), Some(&1));
        assert_eq!(o.failed.get("read"), Some(&1));
        assert_eq!(o.removed.get("filter:length"), Some(&1));
        assert_eq!(o.total(), 5, "in = out + removed + failed");
        assert_eq!(l.rows_read(), 5);
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
        for i in [10, 11, 13, 14] {
            l.ended(i);
        }
        let why = l.outcomes().expect_err("row 12 has not ended");
        assert!(
            why.contains("5 seed row(s) in, 1 with no output") && why.contains("(rows 12)"),
            "{why}"
        );
        l.failed(12, "generate");
        l.ended(12);
        assert_eq!(l.outcomes().unwrap().total(), 5);
        l.output(99);
        let why = l.outcomes().unwrap_err();
        assert!(
            why.contains("1 row(s) with outcomes that the task never read"),
            "{why}"
        );
    }

    #[test]
    fn a_row_that_ended_without_any_outcome_fails_the_accounting() {
        let mut l = SeedLedger::default();
        l.expect(7);
        l.ended(7);
        let why = l.outcomes().unwrap_err();
        assert!(
            why.contains("1 with no output") && why.contains("(rows 7)"),
            "{why}"
        );
        l.output(7);
        assert!(
            l.outcomes().unwrap_err().contains("never read"),
            "an outcome after the end"
        );
    }

    #[test]
    fn memory_follows_rows_in_flight_not_rows_read() {
        let mut l = SeedLedger::default();
        for i in 0..100_000u64 {
            l.expect(i);
            l.output(i);
            if i >= 3 {
                l.ended(i - 3);
            }
            assert!(l.in_flight() <= 4);
        }
        for i in 99_997..100_000 {
            l.ended(i);
        }
        assert_eq!(l.outcomes().unwrap().output, 100_000);
    }
}
