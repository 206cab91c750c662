//! Seed corpora for tests: `id` = `seed-{i}`, `text` distinct per row.
//!
//! Texts include non-ASCII characters and quotes on purpose, so a pipeline that mangles
//! encodings or HTML-escapes prompts is caught by comparing prompts with [`seed_text`].

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const TOPICS: &[&str] = &[
    "the water cycle",
    "photosynthesis in desert plants",
    "why the sky is blue",
    "prime numbers and their \"gaps\"",
    "the Ångström unit and atomic radii",
    "supply and demand",
    "Rust's ownership model",
    "the history of the printing press",
    "café culture in 19th-century Vienna",
    "plate tectonics",
    "how vaccines train the immune system",
];

/// The id of seed row `i`.
pub fn seed_id(i: usize) -> String {
    format!("seed-{i}")
}

/// The text of seed row `i`; distinct for every `i`.
pub fn seed_text(i: usize) -> String {
    format!("{} (lesson {i})", TOPICS[i % TOPICS.len()])
}

/// Writes `rows` rows as Parquet with row groups of `row_group_size` rows; returns the ids.
#[track_caller]
pub fn write_parquet_seed(path: &Path, rows: usize, row_group_size: usize) -> Vec<String> {
    assert!(row_group_size > 0, "row_group_size must be positive");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_size))
        .build();
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("parquet writer");
    let mut start = 0;
    while start < rows {
        let end = (start + row_group_size).min(rows);
        let ids: ArrayRef = Arc::new(StringArray::from_iter_values((start..end).map(seed_id)));
        let texts: ArrayRef = Arc::new(StringArray::from_iter_values((start..end).map(seed_text)));
        let batch = RecordBatch::try_new(schema.clone(), vec![ids, texts]).expect("batch");
        writer.write(&batch).expect("write parquet batch");
        start = end;
    }
    writer.close().expect("close parquet");
    (0..rows).map(seed_id).collect()
}

/// Writes `rows` rows as JSON Lines (`{"id": ..., "text": ...}`); returns the ids.
#[track_caller]
pub fn write_jsonl_seed(path: &Path, rows: usize) -> Vec<String> {
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut out = BufWriter::new(file);
    for i in 0..rows {
        let line = serde_json::json!({ "id": seed_id(i), "text": seed_text(i) });
        writeln!(out, "{line}").expect("write jsonl");
    }
    out.flush().expect("flush jsonl");
    (0..rows).map(seed_id).collect()
}
