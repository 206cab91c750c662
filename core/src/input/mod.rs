//! Reading a task's seed rows from object storage.
//!
//! A task is a slice of one input object: row groups of a Parquet file, or a byte range of a
//! JSONL/text file that holds whole lines. Rows that cannot be decoded are returned as
//! [`SeedItem::Bad`] with their position and reason, so the worker can write them to the
//! failures output instead of losing them or failing the whole task.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use serde_json::{Map, Value};

use crate::spec::input::{InputFormat, InputSpec};
pub mod taxonomy;

use crate::storage::{self, Location, StorageError};

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
    /// The `id_column` value, or `row-{index}`.
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
    #[error("{url}: parquet: {message}")]
    Parquet { url: String, message: String },
    #[error("{url}: format `{format}` is not read by the row reader")]
    Unsupported { url: String, format: String },
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
        InputFormat::Parquet => read_parquet(input, slice, &loc).await,
        InputFormat::Jsonl | InputFormat::Text => read_lines(input, slice, &loc).await,
        InputFormat::Taxonomy => crate::input::taxonomy::read_rows(slice).await,
    }
}

fn row_id(input: &InputSpec, columns: &Map<String, Value>, index: u64) -> String {
    if let Some(col) = &input.id_column {
        match columns.get(col) {
            Some(Value::String(s)) => return s.clone(),
            Some(Value::Null) | None => {}
            Some(v) => return v.to_string(),
        }
    }
    format!("row-{index}")
}

async fn read_lines(
    input: &InputSpec,
    slice: &TaskSlice,
    loc: &Location,
) -> Result<Vec<SeedItem>, SeedError> {
    let bytes = if slice.byte_end > slice.byte_start {
        loc.store
            .get_range(&loc.path, slice.byte_start..slice.byte_end)
            .await
            .map_err(|e| loc.store_error(e))?
    } else {
        loc.store
            .get(&loc.path)
            .await
            .map_err(|e| loc.store_error(e))?
            .bytes()
            .await
            .map_err(|e| loc.store_error(e))?
    };
    let name = short_name(&slice.object_url);
    let mut items = Vec::with_capacity(slice.row_count as usize);
    for (row_in_object, line) in (slice.row_start..).zip(split_lines(&bytes)) {
        if row_in_object >= slice.row_start + slice.row_count && slice.row_count > 0 {
            break;
        }
        let index = slice.global_row_start + (row_in_object - slice.row_start);
        let source = format!("{name}:{}", row_in_object + 1);
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                let raw = String::from_utf8_lossy(line).into_owned();
                // Keep the row's own id where the rest of the line still parses.
                let id = serde_json::from_str::<Value>(&raw)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .map(|m| row_id(input, &m, index));
                items.push(SeedItem::Bad(BadRow {
                    index,
                    id,
                    source: source.clone(),
                    error: format!(
                        "{source}: invalid UTF-8 at byte {} of the line",
                        e.valid_up_to()
                    ),
                    raw,
                }));
                continue;
            }
        };
        let text = text.strip_suffix('\r').unwrap_or(text);
        let columns = match slice.format {
            InputFormat::Text => {
                let mut m = Map::new();
                m.insert(input.text_column.clone(), Value::String(text.to_string()));
                m
            }
            _ => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                Ok(other) => {
                    items.push(SeedItem::Bad(BadRow {
                        index,
                        id: None,
                        source: source.clone(),
                        error: format!(
                            "{source}: expected a JSON object, found {}",
                            json_kind(&other)
                        ),
                        raw: text.to_string(),
                    }));
                    continue;
                }
                Err(e) => {
                    items.push(SeedItem::Bad(BadRow {
                        index,
                        id: None,
                        source: source.clone(),
                        error: format!("{source}: invalid JSON: {e}"),
                        raw: text.to_string(),
                    }));
                    continue;
                }
            },
        };
        let id = row_id(input, &columns, index);
        items.push(SeedItem::Row(SeedRow {
            index,
            id,
            columns,
            source,
        }));
    }
    Ok(items)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Lines of a byte buffer without their `\n`; a final line without newline counts; a trailing
/// empty remainder does not. Empty lines in the middle are skipped by the planner too.
pub fn split_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
}

async fn read_parquet(
    input: &InputSpec,
    slice: &TaskSlice,
    loc: &Location,
) -> Result<Vec<SeedItem>, SeedError> {
    let perr = |e: ParquetError| SeedError::Parquet {
        url: slice.object_url.clone(),
        message: e.to_string(),
    };
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(perr)?;
    let meta = builder.metadata().clone();
    let first_rg_start: u64 = slice
        .row_groups
        .first()
        .map(|&rg| {
            (0..rg as usize)
                .map(|i| meta.row_group(i).num_rows() as u64)
                .sum()
        })
        .unwrap_or(0);
    let offset = slice.row_start.saturating_sub(first_rg_start) as usize;
    let stream = builder
        .with_row_groups(slice.row_groups.iter().map(|&r| r as usize).collect())
        .with_offset(offset)
        .with_limit(slice.row_count as usize)
        .with_batch_size(1024)
        .build()
        .map_err(perr)?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(perr)?;
    let name = short_name(&slice.object_url);
    let mut items = Vec::with_capacity(slice.row_count as usize);
    let mut row_in_object = slice.row_start;
    for batch in &batches {
        let schema = batch.schema();
        for r in 0..batch.num_rows() {
            let index = slice.global_row_start + (row_in_object - slice.row_start);
            let source = format!("{name} row {row_in_object}");
            row_in_object += 1;
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
            let id = row_id(input, &columns, index);
            items.push(SeedItem::Row(SeedRow {
                index,
                id,
                columns,
                source,
            }));
        }
    }
    Ok(items)
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
        .map_err(|e| SeedError::Parquet {
            url: loc.url.clone(),
            message: e.to_string(),
        })?;
    Ok(meta
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows() as u64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, format: InputFormat) -> InputSpec {
        InputSpec {
            path: path.into(),
            format,
            id_column: Some("id".into()),
            text_column: "text".into(),
            limit: None,
            rows_per_task: 10,
        }
    }

    #[tokio::test]
    async fn jsonl_bad_lines_become_bad_rows_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let mut data = b"{\"id\":\"a\",\"text\":\"x\"}\n".to_vec();
        data.extend_from_slice(b"{\"id\":\"b\",\"text\":\"\xff\xfe\"}\n");
        data.extend_from_slice(b"[1,2]\n{\"id\":\"d\",\"text\":\"y\"}\n");
        std::fs::write(&p, &data).unwrap();
        let url = p.to_str().unwrap().to_string();
        let slice = TaskSlice {
            object_url: url.clone(),
            format: InputFormat::Jsonl,
            row_start: 0,
            row_count: 4,
            byte_start: 0,
            byte_end: 0,
            row_groups: vec![],
            global_row_start: 100,
        };
        let items = read_task_rows(&spec(&url, InputFormat::Jsonl), &slice)
            .await
            .unwrap();
        assert_eq!(items.len(), 4);
        match &items[1] {
            SeedItem::Bad(b) => {
                assert!(
                    b.error.contains("s.jsonl:2") && b.error.contains("UTF-8"),
                    "{}",
                    b.error
                );
                assert_eq!(b.index, 101);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&items[2], SeedItem::Bad(b) if b.error.contains("JSON object")));
        assert!(matches!(&items[3], SeedItem::Row(r) if r.id == "d" && r.index == 103));
    }
}
