//! Reading a Parquet task as a stream of record batches, each turned into seed rows.
//!
//! Only what the task needs is fetched and decoded: its row groups, and inside them a row
//! selection (skip the rows before the task's first, take its rows, skip the rest) that the
//! page index turns into page reads where the file has one — a task that is a slice of a
//! large row group then reads about its own pages, not the whole group; and only the columns
//! the job reads ([`ReadColumns`]), when it names them.

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use futures::StreamExt;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::ParquetRecordBatchStream;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::errors::ParquetError;
use parquet::file::metadata::PageIndexPolicy;
use serde_json::{Map, Value};

use super::parquet_file::{parquet_error, ObjectReader};
use super::{
    row_id, short_name, BadRow, ReadColumns, SeedChunks, SeedError, SeedItem, SeedRow, TaskSlice,
};
use crate::spec::input::InputSpec;
use crate::storage::Location;

/// Rows per record batch: one chunk of the task's stream.
const BATCH_ROWS: usize = 1024;

/// Streams the rows of a Parquet task, one chunk per record batch.
pub(super) fn read_parquet(
    input: &InputSpec,
    slice: &TaskSlice,
    loc: Location,
    columns: &ReadColumns,
) -> SeedChunks {
    let state = BatchReader {
        input: input.clone(),
        slice: slice.clone(),
        loc,
        columns: columns.clone(),
        stream: None,
        row_in_object: slice.row_start,
        name: short_name(&slice.object_url).to_string(),
    };
    futures::stream::try_unfold(state, |mut r| async move {
        Ok(r.next_chunk().await?.map(|chunk| (chunk, r)))
    })
    .boxed()
}

struct BatchReader {
    input: InputSpec,
    slice: TaskSlice,
    loc: Location,
    columns: ReadColumns,
    stream: Option<ParquetRecordBatchStream<ObjectReader>>,
    row_in_object: u64,
    name: String,
}

impl BatchReader {
    fn error(&self, e: ParquetError) -> SeedError {
        parquet_error(&self.slice.object_url, e)
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<SeedItem>>, SeedError> {
        if self.stream.is_none() {
            self.stream = Some(open(&self.slice, &self.loc, &self.columns).await?);
        }
        let stream = self.stream.as_mut().expect("opened");
        match stream.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(self.error(e)),
            Some(Ok(batch)) => Ok(Some(self.rows(&batch))),
        }
    }

    fn rows(&mut self, batch: &RecordBatch) -> Vec<SeedItem> {
        let schema = batch.schema();
        let mut items = Vec::with_capacity(batch.num_rows());
        for r in 0..batch.num_rows() {
            let row_in_object = self.row_in_object;
            self.row_in_object += 1;
            let index = self.slice.global_row_start + (row_in_object - self.slice.row_start);
            let source = format!("{} row {row_in_object}", self.name);
            let mut columns = Map::new();
            let mut error = None;
            for (c, field) in schema.fields().iter().enumerate() {
                match arrow_value(batch.column(c).as_ref(), r) {
                    Ok(v) => {
                        columns.insert(field.name().clone(), v);
                    }
                    Err(e) => {
                        error = Some(format!("{source}: column `{}`: {e}", field.name()));
                        break;
                    }
                }
            }
            if let Some(error) = error {
                items.push(SeedItem::Bad(BadRow {
                    index,
                    id: None,
                    source,
                    error,
                    raw: String::new(),
                }));
                continue;
            }
            let id = row_id(&self.input, &columns, index);
            items.push(SeedItem::Row(SeedRow {
                index,
                id,
                columns,
                source,
            }));
        }
        items
    }
}

/// Refuses a footer whose column chunks of the task's row groups have a negative offset or size
/// (a damaged or hostile file: the parquet crate asserts on them while fetching, which would end
/// the worker's task with a panic instead of a clear error naming the file). Found by the
/// `seed_parquet` fuzz target.
fn check_column_chunks(
    url: &str,
    meta: &parquet::file::metadata::ParquetMetaData,
    groups: &[usize],
) -> Result<(), SeedError> {
    for &g in groups {
        for (c, col) in meta.row_group(g).columns().iter().enumerate() {
            let start = col
                .dictionary_page_offset()
                .unwrap_or_else(|| col.data_page_offset());
            if start < 0 || col.compressed_size() < 0 {
                return Err(SeedError::Parquet {
                    url: url.to_string(),
                    message: format!(
                        "damaged footer: column {c} of row group {g} has offset {start} and                          size {}; rewrite the file",
                        col.compressed_size()
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Reads the footer (with the page index where there is one) and sets up the task's row
/// groups, row selection and column projection.
async fn open(
    slice: &TaskSlice,
    loc: &Location,
    columns: &ReadColumns,
) -> Result<ParquetRecordBatchStream<ObjectReader>, SeedError> {
    let perr = |e: ParquetError| parquet_error(&slice.object_url, e);
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
        .await
        .map_err(perr)?;
    let meta = builder.metadata().clone();
    let groups: Vec<usize> = slice.row_groups.iter().map(|&r| r as usize).collect();
    if let Some(&bad) = groups.iter().find(|&&g| g >= meta.num_row_groups()) {
        return Err(SeedError::Parquet {
            url: slice.object_url.clone(),
            message: format!(
                "the task names row group {bad} but the file has {}; was it replaced?",
                meta.num_row_groups()
            ),
        });
    }
    check_column_chunks(&slice.object_url, &meta, &groups)?;
    let rows_before =
        |g: usize| -> u64 { (0..g).map(|i| meta.row_group(i).num_rows() as u64).sum() };
    let group_rows: u64 = groups
        .iter()
        .map(|&g| meta.row_group(g).num_rows() as u64)
        .sum();
    let skip = groups
        .first()
        .map_or(0, |&g| slice.row_start.saturating_sub(rows_before(g)))
        .min(group_rows);
    let take = slice.row_count.min(group_rows - skip);
    let rest = group_rows - skip - take;
    let selection = RowSelection::from(
        [
            RowSelector::skip(skip as usize),
            RowSelector::select(take as usize),
            RowSelector::skip(rest as usize),
        ]
        .into_iter()
        .filter(|s| s.row_count > 0)
        .collect::<Vec<_>>(),
    );
    let mask = match &columns.0 {
        Some(wanted) => {
            let schema = builder.parquet_schema();
            let roots: Vec<usize> = schema
                .root_schema()
                .get_fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| wanted.contains(f.name()))
                .map(|(i, _)| i)
                .collect();
            ProjectionMask::roots(schema, roots)
        }
        None => ProjectionMask::all(),
    };
    builder
        .with_row_groups(groups)
        .with_row_selection(selection)
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(perr)
}

/// One cell as JSON. Common scalar types map directly; anything else is rendered as text.
fn arrow_value(array: &dyn Array, row: usize) -> Result<Value, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    if array.is_null(row) {
        return Ok(Value::Null);
    }
    Ok(match array.data_type() {
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_string()),
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Float32 => {
            serde_json::Number::from_f64(array.as_primitive::<Float32Type>().value(row) as f64)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        DataType::Float64 => {
            serde_json::Number::from_f64(array.as_primitive::<Float64Type>().value(row))
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let bytes: &[u8] = match array.data_type() {
                DataType::Binary => array.as_binary::<i32>().value(row),
                DataType::LargeBinary => array.as_binary::<i64>().value(row),
                _ => array.as_binary_view().value(row),
            };
            Value::String(
                std::str::from_utf8(bytes)
                    .map_err(|e| format!("binary value is not UTF-8 text: {e}"))?
                    .to_string(),
            )
        }
        DataType::List(_) | DataType::LargeList(_) => {
            let list = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                _ => array.as_list::<i64>().value(row),
            };
            let mut out = Vec::with_capacity(list.len());
            for i in 0..list.len() {
                out.push(arrow_value(list.as_ref(), i)?);
            }
            Value::Array(out)
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut m = Map::new();
            for (i, f) in fields.iter().enumerate() {
                m.insert(f.name().clone(), arrow_value(s.column(i).as_ref(), row)?);
            }
            Value::Object(m)
        }
        _ => {
            let fmt = arrow_cast::display::ArrayFormatter::try_new(array, &Default::default())
                .map_err(|e| e.to_string())?;
            Value::String(fmt.value(row).to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::input::{plan_tasks, read_task_columns};
    use crate::spec::input::InputFormat;
    use crate::storage;

    /// 3,000 rows in row groups of 1,000 and pages of 100: `id` = "r{n}", `n`, a wide `body`.
    fn write_file(dir: &tempfile::TempDir) -> String {
        let n: Vec<i64> = (0..3000).collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "id",
                Arc::new(StringArray::from_iter_values(
                    n.iter().map(|i| format!("r{i}")),
                )),
            ),
            ("n", Arc::new(Int64Array::from(n.clone()))),
            (
                "body",
                Arc::new(StringArray::from_iter_values(
                    n.iter().map(|i| format!("{i} {}", "x".repeat(200))),
                )),
            ),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1000))
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .build();
        let path = dir.path().join("s.parquet");
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            batch.schema(),
            Some(props),
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        path.to_str().unwrap().to_string()
    }

    fn input(path: &str, rows_per_task: u64) -> InputSpec {
        InputSpec {
            path: path.into(),
            format: InputFormat::Parquet,
            id_column: Some("id".into()),
            text_column: "text".into(),
            limit: None,
            rows_per_task,
        }
    }

    async fn rows(input: &InputSpec, slice: &TaskSlice, cols: &ReadColumns) -> Vec<SeedRow> {
        let chunks: Vec<Vec<SeedItem>> =
            futures::TryStreamExt::try_collect(read_task_columns(input, slice, cols))
                .await
                .unwrap();
        chunks
            .into_iter()
            .flatten()
            .map(|i| match i {
                SeedItem::Row(r) => r,
                SeedItem::Bad(b) => panic!("{b:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn slices_of_row_groups_read_exactly_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(&dir);
        // 350-row tasks cut row groups in the middle of pages.
        let input = input(&path, 350);
        let plan = plan_tasks(&input, &[storage::open(&path).unwrap()])
            .await
            .unwrap();
        let mut next = 0i64;
        for t in &plan.tasks {
            let got = rows(&input, t, &ReadColumns::all()).await;
            assert_eq!(got.len() as u64, t.row_count, "{t:?}");
            for r in got {
                assert_eq!(r.columns["n"], next, "rows in order, none twice");
                assert_eq!(r.id, format!("r{next}"));
                assert_eq!(r.index, next as u64);
                assert_eq!(r.source, format!("s.parquet row {next}"));
                next += 1;
            }
        }
        assert_eq!(next, 3000);
    }

    #[tokio::test]
    async fn only_the_columns_the_job_reads_are_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(&dir);
        let input = input(&path, 3000);
        let plan = plan_tasks(&input, &[storage::open(&path).unwrap()])
            .await
            .unwrap();
        let cols = ReadColumns(Some(["id".to_string(), "n".to_string()].into()));
        let got = rows(&input, &plan.tasks[0], &cols).await;
        assert_eq!(got.len(), 3000);
        let keys: Vec<&String> = got[2999].columns.keys().collect();
        assert_eq!(keys, vec!["id", "n"], "`body` is not read");
        assert_eq!(got[2999].id, "r2999");
        let all = rows(&input, &plan.tasks[0], &ReadColumns::all()).await;
        assert_eq!(all[0].columns.len(), 3);
    }

    #[tokio::test]
    async fn a_task_naming_a_row_group_the_file_lacks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(&dir);
        let slice = TaskSlice {
            object_url: path.clone(),
            format: InputFormat::Parquet,
            row_start: 0,
            row_count: 10,
            byte_start: 0,
            byte_end: 0,
            row_groups: vec![7],
            global_row_start: 0,
        };
        let err = futures::TryStreamExt::try_collect::<Vec<_>>(read_task_columns(
            &input(&path, 10),
            &slice,
            &ReadColumns::all(),
        ))
        .await
        .unwrap_err();
        assert!(err.to_string().contains("row group 7"), "{err}");
        assert!(!err.retryable());
    }
}
