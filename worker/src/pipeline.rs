//! Runs a task's rows through the job's stages, streaming: each stage keeps up to its own
//! concurrency in flight and pulls from the stage before it, so a judge's backend is busy while
//! generation is still going on, and memory is bounded by the in-flight items.

use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use synthforge_core::stages::{Item, Outcome, Stage};

/// Chains `stages` over `items`; the returned stream yields every final outcome.
pub fn run_stages(items: Vec<Item>, stages: Vec<Arc<dyn Stage>>) -> BoxStream<'static, Outcome> {
    let mut s: BoxStream<'static, Outcome> =
        stream::iter(items.into_iter().map(Outcome::Keep)).boxed();
    for stage in stages {
        let width = stage.concurrency().max(1);
        s = s
            .map(move |o| {
                let stage = stage.clone();
                async move {
                    match o {
                        Outcome::Keep(item) => {
                            // Spawned so that CPU work of many items (JSON, templates) spreads
                            // over all runtime threads instead of one task's poll loop.
                            let fut = async move { stage.process(item).await };
                            match tokio::spawn(tracing::Instrument::in_current_span(fut)).await {
                                Ok(v) => v,
                                Err(e) => {
                                    tracing::error!(error = %e, "stage task panicked");
                                    Vec::new()
                                }
                            }
                        }
                        other => vec![other],
                    }
                }
            })
            .buffer_unordered(width)
            .flat_map(stream::iter)
            .boxed();
    }
    s
}
