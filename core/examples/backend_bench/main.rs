//! Backend benchmark: how close the backend layer keeps mock GPU servers to saturation, and what
//! it costs on the client. Prints a Markdown table (docs/backend-bench.md).
//!
//! ```text
//! cargo run --release -p synthforge-core --example backend_bench [-- a b c d] [--secs 20]
//! ```
//!
//! (a) one `auto` client against K=64 slots, 200 ms each (ideal 320 req/s), next to fixed
//!     limits of 32 (the default) and 64 (an oracle that knows K);
//! (b) four clients sharing that server; one client over 3 endpoints of K=16/32/64;
//! (c) client overhead against a zero-latency mock in a separate process, records written to
//!     Parquet with `TaskSink`, CPU seconds per 1,000 requests for client and server;
//! (d) 5% 429 + 5% 500 + 1% hangs with a 2 s timeout: every request ends ok or with a reason;
//! (e) prefix-affinity routing against least-loaded: 4 variations per seed row, 4 endpoints
//!     with prefix caches (`affinity.rs`).

mod affinity;
mod child;
mod load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use synthforge_core::backend::{Backend, BackendSnapshot};
use synthforge_core::record::Record;
use synthforge_core::sink::TaskSink;
use synthforge_core::spec::BackendSpec;
use synthforge_mock_backend::MockArgs;

use load::{run_until, trace_busy, BusyTrace, LoadResult};

fn spec(fields: serde_json::Value) -> anyhow::Result<BackendSpec> {
    let mut v = serde_json::json!({"model": "mock-model", "max_attempts": 5});
    for (k, x) in fields.as_object().expect("object") {
        v[k] = x.clone();
    }
    Ok(serde_json::from_value(v)?)
}

async fn mock(slots: usize, latency_ms: u64, tweak: impl FnOnce(&mut MockArgs)) -> String {
    let mut args = MockArgs {
        addr: "127.0.0.1:0".parse().unwrap(),
        slots,
        latency_ms,
        ..MockArgs::default()
    };
    tweak(&mut args);
    let (addr, _task) = synthforge_mock_backend::spawn(args).await.expect("mock");
    format!("http://{addr}")
}

/// What [`saturate`] measured.
struct Run {
    results: Vec<LoadResult>,
    traces: Vec<BusyTrace>,
    /// Each client's snapshot at the deadline (before the drain).
    snaps: Vec<BackendSnapshot>,
    wall: f64,
}

/// Runs `clients` (one backend each) against mocks at `bases` for `secs`, sampling busy time.
async fn saturate(clients: Vec<Arc<Backend>>, bases: Vec<String>, secs: f64) -> Run {
    let http = reqwest::Client::new();
    for b in &bases {
        let _ = http.post(format!("{b}/stats/reset")).send().await;
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let tracer = tokio::spawn(trace_busy(bases, start, deadline));
    let runs: Vec<_> = clients
        .iter()
        .map(|b| tokio::spawn(run_until(b.clone(), b.concurrency_limit(), deadline)))
        .collect();
    let traces = tracer.await.expect("tracer");
    let snaps = clients.iter().map(|c| c.snapshot()).collect();
    let mut results = Vec::new();
    for r in runs {
        results.push(r.await.expect("load"));
    }
    Run {
        results,
        traces,
        snaps,
        wall: start.elapsed().as_secs_f64(),
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn secs_opt(x: Option<f64>) -> String {
    x.map_or("never".into(), |t| format!("{t:.1} s"))
}

/// Combined utilization of several mocks over `[from, to]`, weighted by slots.
fn util_all(traces: &[BusyTrace], from: f64, to: f64) -> f64 {
    let slots: f64 = traces.iter().map(|t| t.slots).sum();
    traces
        .iter()
        .map(|t| t.util(from, to) * t.slots)
        .sum::<f64>()
        / slots
}

async fn scenario_a(secs: f64, rows: &mut Vec<String>) -> anyhow::Result<()> {
    for (label, conc) in [
        ("auto", serde_json::json!("auto")),
        ("fixed 32 (default)", serde_json::json!(32)),
        ("fixed 64 (oracle)", serde_json::json!(64)),
    ] {
        let base = mock(64, 200, |_| {}).await;
        let b = Arc::new(Backend::new(
            "a",
            &spec(serde_json::json!({"url": format!("{base}/v1"), "max_concurrency": conc}))?,
        )?);
        let run = saturate(vec![b.clone()], vec![base], secs).await;
        let t = &run.traces[0];
        let snap = &run.snaps[0];
        rows.push(format!(
            "| a | 1 client, K=64, 200 ms, {label} | {} | {} | {} | limit {}, mean queue at server {:.1}, p50 {:.0} ms, ok {} |",
            pct(t.util(secs / 2.0, secs)),
            pct(t.util(0.0, secs)),
            secs_opt(t.time_to(0.98, 1.0)),
            snap.limit,
            t.mean_queued(),
            snap.endpoints[0].latency_p50_ms,
            run.results[0].ok
        ));
    }
    Ok(())
}

async fn scenario_b(secs: f64, rows: &mut Vec<String>) -> anyhow::Result<()> {
    let base = mock(64, 200, |_| {}).await;
    let s = spec(serde_json::json!({"url": format!("{base}/v1"), "max_concurrency": "auto"}))?;
    let clients: Vec<Arc<Backend>> = (0..4)
        .map(|i| Backend::new(&format!("w{i}"), &s).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let run = saturate(clients.clone(), vec![base], secs).await;
    let traces = &run.traces;
    let limits: Vec<u64> = run.snaps.iter().map(|c| c.limit).collect();
    let errors: u64 = run.results.iter().map(|r| r.failed).sum();
    rows.push(format!(
        "| b | 4 clients sharing K=64, 200 ms, auto | {} | {} | {} | limits {:?} (sum {}), mean queue at server {:.1}, p50 {:.0} ms, errors {} |",
        pct(traces[0].util(secs / 2.0, secs)),
        pct(traces[0].util(0.0, secs)),
        secs_opt(traces[0].time_to(0.98, 1.0)),
        limits,
        limits.iter().sum::<u64>(),
        traces[0].mean_queued(),
        run.snaps[0].endpoints[0].latency_p50_ms,
        errors
    ));

    let bases = vec![
        mock(16, 200, |_| {}).await,
        mock(32, 200, |_| {}).await,
        mock(64, 200, |_| {}).await,
    ];
    let urls: Vec<String> = bases.iter().map(|b| format!("{b}/v1")).collect();
    let b = Arc::new(Backend::new(
        "b3",
        &spec(serde_json::json!({"urls": urls, "max_concurrency": "auto"}))?,
    )?);
    let run = saturate(vec![b.clone()], bases, secs).await;
    let (traces, snap) = (&run.traces, &run.snaps[0]);
    let per: Vec<String> = traces
        .iter()
        .zip(&snap.endpoints)
        .map(|(t, e)| {
            format!(
                "K={}: {} @ limit {}",
                t.slots,
                pct(t.util(secs / 2.0, secs)),
                e.limit
            )
        })
        .collect();
    let all_at = |goal| {
        (0..)
            .map(|i| i as f64 * 0.1 + 1.0)
            .take_while(|t| *t <= secs)
            .find(|t| util_all(traces, t - 1.0, *t) >= goal)
            .map(|t| t - 1.0)
    };
    rows.push(format!(
        "| b | 1 client, 3 endpoints K=16/32/64, 200 ms, auto | {} | {} | {} | {} |",
        pct(util_all(traces, secs / 2.0, secs)),
        pct(util_all(traces, 0.0, secs)),
        secs_opt(all_at(0.98)),
        per.join("; ")
    ));
    Ok(())
}

fn record(i: u64, text: String, resp: &synthforge_core::backend::GenResponse) -> Record {
    Record {
        id: format!("{i:016x}"),
        seed_id: i.to_string(),
        seed_index: i,
        stage: "generate".into(),
        prompt: Some(format!("Write about topic {i}.")),
        completion: text,
        model: "mock-model".into(),
        backend_model: resp.model.clone(),
        finish_reason: "stop".into(),
        prompt_tokens: resp.prompt_tokens,
        completion_tokens: resp.completion_tokens,
        latency_ms: resp.latency_ms,
        job_id: "bench".into(),
        ..Record::default()
    }
}

async fn scenario_c(total: u64, rows: &mut Vec<String>) -> anyhow::Result<()> {
    let server = child::MockProcess::start()?;
    let dir = tempfile::tempdir()?;
    let root = synthforge_core::storage::open(&dir.path().display().to_string())?;
    for (label, conc) in [
        ("fixed 256", serde_json::json!(256)),
        ("auto", serde_json::json!("auto")),
    ] {
        let b = Arc::new(Backend::new(
            "c",
            &spec(
                serde_json::json!({"url": format!("{}/v1", server.base), "max_concurrency": conc}),
            )?,
        )?);
        // Warm up connections.
        let _ = load::run_until(b.clone(), 64, Instant::now() + Duration::from_millis(300)).await;
        let mut sink = TaskSink::new(&root, 0, rows.len() as u32, Vec::new(), "zstd", 1024)?;
        let (cpu0, srv0) = (load::cpu_seconds("self"), load::cpu_seconds(&server.pid()));
        let t0 = Instant::now();
        let width = b.concurrency_limit();
        let mut stream = futures::stream::iter(0..total)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.generate(&load::request(i)).await) })
            })
            .buffer_unordered(width);
        let (mut ok, mut failed) = (0u64, 0u64);
        while let Some(joined) = stream.next().await {
            let (i, r) = joined?;
            match r {
                Ok(mut resp) => {
                    let text = std::mem::take(&mut resp.choices[0].text);
                    sink.push(record(i, text, &resp)).await?;
                    ok += 1;
                }
                Err(_) => failed += 1,
            }
        }
        let files = sink.finish().await?;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = load::cpu_seconds("self") - cpu0;
        let srv = load::cpu_seconds(&server.pid()) - srv0;
        let bytes: u64 = files.iter().map(|f| f.bytes).sum();
        rows.push(format!(
            "| c | {label}, {total} requests into Parquet | {:.0} | {:.3} | {:.3} | ok {ok}, failed {failed}, {} rows, {:.1} MB zstd, limit {} |",
            ok as f64 / wall,
            cpu * 1000.0 / total as f64,
            srv * 1000.0 / total as f64,
            files.iter().filter(|f| f.kind == "data").map(|f| f.rows).sum::<u64>(),
            bytes as f64 / 1e6,
            b.snapshot().limit,
        ));
    }
    Ok(())
}

async fn scenario_d(secs: f64, rows: &mut Vec<String>) -> anyhow::Result<()> {
    let base = mock(64, 200, |a| {
        a.rate_429 = 0.05;
        a.rate_500 = 0.05;
        a.rate_hang = 0.01;
    })
    .await;
    let b = Arc::new(Backend::new(
        "d",
        &spec(serde_json::json!({
            "url": format!("{base}/v1"), "max_concurrency": "auto", "timeout_s": 2.0,
        }))?,
    )?);
    let run = saturate(vec![b.clone()], vec![base], secs).await;
    let (r, traces, snap, wall) = (&run.results[0], &run.traces, &run.snaps[0], run.wall);
    let retries = b.snapshot().retries;
    let reasons: Vec<String> = r.reasons.iter().map(|(k, v)| format!("{v}× {k}")).collect();
    rows.push(format!(
        "| d | K=64, 200 ms, 5% 429 + 5% 500 + 1% hang, timeout 2 s, auto | {} | {} | {} | {} requests: ok {}, failed {} ({}); retries {}, errors by code {:?}, limit {}, drained in {:.1} s |",
        pct(traces[0].util(secs / 2.0, secs)),
        pct(traces[0].util(0.0, secs)),
        secs_opt(traces[0].time_to(0.98, 1.0)),
        r.ok + r.failed,
        r.ok,
        r.failed,
        if reasons.is_empty() { "-".into() } else { reasons.join(", ") },
        retries,
        b.snapshot().endpoints[0].errors_by_code,
        snap.limit,
        wall - secs,
    ));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some(child::SERVE_MOCK) {
        return rt.block_on(child::serve());
    }
    let mut secs = 20.0;
    let mut total = 100_000u64;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => secs = it.next().and_then(|v| v.parse().ok()).unwrap_or(secs),
            "--requests" => total = it.next().and_then(|v| v.parse().ok()).unwrap_or(total),
            s => only.push(s.to_string()),
        }
    }
    let want = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    rt.block_on(async {
        let mut rows = vec![
            "| | scenario | utilization, 2nd half | utilization, whole run | time to 98% (1 s window) | notes |".to_string(),
            "|---|---|---|---|---|---|".to_string(),
        ];
        if want("a") {
            scenario_a(secs, &mut rows).await?;
        }
        if want("b") {
            scenario_b(secs, &mut rows).await?;
        }
        if want("c") {
            rows.push(String::new());
            rows.push("| | client overhead, zero-latency mock in its own process | requests/s end to end | client CPU s / 1,000 req | mock CPU s / 1,000 req | notes |".into());
            rows.push("|---|---|---|---|---|---|".into());
            scenario_c(total, &mut rows).await?;
            rows.push(String::new());
            rows.push("| | scenario | utilization, 2nd half | utilization, whole run | time to 98% (1 s window) | notes |".into());
            rows.push("|---|---|---|---|---|---|".into());
        }
        if want("d") {
            scenario_d(secs, &mut rows).await?;
        }
        if want("e") {
            rows.push(String::new());
            rows.push("| | routing, 4 variations per seed row, 4 endpoints × 16 slots, prefix caches | rows/s | prompt tokens from cache | utilization, 2nd half | rows/s vs least-loaded | notes |".into());
            rows.push("|---|---|---|---|---|---|---|".into());
            affinity::scenario_e(secs, &mut rows).await?;
        }
        for r in &rows {
            println!("{r}");
        }
        anyhow::Ok(())
    })
}
