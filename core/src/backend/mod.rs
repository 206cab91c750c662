//! Clients for OpenAI-compatible inference servers.
//!
//! A [`Backend`] is one named backend of a job: one model served by one or more endpoints. It
//! bounds in-flight requests, spreads them over endpoints (least outstanding requests), retries
//! transient errors with backoff, and reports token usage. API keys are read from the
//! environment or a file at construction and are never printed (`Debug` hides them).

pub mod openai;
pub mod retry;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use openai::{ChatBody, CommonParams, CompletionBody, WireModels, WireResponse};
pub use openai::{GenChoice, GenRequest, GenResponse};
use retry::{parse_retry_after, Backoff};

use crate::spec::{BackendApi, BackendSpec, Concurrency};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{backend}`: API key: {message}")]
    Key { backend: String, message: String },
    #[error("backend `{backend}`: {endpoint}: HTTP {status}: {body}")]
    Status {
        backend: String,
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("backend `{backend}`: {endpoint}: {message}")]
    Transport {
        backend: String,
        endpoint: String,
        message: String,
    },
    #[error("backend `{backend}`: gave up after {attempts} attempts: {last}")]
    GaveUp {
        backend: String,
        attempts: u32,
        last: String,
    },
    #[error(
        "backend `{backend}`: model `{model}` is not served by {endpoint} (it serves: {served})"
    )]
    UnknownModel {
        backend: String,
        model: String,
        endpoint: String,
        served: String,
    },
}

impl BackendError {
    /// Whether another attempt may succeed.
    fn retryable(&self) -> bool {
        match self {
            BackendError::Status { status, .. } => {
                matches!(*status, 408 | 409 | 425 | 429 | 500 | 502 | 503 | 504)
            }
            BackendError::Transport { .. } => true,
            _ => false,
        }
    }
}

/// One endpoint URL and its outstanding-request counter.
#[derive(Debug)]
struct Endpoint {
    base: String,
    outstanding: AtomicU64,
}

/// Counters a worker reports and the dashboard shows.
#[derive(Debug, Default)]
pub struct BackendCounters {
    pub requests_ok: AtomicU64,
    pub requests_failed: AtomicU64,
    pub retries: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

/// A secret that never appears in `Debug` output or logs.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A point-in-time view of one endpoint, for heartbeats, the dashboard and metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EndpointSnapshot {
    pub url: String,
    /// Current concurrency limit of this endpoint (adaptive or fixed).
    pub limit: u64,
    pub in_flight: u64,
    pub requests_ok: u64,
    /// Error responses by HTTP status (0 = transport error / timeout).
    pub errors_by_code: std::collections::BTreeMap<u16, u64>,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    /// Taken out of rotation after repeated failures (probed back in later).
    pub ejected: bool,
}

/// A point-in-time view of a named backend.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackendSnapshot {
    pub name: String,
    pub model: String,
    pub limit: u64,
    pub in_flight: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub retries: u64,
    pub endpoints: Vec<EndpointSnapshot>,
}

#[derive(Debug)]
pub struct Backend {
    name: String,
    spec: BackendSpec,
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    key: Option<Secret>,
    slots: Arc<Semaphore>,
    limit: usize,
    backoff: Backoff,
    pub counters: BackendCounters,
}

/// Starting concurrency for `auto` until adaptive limiting tunes it.
pub const AUTO_INITIAL_CONCURRENCY: usize = 64;

fn read_key(name: &str, spec: &BackendSpec) -> Result<Option<Secret>, BackendError> {
    let err = |message: String| BackendError::Key {
        backend: name.to_string(),
        message,
    };
    if let Some(var) = &spec.api_key_env {
        return match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret(v.trim().to_string()))),
            _ => Err(err(format!("environment variable `{var}` is not set"))),
        };
    }
    if let Some(file) = &spec.api_key_file {
        return std::fs::read_to_string(file)
            .map(|v| Some(Secret(v.trim().to_string())))
            .map_err(|e| err(format!("cannot read `{file}`: {e}")));
    }
    Ok(None)
}

impl Backend {
    pub fn new(name: &str, spec: &BackendSpec) -> Result<Backend, BackendError> {
        let key = read_key(name, spec)?;
        let limit = match spec.max_concurrency {
            Concurrency::Fixed(n) => n.max(1) as usize,
            Concurrency::Auto(_) => AUTO_INITIAL_CONCURRENCY,
        };
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(limit.max(16))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| BackendError::Transport {
                backend: name.into(),
                endpoint: String::new(),
                message: e.to_string(),
            })?;
        Ok(Backend {
            name: name.to_string(),
            spec: spec.clone(),
            endpoints: spec
                .endpoints()
                .into_iter()
                .map(|base| Endpoint {
                    base: base.trim_end_matches('/').to_string(),
                    outstanding: AtomicU64::new(0),
                })
                .collect(),
            http,
            key,
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            backoff: Backoff::default(),
            counters: BackendCounters::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn model(&self) -> &str {
        &self.spec.model
    }

    pub fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    /// Current in-flight limit.
    pub fn concurrency_limit(&self) -> usize {
        self.limit
    }

    /// Live numbers for heartbeats, metrics and the dashboard.
    pub fn snapshot(&self) -> BackendSnapshot {
        let endpoints: Vec<EndpointSnapshot> = self
            .endpoints
            .iter()
            .map(|e| EndpointSnapshot {
                url: e.base.clone(),
                limit: self.limit as u64,
                in_flight: e.outstanding.load(Ordering::Relaxed),
                ..Default::default()
            })
            .collect();
        BackendSnapshot {
            name: self.name.clone(),
            model: self.spec.model.clone(),
            limit: self.limit as u64,
            in_flight: endpoints.iter().map(|e| e.in_flight).sum(),
            prompt_tokens: self.counters.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.counters.completion_tokens.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
            endpoints,
        }
    }

    fn pick_endpoint(&self) -> &Endpoint {
        self.endpoints
            .iter()
            .min_by_key(|e| e.outstanding.load(Ordering::Relaxed))
            .expect("validated: at least one endpoint")
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(Secret(k)) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// Checks that every endpoint serves the configured model (`/v1/models`), so a typo in a
    /// model name fails the job at start with a clear message instead of 404s per row.
    pub async fn check_model(&self) -> Result<(), BackendError> {
        for ep in &self.endpoints {
            let url = format!("{}/models", ep.base);
            let resp = self
                .authed(self.http.get(&url))
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|e| self.transport(&ep.base, e))?;
            if !resp.status().is_success() {
                // Some servers (older TGI) lack /v1/models; do not block on that.
                tracing::warn!(backend = %self.name, endpoint = %ep.base, status = %resp.status(), "cannot list models");
                continue;
            }
            let models: WireModels = resp.json().await.map_err(|e| self.transport(&ep.base, e))?;
            if !models.data.iter().any(|m| m.id == self.spec.model) {
                return Err(BackendError::UnknownModel {
                    backend: self.name.clone(),
                    model: self.spec.model.clone(),
                    endpoint: ep.base.clone(),
                    served: models
                        .data
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        Ok(())
    }

    fn transport(&self, endpoint: &str, e: reqwest::Error) -> BackendError {
        let mut message = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            message.push_str(&format!(": {s}"));
            src = s.source();
        }
        BackendError::Transport {
            backend: self.name.clone(),
            endpoint: endpoint.to_string(),
            message,
        }
    }

    /// Sends one request, retrying transient failures; holds one concurrency slot throughout.
    pub async fn generate(&self, req: &GenRequest) -> Result<GenResponse, BackendError> {
        let _permit = self.slots.acquire().await.expect("semaphore never closed");
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let ep = self.pick_endpoint();
            ep.outstanding.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let result = self.send_once(&ep.base, req).await;
            ep.outstanding.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(mut resp) => {
                    resp.latency_ms = started.elapsed().as_millis() as u64;
                    resp.attempts = attempt;
                    resp.endpoint = ep.base.clone();
                    self.counters.requests_ok.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .prompt_tokens
                        .fetch_add(resp.prompt_tokens, Ordering::Relaxed);
                    self.counters
                        .completion_tokens
                        .fetch_add(resp.completion_tokens, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err((e, retry_after)) => {
                    if !e.retryable() || attempt >= self.spec.max_attempts {
                        self.counters
                            .requests_failed
                            .fetch_add(1, Ordering::Relaxed);
                        if attempt > 1 && e.retryable() {
                            return Err(BackendError::GaveUp {
                                backend: self.name.clone(),
                                attempts: attempt,
                                last: e.to_string(),
                            });
                        }
                        return Err(e);
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = self.backoff.delay(attempt, retry_after);
                    tracing::debug!(backend = %self.name, attempt, ?delay, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn send_once(
        &self,
        base: &str,
        req: &GenRequest,
    ) -> Result<GenResponse, (BackendError, Option<Duration>)> {
        let common = CommonParams {
            max_tokens: req.max_tokens.or(self.spec.max_tokens),
            temperature: req.temperature.or(self.spec.temperature),
            top_p: req.top_p.or(self.spec.top_p),
            n: req.n.filter(|n| *n > 1),
            stop: req.stop.as_deref().filter(|s| !s.is_empty()),
            seed: req.seed,
            response_format: req.response_format.as_ref(),
        };
        let (url, body) = match self.spec.api {
            BackendApi::Chat => (
                format!("{base}/chat/completions"),
                serde_json::to_vec(&ChatBody {
                    model: &self.spec.model,
                    messages: req.chat_messages(),
                    common,
                }),
            ),
            BackendApi::Completions => (
                format!("{base}/completions"),
                serde_json::to_vec(&CompletionBody {
                    model: &self.spec.model,
                    prompt: req.prompt_text(),
                    common,
                }),
            ),
        };
        let body = body.expect("request body serializes");
        let rb = self
            .authed(self.http.post(&url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs_f64(self.spec.timeout_s.max(0.001)))
            .body(body);
        let resp = rb
            .send()
            .await
            .map_err(|e| (self.transport(base, e), None))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = resp.text().await.unwrap_or_default();
            return Err((
                BackendError::Status {
                    backend: self.name.clone(),
                    endpoint: base.to_string(),
                    status: status.as_u16(),
                    body: text.chars().take(500).collect(),
                },
                retry_after,
            ));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| (self.transport(base, e), None))?;
        let wire: WireResponse = serde_json::from_slice(&bytes).map_err(|e| {
            (
                BackendError::Transport {
                    backend: self.name.clone(),
                    endpoint: base.to_string(),
                    message: format!("response is not an OpenAI completion: {e}"),
                },
                None,
            )
        })?;
        let mut choices: Vec<(u32, GenChoice)> = wire
            .choices
            .into_iter()
            .map(|c| {
                let text = c
                    .message
                    .and_then(|m| m.content)
                    .or(c.text)
                    .unwrap_or_default();
                (
                    c.index,
                    GenChoice {
                        text,
                        finish_reason: c.finish_reason.unwrap_or_else(|| "unknown".into()),
                    },
                )
            })
            .collect();
        choices.sort_by_key(|(i, _)| *i);
        let usage = wire.usage.unwrap_or_default();
        Ok(GenResponse {
            choices: choices.into_iter().map(|(_, c)| c).collect(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            model: wire.model,
            latency_ms: 0,
            attempts: 0,
            endpoint: String::new(),
        })
    }
}
