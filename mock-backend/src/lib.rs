//! A mock OpenAI-compatible inference server that behaves like a GPU server.
//!
//! There is no GPU in tests, demos or CI, yet the worker's job is to keep a
//! GPU server saturated: adaptive concurrency, retries honouring
//! `Retry-After`, timeouts. This server reproduces what those mechanisms react
//! to: a fixed number of batch slots with a FIFO queue in front
//! (`--slots`), prefill and per-token decode time (`--latency-ms`,
//! `--decode-ms-per-token`, `--prefill-ms-per-token` with a prefix cache,
//! `--prefix-cache-blocks`), and injected 429s, 500s and hung requests. Text
//! is deterministic prose (a token is a whitespace-separated word), JSON modes
//! return valid JSON, and reply rules script answers for judges and filters.
//! GET /stats reports slot utilization so benchmarks can tell whether the
//! client kept the "GPU" busy.
//!
//! Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
//! GET /stats, POST /stats/reset, GET /health, GET and DELETE /requests.
//!
//! The hot path takes no lock (atomics for counters, a Tokio semaphore for
//! slots), so the mock is never the bottleneck of a benchmark.

mod api;
mod args;
mod engine;
mod error;
mod faults;
mod infer;
mod json_gen;
mod prefix_cache;
mod routes;
mod rules;
mod state;
mod stats;
mod text;
mod vocab;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use args::MockArgs;
pub use error::MockError;
use rules::ReplyRules;
use state::AppState;

/// Serves the mock API on `listener` until this future is dropped (or the
/// listener fails). Dropping it closes idle connections, lets in-progress
/// requests finish and releases hung ones with a 503.
///
/// Fails early on invalid `args` or an unreadable `--reply-rules` file.
/// `args.addr` is ignored: the listener is already bound.
pub async fn serve(listener: TcpListener, args: MockArgs) -> Result<(), MockError> {
    let rules = prepare(&args)?;
    run(listener, args, rules).await
}

/// Binds `args.addr` (port 0 picks a free port) and serves in a background
/// task, for in-process tests and benchmarks. Returns the bound address and
/// the task; abort the task to stop the server. Argument and reply-rule errors
/// are reported here, not in the task.
pub async fn spawn(args: MockArgs) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MockError> {
    let rules = prepare(&args)?;
    let listener = TcpListener::bind(args.addr)
        .await
        .map_err(|source| MockError::Bind {
            addr: args.addr,
            source,
        })?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = run(listener, args, rules).await {
            tracing::error!(error = %e, "mock backend stopped");
        }
    });
    Ok((addr, handle))
}

fn prepare(args: &MockArgs) -> Result<ReplyRules, MockError> {
    args.validate()?;
    match &args.reply_rules {
        Some(path) => ReplyRules::load(path),
        None => Ok(ReplyRules::default()),
    }
}

async fn run(listener: TcpListener, args: MockArgs, rules: ReplyRules) -> Result<(), MockError> {
    let addr = listener.local_addr()?;
    // Dropping `_shutdown` (with this future) wakes hung requests.
    let (_shutdown, shutdown_rx) = watch::channel(());
    tracing::info!(
        %addr,
        models = ?args.models,
        slots = args.slots,
        latency_ms = args.latency_ms,
        decode_ms_per_token = args.decode_ms_per_token,
        "mock backend listening"
    );
    let state = Arc::new(AppState::new(args, rules, shutdown_rx));
    let app = routes::router(state);
    let listener = listener.tap_io(|tcp| {
        // Small request/response exchanges: Nagle would only add latency.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app).await?;
    Ok(())
}
