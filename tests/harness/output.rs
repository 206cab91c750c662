//! Reading a job's output directory the way a consumer would: `_manifest.json` is the truth of
//! which files form the dataset, and only the files it lists are read (with the parquet crate's
//! Arrow reader). Stray files (e.g. from a fenced-off worker) are deliberately ignored.
//! S3 outputs are first copied locally with [`crate::S3::download`].
//!
//! Cells are read as text whatever their Arrow type, so the tests do not break when a column
//! changes between, say, Utf8 and Utf8View, or Int32 and Int64.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;

/// `_manifest.json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub job_id: String,
    pub files: Vec<ManifestFile>,
    pub rows: u64,
    pub failures: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ManifestFile {
    /// Relative to the output root, e.g. `data/part-000000-1.parquet`.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    /// `data` or `failures`.
    pub kind: String,
}

/// One generated record. Typed fields for the columns tests check; every column as text in
/// `columns` (None = null).
#[derive(Clone, Debug)]
pub struct OutputRow {
    pub id: String,
    pub seed_id: String,
    pub prompt: Option<String>,
    pub completion: Option<String>,
    pub model: Option<String>,
    pub stage: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub latency_ms: Option<i64>,
    pub job_id: Option<String>,
    pub task_id: Option<String>,
    /// The manifest path of the file this row came from.
    pub file: String,
    pub columns: BTreeMap<String, Option<String>>,
}

/// One row of `failures/`: a seed row that could not be processed, and why.
#[derive(Clone, Debug)]
pub struct FailureRow {
    pub seed_id: Option<String>,
    pub row_index: Option<i64>,
    pub stage: Option<String>,
    pub error: String,
    pub input: Option<String>,
    pub file: String,
    pub columns: BTreeMap<String, Option<String>>,
}

/// What one manifest entry claims versus what is on disk.
#[derive(Clone, Debug)]
pub struct FileCheck {
    pub entry: ManifestFile,
    pub actual_rows: u64,
    pub actual_bytes: u64,
}

/// A job's output as listed by its manifest.
#[derive(Clone, Debug)]
pub struct Output {
    pub root: PathBuf,
    pub manifest: Manifest,
    pub rows: Vec<OutputRow>,
    pub failures: Vec<FailureRow>,
    pub files: Vec<FileCheck>,
}

impl Output {
    /// Differences between the manifest and the files (row counts, sizes, totals); empty when
    /// consistent.
    pub fn manifest_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for f in &self.files {
            if f.entry.rows != f.actual_rows {
                problems.push(format!(
                    "{}: manifest says {} rows, file has {}",
                    f.entry.path, f.entry.rows, f.actual_rows
                ));
            }
            if f.entry.bytes != f.actual_bytes {
                problems.push(format!(
                    "{}: manifest says {} bytes, file has {}",
                    f.entry.path, f.entry.bytes, f.actual_bytes
                ));
            }
        }
        if self.manifest.rows != self.rows.len() as u64 {
            problems.push(format!(
                "manifest says {} rows in total, data files hold {}",
                self.manifest.rows,
                self.rows.len()
            ));
        }
        if self.manifest.failures != self.failures.len() as u64 {
            problems.push(format!(
                "manifest says {} failures in total, failure files hold {}",
                self.manifest.failures,
                self.failures.len()
            ));
        }
        problems
    }
}

/// Reads `<dir>/_manifest.json` and every file it lists. Panics if the manifest or a listed
/// file is missing or unreadable, or a required column (`id`, `seed_id`; `error` for failures)
/// is absent.
#[track_caller]
pub fn read_output(dir: &Path) -> Output {
    let manifest_path = dir.join("_manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e}; the output dir holds: {:?}",
            manifest_path.display(),
            list_files(dir)
        )
    });
    let manifest: Manifest = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("parse {}: {e}\n{text}", manifest_path.display()));
    let mut output = Output {
        root: dir.to_path_buf(),
        manifest: manifest.clone(),
        rows: Vec::new(),
        failures: Vec::new(),
        files: Vec::new(),
    };
    for entry in &manifest.files {
        let path = dir.join(&entry.path);
        let records = read_parquet_as_text(&path);
        output.files.push(FileCheck {
            entry: entry.clone(),
            actual_rows: records.len() as u64,
            actual_bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
        });
        match entry.kind.as_str() {
            "data" => output
                .rows
                .extend(records.into_iter().map(|c| to_output_row(&entry.path, c))),
            "failures" => output
                .failures
                .extend(records.into_iter().map(|c| to_failure_row(&entry.path, c))),
            other => panic!("{}: unknown manifest kind {other:?}", entry.path),
        }
    }
    output
}

fn to_output_row(file: &str, columns: BTreeMap<String, Option<String>>) -> OutputRow {
    let text = |name: &str| columns.get(name).cloned().flatten();
    let required = |name: &str| {
        text(name).unwrap_or_else(|| {
            panic!(
                "{file}: column `{name}` missing or null; columns: {:?}",
                columns.keys()
            )
        })
    };
    OutputRow {
        id: required("id"),
        seed_id: required("seed_id"),
        prompt: text("prompt"),
        completion: text("completion"),
        model: text("model"),
        stage: text("stage"),
        finish_reason: text("finish_reason"),
        prompt_tokens: text("prompt_tokens").and_then(|s| parse_int(&s)),
        completion_tokens: text("completion_tokens").and_then(|s| parse_int(&s)),
        latency_ms: text("latency_ms").and_then(|s| parse_int(&s)),
        job_id: text("job_id"),
        task_id: text("task_id"),
        file: file.to_string(),
        columns,
    }
}

fn to_failure_row(file: &str, columns: BTreeMap<String, Option<String>>) -> FailureRow {
    let text = |name: &str| columns.get(name).cloned().flatten();
    FailureRow {
        seed_id: text("seed_id"),
        row_index: text("row_index").and_then(|s| parse_int(&s)),
        stage: text("stage"),
        error: text("error").unwrap_or_else(|| {
            panic!(
                "{file}: failure without `error`; columns: {:?}",
                columns.keys()
            )
        }),
        input: text("input"),
        file: file.to_string(),
        columns,
    }
}

fn parse_int(s: &str) -> Option<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
}

/// Every row of a Parquet file as `column -> text` maps.
#[track_caller]
pub fn read_parquet_as_text(path: &Path) -> Vec<BTreeMap<String, Option<String>>> {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap_or_else(|e| panic!("{} is not a readable Parquet file: {e}", path.display()))
        .build()
        .expect("parquet reader");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        append_rows(&batch, &mut rows);
    }
    rows
}

fn append_rows(batch: &RecordBatch, rows: &mut Vec<BTreeMap<String, Option<String>>>) {
    let schema = batch.schema();
    for r in 0..batch.num_rows() {
        let row = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, col)| (field.name().clone(), cell_text(col.as_ref(), r)))
            .collect();
        rows.push(row);
    }
}

/// One cell as text (None for null). Unusual types are rendered as their type name so a test
/// sees that something is there without the harness needing a formatter for everything.
fn cell_text(col: &dyn Array, i: usize) -> Option<String> {
    if col.is_null(i) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
        DataType::LargeUtf8 => col.as_string::<i64>().value(i).to_string(),
        DataType::Utf8View => col.as_string_view().value(i).to_string(),
        DataType::Binary => String::from_utf8_lossy(col.as_binary::<i32>().value(i)).into_owned(),
        DataType::LargeBinary => {
            String::from_utf8_lossy(col.as_binary::<i64>().value(i)).into_owned()
        }
        DataType::Boolean => col.as_boolean().value(i).to_string(),
        DataType::Int8 => col.as_primitive::<Int8Type>().value(i).to_string(),
        DataType::Int16 => col.as_primitive::<Int16Type>().value(i).to_string(),
        DataType::Int32 => col.as_primitive::<Int32Type>().value(i).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::UInt8 => col.as_primitive::<UInt8Type>().value(i).to_string(),
        DataType::UInt16 => col.as_primitive::<UInt16Type>().value(i).to_string(),
        DataType::UInt32 => col.as_primitive::<UInt32Type>().value(i).to_string(),
        DataType::UInt64 => col.as_primitive::<UInt64Type>().value(i).to_string(),
        DataType::Float32 => col.as_primitive::<Float32Type>().value(i).to_string(),
        DataType::Float64 => col.as_primitive::<Float64Type>().value(i).to_string(),
        other => format!("<{other}>"),
    })
}

fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}
