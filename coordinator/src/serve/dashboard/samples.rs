//! Reading a few generated rows back from a committed output file, for people to eyeball
//! quality on the dashboard.

use synthforge_core::input::{self, SeedItem, TaskSlice};
use synthforge_core::spec::{InputFormat, InputSpec};
use synthforge_core::storage;

use crate::telemetry::{SampleRow, SampleSource};

/// Longest text kept per sample field; the page is for a glance, not for reading whole rows.
const CLIP_CHARS: usize = 2_000;

fn clip(s: &str) -> String {
    s.chars().take(CLIP_CHARS).collect()
}

/// Reads the first `n` rows of `src.path` under the dataset root `output`.
pub async fn read(output: &str, src: &SampleSource, n: u64) -> Result<Vec<SampleRow>, String> {
    let root = storage::open(output).map_err(|e| e.to_string())?;
    let loc = root.child(&src.path);
    let url = loc.url.clone();
    // The output's columns come back as JSON values through the seed reader's Parquet path.
    let input = InputSpec {
        path: url.clone(),
        format: InputFormat::Parquet,
        id_column: Some("id".into()),
        text_column: "completion".into(),
        limit: None,
        rows_per_task: n,
    };
    let slice = TaskSlice {
        object_url: url,
        format: InputFormat::Parquet,
        row_start: 0,
        row_count: n,
        byte_start: 0,
        byte_end: 0,
        row_groups: vec![0],
        global_row_start: 0,
    };
    let items = input::read_task_rows(&input, &slice)
        .await
        .map_err(|e| e.to_string())?;
    let text = |c: &serde_json::Map<String, serde_json::Value>, k: &str| match c.get(k) {
        Some(serde_json::Value::String(s)) => clip(s),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => clip(&v.to_string()),
    };
    Ok(items
        .into_iter()
        .filter_map(|i| match i {
            SeedItem::Row(r) => Some(SampleRow {
                task_id: src.task_id,
                seed_id: text(&r.columns, "seed_id"),
                model: text(&r.columns, "model"),
                stage: text(&r.columns, "stage"),
                prompt: text(&r.columns, "prompt"),
                completion: text(&r.columns, "completion"),
            }),
            SeedItem::Bad(_) => None,
        })
        .collect())
}
