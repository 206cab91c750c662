//! Task accounting: the counters a worker accumulates while it runs a task, reports on
//! completion, and that the coordinator sums into a job's totals. One type for both sides, so
//! what the worker counts and what the dataset card shows cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::Record;

/// Prefix of the item counters that are PII redactions (`pii:<type>`), summed per type.
const PII_COUNTER_PREFIX: &str = "pii:";

/// Counters a task reports on completion; the job's totals are their sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStats {
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Rows removed by a stage, by reason (e.g. `filter:length`, `dedup:exact`).
    #[serde(default)]
    pub removed: BTreeMap<String, u64>,
    #[serde(default)]
    pub prompt_tokens_by_model: BTreeMap<String, u64>,
    #[serde(default)]
    pub completion_tokens_by_model: BTreeMap<String, u64>,
    /// PII redactions by type.
    #[serde(default)]
    pub pii_redactions: BTreeMap<String, u64>,
    /// Where each seed row went (the counters above count records, several per seed row when
    /// a stage samples `n > 1`); `rows_in` = `seeds.total()` for every complete task.
    #[serde(default)]
    pub seeds: SeedOutcomes,
}

/// The accounting identity per seed row: each seed row of a task is counted exactly once, as
/// output (at least one of its records reached the output), else failed (by the stage that
/// failed first), else removed (by the first removal reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeedOutcomes {
    pub output: u64,
    #[serde(default)]
    pub removed: BTreeMap<String, u64>,
    #[serde(default)]
    pub failed: BTreeMap<String, u64>,
}

impl SeedOutcomes {
    pub fn removed_total(&self) -> u64 {
        self.removed.values().sum()
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Seed rows accounted for: output + removed + failed.
    pub fn total(&self) -> u64 {
        self.output + self.removed_total() + self.failed_total()
    }

    pub fn add(&mut self, o: &SeedOutcomes) {
        self.output += o.output;
        merge(&mut self.removed, &o.removed);
        merge(&mut self.failed, &o.failed);
    }
}

impl TaskStats {
    /// A record written to the output: one row out, its tokens, its PII redactions.
    pub fn count_kept(&mut self, record: &Record, counters: &BTreeMap<String, u64>) {
        self.count_pii(counters);
        self.count_tokens(record, true);
        self.rows_out += 1;
    }

    /// A record a stage removed (judge, filter, dedup): counted by reason. Its tokens were
    /// spent all the same, so they count too (per model only when a model produced it).
    pub fn count_removed(
        &mut self,
        record: &Record,
        counters: &BTreeMap<String, u64>,
        reason: &str,
    ) {
        self.count_pii(counters);
        self.count_tokens(record, !record.model.is_empty());
        *self.removed.entry(reason.to_string()).or_default() += 1;
    }

    /// A row that went to the failures output (unreadable seed row, stage failure).
    pub fn count_failed(&mut self) {
        self.rows_failed += 1;
    }

    /// Adds another task's counters (the coordinator's job totals).
    pub fn add(&mut self, o: &TaskStats) {
        self.rows_in += o.rows_in;
        self.rows_out += o.rows_out;
        self.rows_failed += o.rows_failed;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        merge(&mut self.removed, &o.removed);
        merge(&mut self.prompt_tokens_by_model, &o.prompt_tokens_by_model);
        merge(
            &mut self.completion_tokens_by_model,
            &o.completion_tokens_by_model,
        );
        merge(&mut self.pii_redactions, &o.pii_redactions);
        self.seeds.add(&o.seeds);
    }

    /// Failed seed rows: from the per-seed-row outcomes, or (stats of a worker that did not
    /// report them) the failure records.
    pub fn seed_rows_failed(&self) -> u64 {
        if self.seeds.total() == 0 {
            self.rows_failed
        } else {
            self.seeds.failed_total()
        }
    }

    fn count_tokens(&mut self, record: &Record, by_model: bool) {
        self.prompt_tokens += record.prompt_tokens;
        self.completion_tokens += record.completion_tokens;
        if by_model {
            *self
                .prompt_tokens_by_model
                .entry(record.model.clone())
                .or_default() += record.prompt_tokens;
            *self
                .completion_tokens_by_model
                .entry(record.model.clone())
                .or_default() += record.completion_tokens;
        }
    }

    fn count_pii(&mut self, counters: &BTreeMap<String, u64>) {
        for (k, v) in counters {
            if let Some(kind) = k.strip_prefix(PII_COUNTER_PREFIX) {
                *self.pii_redactions.entry(kind.to_string()).or_default() += v;
            }
        }
    }
}

fn merge(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, prompt: u64, completion: u64) -> Record {
        Record {
            model: model.into(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            ..Default::default()
        }
    }

    #[test]
    fn kept_removed_and_failed_rows_are_counted_apart() {
        let mut s = TaskStats::default();
        let counters = BTreeMap::from([("pii:email".to_string(), 2), ("other".to_string(), 5)]);
        s.count_kept(&record("m", 10, 20), &counters);
        s.count_removed(&record("m", 1, 2), &BTreeMap::new(), "filter:length");
        s.count_removed(&record("", 3, 0), &counters, "filter:length");
        s.count_failed();
        assert_eq!((s.rows_out, s.rows_failed), (1, 1));
        assert_eq!(s.removed["filter:length"], 2);
        // Tokens of removed rows are spent all the same; per model only when a model made them.
        assert_eq!((s.prompt_tokens, s.completion_tokens), (14, 22));
        assert_eq!(s.prompt_tokens_by_model, BTreeMap::from([("m".into(), 11)]));
        assert_eq!(s.completion_tokens_by_model["m"], 22);
        assert_eq!(s.pii_redactions, BTreeMap::from([("email".into(), 4)]));
    }

    #[test]
    fn add_sums_every_counter() {
        let mut a = TaskStats {
            rows_in: 3,
            ..Default::default()
        };
        a.count_kept(&record("m", 1, 1), &BTreeMap::new());
        let mut total = TaskStats::default();
        total.add(&a);
        total.add(&a);
        assert_eq!(total.rows_in, 6);
        assert_eq!(total.rows_out, 2);
        assert_eq!(total.prompt_tokens_by_model["m"], 2);
    }
}
