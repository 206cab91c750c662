//! The coordinator's HTTP side: health probes, the dashboard page, the JSON API behind it
//! (documented in docs/api.md) and Prometheus metrics.
//!
//! With tokens configured, everything but the page's static files, `/healthz`, `/readyz`,
//! `/api/info` and (with `--metrics-public`) `/metrics` needs a bearer token: the read token for
//! the JSON API and metrics, the admin token for cancel, which also refuses cross-site requests
//! ([`same_origin`]). Every JSON body and the metrics text leave with credentials masked
//! ([`redact`]).

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::control::scheduler::{JobView, Scheduler, WorkerInfo};
use crate::serve::auth::{Auth, Role};
use crate::serve::dashboard;
use crate::serve::funnel::{self, FunnelStep};
use crate::serve::{metrics, redact, same_origin};
use crate::telemetry::{EndpointView, RatePoint, SampleRow, Telemetry, WorkerBackends};

#[derive(Clone)]
pub struct HttpState {
    pub sched: Arc<Scheduler>,
    /// Rates, samples and backend views (the coordinator keeps it next to the scheduler).
    pub telemetry: Arc<Telemetry>,
    pub auth: Auth,
    /// False on a standby coordinator: `/readyz` fails so a Service routes to the leader.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
    /// Serve `/metrics` without a token (Prometheus scrapers inside the cluster).
    pub metrics_public: bool,
    /// Open on a non-loopback address (`--insecure`): the dashboard shows a warning banner.
    pub insecure: bool,
}

/// Builds the HTTP routes. The dashboard's charts need [`dashboard::run_sampler`] running
/// next to them (the coordinator starts it together with the HTTP server).
pub fn router(state: HttpState) -> Router {
    let metrics_route = Router::new().route("/metrics", get(metrics_handler));
    let metrics_route = if state.metrics_public {
        metrics_route
    } else {
        metrics_route.route_layer(middleware::from_fn_with_state(state.clone(), require_read))
    };
    let read = Router::new()
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/workers", get(list_workers))
        .route("/api/backends", get(list_backends))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_read));
    Router::new()
        .route(
            "/",
            get(|| asset("text/html; charset=utf-8", dashboard::INDEX_HTML)),
        )
        .route(
            "/app.js",
            get(|| asset("text/javascript; charset=utf-8", dashboard::APP_JS)),
        )
        .route(
            "/app.css",
            get(|| asset("text/css; charset=utf-8", dashboard::APP_CSS)),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/info", get(info))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .merge(read)
        .merge(metrics_route)
        .with_state(state)
}

/// The refusal of a request without a token of `need` (when the coordinator has tokens);
/// `None` when it may go on.
fn refusal(auth: &Auth, headers: &HeaderMap, need: Role) -> Option<Response> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth.authorize(header, need).err().map(|denied| {
        let code = match denied {
            crate::serve::auth::Denied::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        (
            code,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            denied.message(),
        )
            .into_response()
    })
}

async fn require_read(State(s): State<HttpState>, req: Request, next: Next) -> Response {
    match refusal(&s.auth, req.headers(), Role::Read) {
        None => next.run(req).await,
        Some(refused) => refused,
    }
}

/// JSON with every credential in it masked.
fn masked_json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_value(value) {
        Ok(mut v) => {
            redact::mask_json(&mut v);
            Json(v).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `/api/info` (no token needed): what the page must know before it has a token.
async fn info(State(s): State<HttpState>) -> Response {
    Json(serde_json::json!({
        "auth_required": s.auth.required(),
        "insecure": s.insecure,
        "worker_grace_s": s.sched.worker_grace().as_secs_f64(),
    }))
    .into_response()
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page loads only its own script and style: injected markup could not run
            // scripts even if some text were ever inserted as HTML by mistake.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

async fn readyz(State(s): State<HttpState>) -> Response {
    if s.ready.load(std::sync::atomic::Ordering::Relaxed) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "standby").into_response()
    }
}

/// A job as the API shows it: the scheduler's view plus live rates and ETA.
#[derive(Serialize)]
pub struct JobOut {
    #[serde(flatten)]
    pub view: JobView,
    /// Seed rows finished (completed tasks plus progress of running ones).
    pub rows_done: u64,
    /// `rows_done / rows_total`, 0..1 (1 for an empty job).
    pub progress: f64,
    pub rows_per_s: f64,
    pub tokens_per_s: f64,
    /// Seconds to go at the current rate; `null` when unknown (no rate yet) or ended.
    pub eta_s: Option<f64>,
    /// Seconds from submit to the end (or to now while the job runs).
    pub elapsed_s: f64,
}

/// `/api/jobs/{id}`: the job plus its history, samples and backends.
#[derive(Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobOut,
    pub series: Vec<RatePoint>,
    pub samples: Vec<SampleRow>,
    pub backends: Vec<EndpointView>,
    /// Rows in → out per stage, removed and failed by reason ([`funnel::funnel`]).
    pub funnel: Vec<FunnelStep>,
}

/// A worker as the API shows it.
#[derive(Serialize)]
pub struct WorkerOut {
    #[serde(flatten)]
    pub info: WorkerInfo,
    pub rows_per_s: f64,
    pub backends: Vec<WorkerBackends>,
}

fn job_out(t: &Telemetry, view: JobView) -> JobOut {
    let total = view.record.rows_total;
    // Line inputs planned by byte range have no planned row count: progress counts tasks.
    let by_tasks = total == 0 && view.record.tasks_total > 0;
    let rows_done = view.stats.rows_in + view.rows_in_flight;
    let rows_done = if by_tasks {
        rows_done
    } else {
        rows_done.min(total)
    };
    let progress = if by_tasks {
        (view.tasks_done + view.tasks_failed) as f64 / view.record.tasks_total as f64
    } else if total == 0 {
        1.0
    } else {
        rows_done as f64 / total as f64
    };
    let running = !view.record.state.is_terminal();
    let rate = if running {
        t.job_rate(&view.record.id)
    } else {
        RatePoint {
            t_ms: 0,
            rows_per_s: 0.0,
            tokens_per_s: 0.0,
        }
    };
    let eta_s = (running && rate.rows_per_s > 0.0 && !by_tasks)
        .then(|| total.saturating_sub(rows_done) as f64 / rate.rows_per_s);
    let end_ms = if running || view.record.finished_ms == 0 {
        synthforge_core::now_ms()
    } else {
        view.record.finished_ms
    };
    let elapsed_s = end_ms.saturating_sub(view.record.created_ms) as f64 / 1000.0;
    JobOut {
        view,
        rows_done,
        progress,
        rows_per_s: rate.rows_per_s,
        tokens_per_s: rate.tokens_per_s,
        eta_s,
        elapsed_s,
    }
}

async fn list_jobs(State(s): State<HttpState>) -> Response {
    let jobs: Vec<JobOut> = s
        .sched
        .jobs()
        .await
        .into_iter()
        .map(|v| job_out(&s.telemetry, v))
        .collect();
    masked_json(&jobs)
}

async fn get_job(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    match s.sched.job(&id).await {
        Some(v) => {
            let t = &s.telemetry;
            let funnel = match s.sched.job_spec(&id).await {
                Some(spec) => funnel::funnel(&spec, &v.stats),
                None => Vec::new(),
            };
            masked_json(&JobDetail {
                funnel,
                series: t.job_rates(&id),
                samples: t.samples(&id),
                backends: t
                    .endpoints()
                    .into_iter()
                    .filter(|e| e.job_id == id)
                    .collect(),
                job: job_out(t, v),
            })
        }
        None => (StatusCode::NOT_FOUND, format!("no job `{id}`")).into_response(),
    }
}

async fn cancel_job(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = same_origin::check(&headers) {
        tracing::warn!(job = %id, error = %e, "HTTP cancel refused");
        return (StatusCode::FORBIDDEN, e.to_string()).into_response();
    }
    if let Some(refused) = refusal(&s.auth, &headers, Role::Admin) {
        return refused;
    }
    match s.sched.cancel(&id).await {
        Ok(c) => Json(serde_json::json!({"cancelled": c})).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, redact::mask_text(&e.to_string())).into_response(),
    }
}

async fn list_workers(State(s): State<HttpState>) -> Response {
    let t = &s.telemetry;
    let workers: Vec<WorkerOut> = s
        .sched
        .workers()
        .await
        .into_iter()
        .map(|info| WorkerOut {
            rows_per_s: t.worker_rate(&info.id),
            backends: t.worker_backends(&info.id),
            info,
        })
        .collect();
    masked_json(&workers)
}

async fn list_backends(State(s): State<HttpState>) -> Response {
    masked_json(&s.telemetry.endpoints())
}

async fn metrics_handler(State(s): State<HttpState>) -> Response {
    let body = redact::mask_text(&metrics::render(&s.sched, &s.telemetry).await);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
