//! Bench (d) of issue 15: a worker's peak memory for one task of N seed rows, through the
//! worker's own row path (`task_rows::run_rows`: chunked read, pipeline, ledger, sink) against
//! an OpenAI-compatible backend (the mock at zero latency). Run once per size, each in its own
//! process, and compare the peak RSS (`VmHWM`) — `scripts/stream-bench.sh` does both.
//!
//! ```text
//! cargo run -p synthforge-worker --example stream_rss -- ROWS BACKEND_URL DIR
//! ```
//! writes `DIR/seeds-ROWS.jsonl` (if absent), plans it as one task (`rows_per_task` = ROWS),
//! and prints one JSON line: rows, records, seconds, peak RSS in KiB.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use synthforge_core::backend::{Backend, Credentials};
use synthforge_core::input::plan_tasks;
use synthforge_core::sink::TaskSink;
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::{self, StageContext};
use synthforge_core::storage;
use synthforge_worker::task_rows::{run_rows, RowsEnd, Stop};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, rows, backend, dir] = &args[..] else {
        eprintln!("usage: stream_rss ROWS BACKEND_URL DIR");
        std::process::exit(2);
    };
    let rows: u64 = rows.parse().expect("ROWS is a number");
    let seeds = format!("{dir}/seeds-{rows}.jsonl");
    if !std::path::Path::new(&seeds).exists() {
        write_seeds(&seeds, rows);
    }
    let out = format!("{dir}/out-{rows}");
    let _ = std::fs::remove_dir_all(&out);
    let yaml = format!(
        r#"
name: stream-rss
input: {{ path: "{seeds}", format: jsonl, id_column: id, rows_per_task: {rows} }}
backends:
  m: {{ url: "{backend}", model: mock-model, max_concurrency: 64, max_tokens: 16 }}
pipeline:
  - {{ stage: generate, backend: m, template: "Write a short lesson about {{{{ text }}}}" }}
output: {{ path: "{out}" }}
"#
    );
    let spec = JobSpec::from_yaml(&yaml, "stream-rss.yaml").expect("bench spec");
    let loc = storage::open(&seeds).expect("seeds");
    let plan = plan_tasks(&spec.input, &[loc]).await.expect("plan");
    assert_eq!(plan.tasks.len(), 1, "one task of {rows} rows");
    let creds = Credentials::default();
    let mut backends = HashMap::new();
    for (name, b) in &spec.backends {
        backends.insert(
            name.clone(),
            Arc::new(Backend::with_credentials(name, b, &creds).expect("backend")),
        );
    }
    let ctx = StageContext {
        job_id: "stream-rss".into(),
        job_name: spec.name.clone(),
        job_seed: spec.seed,
        task_id: 0,
        backends,
    };
    let stage_list = spec
        .pipeline
        .iter()
        .enumerate()
        .map(|(i, s)| stages::build_stage(s, i, &ctx).expect("stage"))
        .collect();
    let root = storage::open(&spec.output.path).expect("output");
    let mut sink = TaskSink::new(
        &root,
        0,
        1,
        vec![],
        &spec.output.compression,
        spec.output.batch_rows,
    )
    .expect("sink");
    let (lost, back) = (CancellationToken::new(), CancellationToken::new());
    let stop = Stop {
        lease_lost: &lost,
        hand_back: &back,
    };
    let started = std::time::Instant::now();
    let done = AtomicU64::new(0);
    let end = run_rows(
        &spec,
        &plan.tasks[0],
        &ctx,
        stage_list,
        &mut sink,
        &done,
        &stop,
    )
    .await
    .expect("run rows");
    let RowsEnd::Done(stats) = end else {
        panic!("task did not complete: {end:?}");
    };
    sink.finish().await.expect("finish sink");
    println!(
        "{{\"rows\":{},\"records\":{},\"secs\":{:.1},\"peak_rss_kib\":{}}}",
        stats.rows_in,
        stats.rows_out,
        started.elapsed().as_secs_f64(),
        peak_rss_kib()
    );
}

/// Short synthetic seed documents, one JSON object per line.
fn write_seeds(path: &str, rows: u64) {
    let f = std::fs::File::create(path).expect("create seeds");
    let mut w = std::io::BufWriter::new(f);
    for i in 0..rows {
        writeln!(
            w,
            "{{\"id\":\"doc-{i}\",\"text\":\"topic {} of the synthetic corpus, number {i}\"}}",
            i % 997
        )
        .expect("write seeds");
    }
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
