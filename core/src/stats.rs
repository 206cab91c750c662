//! Task accounting: the counters a worker accumulates while it runs a task, reports on
//! completion, and that the coordinator sums into a job's totals. One type for both sides, so
//! what the worker counts and what the dataset card shows cannot drift apart.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{FailureRecord, Record};

/// Prefix of the item counters that are PII redactions (`pii:<type>`), summed per type.
const PII_COUNTER_PREFIX: &str = "pii:";

/// Distinct failure reasons counted apart per task (and per job); the rest are counted under
/// [`OTHER_REASONS`]. Reasons are cut to their first words, but a backend that puts a request
/// id in its error could still make every row's reason unique: this keeps the stats bounded.
pub const MAX_FAILURE_REASONS: usize = 32;
/// The reason rows beyond [`MAX_FAILURE_REASONS`] distinct ones are counted under.
pub const OTHER_REASONS: &str = "other reasons";
/// Longest reason kept: errors carry row-specific detail after their first words.
const REASON_CHARS: usize = 100;
/// Longest error text kept in a [`FailureExample`].
const EXAMPLE_ERROR_CHARS: usize = 300;

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
    /// Rows that went to `failures/`, by reason ([`failure_reason`]); at most
    /// [`MAX_FAILURE_REASONS`] reasons plus [`OTHER_REASONS`]. Sums to `rows_failed` (records
    /// stored before reasons were counted have it empty).
    #[serde(default)]
    pub failed: BTreeMap<String, u64>,
    /// The first failed row seen per reason of `failed`, so a reason can be looked up in the
    /// input without opening the failure files.
    #[serde(default)]
    pub failed_examples: BTreeMap<String, FailureExample>,
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

/// One failed row, as an example of its reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureExample {
    pub seed_id: String,
    /// Position in the input, e.g. `seeds.jsonl:17`.
    pub source: String,
    /// The row's error (first line, shortened).
    pub error: String,
}

/// The reason a failed row is counted under: `stage: what went wrong`, without the row's own
/// position (stage errors start with `source: stage `name`: `), cut to its first line and first
/// words, so rows that failed the same way count together.
pub fn failure_reason(f: &FailureRecord) -> String {
    let line = f.error.lines().next().unwrap_or_default().trim();
    let line = line
        .strip_prefix(f.source.as_str())
        .and_then(|rest| rest.strip_prefix(':'))
        .map(str::trim_start)
        .unwrap_or(line);
    let tag = format!("stage `{}`:", f.stage);
    let line = [format!("pipeline {tag}"), tag]
        .iter()
        .find_map(|t| line.strip_prefix(t.as_str()))
        .map_or(line, str::trim_start);
    let short: String = line.chars().take(REASON_CHARS).collect();
    if f.stage.is_empty() {
        short
    } else {
        format!("{}: {short}", f.stage)
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

    /// A row that went to the failures output (unreadable seed row, stage failure): counted
    /// by reason, the first of each reason kept as its example.
    pub fn count_failed(&mut self, f: &FailureRecord) {
        self.rows_failed += 1;
        let example = FailureExample {
            seed_id: f.seed_id.clone(),
            source: f.source.clone(),
            error: f
                .error
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(EXAMPLE_ERROR_CHARS)
                .collect(),
        };
        self.add_failed(failure_reason(f), 1, Some(&example));
    }

    /// Rows removed after the tasks ended (whole-job dedup at finalization): counted as
    /// removed, and no longer as output.
    pub fn count_removed_at_finalize(&mut self, removed: &BTreeMap<String, u64>) {
        for (reason, n) in removed {
            *self.removed.entry(reason.clone()).or_default() += n;
            self.rows_out = self.rows_out.saturating_sub(*n);
        }
    }

    /// Counts `n` failed rows under `reason` (or [`OTHER_REASONS`] once there are
    /// [`MAX_FAILURE_REASONS`]), keeping `example` if the reason has none yet.
    fn add_failed(&mut self, reason: String, n: u64, example: Option<&FailureExample>) {
        let reason = if self.failed.contains_key(&reason)
            || self.failed.len() < MAX_FAILURE_REASONS
            || reason == OTHER_REASONS
        {
            reason
        } else {
            OTHER_REASONS.to_string()
        };
        if let Some(e) = example {
            self.failed_examples
                .entry(reason.clone())
                .or_insert_with(|| e.clone());
        }
        *self.failed.entry(reason).or_default() += n;
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
        for (reason, n) in &o.failed {
            self.add_failed(reason.clone(), *n, o.failed_examples.get(reason));
        }
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
        s.count_failed(&failure("seeds.jsonl:3", "read", "not JSON"));
        assert_eq!((s.rows_out, s.rows_failed), (1, 1));
        assert_eq!(s.removed["filter:length"], 2);
        // Tokens of removed rows are spent all the same; per model only when a model made them.
        assert_eq!((s.prompt_tokens, s.completion_tokens), (14, 22));
        assert_eq!(s.prompt_tokens_by_model, BTreeMap::from([("m".into(), 11)]));
        assert_eq!(s.completion_tokens_by_model["m"], 22);
        assert_eq!(s.pii_redactions, BTreeMap::from([("email".into(), 4)]));
    }

    fn failure(source: &str, stage: &str, error: &str) -> FailureRecord {
        FailureRecord {
            seed_id: format!("id-{source}"),
            source: source.into(),
            stage: stage.into(),
            error: error.into(),
            ..Default::default()
        }
    }

    #[test]
    fn failure_reasons_leave_out_the_rows_position() {
        let f = failure(
            "seeds.jsonl:17",
            "generate",
            "seeds.jsonl:17: stage `generate`: HTTP 500: internal error\nbody: …",
        );
        assert_eq!(failure_reason(&f), "generate: HTTP 500: internal error");
        let read = failure("seeds.jsonl:3", "read", "expected value at line 1 column 2");
        assert_eq!(
            failure_reason(&read),
            "read: expected value at line 1 column 2"
        );
    }

    #[test]
    fn failed_rows_are_counted_by_reason_with_an_example() {
        let mut s = TaskStats::default();
        for i in 0..3 {
            let src = format!("s.jsonl:{i}");
            s.count_failed(&failure(
                &src,
                "generate",
                &format!("{src}: stage `generate`: HTTP 500"),
            ));
        }
        s.count_failed(&failure(
            "s.jsonl:9",
            "judge",
            "s.jsonl:9: stage `judge`: no score",
        ));
        assert_eq!(s.rows_failed, 4);
        assert_eq!(s.failed["generate: HTTP 500"], 3);
        assert_eq!(s.failed["judge: no score"], 1);
        let ex = &s.failed_examples["generate: HTTP 500"];
        assert_eq!(
            (ex.seed_id.as_str(), ex.source.as_str()),
            ("id-s.jsonl:0", "s.jsonl:0")
        );
        // Summed over tasks, the first example stays.
        let mut total = TaskStats::default();
        total.add(&s);
        total.add(&s);
        assert_eq!(total.failed["generate: HTTP 500"], 6);
        assert_eq!(
            total.failed_examples["generate: HTTP 500"].source,
            "s.jsonl:0"
        );
    }

    #[test]
    fn distinct_reasons_are_bounded_and_still_sum_to_the_failed_rows() {
        let mut s = TaskStats::default();
        for i in 0..(MAX_FAILURE_REASONS + 10) {
            s.count_failed(&failure("x:1", "generate", &format!("request {i} refused")));
        }
        assert_eq!(s.failed.len(), MAX_FAILURE_REASONS + 1);
        assert_eq!(s.failed[OTHER_REASONS], 10);
        assert_eq!(s.failed.values().sum::<u64>(), s.rows_failed);
        assert!(s.failed_examples.len() <= MAX_FAILURE_REASONS + 1);
    }

    #[test]
    fn stats_stored_before_reasons_existed_still_load() {
        let old =
            r#"{"rows_in":3,"rows_out":1,"rows_failed":2,"prompt_tokens":0,"completion_tokens":0}"#;
        let s: TaskStats = serde_json::from_str(old).unwrap();
        assert_eq!(s.rows_failed, 2);
        assert!(s.failed.is_empty() && s.failed_examples.is_empty());
    }

    #[test]
    fn removals_at_finalization_move_rows_from_output_to_removed() {
        let mut s = TaskStats {
            rows_in: 10,
            rows_out: 10,
            ..Default::default()
        };
        s.count_removed_at_finalize(&BTreeMap::from([("dedup_exact".to_string(), 3)]));
        assert_eq!((s.rows_out, s.removed["dedup_exact"]), (7, 3));
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
