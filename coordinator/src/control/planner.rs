//! Planning: turn a job's input into tasks (row ranges) without reading the data itself where
//! the format allows it.
//!
//! The planner lists the input and hands it to core's per-format planning
//! (`synthforge_core::input`: Parquet footers, JSONL/text line boundaries, taxonomy leaves),
//! which cuts tasks of about `rows_per_task` rows and honours the job's row limit.

use std::collections::BTreeSet;

use synthforge_core::input::{self, SeedError, TaskSlice};
use synthforge_core::spec::JobSpec;
use synthforge_core::storage::{self, Location, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Seed(#[from] SeedError),
}

/// The tasks of a job and its total row count.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tasks: Vec<TaskSlice>,
    pub rows: u64,
    /// The seed rows' columns as the first input object tells them (`None`: unknown), so the
    /// columns the stages name are checked before the job is taken in.
    pub seed_columns: Option<BTreeSet<String>>,
}

/// Plans a job's input into tasks of about `rows_per_task` rows, honouring `limit`.
pub async fn plan(job: &JobSpec) -> Result<Plan, PlanError> {
    // Listed for every format: a path that names nothing is refused the same way for all.
    let listed = storage::list_objects(&job.input.path).await?;
    let seed_columns = match listed.first() {
        Some((first, meta)) => input::seed_columns(&job.input, first, meta.size).await?,
        None => None,
    };
    let objects: Vec<(Location, u64)> = listed.into_iter().map(|(l, m)| (l, m.size)).collect();
    let planned = input::plan_tasks_sized(&job.input, &objects).await?;
    Ok(Plan {
        tasks: planned.tasks,
        rows: planned.rows,
        seed_columns,
    })
}
