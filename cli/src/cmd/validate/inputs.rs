//! Every input file checked before a job runs: all taxonomy leaves parsed, every Parquet footer
//! read, a sample of lines of every JSONL or text file decoded, and every file's first bytes
//! compared with the declared format. Problems are collected, not returned one at a time, so a
//! user fixes them all in one go.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use synthforge_core::input::sniff::sniff;
use synthforge_core::input::taxonomy::{plan_tasks, read_rows};
use synthforge_core::input::{
    parquet_columns, preview_slice, read_task_rows, seed_columns, SeedItem, SeedRow,
    COLUMN_SAMPLE_ROWS,
};
use synthforge_core::spec::{InputFormat, InputSpec};
use synthforge_core::storage::{self, Location};

use super::Findings;

/// Files checked at once (footers and samples are small reads).
const CHECKS_AT_ONCE: usize = 16;
/// Bad rows reported per file; the rest are counted.
const BAD_ROWS_SHOWN: usize = 5;

/// What the input check learnt: rows to preview prompts with and the seed columns.
pub struct InputReport {
    /// The first readable seed rows (of the first file, or the first leaves), in order.
    pub rows: Vec<SeedRow>,
    /// The seed rows' columns as `submit` will see them (`None`: unknown).
    pub seed_columns: Option<BTreeSet<String>>,
    /// One line saying what was checked.
    pub summary: String,
}

/// Checks the whole input of `input`; `keep` is how many rows to return for previews.
pub async fn check(input: &InputSpec, keep: usize, findings: &mut Findings) -> InputReport {
    let empty = |summary: String| InputReport {
        rows: Vec::new(),
        seed_columns: None,
        summary,
    };
    if input.format == InputFormat::Taxonomy {
        return check_taxonomy(input, keep, findings).await;
    }
    let objects = match storage::list_objects(&input.path).await {
        Ok(o) => o,
        Err(e) => {
            findings.problem("input.path", e.to_string());
            return empty("no input".into());
        }
    };
    let checked: Vec<FileCheck> = futures::stream::iter(&objects)
        .map(|(loc, meta)| check_file(input, loc, meta.size))
        .buffered(CHECKS_AT_ONCE)
        .collect()
        .await;
    let mut rows = Vec::new();
    let mut first_columns: Option<Vec<String>> = None;
    for (file, (loc, _)) in checked.into_iter().zip(&objects) {
        for p in file.problems {
            findings.problem("input.path", format!("{}: {p}", loc.url));
        }
        if rows.is_empty() {
            rows = file.rows.into_iter().take(keep).collect();
        }
        // Parquet files of one input should share a schema: a stage reading a column missing
        // from some files reads nothing from their rows.
        if let Some(cols) = file.parquet_columns {
            match &first_columns {
                None => first_columns = Some(cols),
                Some(first) => {
                    let missing: Vec<&str> = first
                        .iter()
                        .filter(|c| !cols.contains(c))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        findings.warning(format!(
                            "{}: lacks column(s) {} that the first file has",
                            loc.url,
                            missing.join(", ")
                        ));
                    }
                }
            }
        }
    }
    // The same columns `submit` checks the stages against: the first file's.
    let seed_columns = match objects.first() {
        Some((first, meta)) => seed_columns(input, first, meta.size).await.unwrap_or(None),
        None => None,
    };
    InputReport {
        rows,
        seed_columns,
        summary: format!("input {} file(s) checked", objects.len()),
    }
}

/// One file's findings.
struct FileCheck {
    problems: Vec<String>,
    /// Its first readable rows.
    rows: Vec<SeedRow>,
    /// Its schema's columns, when it is a readable Parquet file.
    parquet_columns: Option<Vec<String>>,
}

async fn check_file(input: &InputSpec, loc: &Location, size: u64) -> FileCheck {
    let mut out = FileCheck {
        problems: Vec::new(),
        rows: Vec::new(),
        parquet_columns: None,
    };
    match sniff(loc, size).await {
        Ok(seen) => {
            if let Some(why) = seen.mismatch(input.format) {
                out.problems.push(why);
                return out;
            }
        }
        Err(e) => {
            out.problems.push(e.to_string());
            return out;
        }
    }
    if input.format == InputFormat::Parquet {
        match parquet_columns(loc).await {
            Ok(cols) => out.parquet_columns = Some(cols),
            Err(e) => {
                out.problems.push(e.to_string());
                return out;
            }
        }
    }
    let Some(slice) = preview_slice(input.format, &loc.url, size, COLUMN_SAMPLE_ROWS) else {
        return out;
    };
    match read_task_rows(input, &slice).await {
        Ok(items) => {
            let bad: Vec<String> = items
                .iter()
                .filter_map(|i| match i {
                    // The reader's message names the row already (`seeds.jsonl:3: ...`).
                    SeedItem::Bad(b) if b.error.starts_with(&b.source) => Some(b.error.clone()),
                    SeedItem::Bad(b) => Some(format!("{}: {}", b.source, b.error)),
                    SeedItem::Row(_) => None,
                })
                .collect();
            for b in bad.iter().take(BAD_ROWS_SHOWN) {
                out.problems.push(b.clone());
            }
            if bad.len() > BAD_ROWS_SHOWN {
                out.problems.push(format!(
                    "{} more bad rows among the first {} read",
                    bad.len() - BAD_ROWS_SHOWN,
                    items.len()
                ));
            }
            out.rows = items
                .into_iter()
                .filter_map(|i| match i {
                    SeedItem::Row(r) => Some(r),
                    SeedItem::Bad(_) => None,
                })
                .collect();
        }
        Err(e) => out.problems.push(e.to_string()),
    }
    out
}

/// Every leaf of a taxonomy parsed (not only the first task's), every bad one reported.
async fn check_taxonomy(input: &InputSpec, keep: usize, findings: &mut Findings) -> InputReport {
    let whole = InputSpec {
        limit: None,
        rows_per_task: u64::MAX,
        ..input.clone()
    };
    let read = async {
        let (tasks, leaves) = plan_tasks(&whole).await?;
        let items: Vec<Vec<SeedItem>> = futures::stream::iter(&tasks)
            .map(read_rows)
            .buffered(1)
            .try_collect()
            .await?;
        Ok::<_, synthforge_core::input::SeedError>((leaves, items.concat()))
    };
    let (leaves, items) = match read.await {
        Ok(r) => r,
        Err(e) => {
            findings.problem("input.path", e.to_string());
            return InputReport {
                rows: Vec::new(),
                seed_columns: None,
                summary: "no taxonomy".into(),
            };
        }
    };
    let mut rows = Vec::new();
    let mut bad = 0;
    for item in items {
        match item {
            SeedItem::Row(r) if rows.len() < keep => rows.push(r),
            SeedItem::Row(_) => {}
            SeedItem::Bad(b) => {
                bad += 1;
                findings.problem("input.path", b.error);
            }
        }
    }
    let seed_columns = Some(
        synthforge_core::input::taxonomy::SEED_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .collect(),
    );
    InputReport {
        rows,
        seed_columns,
        summary: format!("taxonomy with {leaves} qna.yaml file(s), {bad} unreadable"),
    }
}
