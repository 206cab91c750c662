//! Self-tests of the harness's data helpers: seed writers, the output reader, the accounting
//! invariant and the pyarrow cross-check, over a hand-made output directory laid out like a
//! job's (manifest + data + failures).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray};
use arrow_schema::{Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::reader::{FileReader, SerializedFileReader};
use synthforge_tests::*;

#[test]
fn parquet_seed_has_requested_row_groups_and_distinct_texts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seeds.parquet");
    let ids = write_parquet_seed(&path, 1000, 128);
    assert_eq!(ids.len(), 1000);

    let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 8);

    let rows = read_parquet_as_text(&path);
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows[999]["id"].as_deref(), Some("seed-999"));
    let texts: std::collections::HashSet<_> = rows.iter().map(|r| r["text"].clone()).collect();
    assert_eq!(texts.len(), 1000, "texts must be distinct");
}

#[test]
fn jsonl_seed_is_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seeds.jsonl");
    let ids = write_jsonl_seed(&path, 20);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[4]["id"], ids[4].as_str());
    assert_eq!(lines[4]["text"], seed_text(4).as_str());
}

#[test]
fn job_spec_yaml_quotes_values() {
    let job = JobSpec::new(
        "/tmp/a b/seeds.parquet",
        SeedFormat::Parquet,
        "http://127.0.0.1:1/v1",
        "s3://bucket/out",
    );
    let yaml = job.to_yaml();
    assert!(yaml.contains("path: \"/tmp/a b/seeds.parquet\""), "{yaml}");
    assert!(
        yaml.contains("template: \"Write a short lesson about: {{ text }}\""),
        "{yaml}"
    );
    assert!(yaml.contains("format: parquet"), "{yaml}");
    assert_eq!(
        JobSpec::expected_prompt("x"),
        "Write a short lesson about: x"
    );
}

/// Writes a job-like output for seeds `0..n`: `failed` go to failures, the rest to two data
/// files; `duplicate` adds a second output row (same record id) for that seed.
fn fake_output(dir: &Path, n: usize, failed: &[usize], duplicate: Option<usize>) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("failures")).unwrap();
    let mut good: Vec<usize> = (0..n).filter(|i| !failed.contains(i)).collect();
    good.extend(duplicate);
    let (first, second) = good.split_at(good.len() / 2);
    let mut files = Vec::new();
    for (task, part) in [first, second].into_iter().enumerate() {
        let rel = format!("data/part-{task:06}-1.parquet");
        write_data_file(&dir.join(&rel), part, task);
        files.push((rel, part.len(), "data"));
    }
    let rel = "failures/part-000000-1.parquet".to_string();
    write_failures_file(&dir.join(&rel), failed);
    files.push((rel, failed.len(), "failures"));

    // A stray file not in the manifest (a fenced-off worker's output) must be ignored.
    write_data_file(&dir.join("data/part-000000-2.parquet"), &[0, 1], 0);

    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(rel, rows, kind)| {
            let bytes = std::fs::metadata(dir.join(rel)).unwrap().len();
            serde_json::json!({"path": rel, "rows": rows, "bytes": bytes, "kind": kind})
        })
        .collect();
    let manifest = serde_json::json!({
        "job_id": "job-1", "files": entries, "rows": good.len(), "failures": failed.len(),
    });
    std::fs::write(dir.join("_manifest.json"), manifest.to_string()).unwrap();
}

fn write_data_file(path: &Path, seeds: &[usize], task: usize) {
    let n = seeds.len();
    let s = |f: &dyn Fn(usize) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(seeds.iter().map(|&i| f(i))))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", s(&|i| format!("rec-{i}"))),
        ("seed_id", s(&|i| seed_id(i))),
        ("prompt", s(&|i| JobSpec::expected_prompt(&seed_text(i)))),
        (
            "completion",
            Arc::new(LargeStringArray::from_iter_values(
                seeds.iter().map(|i| format!("lesson {i}")),
            )),
        ),
        ("model", s(&|_| "mock-model".into())),
        ("stage", s(&|_| "generate".into())),
        ("finish_reason", s(&|_| "stop".into())),
        ("prompt_tokens", Arc::new(Int32Array::from(vec![12; n]))),
        ("completion_tokens", Arc::new(Int64Array::from(vec![32; n]))),
        ("latency_ms", Arc::new(Int64Array::from(vec![5; n]))),
        ("job_id", s(&|_| "job-1".into())),
        ("task_id", Arc::new(Int64Array::from(vec![task as i64; n]))),
    ];
    write_batch(path, columns);
}

fn write_failures_file(path: &Path, seeds: &[usize]) {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "seed_id",
            Arc::new(StringArray::from_iter_values(
                seeds.iter().map(|&i| seed_id(i)),
            )),
        ),
        (
            "row_index",
            Arc::new(Int64Array::from_iter_values(
                seeds.iter().map(|&i| i as i64),
            )),
        ),
        (
            "stage",
            Arc::new(StringArray::from_iter_values(seeds.iter().map(|_| "input"))),
        ),
        (
            "error",
            Arc::new(StringArray::from_iter_values(
                seeds
                    .iter()
                    .map(|i| format!("row {i}: missing column `text`")),
            )),
        ),
        (
            "input",
            Arc::new(StringArray::from(vec![None::<&str>; seeds.len()])),
        ),
    ];
    write_batch(path, columns);
}

fn write_batch(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect()).unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn seed_ids(n: usize) -> Vec<String> {
    (0..n).map(seed_id).collect()
}

#[test]
fn complete_output_is_accounted_and_readable_by_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    fake_output(dir.path(), 100, &[7, 42], None);

    let output = read_output(dir.path());
    assert_eq!(output.rows.len(), 98);
    assert_eq!(output.failures.len(), 2);
    assert_eq!(output.failures[0].row_index, Some(7));
    assert!(output.failures[1].error.contains("`text`"));
    let row = &output.rows[0];
    assert_eq!(row.prompt_tokens, Some(12));
    assert_eq!(row.task_id.as_deref(), Some("0"));
    assert_eq!(row.completion.as_deref(), Some("lesson 0"));
    assert_eq!(row.columns["model"].as_deref(), Some("mock-model"));

    assert_accounted(&seed_ids(100), &output);
    assert_default_generate_rows(&output);
    assert_eq!(pyarrow_read_count(dir.path()), 98);
}

#[test]
fn accounting_detects_duplicates_missing_and_unknown_seeds() {
    let dir = tempfile::tempdir().unwrap();
    fake_output(dir.path(), 50, &[3], Some(10));
    let output = read_output(dir.path());

    // seed-10 appears twice (and its record id repeats); seed-49 was "forgotten" by passing a
    // longer seed list, and the seed list lacks seed-0..: all must be reported.
    let mut ids = seed_ids(60);
    ids.remove(0);
    let problems = accounting_problems(&ids, &output).join("\n");
    assert!(problems.contains("output ids repeated"), "{problems}");
    assert!(problems.contains("\"seed-10\""), "{problems}");
    assert!(problems.contains("missing"), "{problems}");
    assert!(problems.contains("\"seed-55\""), "{problems}");
    assert!(
        problems.contains("not in the seed: [\"seed-0\"]"),
        "{problems}"
    );
}

#[test]
fn manifest_mismatches_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    fake_output(dir.path(), 20, &[], None);
    let path = dir.path().join("_manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    manifest["files"][0]["rows"] = 999.into();
    manifest["rows"] = 21.into();
    std::fs::write(&path, manifest.to_string()).unwrap();

    let problems = read_output(dir.path()).manifest_problems().join("\n");
    assert!(problems.contains("manifest says 999 rows"), "{problems}");
    assert!(
        problems.contains("manifest says 21 rows in total"),
        "{problems}"
    );
}

#[test]
#[should_panic(expected = "_manifest.json")]
fn missing_manifest_panics_with_listing() {
    let dir = tempfile::tempdir().unwrap();
    read_output(dir.path());
}

#[test]
fn field_types_are_read_flexibly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("s", Arc::new(StringArray::from(vec![Some("a"), None]))),
        ("i", Arc::new(Int32Array::from(vec![1, 2]))),
    ];
    write_batch(&path, columns);
    let rows = read_parquet_as_text(&path);
    assert_eq!(rows[0]["s"].as_deref(), Some("a"));
    assert_eq!(rows[1]["s"], None);
    assert_eq!(rows[1]["i"].as_deref(), Some("2"));
}
