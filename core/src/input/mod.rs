//! A job's input: planning it into tasks and reading a task's seed rows, one file per format
//! with both halves together (`lines`: JSONL and text, `parquet_file`, `taxonomy`). This module
//! holds what they share (the task slice, the row types, the errors, the plan budget) and
//! dispatches on the format.
//!
//! A task is a slice of one input object: row groups of a Parquet file, a byte range of a
//! JSONL/text file (owning the lines that start in it), or a range of taxonomy leaves. Rows
//! that cannot be decoded are returned as [`SeedItem::Bad`] with their position and reason, so
//! the worker can write them to the failures output instead of losing them or failing the
//! whole task.
//!
//! A task's rows are read as a stream of bounded chunks ([`read_task_chunks`]): a Parquet
//! record batch, or the lines of one block of bytes from the store. A worker's memory then
//! follows the rows in flight in its pipeline, not the task's size.

pub mod line_range;
mod lines;
mod parquet_file;
mod parquet_read;
mod read_columns;
pub mod sniff;
pub mod taxonomy;

use std::collections::BTreeSet;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Value};

use crate::spec::input::{InputFormat, InputSpec};
use crate::storage::{self, Location, StorageError};

pub use lines::{
    identity_base as line_identity_base, split_lines, ESTIMATED_ROW_BYTES, MAX_OBJECT_BYTES,
};
pub use parquet_file::{parquet_columns, parquet_row_groups, ObjectReader};
pub use read_columns::ReadColumns;

/// Where a task's rows live. Mirrors the wire `TaskInput` so core does not depend on proto.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskSlice {
    pub object_url: String,
    pub format: InputFormat,
    /// Parquet and taxonomy: first row inside the object (0-based). Line formats: 0-based
    /// line number of the range's first line when known (`row_count > 0`, or a range that
    /// starts the object), for failure positions.
    pub row_start: u64,
    /// Number of rows. Line formats planned by byte range: 0, the count is known only once
    /// the task is read (see [`TaskSlice::planned_rows`]).
    pub row_count: u64,
    /// Line formats: the byte range whose starting lines the task owns; (0, 0) = whole object.
    pub byte_start: u64,
    pub byte_end: u64,
    /// Parquet: row groups holding these rows; `row_start` is then inside the first of them.
    pub row_groups: Vec<u32>,
    /// Stable row identity: Parquet and taxonomy, the first row's index across the whole
    /// input; line formats, the object's identity base, to which a line's byte offset is
    /// added (see the `lines` module).
    pub global_row_start: u64,
}

impl TaskSlice {
    /// The task's row count when planning knew it; `None` for a line range, whose rows are
    /// counted by the worker that reads it.
    pub fn planned_rows(&self) -> Option<u64> {
        let counted_by_reader = matches!(self.format, InputFormat::Jsonl | InputFormat::Text)
            && self.row_count == 0
            && self.byte_end > self.byte_start;
        (!counted_by_reader).then_some(self.row_count)
    }
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

/// The tasks of a job's input and its total row count (0 for line inputs planned by byte
/// range: their rows are counted as the tasks complete).
#[derive(Debug, Clone)]
pub struct InputPlan {
    pub tasks: Vec<TaskSlice>,
    pub rows: u64,
}

/// Plans `objects` (the listed input, in order) into tasks of about `rows_per_task` rows,
/// honouring `limit`. Reads Parquet footers and line objects' sizes, never their rows (except
/// a line input under a `limit`, scanned up to it). A taxonomy's leaves are its `qna.yaml` files, which it lists itself.
pub async fn plan_tasks(input: &InputSpec, objects: &[Location]) -> Result<InputPlan, SeedError> {
    plan_objects(input, objects, None).await
}

/// [`plan_tasks`] with the objects' sizes from their listing, which byte-range planning then
/// does not ask the store for again.
pub async fn plan_tasks_sized(
    input: &InputSpec,
    objects: &[(Location, u64)],
) -> Result<InputPlan, SeedError> {
    let locations: Vec<Location> = objects.iter().map(|(l, _)| l.clone()).collect();
    let sizes: Vec<u64> = objects.iter().map(|(_, s)| *s).collect();
    plan_objects(input, &locations, Some(&sizes)).await
}

async fn plan_objects(
    input: &InputSpec,
    objects: &[Location],
    sizes: Option<&[u64]>,
) -> Result<InputPlan, SeedError> {
    let mut budget = PlanBudget::new(input.rows_per_task, input.limit);
    let tasks = match input.format {
        InputFormat::Parquet => parquet_file::plan(objects, &mut budget).await?,
        InputFormat::Jsonl | InputFormat::Text => {
            lines::plan(objects, sizes, input.format, &mut budget).await?
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
            let rows: Vec<SeedItem> = lines::read_lines(input, &slice, object.clone())
                .try_concat()
                .await?;
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

/// A task's rows as a stream of bounded chunks, in input order; an error ends it.
pub type SeedChunks = BoxStream<'static, Result<Vec<SeedItem>, SeedError>>;

/// Streams the rows of a task in chunks (a Parquet record batch, the lines of one block of
/// bytes): the caller holds only the chunks it has not consumed yet.
pub fn read_task_chunks(input: &InputSpec, slice: &TaskSlice) -> SeedChunks {
    read_task_columns(input, slice, &ReadColumns::default())
}

/// [`read_task_chunks`], decoding only `columns` where the format allows it.
pub fn read_task_columns(
    input: &InputSpec,
    slice: &TaskSlice,
    columns: &ReadColumns,
) -> SeedChunks {
    let loc = match storage::open(&slice.object_url) {
        Ok(loc) => loc,
        Err(e) => return futures::stream::once(async move { Err(e.into()) }).boxed(),
    };
    match slice.format {
        InputFormat::Parquet => parquet_read::read_parquet(input, slice, loc, columns),
        InputFormat::Jsonl | InputFormat::Text => lines::read_lines(input, slice, loc),
        InputFormat::Taxonomy => {
            let slice = slice.clone();
            futures::stream::once(async move { taxonomy::read_rows(&slice).await }).boxed()
        }
    }
}

/// Reads every row of a task at once: for previews and tests, whose slices are small. Workers
/// stream with [`read_task_chunks`].
pub async fn read_task_rows(
    input: &InputSpec,
    slice: &TaskSlice,
) -> Result<Vec<SeedItem>, SeedError> {
    read_task_chunks(input, slice).try_concat().await
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
