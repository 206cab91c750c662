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
    // Line inputs planned by byte range have no planned count: their rows are those the
    // completed tasks read (a failed range task's rows stay unknown; it fails the job anyway).
    let seed_rows = seed_rows.max(stats.rows_in + failed_task_rows);
    let failed_rows = stats.seed_rows_failed() + failed_task_rows;
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

/// Why a task's completion cannot be accepted as it stands, or `None` when its seed rows add
/// up: the worker read exactly the rows the planner gave the task (a truncated or replaced input
/// object, or a reader bug, would otherwise make a silently shorter dataset), and every one of
/// them is output, removed or failed. The caller fails the attempt instead (retried).
/// `planned_rows` is `None` for a byte-range task: the worker's count is the task's count.
pub(super) fn completion_mismatch(planned_rows: Option<u64>, stats: &TaskStats) -> Option<String> {
    let s = &stats.seeds;
    if let Some(planned_rows) = planned_rows.filter(|n| stats.rows_in != *n) {
        return Some(format!(
            "completion refused: the task covers {planned_rows} seed row(s) but the worker read {}",
            stats.rows_in
        ));
    }
    if s.total() != stats.rows_in {
        return Some(format!(
            "completion refused: {} seed row(s) in, but {} output + {} removed + {} failed = {}",
            stats.rows_in,
            s.output,
            s.removed_total(),
            s.failed_total(),
            s.total()
        ));
    }
    None
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
    fn failed_seed_rows_count_once_whatever_their_failure_records() {
        // Three seed rows failed, two of them with two samples each: five failure records.
        let mut s = stats(5);
        s.rows_in = 1000;
        s.seeds.output = 997;
        s.seeds.failed.insert("generate".into(), 3);
        let tasks = vec![task(0, 1000, TaskState::Done, "")];
        let budget = SchedulingSpec::default();
        let (state, _) = judge(1000, &budget, &tasks, &s, &BTreeMap::new());
        assert_eq!(state, JobState::Succeeded, "3 of 1000 is within 1%");
        s.seeds.output = 985;
        s.seeds.failed.insert("generate".into(), 15);
        let (state, error) = judge(1000, &budget, &tasks, &s, &BTreeMap::new());
        assert_eq!(state, JobState::Failed);
        assert!(error.contains("15 of 1000 seed rows failed"), "{error}");
    }

    #[test]
    fn a_completion_must_cover_the_planned_rows_and_account_for_each() {
        let mut s = TaskStats {
            rows_in: 10,
            ..Default::default()
        };
        s.seeds.output = 7;
        s.seeds.removed.insert("judge".into(), 2);
        s.seeds.failed.insert("generate".into(), 1);
        assert_eq!(completion_mismatch(Some(10), &s), None);
        assert_eq!(
            completion_mismatch(None, &s),
            None,
            "a byte range takes the read count"
        );
        let short = completion_mismatch(Some(12), &s).expect("two rows were never read");
        assert!(
            short.contains("covers 12 seed row(s) but the worker read 10"),
            "{short}"
        );
        s.seeds.output = 6;
        let lost = completion_mismatch(Some(10), &s).expect("a row went nowhere");
        assert!(
            completion_mismatch(None, &s).is_some(),
            "the rows read must add up"
        );
        assert!(
            lost.contains("10 seed row(s) in, but 6 output + 2 removed + 1 failed = 9"),
            "{lost}"
        );
    }

    #[test]
    fn a_byte_range_job_is_judged_against_the_rows_its_tasks_read() {
        // Planned by byte range: no planned row count (0), 1,000 rows read, 20 failed.
        let tasks = vec![task(0, 0, TaskState::Done, "")];
        let mut s = stats(20);
        s.rows_in = 1000;
        s.seeds.output = 980;
        s.seeds.failed.insert("generate".into(), 20);
        let (state, error) = judge(0, &SchedulingSpec::default(), &tasks, &s, &BTreeMap::new());
        assert_eq!(state, JobState::Failed);
        assert!(error.contains("20 of 1000 seed rows failed"), "{error}");
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
