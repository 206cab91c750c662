//! The coordinator's HTTP side: health probes, the JSON API and Prometheus metrics.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::grpc::Auth;
use crate::metrics;
use crate::scheduler::Scheduler;

#[derive(Clone)]
pub struct HttpState {
    pub sched: Arc<Scheduler>,
    pub auth: Auth,
    /// False on a standby coordinator: `/readyz` fails so a Service routes to the leader.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/{id}", get(get_job))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/workers", get(list_workers))
        .with_state(state)
}

async fn readyz(State(s): State<HttpState>) -> Response {
    if s.ready.load(std::sync::atomic::Ordering::Relaxed) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "standby").into_response()
    }
}

async fn list_jobs(State(s): State<HttpState>) -> Response {
    Json(s.sched.jobs().await).into_response()
}

async fn get_job(State(s): State<HttpState>, Path(id): Path<String>) -> Response {
    match s.sched.job(&id).await {
        Some(v) => Json(v).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no job `{id}`")).into_response(),
    }
}

async fn cancel_job(
    State(s): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.auth.check_header(header) {
        return (
            StatusCode::UNAUTHORIZED,
            "cancel needs `Authorization: Bearer <job-API token>`",
        )
            .into_response();
    }
    match s.sched.cancel(&id).await {
        Ok(c) => Json(serde_json::json!({"cancelled": c})).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

async fn list_workers(State(s): State<HttpState>) -> Response {
    Json(s.sched.workers().await).into_response()
}

async fn metrics_handler(State(s): State<HttpState>) -> Response {
    let body = metrics::render(&s.sched).await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
