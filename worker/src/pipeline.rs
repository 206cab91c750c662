//! Runs a task's rows through the job's stages, streaming: each stage keeps up to its own
//! concurrency in flight and pulls from the stage before it, so a judge's backend is busy while
//! generation is still going on, and memory is bounded by the in-flight items. Rows are pulled
//! from the input stream only as the first stage has room for them (backpressure up to the
//! reader).
//!
//! A seed row may fan out (`n` samples, several answers) or end early; the pipeline counts the
//! items of each row still in flight and says when a row has no more to come
//! ([`Event::RowDone`]), so the worker can settle the row's accounting and forget it instead of
//! keeping every row of the task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::stream::{self, BoxStream, StreamExt};
use synthforge_core::stages::{Item, Outcome, Stage, StageContext};

/// What the pipeline yields: a final outcome, or the end of a seed row (after its last
/// outcome, or in place of any when a stage returned nothing for it).
// Events move by value like the outcomes they carry; boxing would allocate once per row.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    Outcome(Outcome),
    RowDone(u64),
}

/// The seed row an outcome belongs to.
fn row_of(o: &Outcome) -> u64 {
    match o {
        Outcome::Keep(item) | Outcome::Removed { item, .. } => item.seed.index,
        Outcome::Failed(f) => f.row_index,
    }
}

/// Items in flight per seed row: only rows that entered and have not ended are kept.
#[derive(Default)]
struct RowsInFlight(Mutex<HashMap<u64, u64>>);

impl RowsInFlight {
    fn enter(&self, row: u64) {
        *self.0.lock().expect("not poisoned").entry(row).or_default() += 1;
    }

    /// One item of `row` became `n`; true when the row has none left (n = 0 for the last).
    /// Rows that never entered are not tracked (their outcomes are strays).
    fn replace(&self, row: u64, n: usize) -> bool {
        let mut m = self.0.lock().expect("not poisoned");
        let Some(count) = m.get_mut(&row) else {
            return false;
        };
        *count = (*count + n as u64).saturating_sub(1);
        let ended = *count == 0;
        if ended {
            m.remove(&row);
        }
        ended
    }
}

/// Chains `stages` over `input` (seed items as `Keep`, unreadable rows as `Failed`); the
/// returned stream yields every final outcome and the end of every row. A stage that panics on
/// a row turns that row into a failure row (never an empty list: rows are counted).
pub fn run_stages(
    ctx: StageContext,
    input: BoxStream<'static, Outcome>,
    stages: Vec<Arc<dyn Stage>>,
) -> BoxStream<'static, Event> {
    let ctx = Arc::new(ctx);
    let rows = Arc::new(RowsInFlight::default());
    let entering = rows.clone();
    let mut s: BoxStream<'static, Event> = input
        .map(move |o| {
            entering.enter(row_of(&o));
            Event::Outcome(o)
        })
        .boxed();
    for stage in stages {
        let width = stage.concurrency().max(1);
        let ctx = ctx.clone();
        let rows = rows.clone();
        s = s
            .map(move |e| run_one(stage.clone(), ctx.clone(), rows.clone(), e))
            .buffer_unordered(width)
            .flat_map(stream::iter)
            .boxed();
    }
    s.flat_map(move |e| {
        let done = match &e {
            Event::Outcome(o) => {
                let row = row_of(o);
                rows.replace(row, 0).then_some(Event::RowDone(row))
            }
            Event::RowDone(_) => None,
        };
        stream::iter(std::iter::once(e).chain(done))
    })
    .boxed()
}

/// One event of the stage before through `stage`: a kept item is processed, anything else
/// passes through.
async fn run_one(
    stage: Arc<dyn Stage>,
    ctx: Arc<StageContext>,
    rows: Arc<RowsInFlight>,
    e: Event,
) -> Vec<Event> {
    let item = match e {
        Event::Outcome(Outcome::Keep(item)) => item,
        other => return vec![other],
    };
    let row = item.seed.index;
    // What a failure row needs if the stage panics: the seed row (shared, not copied).
    let seed_only = Item {
        seed: item.seed.clone(),
        record: Default::default(),
        context: Default::default(),
        counters: Default::default(),
    };
    let name = stage.name().to_string();
    // Spawned so that CPU work of many items (JSON, templates) spreads over all runtime
    // threads instead of one task's poll loop; a panic stays inside the spawned task and comes
    // back as a `JoinError`.
    let fut = async move { stage.process(item).await };
    let outcomes = match tokio::spawn(tracing::Instrument::in_current_span(fut)).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(stage = %name, error = %e, "stage panicked on a row");
            vec![panic_failure(&ctx, &seed_only, &name, e)]
        }
    };
    // The item became these outcomes (counted before any of them can reach the end).
    let ended = rows.replace(row, outcomes.len());
    let mut events: Vec<Event> = outcomes.into_iter().map(Event::Outcome).collect();
    if ended {
        events.push(Event::RowDone(row));
    }
    events
}

/// The failure row of an item whose stage panicked (or whose task was cancelled).
fn panic_failure(
    ctx: &StageContext,
    item: &Item,
    stage: &str,
    e: tokio::task::JoinError,
) -> Outcome {
    let why = if e.is_panic() {
        let payload = e.into_panic();
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-text panic payload".to_string());
        format!("panicked: {text}")
    } else {
        format!("stage task ended without a result: {e}")
    };
    let error = format!("{}: stage `{stage}`: {why}", item.seed.source);
    Outcome::Failed(ctx.failure(item, stage, error))
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;

    use synthforge_core::input::SeedRow;
    use synthforge_core::stages::seed_item;

    use super::*;

    /// Panics on odd rows, keeps even ones.
    struct Flaky;

    impl Stage for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }

        fn process<'a, 'b>(
            &'a self,
            item: Item,
        ) -> Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            Box::pin(async move {
                assert!(item.seed.index & 1 == 0, "odd row {}", item.seed.index);
                vec![Outcome::Keep(item)]
            })
        }
    }

    /// Row `i` becomes `i % 3` items (none for rows 0, 3, ...), after a delay that makes later
    /// rows finish first.
    struct FanOut;

    impl Stage for FanOut {
        fn name(&self) -> &str {
            "fan"
        }

        fn concurrency(&self) -> usize {
            8
        }

        fn process<'a, 'b>(
            &'a self,
            item: Item,
        ) -> Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'b>>
        where
            'a: 'b,
            Self: 'b,
        {
            Box::pin(async move {
                let i = item.seed.index;
                tokio::time::sleep(std::time::Duration::from_millis(20 - i % 20)).await;
                (0..i % 3).map(|_| Outcome::Keep(item.clone())).collect()
            })
        }
    }

    fn ctx() -> StageContext {
        StageContext {
            job_id: "j".into(),
            job_name: "job".into(),
            job_seed: 1,
            task_id: 4,
            backends: Default::default(),
        }
    }

    fn seeds(n: u64) -> BoxStream<'static, Outcome> {
        let items: Vec<Outcome> = (0..n)
            .map(|i| {
                Outcome::Keep(seed_item(
                    &ctx(),
                    SeedRow {
                        index: i,
                        id: format!("r{i}"),
                        columns: Default::default(),
                        source: format!("seed.jsonl:{}", i + 1),
                    },
                ))
            })
            .collect();
        stream::iter(items).boxed()
    }

    #[tokio::test]
    async fn a_panicking_stage_turns_its_row_into_a_failure() {
        let events: Vec<Event> = run_stages(ctx(), seeds(6), vec![Arc::new(Flaky)])
            .collect()
            .await;
        let ended = events
            .iter()
            .filter(|e| matches!(e, Event::RowDone(_)))
            .count();
        assert_eq!(ended, 6, "every row ends");
        let mut failed: Vec<(u64, String)> = events
            .into_iter()
            .filter_map(|e| match e {
                Event::Outcome(Outcome::Failed(f)) => Some((f.row_index, f.error)),
                _ => None,
            })
            .collect();
        failed.sort();
        assert_eq!(
            failed.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![1, 3, 5]
        );
        assert!(
            failed[0].1.contains("seed.jsonl:2")
                && failed[0].1.contains("stage `flaky`")
                && failed[0].1.contains("panicked: odd row 1"),
            "{}",
            failed[0].1
        );
    }

    #[tokio::test]
    async fn a_row_ends_after_its_last_outcome_whatever_it_fanned_out_to() {
        let stages: Vec<Arc<dyn Stage>> = vec![Arc::new(FanOut), Arc::new(FanOut)];
        let events: Vec<Event> = run_stages(ctx(), seeds(40), stages).collect().await;
        let mut outcomes: HashMap<u64, u64> = HashMap::new();
        let mut ended = Vec::new();
        for e in events {
            match e {
                Event::Outcome(o) => {
                    let row = row_of(&o);
                    assert!(!ended.contains(&row), "outcome of row {row} after its end");
                    *outcomes.entry(row).or_default() += 1;
                }
                Event::RowDone(row) => {
                    assert!(!ended.contains(&row), "row {row} ended twice");
                    ended.push(row);
                }
            }
        }
        ended.sort();
        assert_eq!(ended, (0..40).collect::<Vec<_>>(), "every row ends once");
        for row in 0..40u64 {
            let want = (row % 3) * (row % 3);
            assert_eq!(outcomes.get(&row).copied().unwrap_or(0), want, "row {row}");
        }
    }
}
