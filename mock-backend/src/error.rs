//! Startup errors ([`MockError`]) and OpenAI-shaped HTTP error replies ([`ApiError`]).

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why the mock server could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// A flag value is out of range (e.g. a probability above 1).
    #[error("invalid mock-backend arguments: {0}")]
    InvalidArgs(String),
    /// The listen address could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Address that was requested.
        addr: std::net::SocketAddr,
        /// Underlying socket error.
        source: std::io::Error,
    },
    /// The `--reply-rules` file is missing or not valid JSON.
    #[error("cannot load reply rules from {path}: {reason}")]
    ReplyRules {
        /// Path given to `--reply-rules`.
        path: PathBuf,
        /// What went wrong reading or parsing it.
        reason: String,
    },
    /// Any other socket error while serving.
    #[error("mock backend I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An error answered to the client in the OpenAI/vLLM error format:
/// `{"error":{"message","type","param","code"}}`. Clients (and the worker's
/// retry logic) classify errors by status and by this body, so it mirrors the
/// real servers closely.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status of the reply.
    pub status: StatusCode,
    /// Human readable explanation.
    pub message: String,
    /// vLLM-style error class name, e.g. `NotFoundError`.
    pub kind: &'static str,
    /// Request field at fault, if any.
    pub param: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429s).
    pub retry_after_s: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: u16,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: String) -> Self {
        Self {
            status,
            message,
            kind,
            param: None,
            retry_after_s: None,
        }
    }

    /// 400 for a malformed or unsupported request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestError", message.into())
    }

    /// 404 for a model the server does not serve (exact OpenAI wording).
    pub fn unknown_model(model: &str) -> Self {
        Self {
            param: Some("model"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "NotFoundError",
                format!("The model `{model}` does not exist."),
            )
        }
    }

    /// 404 for anything else that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFoundError", message.into())
    }

    /// Injected 429 with a `Retry-After` header.
    pub fn rate_limited(retry_after_s: u64) -> Self {
        Self {
            retry_after_s: Some(retry_after_s),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimitError",
                "Rate limit exceeded (injected by synthforge mock backend).".into(),
            )
        }
    }

    /// Injected 500.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal server error (injected by synthforge mock backend).".into(),
        )
    }

    /// 503 answered to requests still pending when the server stops.
    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "The mock backend is shutting down.".into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                message: &self.message,
                kind: self.kind,
                param: self.param,
                code: self.status.as_u16(),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_s {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
