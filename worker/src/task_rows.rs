//! A task's rows from input to sink: seed rows stream in chunks as the pipeline has room for
//! them, every outcome goes to the sink as it completes, and the seed ledger settles each row
//! as it ends. Memory follows the rows in flight, not the task's size; the lease handling
//! around it (heartbeats, completion) is in `task`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::stream::BoxStream;
use futures::StreamExt;
use synthforge_core::input::{self, ReadColumns, SeedChunks, SeedError, SeedItem, TaskSlice};
use synthforge_core::record::FailureRecord;
use synthforge_core::sink::TaskSink;
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::pii_detect::Kind;
use synthforge_core::stages::{self, Outcome, Stage, StageContext};
use synthforge_core::stats::TaskStats;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::failure_redaction::{pii_kinds, redact_failure};
use crate::pipeline::Event;
use crate::seed_ledger::SeedLedger;

/// What stops a task's rows from outside: a lost lease, or the end of the shutdown grace.
pub struct Stop<'a> {
    pub lease_lost: &'a CancellationToken,
    pub hand_back: &'a CancellationToken,
}

/// How a task's rows ended.
#[derive(Debug)]
pub enum RowsEnd {
    /// Every row read reached an outcome: the task's stats, ready to commit.
    Done(Box<TaskStats>),
    /// Stopped before the end: the lease was lost.
    LeaseLost,
    /// Stopped before the end: the worker is shutting down and hands the task back.
    HandedBack,
    /// The rows do not add up (a row vanished inside the worker): why.
    Unaccounted(String),
}

/// Reads the task's rows, runs them through `stages` and writes every outcome to `sink`,
/// counting finished seed rows in `rows_done` for heartbeats. The sink is left for the caller
/// to finish or abort.
pub async fn run_rows(
    spec: &JobSpec,
    slice: &TaskSlice,
    ctx: &StageContext,
    stages: Vec<Arc<dyn Stage>>,
    sink: &mut TaskSink,
    rows_done: &AtomicU64,
    stop: &Stop<'_>,
) -> Result<RowsEnd, TaskError> {
    // Unreadable rows enter as failures of the `read` stage; a read error ends the input and
    // the attempt.
    let ledger = Arc::new(Mutex::new(SeedLedger::default()));
    let read_error: Arc<Mutex<Option<SeedError>>> = Arc::default();
    let seeds = seed_outcomes(
        input::read_task_columns(&spec.input, slice, &ReadColumns::for_job(spec)),
        ctx,
        ledger.clone(),
        read_error.clone(),
    );
    let mut stats = TaskStats::default();
    let pii = pii_kinds(spec);
    let mut stream = crate::pipeline::run_stages(ctx.clone(), seeds, stages);
    loop {
        // A lost lease or the end of the shutdown grace stops the task at once, even while
        // no row finishes (a slow or hung backend request).
        let next = tokio::select! {
            biased;
            () = stop.lease_lost.cancelled() => return Ok(RowsEnd::LeaseLost),
            () = stop.hand_back.cancelled() => return Ok(RowsEnd::HandedBack),
            next = stream.next() => next,
        };
        let o = match next {
            Some(Event::Outcome(o)) => o,
            Some(Event::RowDone(row)) => {
                lock(&ledger).ended(row);
                continue;
            }
            None => break,
        };
        // Progress counts seed rows: a row is done at its first outcome.
        let first = match o {
            Outcome::Keep(item) => {
                stats.count_kept(&item.record, &item.counters);
                let first = lock(&ledger).output(item.seed.index);
                sink.push(item.record).await?;
                first
            }
            Outcome::Removed { item, reason } => {
                stats.count_removed(&item.record, &item.counters, &reason);
                lock(&ledger).removed(item.seed.index, &reason)
            }
            Outcome::Failed(f) => {
                let first = lock(&ledger).failed(f.row_index, &f.stage);
                let f = stored_failure(f, pii.as_deref());
                stats.count_failed(&f);
                sink.push_failure(f).await?;
                first
            }
        };
        if first {
            rows_done.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(stream);
    let read_failed = lock(&read_error).take();
    if let Some(e) = read_failed {
        return Err(e.into());
    }
    if stop.lease_lost.is_cancelled() {
        return Ok(RowsEnd::LeaseLost);
    }
    let ledger = lock(&ledger);
    stats.rows_in = ledger.rows_read();
    Ok(match ledger.outcomes() {
        Ok(seeds) => {
            stats.seeds = seeds;
            RowsEnd::Done(Box::new(stats))
        }
        Err(why) => RowsEnd::Unaccounted(why),
    })
}

/// The pipeline's input: each seed row as an item to process, each unreadable row as a
/// failure of the `read` stage, every one noted in `ledger` as it enters. The chunks are
/// pulled only as the pipeline asks for rows; a read error is put in `read_error` and ends
/// the input.
fn seed_outcomes(
    chunks: SeedChunks,
    ctx: &StageContext,
    ledger: Arc<Mutex<SeedLedger>>,
    read_error: Arc<Mutex<Option<SeedError>>>,
) -> BoxStream<'static, Outcome> {
    let ctx = Arc::new(ctx.clone());
    chunks
        .map(move |chunk| match chunk {
            Ok(items) => items,
            Err(e) => {
                lock(&read_error).get_or_insert(e);
                Vec::new()
            }
        })
        .flat_map(futures::stream::iter)
        .map(move |item| {
            let index = match &item {
                SeedItem::Row(r) => r.index,
                SeedItem::Bad(b) => b.index,
            };
            lock(&ledger).expect(index);
            match item {
                SeedItem::Row(r) => Outcome::Keep(stages::seed_item(&ctx, r)),
                SeedItem::Bad(b) => Outcome::Failed(FailureRecord {
                    seed_id: b.id.unwrap_or_else(|| format!("row-{}", b.index)),
                    row_index: b.index,
                    source: b.source,
                    stage: "read".into(),
                    error: b.error,
                    input: b.raw,
                    job_id: ctx.job_id.clone(),
                    task_id: ctx.task_id,
                }),
            }
        })
        .boxed()
}

/// A failure row as stored: with a `pii` stage in the job, redacted by its detectors.
fn stored_failure(f: FailureRecord, pii: Option<&[Kind]>) -> FailureRecord {
    match pii {
        Some(kinds) => redact_failure(f, kinds),
        None => f,
    }
}

/// The ledger or the read error; their holders never panic while holding them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use synthforge_core::input::plan_tasks;
    use synthforge_core::storage;

    use super::*;

    /// A scratch directory under the system's temp dir, removed on drop.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn rows_stream_through_the_stages_into_the_sink_and_add_up() {
        let dir = Scratch(std::env::temp_dir().join(format!(
            "synthforge-task-rows-{}-{}",
            std::process::id(),
            synthforge_core::now_ms()
        )));
        std::fs::create_dir_all(&dir.0).unwrap();
        let seeds = dir.0.join("seeds.jsonl");
        let mut body = String::new();
        for i in 0..2500 {
            match i {
                7 => body.push_str("{not json\n"),
                _ if i % 10 == 0 => {
                    body.push_str(&format!("{{\"id\":\"d{i}\",\"text\":\"one\"}}\n"))
                }
                _ => body.push_str(&format!("{{\"id\":\"d{i}\",\"text\":\"two words {i}\"}}\n")),
            }
        }
        std::fs::write(&seeds, body).unwrap();
        let yaml = format!(
            "name: rows\ninput: {{path: \"{}\", format: jsonl, id_column: id, rows_per_task: 40}}\n\
             pipeline:\n  - {{stage: filter, min_words: 2, field: text}}\nbackends: {{}}\n\
             output: {{path: \"{}\"}}\n",
            seeds.display(),
            dir.0.join("out").display()
        );
        let spec = JobSpec::from_yaml(&yaml, "job.yaml").unwrap();
        let plan = plan_tasks(
            &spec.input,
            &[storage::open(seeds.to_str().unwrap()).unwrap()],
        )
        .await
        .unwrap();
        assert!(
            plan.tasks.len() > 1,
            "40 KiB ranges over ~90 KB: several tasks"
        );
        let root = storage::open(&spec.output.path).unwrap();
        let (lost, back) = (CancellationToken::new(), CancellationToken::new());
        let stop = Stop {
            lease_lost: &lost,
            hand_back: &back,
        };
        let mut total = TaskStats::default();
        for (id, slice) in plan.tasks.iter().enumerate() {
            let ctx = StageContext {
                job_id: "j".into(),
                job_name: spec.name.clone(),
                job_seed: 0,
                task_id: id as u64,
                backends: Default::default(),
            };
            let stages = vec![stages::build_stage(&spec.pipeline[0], 0, &ctx).unwrap()];
            let mut sink = TaskSink::new(&root, id as u64, 1, vec![], "zstd", 100).unwrap();
            let done = AtomicU64::new(0);
            let end = run_rows(&spec, slice, &ctx, stages, &mut sink, &done, &stop)
                .await
                .unwrap();
            let RowsEnd::Done(stats) = end else {
                panic!("{end:?}")
            };
            assert_eq!(
                stats.seeds.total(),
                stats.rows_in,
                "in = out + removed + failed"
            );
            assert_eq!(done.load(Ordering::Relaxed), stats.rows_in);
            sink.finish().await.unwrap();
            total.rows_in += stats.rows_in;
            total.seeds.add(&stats.seeds);
        }
        assert_eq!(
            total.rows_in, 2500,
            "every line read once across the byte ranges"
        );
        assert_eq!(total.seeds.failed.get("read"), Some(&1));
        assert_eq!(total.seeds.removed_total(), 250);
        assert_eq!(total.seeds.output, 2249);
    }

    #[tokio::test]
    async fn a_read_error_fails_the_rows() {
        let yaml = "name: rows\ninput: {path: \"/nonexistent/s.jsonl\", format: jsonl}\n\
                    pipeline:\n  - {stage: filter, min_words: 2, field: text}\nbackends: {}\n\
                    output: {path: \"/tmp/synthforge-never-written\"}\n";
        let spec = JobSpec::from_yaml(yaml, "job.yaml").unwrap();
        let slice = TaskSlice {
            object_url: "/nonexistent/s.jsonl".into(),
            format: spec.input.format,
            row_start: 0,
            row_count: 0,
            byte_start: 0,
            byte_end: 100,
            row_groups: vec![],
            global_row_start: 0,
        };
        let ctx = StageContext {
            job_id: "j".into(),
            job_name: "rows".into(),
            job_seed: 0,
            task_id: 0,
            backends: Default::default(),
        };
        let root = storage::open("/tmp/synthforge-never-written").unwrap();
        let mut sink = TaskSink::new(&root, 0, 1, vec![], "zstd", 100).unwrap();
        let (lost, back) = (CancellationToken::new(), CancellationToken::new());
        let stop = Stop {
            lease_lost: &lost,
            hand_back: &back,
        };
        let err = run_rows(
            &spec,
            &slice,
            &ctx,
            vec![],
            &mut sink,
            &AtomicU64::new(0),
            &stop,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TaskError::Input(_)), "{err}");
        sink.abort().await;
    }
}
