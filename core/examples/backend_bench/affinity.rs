//! (e) Prefix-affinity routing against least-loaded on a Cosmopedia-style job: every seed row is
//! asked for 4 variations (audience × format) whose prompts share the row's document and differ
//! only in the instruction after it; 4 endpoints, each a mock with a prefix cache (an LRU of
//! 16-token blocks; a cached prompt token costs a tenth of an uncached one's prefill).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synthforge_core::backend::{Backend, GenRequest};
use synthforge_core::record::ChatMessage;
use tokio::sync::Semaphore;

use crate::load::{trace_busy, BusyTrace};
use crate::{mock, pct, spec, util_all};

const VARIATIONS: [&str; 4] = [
    "Write a textbook section for college students.",
    "Write a blog post for a general audience.",
    "Write a story for young children.",
    "Write a wikiHow tutorial for practitioners.",
];
/// Words in a seed row's document (prompt tokens for the mock: one word, one token).
const DOC_WORDS: usize = 600;
const SYSTEM: &str = "You are a careful writer of educational material. Stay faithful to the \
extract, explain every term you use, and do not mention the extract itself.";

/// A seed row's document: deterministic, distinct words per row.
fn document(row: u64) -> String {
    let mut x = row.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..DOC_WORDS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("w{:x}", x % 50_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn variation_request(doc: &str, variation: &str) -> GenRequest {
    GenRequest {
        messages: vec![
            ChatMessage::new("system", SYSTEM),
            ChatMessage::new(
                "user",
                format!("Here is an extract from a web page:\n{doc}\n\n{variation}"),
            ),
        ],
        max_tokens: Some(32),
        ..GenRequest::default()
    }
}

/// Rows finished and requests sent by one run.
struct RowsRun {
    rows: u64,
    requests: u64,
    failed: u64,
}

/// Keeps `rows_in_flight` seed rows in progress until `deadline`, each sending its 4 variations
/// at once (as the generate stage does); counts the rows whose variations all came back.
async fn run_rows(b: Arc<Backend>, rows_in_flight: usize, deadline: Instant) -> RowsRun {
    let sem = Arc::new(Semaphore::new(rows_in_flight));
    let (rows, requests, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut row = 0u64;
    while Instant::now() < deadline {
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => p.expect("open"),
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        row += 1;
        let (b, rows, requests, failed) =
            (b.clone(), rows.clone(), requests.clone(), failed.clone());
        tokio::spawn(async move {
            let doc = document(row);
            let calls = VARIATIONS.iter().map(|v| {
                let req = variation_request(&doc, v);
                let b = b.clone();
                async move { b.generate(&req).await }
            });
            let results = futures::future::join_all(calls).await;
            requests.fetch_add(results.len() as u64, Ordering::Relaxed);
            let bad = results.iter().filter(|r| r.is_err()).count() as u64;
            failed.fetch_add(bad, Ordering::Relaxed);
            // Rows finishing after the deadline are not counted: rows/s is over the window.
            if bad == 0 && Instant::now() <= deadline {
                rows.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
    let _ = sem.acquire_many(rows_in_flight as u32).await;
    RowsRun {
        rows: rows.load(Ordering::Relaxed),
        requests: requests.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    }
}

/// Prompt tokens served from the mocks' caches over all prompt tokens since their reset.
async fn hit_rate(bases: &[String]) -> f64 {
    let http = reqwest::Client::new();
    let (mut cached, mut total) = (0.0, 0.0);
    for b in bases {
        if let Ok(r) = http.get(format!("{b}/stats")).send().await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                cached += v["prompt_tokens_cached"].as_f64().unwrap_or(0.0);
                total += v["prompt_tokens_total"].as_f64().unwrap_or(0.0);
            }
        }
    }
    if total > 0.0 {
        cached / total
    } else {
        0.0
    }
}

pub async fn scenario_e(secs: f64, rows: &mut Vec<String>) -> anyhow::Result<()> {
    let mut measured = Vec::new();
    for routing in ["least_loaded", "prefix_affinity"] {
        // Fresh servers for each side, so neither starts with the other's cache.
        let mut bases = Vec::new();
        for _ in 0..4 {
            bases.push(
                mock(16, 20, |a| {
                    a.prefill_ms_per_token = 0.5;
                    a.decode_ms_per_token = 2.0;
                    a.prefix_cache_blocks = 8192;
                    a.cached_prefill_factor = 0.1;
                })
                .await,
            );
        }
        let urls: Vec<String> = bases.iter().map(|b| format!("{b}/v1")).collect();
        let b = Arc::new(Backend::new(
            "e",
            &spec(serde_json::json!({
                "urls": urls, "max_concurrency": "auto", "routing": routing,
            }))?,
        )?);
        let http = reqwest::Client::new();
        for base in &bases {
            let _ = http.post(format!("{base}/stats/reset")).send().await;
        }
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let tracer = tokio::spawn(trace_busy(bases.clone(), start, deadline));
        // Enough rows in flight to keep every slot of every endpoint busy at any latency.
        let width = (b.concurrency_limit() / VARIATIONS.len()).max(64);
        let run = run_rows(b.clone(), width, deadline).await;
        let traces: Vec<BusyTrace> = tracer.await?;
        let hits = hit_rate(&bases).await;
        let counts = b.routing_counts();
        let rows_per_s = run.rows as f64 / secs;
        measured.push(rows_per_s);
        let per: Vec<String> = traces
            .iter()
            .map(|t| pct(t.util(secs / 2.0, secs)))
            .collect();
        rows.push(format!(
            "| e | {routing} | {rows_per_s:.1} | {} | {} | {} | {} rows, {} requests, failed {}; per endpoint {}; keyed requests on first choice {} of {} |",
            pct(hits),
            pct(util_all(&traces, secs / 2.0, secs)),
            if measured.len() == 2 {
                format!("{:+.0}%", (measured[1] / measured[0] - 1.0) * 100.0)
            } else {
                "baseline".into()
            },
            run.rows,
            run.requests,
            run.failed,
            per.join(" / "),
            counts.preferred,
            counts.preferred + counts.spilled,
        ));
    }
    Ok(())
}
