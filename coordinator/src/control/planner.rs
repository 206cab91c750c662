//! Planning: turn a job's input into tasks (row ranges) without reading the data itself where
//! the format allows it.
//!
//! The planner lists the input and hands it to core's per-format planning
//! (`synthforge_core::input`: Parquet footers, JSONL/text line boundaries, taxonomy leaves),
//! which cuts tasks of about `rows_per_task` rows and honours the job's row limit.

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
}

/// Plans a job's input into tasks of about `rows_per_task` rows, honouring `limit`.
pub async fn plan(job: &JobSpec) -> Result<Plan, PlanError> {
    // Listed for every format: a path that names nothing is refused the same way for all.
    let objects: Vec<Location> = storage::list_objects(&job.input.path)
        .await?
        .into_iter()
        .map(|(loc, _)| loc)
        .collect();
    let planned = input::plan_tasks(&job.input, &objects).await?;
    Ok(Plan {
        tasks: planned.tasks,
        rows: planned.rows,
    })
}
