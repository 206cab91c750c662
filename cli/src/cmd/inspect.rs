//! `synthforge inspect OUTPUT`: what a finished dataset holds, at a glance.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::Array;
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use synthforge_core::input::ObjectReader;
use synthforge_core::manifest::{Accounting, Manifest};
use synthforge_core::storage;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The dataset root (path or object-store URL), as in the job's `output.path`.
    pub output: String,
    /// Samples to print.
    #[arg(long, default_value_t = 3)]
    pub samples: usize,
}

fn clip(s: &str, n: usize) -> String {
    let t: String = s.chars().take(n).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Reads the first `n` rows of one output file (data or failures).
async fn read_rows(
    root: &storage::Location,
    path: &str,
    n: usize,
) -> anyhow::Result<Vec<arrow_array::RecordBatch>> {
    let loc = root.child(path);
    let reader = ObjectReader::new(Arc::clone(&loc.store), loc.path.clone());
    Ok(ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .with_context(|| format!("{path}: not a readable Parquet file"))?
        .with_limit(n)
        .build()?
        .try_collect()
        .await?)
}

/// A cell as text, whatever its Arrow type (`None` for null or a missing column).
fn cell(b: &arrow_array::RecordBatch, name: &str, row: usize) -> Option<String> {
    let col = b.column_by_name(name)?;
    if col.is_null(row) {
        return None;
    }
    arrow_cast::display::array_value_to_string(col, row).ok()
}

/// The accounting identity per seed row, with `MISMATCH` when it does not balance.
fn identity_line(a: &Accounting) -> String {
    let mut line = format!(
        "accounting: {} seed rows = {} output + {} removed + {} failed + {} of failed tasks",
        a.seed_rows, a.output_rows, a.removed_rows, a.failed_rows, a.failed_task_rows
    );
    if a.balances() {
        line.push_str(" (balanced)");
    } else {
        line.push_str(&format!(
            "  MISMATCH: difference {} ({})",
            a.difference,
            if a.difference > 0 {
                "seed rows missing without a recorded reason"
            } else {
                "seed rows counted more than once"
            }
        ));
    }
    line
}

/// Removed and failed seed rows by reason, `None` when there are none.
fn identity_detail(a: &Accounting) -> Option<String> {
    let by = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !a.removed_by_reason.is_empty() {
        parts.push(format!("removed by {}", by(&a.removed_by_reason)));
    }
    if !a.failed_by_stage.is_empty() {
        parts.push(format!("failed in {}", by(&a.failed_by_stage)));
    }
    (!parts.is_empty()).then(|| format!("  seed rows {}", parts.join("; ")))
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

pub async fn run(a: InspectArgs) -> anyhow::Result<()> {
    let root = storage::open(&a.output)?;
    let m = Manifest::read(&root)
        .await
        .with_context(|| format!("{} has no readable _manifest.json", a.output))?;
    println!("dataset: {}  job: {} ({})", a.output, m.job_name, m.job_id);
    let data: Vec<_> = m.files.iter().filter(|f| f.kind == "data").collect();
    let fails: Vec<_> = m.files.iter().filter(|f| f.kind != "data").collect();
    let removed: u64 = m.removed.values().sum();
    println!(
        "seed rows: {}  output rows: {}  removed: {} ({:.1}%)  failures: {} ({:.1}%)",
        m.seed_rows,
        m.rows,
        removed,
        pct(removed, m.seed_rows),
        m.failures,
        pct(m.failures, m.seed_rows)
    );
    println!("{}", identity_line(&m.accounting));
    if let Some(detail) = identity_detail(&m.accounting) {
        println!("{detail}");
    }
    for t in &m.failed_tasks {
        println!(
            "failed task {}: {} rows of {} from row {} missing: {}",
            t.task_id,
            t.rows,
            t.object,
            t.first_row,
            clip(&t.error, 300)
        );
    }
    println!(
        "files: {} data ({} bytes), {} failures ({} bytes)",
        data.len(),
        data.iter().map(|f| f.bytes).sum::<u64>(),
        fails.len(),
        fails.iter().map(|f| f.bytes).sum::<u64>()
    );
    println!(
        "tokens: {} prompt, {} completion, {} total",
        m.prompt_tokens,
        m.completion_tokens,
        m.prompt_tokens + m.completion_tokens
    );
    if m.rows > 0 {
        println!(
            "per output row: {:.1} prompt tokens, {:.1} completion tokens",
            m.prompt_tokens as f64 / m.rows as f64,
            m.completion_tokens as f64 / m.rows as f64
        );
    }
    for (reason, n) in &m.removed {
        println!("removed by {reason}: {n}");
    }
    if let Some(f) = fails.first() {
        for b in read_rows(&root, &f.path, a.samples).await? {
            for i in 0..b.num_rows() {
                println!(
                    "failure {} [{}]: {}",
                    cell(&b, "seed_id", i).unwrap_or_default(),
                    cell(&b, "stage", i).unwrap_or_default(),
                    clip(&cell(&b, "error", i).unwrap_or_default(), 300)
                );
            }
        }
    }
    let Some(first) = data.first() else {
        return Ok(());
    };
    let mut shown = 0;
    for b in &read_rows(&root, &first.path, a.samples).await? {
        for i in 0..b.num_rows() {
            if shown >= a.samples {
                break;
            }
            shown += 1;
            println!(
                "--- sample {} (seed {}, {}, {}, finish {}, {}+{} tokens) ---",
                cell(b, "id", i).unwrap_or_default(),
                cell(b, "seed_id", i).unwrap_or_default(),
                cell(b, "stage", i).unwrap_or_default(),
                cell(b, "model", i).unwrap_or_default(),
                cell(b, "finish_reason", i).unwrap_or_default(),
                cell(b, "prompt_tokens", i).unwrap_or_default(),
                cell(b, "completion_tokens", i).unwrap_or_default(),
            );
            if let Some(p) = cell(b, "prompt", i) {
                println!("prompt: {}", clip(&p, 300));
            }
            println!(
                "completion: {}",
                clip(&cell(b, "completion", i).unwrap_or_default(), 600)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_shown_and_a_difference_flagged() {
        let mut a = Accounting::new(10, 6, 2, 1, 1);
        assert_eq!(
            identity_line(&a),
            "accounting: 10 seed rows = 6 output + 2 removed + 1 failed + 1 of failed tasks (balanced)"
        );
        assert_eq!(identity_detail(&a), None);
        a.removed_by_reason.insert("judge".into(), 2);
        a.failed_by_stage.insert("generate".into(), 1);
        assert_eq!(
            identity_detail(&a).unwrap(),
            "  seed rows removed by judge 2; failed in generate 1"
        );
        let short = Accounting::new(10, 5, 2, 1, 1);
        assert!(
            identity_line(&short)
                .ends_with("MISMATCH: difference 1 (seed rows missing without a recorded reason)"),
            "{}",
            identity_line(&short)
        );
    }
}
