//! `synthforge inspect OUTPUT`: what a finished dataset holds, at a glance.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::Array;
use futures::TryStreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use synthforge_core::manifest::Manifest;
use synthforge_core::seed::ObjectReader;
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

pub async fn run(a: InspectArgs) -> anyhow::Result<()> {
    let root = storage::open(&a.output)?;
    let m = Manifest::read(&root)
        .await
        .with_context(|| format!("{} has no readable _manifest.json", a.output))?;
    println!("dataset: {}  job: {} ({})", a.output, m.job_name, m.job_id);
    println!(
        "seed rows: {}  output rows: {}  failures: {}  files: {}",
        m.seed_rows,
        m.rows,
        m.failures,
        m.files.len()
    );
    println!(
        "tokens: {} prompt, {} completion",
        m.prompt_tokens, m.completion_tokens
    );
    for (reason, n) in &m.removed {
        println!("removed by {reason}: {n}");
    }
    let Some(first) = m.files.iter().find(|f| f.kind == "data") else {
        return Ok(());
    };
    let loc = root.child(&first.path);
    let reader = ObjectReader::new(Arc::clone(&loc.store), loc.path.clone());
    let batches: Vec<_> = ParquetRecordBatchStreamBuilder::new(reader)
        .await?
        .with_limit(a.samples)
        .build()?
        .try_collect()
        .await?;
    let mut shown = 0;
    for b in &batches {
        let col = |name: &str| b.column_by_name(name).map(|c| c.as_string::<i32>().clone());
        let (Some(ids), Some(prompts), Some(comps)) = (col("id"), col("prompt"), col("completion"))
        else {
            continue;
        };
        for i in 0..b.num_rows() {
            if shown >= a.samples {
                break;
            }
            shown += 1;
            println!("--- sample {} ---", ids.value(i));
            if !prompts.is_null(i) {
                println!("prompt: {}", clip(prompts.value(i), 300));
            }
            println!("completion: {}", clip(comps.value(i), 600));
        }
    }
    Ok(())
}
