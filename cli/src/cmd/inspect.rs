//! `synthforge inspect OUTPUT`: what a finished dataset holds, at a glance.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::Array;
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use synthforge_core::input::ObjectReader;
use synthforge_core::manifest::Manifest;
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
