//! Runs a task's rows through the job's stages, streaming: each stage keeps up to its own
//! concurrency in flight and pulls from the stage before it, so a judge's backend is busy while
//! generation is still going on, and memory is bounded by the in-flight items.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use synthforge_core::stages::{Item, Outcome, Stage, StageContext};

/// Chains `stages` over `items`; the returned stream yields every final outcome. A stage that
/// panics on a row turns that row into a failure row (never an empty list: rows are counted).
pub fn run_stages(
    ctx: StageContext,
    items: Vec<Item>,
    stages: Vec<Arc<dyn Stage>>,
) -> BoxStream<'static, Outcome> {
    let ctx = Arc::new(ctx);
    let mut s: BoxStream<'static, Outcome> =
        stream::iter(items.into_iter().map(Outcome::Keep)).boxed();
    for stage in stages {
        let width = stage.concurrency().max(1);
        let ctx = ctx.clone();
        s = s
            .map(move |o| run_one(stage.clone(), ctx.clone(), o))
            .buffer_unordered(width)
            .flat_map(stream::iter)
            .boxed();
    }
    s
}

/// One outcome of the stage before through `stage`: a kept item is processed, anything else
/// passes through.
async fn run_one(stage: Arc<dyn Stage>, ctx: Arc<StageContext>, o: Outcome) -> Vec<Outcome> {
    let Outcome::Keep(item) = o else {
        return vec![o];
    };
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
    match tokio::spawn(tracing::Instrument::in_current_span(fut)).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(stage = %name, error = %e, "stage panicked on a row");
            vec![panic_failure(&ctx, &seed_only, &name, e)]
        }
    }
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

    fn ctx() -> StageContext {
        StageContext {
            job_id: "j".into(),
            job_name: "job".into(),
            job_seed: 1,
            task_id: 4,
            backends: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_panicking_stage_turns_its_row_into_a_failure() {
        let items: Vec<Item> = (0..6)
            .map(|i| {
                seed_item(
                    &ctx(),
                    SeedRow {
                        index: i,
                        id: format!("r{i}"),
                        columns: Default::default(),
                        source: format!("seed.jsonl:{}", i + 1),
                    },
                )
            })
            .collect();
        let outcomes: Vec<Outcome> = run_stages(ctx(), items, vec![Arc::new(Flaky)])
            .collect()
            .await;
        assert_eq!(outcomes.len(), 6, "one outcome per row");
        let mut failed: Vec<(u64, String)> = outcomes
            .into_iter()
            .filter_map(|o| match o {
                Outcome::Failed(f) => Some((f.row_index, f.error)),
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
}
