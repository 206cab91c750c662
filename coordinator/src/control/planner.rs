//! Planning: turn a job's input into tasks (row ranges) without reading the data itself where
//! the format allows it.
//!
//! The planner hands the listed input to core's per-format planning (`synthforge_core::input`:
//! Parquet footers, JSONL/text line boundaries, taxonomy leaves), which cuts tasks of about
//! `rows_per_task` rows and honours the job's row limit. It does so a step of objects at a time
//! ([`StepPlanner`]), so the scheduler stores each step's tasks before planning the next: a
//! large plan is never held whole, and its progress can be shown while it runs.

use std::collections::BTreeSet;

use synthforge_core::input::{self, SeedError, TaskSlice, MAX_PLANNED_TASKS};
use synthforge_core::spec::input::{InputFormat, InputSpec};
use synthforge_core::spec::JobSpec;
use synthforge_core::storage::{self, Location, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Seed(#[from] SeedError),
}

/// Input objects planned per step: enough that Parquet footers are still fetched several at a
/// time (core fetches a step's footers concurrently), few enough that a step's tasks stay small.
const OBJECTS_PER_STEP: usize = 128;

/// The tasks of a job and its total row count.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tasks: Vec<TaskSlice>,
    pub rows: u64,
    /// The seed rows' columns as the first input object tells them (`None`: unknown), so the
    /// columns the stages name are checked before the job is taken in.
    pub seed_columns: Option<BTreeSet<String>>,
}

/// Lists a job's input: every object with its size, in the order planning takes them.
/// Listed for every format: a path that names nothing is refused the same way for all.
pub async fn list(job: &JobSpec) -> Result<Vec<(Location, u64)>, PlanError> {
    Ok(storage::list_objects(&job.input.path)
        .await?
        .into_iter()
        .map(|(loc, meta)| (loc, meta.size))
        .collect())
}

/// The seed rows' columns as the first listed object tells them (a footer or a few lines: a
/// cheap read, done at submit so a pipeline naming a missing column is refused at once).
pub async fn seed_columns(
    job: &JobSpec,
    listed: &[(Location, u64)],
) -> Result<Option<BTreeSet<String>>, PlanError> {
    Ok(match listed.first() {
        Some((first, size)) => input::seed_columns(&job.input, first, *size).await?,
        None => None,
    })
}

/// Plans a job's input into tasks of about `rows_per_task` rows, honouring `limit`, all at once
/// (previews and tests; the scheduler plans step by step with [`StepPlanner`]).
pub async fn plan(job: &JobSpec) -> Result<Plan, PlanError> {
    let listed = list(job).await?;
    let seed_columns = seed_columns(job, &listed).await?;
    let mut planner = StepPlanner::new(job.input.clone(), listed);
    let mut tasks = Vec::new();
    while let Some(step) = planner.next_step().await? {
        tasks.extend(step);
    }
    Ok(Plan {
        tasks,
        rows: planner.rows(),
        seed_columns,
    })
}

/// Cuts a listed input into tasks a step of objects at a time, with the same result as planning
/// it in one go: each step's rows continue the global row numbering of the previous ones, the
/// job's row limit counts over all steps, and so does the cap on the number of tasks.
pub struct StepPlanner {
    input: InputSpec,
    /// The listed objects with their sizes (line formats are cut by size alone).
    objects: Vec<(Location, u64)>,
    /// Objects planned so far (the next step starts here).
    next: usize,
    rows: u64,
    tasks: u64,
}

impl StepPlanner {
    pub fn new(input: InputSpec, objects: Vec<(Location, u64)>) -> Self {
        StepPlanner {
            input,
            objects,
            next: 0,
            rows: 0,
            tasks: 0,
        }
    }

    pub fn objects_total(&self) -> u64 {
        self.objects.len() as u64
    }

    pub fn objects_planned(&self) -> u64 {
        self.next as u64
    }

    /// Seed rows planned so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Tasks planned so far.
    pub fn tasks(&self) -> u64 {
        self.tasks
    }

    /// The next step's tasks, or `None` once the input (or the row limit) is exhausted.
    pub async fn next_step(&mut self) -> Result<Option<Vec<TaskSlice>>, PlanError> {
        let limit_left = match self.input.limit {
            Some(limit) => limit.saturating_sub(self.rows),
            None => u64::MAX,
        };
        if self.next >= self.objects.len() || limit_left == 0 {
            self.next = self.objects.len();
            return Ok(None);
        }
        // A taxonomy is one tree whose leaves core lists itself: one step.
        let end = if self.input.format == InputFormat::Taxonomy {
            self.objects.len()
        } else {
            (self.next + OBJECTS_PER_STEP).min(self.objects.len())
        };
        let mut step_input = self.input.clone();
        if self.input.limit.is_some() {
            step_input.limit = Some(limit_left);
        }
        let planned = input::plan_tasks_sized(&step_input, &self.objects[self.next..end]).await?;
        let mut tasks = planned.tasks;
        // Row identities continue across steps: Parquet numbers rows, line formats name a
        // line by its object's ordinal and byte offset.
        let base = match self.input.format {
            InputFormat::Jsonl | InputFormat::Text => input::line_identity_base(self.next),
            _ => self.rows,
        };
        for t in &mut tasks {
            t.global_row_start += base;
        }
        self.tasks += tasks.len() as u64;
        if self.tasks > MAX_PLANNED_TASKS {
            return Err(SeedError::TooManyTasks {
                url: self.input.path.clone(),
                message: format!(
                    "the input would have over {MAX_PLANNED_TASKS} tasks at {} rows per task; \
                     raise `input.rows_per_task` or set `input.limit`",
                    self.input.rows_per_task
                ),
            }
            .into());
        }
        self.rows += planned.rows;
        self.next = end;
        Ok(Some(tasks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jsonl_job(dir: &std::path::Path, files: usize, rows: usize, limit: Option<u64>) -> JobSpec {
        for f in 0..files {
            let text: String = (0..rows)
                .map(|r| format!("{{\"text\": \"file {f} row {r}\"}}\n"))
                .collect();
            std::fs::write(dir.join(format!("part-{f:04}.jsonl")), text).unwrap();
        }
        let limit = limit.map_or(String::new(), |l| format!("  limit: {l}\n"));
        let yaml = format!(
            "name: steps
input:
  path: '{dir}/*.jsonl'
  format: jsonl
  rows_per_task: 3
{limit}pipeline:
  - stage: generate
    backend: b
    template: '{{{{ text }}}}'
backends:
  b:
    url: http://127.0.0.1:9/v1
    model: m
output:
  path: '{dir}/out'
",
            dir = dir.display(),
        );
        JobSpec::from_yaml(&yaml, "job").unwrap()
    }

    /// Planning in steps gives the tasks of planning the same objects in one call: row
    /// numbering continues across steps and the limit counts over all of them.
    #[tokio::test]
    async fn steps_continue_the_row_numbering_and_share_the_limit() {
        for limit in [None, Some(700)] {
            let dir = tempfile::tempdir().unwrap();
            // More objects than one step holds, so the plan takes several steps.
            let job = jsonl_job(dir.path(), OBJECTS_PER_STEP + 20, 5, limit);
            let listed = list(&job).await.unwrap();
            let whole = input::plan_tasks_sized(&job.input, &listed).await.unwrap();
            let stepped = plan(&job).await.unwrap();
            assert_eq!(stepped.tasks, whole.tasks, "limit {limit:?}");
            assert_eq!(stepped.rows, whole.rows);
            // Without a limit JSONL is cut by byte ranges and its rows are counted when read;
            // a limit scans lines up to it, so the count is exact.
            let expect_rows = limit.map_or(0, |l| l.min(5 * (OBJECTS_PER_STEP as u64 + 20)));
            assert_eq!(stepped.rows, expect_rows);
            if limit.is_none() {
                let objects: std::collections::BTreeSet<&str> = stepped
                    .tasks
                    .iter()
                    .map(|t| t.object_url.as_str())
                    .collect();
                assert_eq!(
                    objects.len(),
                    OBJECTS_PER_STEP + 20,
                    "every object is planned"
                );
            }
        }
    }
}
