//! Parquet input: tasks follow row groups, planned from footers alone.
//!
//! Planning reads only each object's footer (row counts per row group) and cuts tasks along
//! row-group boundaries; a large row group is cut into offset ranges inside it. Reading (in
//! `parquet_read`) fetches just the task's rows of the columns the job reads.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::{PlanBudget, SeedError, TaskSlice, MAX_PLANNED_TASKS};
use crate::spec::input::InputFormat;
use crate::storage::Location;

/// Footers fetched at once while planning (a corpus has thousands of files).
const FOOTER_FETCHES: usize = 32;

/// Plans the Parquet objects of a job in order, until the budget's limit.
pub(super) async fn plan(
    objects: &[Location],
    budget: &mut PlanBudget,
) -> Result<Vec<TaskSlice>, SeedError> {
    // Footers are independent reads: fetch several at once.
    let footers: Vec<Vec<u64>> = futures::stream::iter(objects)
        .map(parquet_row_groups)
        .buffered(FOOTER_FETCHES)
        .try_collect()
        .await?;
    let mut tasks = Vec::new();
    for (loc, groups) in objects.iter().zip(footers) {
        if budget.exhausted() {
            break;
        }
        plan_object(&loc.url, &groups, budget, &mut tasks)?;
    }
    Ok(tasks)
}

/// Refuses, before allocating anything, an object whose footer's row counts would take the plan
/// past [`MAX_PLANNED_TASKS`].
fn check_task_count(
    url: &str,
    groups: &[u64],
    budget: &PlanBudget,
    planned_tasks: usize,
) -> Result<(), SeedError> {
    let claimed = groups.iter().fold(0u64, |a, n| a.saturating_add(*n));
    let rows = claimed.min(budget.limit.saturating_sub(budget.planned));
    // A task never spans row groups' boundaries by more than one extra task per group.
    let tasks = rows
        .div_ceil(budget.per_task)
        .saturating_add(groups.len() as u64)
        .saturating_add(planned_tasks as u64);
    if tasks > MAX_PLANNED_TASKS {
        return Err(SeedError::TooManyTasks {
            url: url.to_string(),
            message: format!(
                "the footer claims {claimed} rows in {} row groups: at {} rows per task the job \
                 would have over {MAX_PLANNED_TASKS} tasks; raise `input.rows_per_task` or set \
                 `input.limit` (or the file is damaged)",
                groups.len(),
                budget.per_task
            ),
        });
    }
    Ok(())
}

fn plan_object(
    url: &str,
    groups: &[u64],
    budget: &mut PlanBudget,
    tasks: &mut Vec<TaskSlice>,
) -> Result<(), SeedError> {
    check_task_count(url, groups, budget, tasks.len())?;
    let (per_task, limit) = (budget.per_task, budget.limit);
    let global = &mut budget.planned;
    let mut row = 0u64; // row inside the object
    let mut g = 0usize;
    // Within-group offset for groups cut into several tasks.
    let mut offset_in_group = 0u64;
    while g < groups.len() && *global < limit {
        let start = row;
        let mut count = 0u64;
        let mut rgs = Vec::new();
        while g < groups.len() && count < per_task && *global + count < limit {
            let left_in_group = groups[g] - offset_in_group;
            let want = (per_task - count).min(limit - *global - count);
            rgs.push(g as u32);
            if left_in_group <= want {
                count += left_in_group;
                g += 1;
                offset_in_group = 0;
            } else {
                count += want;
                offset_in_group += want;
            }
        }
        if count == 0 {
            g += 1;
            continue;
        }
        tasks.push(TaskSlice {
            object_url: url.to_string(),
            format: InputFormat::Parquet,
            row_start: start,
            row_count: count,
            byte_start: 0,
            byte_end: 0,
            row_groups: rgs,
            global_row_start: *global,
        });
        row += count;
        *global += count;
    }
    Ok(())
}

/// The first `rows` rows of a Parquet object: read from its first row group on.
pub(super) fn preview_slice(object_url: &str, rows: u64) -> TaskSlice {
    TaskSlice {
        object_url: object_url.to_string(),
        format: InputFormat::Parquet,
        row_start: 0,
        row_count: rows,
        byte_start: 0,
        byte_end: 0,
        row_groups: vec![0],
        global_row_start: 0,
    }
}

/// A reader error: I/O underneath (worth another try) or a file that is not valid Parquet.
pub(super) fn parquet_error(url: &str, e: ParquetError) -> SeedError {
    let url = url.to_string();
    match e {
        ParquetError::External(source) => SeedError::ParquetIo {
            url,
            message: ParquetError::External(source).to_string(),
        },
        other => SeedError::Parquet {
            url,
            message: other.to_string(),
        },
    }
}

/// `AsyncFileReader` over object_store (parquet 60 asks callers to implement it themselves).
#[derive(Clone, Debug)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
}

impl ObjectReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: object_store::path::Path) -> Self {
        ObjectReader { store, path }
    }
}

fn to_parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(to_parquet_err)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut ObjectReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let resp = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(to_parquet_err)?;
            resp.bytes().await.map_err(to_parquet_err)
        }
        .boxed()
    }
}

/// Reads only the footer: row counts per row group, for planning without touching data.
pub async fn parquet_row_groups(loc: &Location) -> Result<Vec<u64>, SeedError> {
    let mut reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let meta = reader
        .get_metadata(None)
        .await
        .map_err(|e| parquet_error(&loc.url, e))?;
    Ok(meta
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows() as u64)
        .collect())
}

/// Reads only the footer: the file's top-level column names, as the row reader names them.
pub async fn parquet_columns(loc: &Location) -> Result<Vec<String>, SeedError> {
    let mut reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let meta = reader
        .get_metadata(None)
        .await
        .map_err(|e| parquet_error(&loc.url, e))?;
    Ok(meta
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_tasks_follow_row_groups_and_split_big_ones() {
        let mut tasks = Vec::new();
        let mut budget = PlanBudget::new(200, None);
        plan_object("f", &[100, 100, 350, 10], &mut budget, &mut tasks).unwrap();
        let shape: Vec<(u64, u64, Vec<u32>)> = tasks
            .iter()
            .map(|t| (t.row_start, t.row_count, t.row_groups.clone()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, 200, vec![0, 1]),
                (200, 200, vec![2]),
                (400, 160, vec![2, 3]),
            ]
        );
        assert_eq!(budget.planned(), 560);
        let mut tasks = Vec::new();
        let mut budget = PlanBudget::new(30, Some(45));
        plan_object("f", &[100, 100], &mut budget, &mut tasks).unwrap();
        assert_eq!(budget.planned(), 45);
        assert_eq!(tasks.iter().map(|t| t.row_count).sum::<u64>(), 45);
    }

    /// Found by the `seed_parquet` fuzz target (fuzz/regressions/seed_parquet/): a damaged footer
    /// claiming ~2^60 rows made planning push task slices until the coordinator ran out of memory.
    #[test]
    fn a_footer_claiming_absurd_row_counts_is_refused_before_planning() {
        let mut tasks = Vec::new();
        let mut budget = PlanBudget::new(1_000, None);
        let err = plan_object("big.parquet", &[10, 1 << 60], &mut budget, &mut tasks).unwrap_err();
        assert!(tasks.is_empty(), "nothing planned");
        let msg = err.to_string();
        assert!(msg.starts_with("big.parquet: the footer claims"), "{msg}");
        assert!(msg.contains("rows_per_task"), "{msg}");
        assert!(!err.retryable());
        // The same rows under a limit plan normally.
        let mut budget = PlanBudget::new(1_000, Some(5_000));
        plan_object("big.parquet", &[10, 1 << 60], &mut budget, &mut tasks).unwrap();
        assert_eq!(budget.planned(), 5_000);
    }
}
