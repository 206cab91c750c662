//! A job's input: planning it into tasks and reading a task's seed rows, one file per format
//! with both halves together (`lines`: JSONL and text, `parquet_file`, `taxonomy`). This module
//! holds what they share (the task slice, the row types, the errors, the plan budget) and
//! dispatches on the format.
//!
//! A task is a slice of one input object: row groups of a Parquet file, a byte range of a
//! JSONL/text file that holds whole lines, or a range of taxonomy leaves. Rows that cannot be
//! decoded are returned as [`SeedItem::Bad`] with their position and reason, so the worker can
//! write them to the failures output instead of losing them or failing the whole task.

mod lines;
mod parquet_file;
pub mod sniff;
pub mod taxonomy;

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::spec::input::{InputFormat, InputSpec};
use crate::storage::{self, Location, StorageError};

pub use lines::split_lines;
pub use parquet_file::{parquet_columns, parquet_row_groups, ObjectReader};

/// Where a task's rows live. Mirrors the wire `TaskInput` so core does not depend on proto.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskSlice {
    pub object_url: String,
    pub format: InputFormat,
    /// First row inside the object (0-based) and number of rows.
    pub row_start: u64,
    pub row_count: u64,
    /// Line formats: byte range holding exactly these rows; (0, 0) = whole object.
    pub byte_start: u64,
    pub byte_end: u64,
    /// Parquet: row groups holding these rows; `row_start` is then inside the first of them.
    pub row_groups: Vec<u32>,
    /// First row's index across the whole input: stable row identity for ids.
    pub global_row_start: u64,
}

/// One decoded seed row.
#[derive(Debug, Clone)]
pub struct SeedRow {
    /// Index across the whole input.
    pub index: u64,
    /// The `id_column` value, or `row-{index}` when that is missing, null or blank.
    pub id: String,
    pub columns: Map<String, Value>,
    /// Human-readable position, e.g. `seeds.jsonl:17` (1-based line) or `a.parquet row 3`.
    pub source: String,
}

/// A row the reader could not decode, kept for the failures output.
#[derive(Debug, Clone)]
pub struct BadRow {
    pub index: u64,
    /// The row's id where it could still be read, else `None` (then `row-{index}`).
    pub id: Option<String>,
    pub source: String,
    pub error: String,
    /// The raw content as far as it could be recovered (lossy UTF-8 for text).
    pub raw: String,
}

#[derive(Debug, Clone)]
pub enum SeedItem {
    Row(SeedRow),
    Bad(BadRow),
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Not a valid Parquet file (or not one the reader understands).
    #[error("{url}: parquet: {message}")]
    Parquet { url: String, message: String },
    /// Reading a Parquet file failed underneath, in the object store.
    #[error("{url}: parquet: {message}")]
    ParquetIo { url: String, message: String },
    #[error("{url}: format `{format}` is not read by the row reader")]
    Unsupported { url: String, format: String },
    /// The input would be cut into more than [`MAX_PLANNED_TASKS`] tasks.
    #[error("{url}: {message}")]
    TooManyTasks { url: String, message: String },
}

impl SeedError {
    /// Whether reading again later may succeed: I/O may, an invalid object will not.
    pub fn retryable(&self) -> bool {
        match self {
            SeedError::Storage(e) => e.retryable(),
            SeedError::ParquetIo { .. } => true,
            SeedError::Parquet { .. }
            | SeedError::Unsupported { .. }
            | SeedError::TooManyTasks { .. } => false,
        }
    }
}

/// Most tasks one job's plan may hold. A Parquet footer states its row counts, and a damaged or
/// hostile one can claim 2^60 rows: planning them would exhaust the coordinator's memory (found
/// by the `seed_parquet` fuzz target). Real corpora stay far below (30M rows at 1,000 rows per
/// task are 30,000 tasks); past it the error says to raise `rows_per_task` or set `limit`.
pub const MAX_PLANNED_TASKS: u64 = 2_000_000;

/// How a plan cuts rows into tasks: the task size, the job's row limit, and the rows planned
/// so far (which is also the next task's first global row).
#[derive(Debug, Clone)]
pub struct PlanBudget {
    per_task: u64,
    limit: u64,
    planned: u64,
}

impl PlanBudget {
    /// `rows_per_task` below 1 counts as 1; no limit plans every row.
    pub fn new(rows_per_task: u64, limit: Option<u64>) -> Self {
        PlanBudget {
            per_task: rows_per_task.max(1),
            limit: limit.unwrap_or(u64::MAX),
            planned: 0,
        }
    }

    /// Rows planned so far.
    pub fn planned(&self) -> u64 {
        self.planned
    }

    /// The limit is reached: no further object is planned.
    pub fn exhausted(&self) -> bool {
        self.planned >= self.limit
    }
}

/// The tasks of a job's input and its total row count.
#[derive(Debug, Clone)]
pub struct InputPlan {
    pub tasks: Vec<TaskSlice>,
    pub rows: u64,
}

/// Plans `objects` (the listed input, in order) into tasks of about `rows_per_task` rows,
/// honouring `limit`. A taxonomy's leaves are its `qna.yaml` files, which it lists itself.
pub async fn plan_tasks(input: &InputSpec, objects: &[Location]) -> Result<InputPlan, SeedError> {
    let mut budget = PlanBudget::new(input.rows_per_task, input.limit);
    let tasks = match input.format {
        InputFormat::Parquet => parquet_file::plan(objects, &mut budget).await?,
        InputFormat::Jsonl | InputFormat::Text => {
            lines::plan(objects, input.format, &mut budget).await?
        }
        InputFormat::Taxonomy => {
            let (tasks, rows) = taxonomy::plan_tasks(input).await?;
            return Ok(InputPlan { tasks, rows });
        }
    };
    Ok(InputPlan {
        tasks,
        rows: budget.planned(),
    })
}

/// A slice of the first `rows` rows of one object, for previews (`validate`, the dashboard's
/// samples) that read a few rows without planning the input. `object_size` bounds a line
/// format's read. `None` for a taxonomy: its rows are the leaves of a tree, not of one object.
pub fn preview_slice(
    format: InputFormat,
    object_url: &str,
    object_size: u64,
    rows: u64,
) -> Option<TaskSlice> {
    match format {
        InputFormat::Parquet => Some(parquet_file::preview_slice(object_url, rows)),
        InputFormat::Jsonl | InputFormat::Text => {
            Some(lines::preview_slice(format, object_url, object_size, rows))
        }
        InputFormat::Taxonomy => None,
    }
}

/// Lines of a JSONL object read for its columns: keys that appear in none of them are taken as
/// absent (a stage naming one would read nothing from every sampled row).
pub const COLUMN_SAMPLE_ROWS: u64 = 200;

/// The seed rows' columns as far as the input tells them without reading it all: a text
/// input's one column, a taxonomy's fixed columns, the Parquet schema in `object`'s footer, or
/// the keys of the first [`COLUMN_SAMPLE_ROWS`] lines of a JSONL `object` (of `size` bytes).
/// `None` when a JSONL sample holds no readable row: nothing can be said then.
pub async fn seed_columns(
    input: &InputSpec,
    object: &Location,
    size: u64,
) -> Result<Option<BTreeSet<String>>, SeedError> {
    match input.format {
        InputFormat::Text => Ok(Some(BTreeSet::from([input.text_column.clone()]))),
        InputFormat::Taxonomy => Ok(Some(
            taxonomy::SEED_COLUMNS
                .iter()
                .map(|c| c.to_string())
                .collect(),
        )),
        InputFormat::Parquet => Ok(Some(
            parquet_file::parquet_columns(object)
                .await?
                .into_iter()
                .collect(),
        )),
        InputFormat::Jsonl => {
            let slice = lines::preview_slice(input.format, &object.url, size, COLUMN_SAMPLE_ROWS);
            let rows = lines::read_lines(input, &slice, object).await?;
            let keys: BTreeSet<String> = rows
                .iter()
                .filter_map(|r| match r {
                    SeedItem::Row(row) => Some(row.columns.keys().cloned()),
                    SeedItem::Bad(_) => None,
                })
                .flatten()
                .collect();
            let any_row = rows.iter().any(|r| matches!(r, SeedItem::Row(_)));
            Ok(any_row.then_some(keys))
        }
    }
}

fn short_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Reads every row of a task (a task is bounded by `rows_per_task`, so this fits in memory).
pub async fn read_task_rows(
    input: &InputSpec,
    slice: &TaskSlice,
) -> Result<Vec<SeedItem>, SeedError> {
    let loc = storage::open(&slice.object_url)?;
    match slice.format {
        InputFormat::Parquet => parquet_file::read_parquet(input, slice, &loc).await,
        InputFormat::Jsonl | InputFormat::Text => lines::read_lines(input, slice, &loc).await,
        InputFormat::Taxonomy => taxonomy::read_rows(slice).await,
    }
}

fn row_id(input: &InputSpec, columns: &Map<String, Value>, index: u64) -> String {
    if let Some(col) = &input.id_column {
        match columns.get(col) {
            // An empty id would give the row no identity (lineage, dedup order, resume).
            Some(Value::String(s)) if !s.trim().is_empty() => return s.clone(),
            Some(Value::String(_)) | Some(Value::Null) | None => {}
            Some(v) => return v.to_string(),
        }
    }
    format!("row-{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_or_missing_id_falls_back_to_the_row_index() {
        // Found by the seed_jsonl fuzz target: `{"id": ""}` gave a row an empty id.
        let input = InputSpec {
            path: "s.jsonl".into(),
            format: InputFormat::Jsonl,
            id_column: Some("id".into()),
            text_column: "text".into(),
            limit: None,
            rows_per_task: 10,
        };
        let row = |v: Value| Map::from_iter([("id".to_string(), v)]);
        assert_eq!(row_id(&input, &row(Value::from("a")), 7), "a");
        assert_eq!(row_id(&input, &row(Value::from("")), 7), "row-7");
        assert_eq!(row_id(&input, &row(Value::from(" \t")), 7), "row-7");
        assert_eq!(row_id(&input, &row(Value::Null), 7), "row-7");
        assert_eq!(row_id(&input, &row(Value::from(3)), 7), "3");
        assert_eq!(row_id(&input, &Map::new(), 7), "row-7");
    }
}
