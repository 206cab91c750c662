//! Helpers shared by the `stages_*` end-to-end tests: write a seed and a job with an arbitrary
//! pipeline, run it with `synthforge run`, and read what the harness's text view does not show
//! (the manifest's removed counts, the `messages` list column).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use synthforge_tests::*;

/// Writes `rows` as JSONL with columns `id` and `text`; returns the ids.
pub fn write_rows(path: &Path, rows: &[(String, String)]) -> Vec<String> {
    let mut body = String::new();
    for (id, text) in rows {
        body.push_str(&serde_json::json!({"id": id, "text": text}).to_string());
        body.push('\n');
    }
    std::fs::write(path, body).unwrap();
    rows.iter().map(|r| r.0.clone()).collect()
}

/// A job reading `seed` (JSONL, `id`/`text`) with `pipeline` (YAML list items, indented by
/// two spaces) and `backends` (YAML map entries, indented by two spaces).
pub fn job_yaml(name: &str, seed: &Path, out: &Path, pipeline: &str, backends: &str) -> String {
    format!(
        "name: {name}\nseed: 17\ninput:\n  path: {seed:?}\n  format: jsonl\n  id_column: id\n  \
         text_column: text\n  rows_per_task: 5\npipeline:\n{pipeline}\nbackends:\n{backends}\n\
         output:\n  path: {out:?}\n"
    )
}

/// One backend entry named `name` for a mock.
pub fn backend(name: &str, mock: &MockBackend, model: &str) -> String {
    format!(
        "  {name}:\n    url: {:?}\n    model: {model}\n    max_concurrency: 8\n    max_attempts: 2\n",
        mock.url()
    )
}

/// Writes `yaml` into `dir/<file>`, runs it to the end (asserting success) and reads the output.
pub fn run(dir: &Path, file: &str, yaml: &str, out: &Path) -> Output {
    let job = dir.join(file);
    std::fs::write(&job, yaml).unwrap();
    synthforge(["run"])
        .arg(&job)
        .arg("--no-progress")
        .arg("--fresh")
        .arg("--state-dir")
        .arg(dir.join(format!("state-{file}")))
        .run_to_end(RUN_TIMEOUT)
        .assert_success();
    read_output(out)
}

/// `_manifest.json` as JSON.
pub fn manifest_json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap()).unwrap()
}

/// The manifest's rows removed by reason.
pub fn removed(out: &Path) -> BTreeMap<String, u64> {
    serde_json::from_value(manifest_json(out)["removed"].clone()).unwrap_or_default()
}

/// Asserts output rows + failures + removed = `expected` samples, the manifest agrees with its
/// files, and no output id repeats.
#[track_caller]
pub fn assert_every_sample_accounted(output: &Output, expected: u64) {
    assert!(
        output.manifest_problems().is_empty(),
        "{:?}",
        output.manifest_problems()
    );
    let removed: u64 = removed(&output.root).values().sum();
    assert_eq!(
        output.rows.len() as u64 + output.failures.len() as u64 + removed,
        expected,
        "rows {} + failures {} + removed {removed} (by reason {:?})",
        output.rows.len(),
        output.failures.len(),
        self::removed(&output.root)
    );
    let mut ids: Vec<&str> = output.rows.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "output ids repeat");
}

/// Every string cell of the output rows and failures, for "never in the output" checks.
pub fn all_output_text(output: &Output) -> String {
    let mut s = String::new();
    for r in &output.rows {
        for v in r.columns.values().flatten() {
            s.push_str(v);
            s.push('\n');
        }
    }
    for f in &output.failures {
        for v in f.columns.values().flatten() {
            s.push_str(v);
            s.push('\n');
        }
    }
    s
}

/// The `messages` column of every data file: id → [(role, content)].
pub fn messages(output: &Output) -> HashMap<String, Vec<(String, String)>> {
    let mut out = HashMap::new();
    for f in output.files.iter().filter(|f| f.entry.kind == "data") {
        let path: PathBuf = output.root.join(&f.entry.path);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let ids = batch
                .column_by_name("id")
                .unwrap()
                .as_string::<i32>()
                .clone();
            let msgs = batch
                .column_by_name("messages")
                .unwrap()
                .as_list::<i32>()
                .clone();
            for i in 0..batch.num_rows() {
                if msgs.is_null(i) {
                    continue;
                }
                let turns = msgs.value(i);
                let st = turns.as_struct();
                let role = st.column(0).as_string::<i32>();
                let content = st.column(1).as_string::<i32>();
                let v = (0..st.len())
                    .map(|j| (role.value(j).to_string(), content.value(j).to_string()))
                    .collect();
                out.insert(ids.value(i).to_string(), v);
            }
        }
    }
    out
}

/// Every chat message content the mock received (needs `--record`).
pub fn received_texts(mock: &MockBackend) -> Vec<String> {
    let reqs = mock.requests();
    let list = reqs
        .as_array()
        .cloned()
        .or_else(|| reqs.get("requests").and_then(|r| r.as_array().cloned()))
        .expect("GET /requests returns a list");
    list.iter()
        .flat_map(|r| {
            let mut v: Vec<String> = r["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                .collect();
            if let Some(p) = r["prompt"].as_str() {
                v.push(p.to_string());
            }
            v
        })
        .collect()
}

/// Writes reply rules JSON into `dir/rules.json`.
pub fn rules(dir: &Path, rules: serde_json::Value) -> PathBuf {
    let p = dir.join("rules.json");
    std::fs::write(&p, rules.to_string()).unwrap();
    p
}
