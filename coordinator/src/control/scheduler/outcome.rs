//! How a finalized job ends: `succeeded` only when no task failed and the failed seed rows stay
//! within the job's failure budget (`scheduling.max_failed_fraction`); otherwise `failed`, with
//! the failed tasks and the top failure reasons in the job's error, so a broken run is never
//! reported as a success.

use std::collections::BTreeMap;

use synthforge_core::spec::SchedulingSpec;

use crate::finalize::failures::reason_key;
use crate::model::{JobState, TaskRecord, TaskState, TaskStats};

/// Reasons named in a failed job's error.
const TOP_REASONS: usize = 5;
/// Failed tasks named in a failed job's error.
const TOP_TASKS: usize = 5;

/// The job's final state and error. `stats` sums the completed tasks; `row_reasons` are the
/// failed rows by reason from the failure files (the manifest's `failure_reasons`).
pub(super) fn judge(
    seed_rows: u64,
    scheduling: &SchedulingSpec,
    tasks: &[TaskRecord],
    stats: &TaskStats,
    row_reasons: &BTreeMap<String, u64>,
) -> (JobState, String) {
    let failed: Vec<&TaskRecord> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .collect();
    let failed_task_rows: u64 = failed.iter().map(|t| t.slice.row_count).sum();
    let failed_rows = stats.rows_failed + failed_task_rows;
    let fraction = if seed_rows == 0 {
        0.0
    } else {
        failed_rows as f64 / seed_rows as f64
    };
    // Every row failing fails the job whatever the budget (even a budget of 1).
    let over_budget =
        seed_rows > 0 && (fraction > scheduling.max_failed_fraction || failed_rows >= seed_rows);
    let mut parts = Vec::new();
    if !failed.is_empty() {
        parts.push(format!(
            "{} of {} tasks failed: {}",
            failed.len(),
            tasks.len(),
            failed
                .iter()
                .take(TOP_TASKS)
                .map(|t| format!("task {}: {}", t.task_id, t.last_error))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if over_budget {
        let mut reasons = row_reasons.clone();
        for t in &failed {
            *reasons
                .entry(format!("task failed: {}", reason_key("", &t.last_error)))
                .or_default() += t.slice.row_count;
        }
        let mut top: Vec<(String, u64)> = reasons.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let named = top
            .iter()
            .take(TOP_REASONS)
            .map(|(r, n)| format!("{r} ({n})"))
            .collect::<Vec<_>>();
        let reasons = if named.is_empty() {
            "see failures/".to_string()
        } else {
            named.join("; ")
        };
        parts.push(format!(
            "{failed_rows} of {seed_rows} seed rows failed ({:.1}%, budget {:.1}%); top reasons: {reasons}",
            fraction * 100.0,
            scheduling.max_failed_fraction * 100.0,
        ));
    }
    if parts.is_empty() {
        (JobState::Succeeded, String::new())
    } else {
        (JobState::Failed, parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synthforge_core::input::TaskSlice;
    use synthforge_core::spec::InputFormat;

    fn task(id: u64, rows: u64, state: TaskState, error: &str) -> TaskRecord {
        let mut t = TaskRecord::new(
            "j",
            id,
            TaskSlice {
                object_url: "seeds.jsonl".into(),
                format: InputFormat::Jsonl,
                row_start: id * rows,
                row_count: rows,
                byte_start: 0,
                byte_end: 0,
                row_groups: vec![],
                global_row_start: id * rows,
            },
        );
        t.state = state;
        t.last_error = error.into();
        t
    }

    fn stats(rows_failed: u64) -> TaskStats {
        TaskStats {
            rows_failed,
            ..Default::default()
        }
    }

    #[test]
    fn failed_rows_within_the_budget_succeed_and_above_it_fail_with_reasons() {
        let tasks = vec![task(0, 1000, TaskState::Done, "")];
        let budget = SchedulingSpec::default();
        assert_eq!(budget.max_failed_fraction, 0.01);
        let within = judge(1000, &budget, &tasks, &stats(10), &BTreeMap::new());
        assert_eq!(within, (JobState::Succeeded, String::new()));
        let reasons: BTreeMap<String, u64> = [
            ("generate: HTTP 500".to_string(), 9),
            ("generate: empty choices".to_string(), 2),
        ]
        .into();
        let (state, error) = judge(1000, &budget, &tasks, &stats(11), &reasons);
        assert_eq!(state, JobState::Failed);
        assert!(
            error.contains("11 of 1000 seed rows failed (1.1%, budget 1.0%)"),
            "{error}"
        );
        assert!(
            error.contains("top reasons: generate: HTTP 500 (9); generate: empty choices (2)"),
            "{error}"
        );
    }

    #[test]
    fn every_row_failing_fails_whatever_the_budget() {
        let tasks = vec![task(0, 8, TaskState::Done, "")];
        let lenient = SchedulingSpec {
            max_failed_fraction: 1.0,
            ..Default::default()
        };
        let (state, error) = judge(8, &lenient, &tasks, &stats(8), &BTreeMap::new());
        assert_eq!(state, JobState::Failed);
        assert!(error.contains("8 of 8 seed rows failed"), "{error}");
    }

    #[test]
    fn a_failed_task_fails_the_job_and_its_rows_count_against_the_budget() {
        let tasks = vec![
            task(0, 50, TaskState::Done, ""),
            task(1, 50, TaskState::Failed, "backend down\ntrace"),
        ];
        let (state, error) = judge(
            100,
            &SchedulingSpec::default(),
            &tasks,
            &stats(0),
            &BTreeMap::new(),
        );
        assert_eq!(state, JobState::Failed);
        assert!(
            error.contains("1 of 2 tasks failed: task 1: backend down"),
            "{error}"
        );
        assert!(
            error.contains("50 of 100 seed rows failed")
                && error.contains("task failed: backend down (50)"),
            "{error}"
        );
    }

    #[test]
    fn an_empty_job_succeeds() {
        let ok = judge(
            0,
            &SchedulingSpec::default(),
            &[],
            &stats(0),
            &BTreeMap::new(),
        );
        assert_eq!(ok.0, JobState::Succeeded);
    }
}
