//! The router and the small endpoints (models, stats, health, recording).

use std::sync::{Arc, PoisonError};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::infer;
use crate::state::AppState;

/// Request bodies up to this size are accepted (long documents as prompts).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// All routes of the mock server.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(infer::chat))
        .route("/v1/completions", post(infer::completions))
        .route("/v1/models", get(models))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/requests", get(recorded).delete(clear_recorded))
        .fallback(|| async { ApiError::not_found("No such endpoint.") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// GET /v1/models: the `--models` list.
async fn models(State(s): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = s
        .args
        .models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "synthforge-mock"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// GET /stats.
async fn stats(State(s): State<Arc<AppState>>) -> Json<Value> {
    Json(s.stats.snapshot())
}

/// POST /stats/reset: zero counters, restart the utilization clock.
async fn reset_stats(State(s): State<Arc<AppState>>) -> Json<Value> {
    s.stats.reset();
    Json(s.stats.snapshot())
}

fn recording_disabled() -> Response {
    ApiError::not_found("Request recording is disabled; start the mock backend with --record.")
        .into_response()
}

/// GET /requests: every received inference request body, verbatim, in
/// arrival order.
async fn recorded(State(s): State<Arc<AppState>>) -> Response {
    match &s.recorded {
        Some(r) => Json(r.lock().unwrap_or_else(PoisonError::into_inner).clone()).into_response(),
        None => recording_disabled(),
    }
}

/// DELETE /requests: forget the recorded bodies.
async fn clear_recorded(State(s): State<Arc<AppState>>) -> Response {
    match &s.recorded {
        Some(r) => {
            let n = std::mem::take(&mut *r.lock().unwrap_or_else(PoisonError::into_inner)).len();
            Json(json!({"cleared": n})).into_response()
        }
        None => recording_disabled(),
    }
}
