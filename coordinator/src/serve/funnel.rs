//! A job's per-stage funnel for the dashboard: rows in → out at each stage, removed by reason
//! and failed by reason, in pipeline order, with the whole-job dedup of finalization last.
//!
//! It is derived from the job's summed [`TaskStats`] and its pipeline, not counted at each
//! stage: removals name their stage in the reason (`judge`, `filter:length`,
//! `evolve:eliminated`, `dedup_exact`) and failures in their stage field. Rows in and out are
//! exact for stages that never emit more rows than they take (judge, filter, pii,
//! decontaminate), computed forwards from the seed rows and backwards from the output; a
//! stage that may emit several rows per row (generate with `samples`, evolve, taxonomy_qa…)
//! leaves the counts on its far side unknown (`null`) when neither direction reaches them.
//! Several stages of one kind are one step (their reasons cannot be told apart).

use std::collections::BTreeMap;

use serde::Serialize;
use synthforge_core::spec::JobSpec;

use crate::model::TaskStats;

/// Stage kinds that emit at most one row per row they take.
const ONE_TO_ONE: [&str; 5] = ["judge", "filter", "pii", "decontaminate", "dedup"];
/// The step of unreadable seed rows (failures whose stage is `read`).
const READ: &str = "read";

/// One step of the funnel.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FunnelStep {
    /// The stage kind (`read` for reading the seed rows).
    pub stage: String,
    /// How many pipeline stages of this kind the step stands for.
    pub stages: usize,
    /// Whether the step happens after the tasks ended (whole-job dedup), not on the workers.
    pub at_finalize: bool,
    pub rows_in: Option<u64>,
    pub rows_out: Option<u64>,
    pub removed: BTreeMap<String, u64>,
    pub failed: BTreeMap<String, u64>,
}

impl FunnelStep {
    fn new(stage: &str) -> Self {
        FunnelStep {
            stage: stage.to_string(),
            stages: 1,
            ..Default::default()
        }
    }

    fn lost(&self) -> u64 {
        self.removed.values().sum::<u64>() + self.failed.values().sum::<u64>()
    }

    fn one_to_one(&self) -> bool {
        self.stage == READ || ONE_TO_ONE.contains(&self.stage.as_str())
    }
}

/// Whether a removal or failure reason belongs to stage kind `kind`.
fn belongs(reason: &str, kind: &str) -> bool {
    reason
        .strip_prefix(kind)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '_']))
}

/// The funnel of a job running `spec` that has counted `stats` so far.
pub fn funnel(spec: &JobSpec, stats: &TaskStats) -> Vec<FunnelStep> {
    let mut steps = vec![FunnelStep::new(READ)];
    let mut dedup: Option<FunnelStep> = None;
    for s in &spec.pipeline {
        let kind = s.kind();
        if kind == "dedup" {
            let d = dedup.get_or_insert_with(|| FunnelStep::new(kind));
            d.at_finalize = true;
            continue;
        }
        match steps.iter_mut().find(|st| st.stage == kind) {
            Some(st) => st.stages += 1,
            None => steps.push(FunnelStep::new(kind)),
        }
    }
    steps.extend(dedup);
    let mut other = FunnelStep::new("other");
    other.stages = 0;
    for (reason, n) in &stats.removed {
        match steps.iter_mut().find(|st| belongs(reason, &st.stage)) {
            Some(st) => st.removed.insert(reason.clone(), *n),
            None => other.removed.insert(reason.clone(), *n),
        };
    }
    for (reason, n) in &stats.failed {
        match steps.iter_mut().find(|st| belongs(reason, &st.stage)) {
            Some(st) => st.failed.insert(reason.clone(), *n),
            None => other.failed.insert(reason.clone(), *n),
        };
    }
    let finalize_removed: u64 = steps
        .iter()
        .filter(|s| s.at_finalize)
        .map(FunnelStep::lost)
        .sum();
    // Forwards from the seed rows read, while every stage keeps at most one row per row.
    let mut known = Some(stats.rows_in);
    for st in steps.iter_mut().filter(|s| !s.at_finalize) {
        st.rows_in = known;
        st.rows_out = known
            .filter(|_| st.one_to_one())
            .map(|n| n.saturating_sub(st.lost()));
        known = st.rows_out;
    }
    // Backwards from the output the workers wrote (before the finalization's removals).
    let mut known = Some(stats.rows_out + finalize_removed);
    for st in steps.iter_mut().rev().filter(|s| !s.at_finalize) {
        if st.rows_out.is_none() {
            st.rows_out = known;
        }
        if st.rows_in.is_none() && st.one_to_one() {
            st.rows_in = st.rows_out.map(|n| n + st.lost());
        }
        known = st.rows_in;
    }
    for st in steps.iter_mut().filter(|s| s.at_finalize) {
        st.rows_in = Some(stats.rows_out + finalize_removed);
        st.rows_out = Some(stats.rows_out);
    }
    if !other.removed.is_empty() || !other.failed.is_empty() {
        steps.push(other);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(stages: &str) -> JobSpec {
        let yaml = format!(
            "name: f\ninput:\n  path: /tmp/in.jsonl\n  format: jsonl\n\
             backends:\n  gen:\n    url: http://127.0.0.1:9/v1\n    model: m\n\
             output:\n  path: /tmp/out\npipeline:\n{stages}"
        );
        JobSpec::from_yaml(&yaml, "job.yaml").unwrap()
    }

    const GENERATE: &str = "  - stage: generate\n    backend: gen\n    template: '{{ text }}'\n";

    fn counts(stats: &mut TaskStats, removed: &[(&str, u64)], failed: &[(&str, u64)]) {
        for (r, n) in removed {
            stats.removed.insert(r.to_string(), *n);
        }
        for (r, n) in failed {
            stats.failed.insert(r.to_string(), *n);
            stats.rows_failed += n;
        }
    }

    #[test]
    fn one_row_per_row_stages_balance_in_both_directions() {
        let spec = spec(&format!(
            "{GENERATE}  - stage: filter\n    min_words: 3\n  - stage: dedup\n    columns: [completion]\n"
        ));
        let mut s = TaskStats {
            rows_in: 100,
            rows_out: 80,
            ..Default::default()
        };
        counts(
            &mut s,
            &[("filter:length", 6), ("dedup_exact", 4)],
            &[("read: not JSON", 2), ("generate: HTTP 500", 8)],
        );
        let f = funnel(&spec, &s);
        let by = |k: &str| f.iter().find(|st| st.stage == k).unwrap().clone();
        assert_eq!(
            f.iter().map(|s| s.stage.as_str()).collect::<Vec<_>>(),
            ["read", "generate", "filter", "dedup"]
        );
        assert_eq!(
            (by("read").rows_in, by("read").rows_out),
            (Some(100), Some(98))
        );
        // generate may emit several rows per row: its output comes from the backward pass.
        assert_eq!(
            (by("generate").rows_in, by("generate").rows_out),
            (Some(98), Some(90))
        );
        assert_eq!(by("generate").failed["generate: HTTP 500"], 8);
        assert_eq!(
            (by("filter").rows_in, by("filter").rows_out),
            (Some(90), Some(84))
        );
        let d = by("dedup");
        assert!(d.at_finalize);
        assert_eq!((d.rows_in, d.rows_out), (Some(84), Some(80)));
        assert_eq!(d.removed["dedup_exact"], 4);
    }

    #[test]
    fn reasons_of_no_stage_in_the_pipeline_are_shown_apart() {
        let spec = spec(GENERATE);
        let mut s = TaskStats {
            rows_in: 10,
            rows_out: 9,
            ..Default::default()
        };
        counts(&mut s, &[("judgement", 1)], &[]);
        let f = funnel(&spec, &s);
        let other = f.last().unwrap();
        assert_eq!(other.stage, "other");
        assert_eq!(other.removed["judgement"], 1);
    }
}
