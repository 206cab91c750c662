//! The central end-to-end invariant: every seed row is accounted for exactly once, whatever
//! crashed, retried or failed on the way. Valid for pipelines that emit one record per seed row
//! (one `generate` stage, one sample); pipelines that fan out or filter need their own counts.

use std::collections::{BTreeMap, HashSet};

use crate::output::Output;

/// How many offending ids each problem lists before summarising.
const EXAMPLES: usize = 10;

/// Every problem with the accounting of `seed_ids` in `output`; empty when all is well:
/// - the manifest agrees with its files;
/// - no output `id` repeats;
/// - every seed id appears exactly once in output rows ∪ failures;
/// - no output or failure refers to a seed id that is not in the seed.
pub fn accounting_problems(seed_ids: &[String], output: &Output) -> Vec<String> {
    let mut problems = output.manifest_problems();

    let mut seen_ids = HashSet::new();
    let repeated: Vec<&str> = output
        .rows
        .iter()
        .filter(|r| !seen_ids.insert(r.id.as_str()))
        .map(|r| r.id.as_str())
        .collect();
    report(&mut problems, "output ids repeated", &repeated);

    let mut uses: BTreeMap<&str, usize> = seed_ids.iter().map(|s| (s.as_str(), 0)).collect();
    let mut unknown = Vec::new();
    let referenced = output
        .rows
        .iter()
        .map(|r| Some(r.seed_id.as_str()))
        .chain(output.failures.iter().map(|f| f.seed_id.as_deref()));
    for seed in referenced.flatten() {
        match uses.get_mut(seed) {
            Some(n) => *n += 1,
            None => unknown.push(seed),
        }
    }
    let missing: Vec<&str> = uses
        .iter()
        .filter(|(_, &n)| n == 0)
        .map(|(s, _)| *s)
        .collect();
    let duplicated: Vec<&str> = uses
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(s, _)| *s)
        .collect();
    report(
        &mut problems,
        "seed ids missing from output and failures",
        &missing,
    );
    report(
        &mut problems,
        "seed ids accounted for more than once",
        &duplicated,
    );
    report(&mut problems, "seed ids not in the seed", &unknown);
    problems
}

/// Panics listing every accounting problem (see [`accounting_problems`]).
#[track_caller]
pub fn assert_accounted(seed_ids: &[String], output: &Output) {
    let problems = accounting_problems(seed_ids, output);
    assert!(
        problems.is_empty(),
        "seed rows not accounted for exactly once ({} seeds, {} output rows, {} failures, \
         output in {}):\n  {}",
        seed_ids.len(),
        output.rows.len(),
        output.failures.len(),
        output.root.display(),
        problems.join("\n  ")
    );
}

fn report(problems: &mut Vec<String>, what: &str, ids: &[&str]) {
    if ids.is_empty() {
        return;
    }
    let shown: Vec<&str> = ids.iter().take(EXAMPLES).copied().collect();
    let more = ids.len().saturating_sub(EXAMPLES);
    let suffix = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    problems.push(format!("{} {what}: {shown:?}{suffix}", ids.len()));
}
