//! Clients for OpenAI-compatible inference servers.
//!
//! A [`Backend`] is one named backend of a job: one model served by one or more endpoints (a
//! [`pool::Pool`]). It bounds in-flight requests per endpoint (fixed, or adaptive with
//! [`limiter`] so a GPU server is kept saturated without being told its batch size), spreads them
//! over endpoints (least outstanding requests relative to each endpoint's limit), ejects an
//! endpoint that keeps failing and probes it back in ([`endpoint`]), paces hosted APIs to their
//! per-minute budgets ([`ratelimit`]), retries transient errors with jittered backoff honouring
//! `Retry-After` ([`retry`]), and reports token usage. API keys come from the operator's named
//! [`credentials`] (a job names one, never a variable or file) and are never printed (`Debug`
//! hides them).

pub mod affinity;
pub mod credentials;
pub mod endpoint;
pub mod limiter;
pub mod models;
pub mod openai;
pub mod pool;
pub mod ratelimit;
mod request;
pub mod retry;
mod topup;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use endpoint::Outcome;
use openai::WireModels;
pub use openai::{GenChoice, GenRequest, GenResponse};
use pool::Pool;
use ratelimit::RateLimits;
use retry::Backoff;

use crate::spec::backend::{BackendSpec, Concurrency, Routing};
pub use credentials::{CredentialDef, Credentials};

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
    /// A 200 whose `choices` hold fewer samples than the request's `n` (or none), also after
    /// asking again for the missing ones.
    #[error("backend `{backend}`: {endpoint}: backend returned {got} of {asked} choices")]
    ShortReply {
        backend: String,
        endpoint: String,
        got: usize,
        asked: usize,
    },
    #[error("backend `{backend}`: gave up after {attempts} attempts: {last}")]
    GaveUp {
        backend: String,
        attempts: u32,
        last: String,
    },
    #[error("backend `{backend}`: prompt of about {estimated} tokens is over the cap of {cap} (`max_prompt_tokens`); not sent")]
    PromptTooLarge {
        backend: String,
        estimated: u64,
        cap: u64,
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
            BackendError::Transport { .. } | BackendError::ShortReply { .. } => true,
            _ => false,
        }
    }
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
pub(crate) struct Secret(pub(crate) String);

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

/// One named backend of a job, shared by all its tasks in a worker process.
#[derive(Debug)]
pub struct Backend {
    name: String,
    spec: BackendSpec,
    pool: Pool,
    http: reqwest::Client,
    key: Option<Secret>,
    limits: RateLimits,
    backoff: Backoff,
    pub counters: BackendCounters,
}

/// Work a caller should keep queued per endpoint for an `auto` backend: the adaptive limit's
/// ceiling, so the limiter, not the caller, decides how much is in flight.
pub const AUTO_INITIAL_CONCURRENCY: usize = limiter::AUTO_MAX_LIMIT as usize;
/// Ceiling of [`Backend::concurrency_limit`] for `auto` backends with many endpoints.
const AUTO_MAX_QUEUED: usize = 4096;

fn read_key(
    name: &str,
    spec: &BackendSpec,
    credentials: &Credentials,
) -> Result<Option<Secret>, BackendError> {
    let Some(credential) = &spec.credential else {
        return Ok(None);
    };
    credentials
        .key_for(credential, &spec.endpoints())
        .map(Some)
        .map_err(|message| BackendError::Key {
            backend: name.to_string(),
            message,
        })
}

impl Backend {
    /// A backend that sends no API key; one naming a `credential` is refused (see
    /// [`Backend::with_credentials`]).
    pub fn new(name: &str, spec: &BackendSpec) -> Result<Backend, BackendError> {
        Self::with_credentials(name, spec, &Credentials::default())
    }

    /// A backend whose `credential` (if any) is looked up among the operator's `credentials`;
    /// refused when it is not configured or may not be sent to one of the endpoints.
    pub fn with_credentials(
        name: &str,
        spec: &BackendSpec,
        credentials: &Credentials,
    ) -> Result<Backend, BackendError> {
        let key = read_key(name, spec, credentials)?;
        let fixed = match spec.max_concurrency {
            Concurrency::Fixed(n) => Some(n.max(1)),
            Concurrency::Auto(_) => None,
        };
        let urls: Vec<String> = spec
            .endpoints()
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_string())
            .collect();
        // Keep as many idle connections as requests may be in flight, or every burst above the
        // idle cap would pay for new TCP connections.
        let idle = fixed.unwrap_or(limiter::AUTO_MAX_LIMIT).max(16) as usize;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(idle)
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
            pool: Pool::new(urls, fixed),
            http,
            key,
            limits: RateLimits::new(spec.requests_per_minute, spec.tokens_per_minute),
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

    /// How this backend's keyed requests were placed (prefix-affinity routing).
    pub fn routing_counts(&self) -> pool::RoutingCounts {
        self.pool.routing_counts()
    }

    pub fn spec(&self) -> &BackendSpec {
        &self.spec
    }

    /// How many requests a caller should offer concurrently: the fixed `max_concurrency`, or
    /// for `auto` the adaptive limit's ceiling (the backend itself admits only as many as its
    /// current limit allows; the rest wait cheaply in [`Backend::generate`]).
    pub fn concurrency_limit(&self) -> usize {
        match self.spec.max_concurrency {
            Concurrency::Fixed(n) => n.max(1) as usize,
            Concurrency::Auto(_) => {
                (AUTO_INITIAL_CONCURRENCY * self.pool.urls().len().max(1)).min(AUTO_MAX_QUEUED)
            }
        }
    }

    /// The limit in force now: the sum of the healthy endpoints' limits (capped by a fixed
    /// `max_concurrency`).
    pub fn current_limit(&self) -> u64 {
        self.pool.limit()
    }

    /// Live numbers for heartbeats, metrics and the dashboard.
    pub fn snapshot(&self) -> BackendSnapshot {
        let endpoints = self.pool.snapshots();
        BackendSnapshot {
            name: self.name.clone(),
            model: self.spec.model.clone(),
            limit: self.pool.limit(),
            in_flight: endpoints.iter().map(|e| e.in_flight).sum(),
            prompt_tokens: self.counters.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.counters.completion_tokens.load(Ordering::Relaxed),
            retries: self.counters.retries.load(Ordering::Relaxed),
            endpoints,
        }
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(Secret(k)) => rb.bearer_auth(k),
            None => rb,
        }
    }

    /// Checks that every reachable endpoint serves the configured model (`/v1/models`), so a
    /// typo in a model name fails the job at start with a clear message instead of 404s per
    /// row. An unreachable endpoint is only logged (the pool ejects it and probes it back in),
    /// unless no endpoint is reachable at all.
    pub async fn check_model(&self) -> Result<(), BackendError> {
        let urls = self.pool.urls();
        let mut unreachable = Vec::new();
        for base in &urls {
            let url = format!("{base}/models");
            let resp = match self
                .authed(self.http.get(&url))
                .timeout(Duration::from_secs(30))
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let e = self.transport(base, &e);
                    tracing::warn!(backend = %self.name, endpoint = %crate::redact::mask_text(base), error = %e, "endpoint unreachable at start");
                    unreachable.push(e);
                    continue;
                }
            };
            if !resp.status().is_success() {
                // Some servers (older TGI) lack /v1/models; do not block on that.
                tracing::warn!(backend = %self.name, endpoint = %crate::redact::mask_text(base), status = %resp.status(), "cannot list models");
                continue;
            }
            let models: WireModels = resp.json().await.map_err(|e| self.transport(base, &e))?;
            if !models.data.iter().any(|m| m.id == self.spec.model) {
                return Err(BackendError::UnknownModel {
                    backend: self.name.clone(),
                    model: self.spec.model.clone(),
                    endpoint: crate::redact::mask_text(base),
                    served: models
                        .data
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        if unreachable.len() == urls.len() {
            if let Some(e) = unreachable.pop() {
                return Err(e);
            }
        }
        Ok(())
    }

    fn transport(&self, endpoint: &str, e: &reqwest::Error) -> BackendError {
        let mut message = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            message.push_str(&format!(": {s}"));
            src = s.source();
        }
        BackendError::Transport {
            backend: self.name.clone(),
            // reqwest's message quotes the URL: neither may show a key embedded in it.
            endpoint: crate::redact::mask_text(endpoint),
            message: crate::redact::mask_text(&message),
        }
    }

    /// Tells this backend how many workers share its per-minute budgets (see
    /// [`ratelimit::RateLimits::set_share`]).
    pub fn set_fleet_share(&self, workers: u32) {
        self.limits.set_share(workers);
    }

    /// Sends one request, retrying transient failures (on another endpoint when there is one)
    /// with jittered exponential backoff that honours `Retry-After`. Each attempt holds an
    /// endpoint slot only while it is on the wire, never during the backoff sleep. A prompt over
    /// the backend's `max_prompt_tokens` is refused without a request (the stage records a
    /// failure row with this reason). One request: [`Backend::generate`] adds the top-up of a
    /// reply with fewer choices than `n`.
    async fn generate_attempts(&self, req: &GenRequest) -> Result<GenResponse, BackendError> {
        let prompt_tokens = request::estimate_prompt_tokens(req);
        if prompt_tokens > self.spec.prompt_token_cap() {
            self.counters
                .requests_failed
                .fetch_add(1, Ordering::Relaxed);
            return Err(BackendError::PromptTooLarge {
                backend: self.name.clone(),
                estimated: prompt_tokens,
                cap: self.spec.prompt_token_cap(),
            });
        }
        let est_tokens = if self.limits.is_unlimited() {
            0
        } else {
            request::estimate_tokens(req, &self.spec)
        };
        let affinity_key = match self.spec.routing {
            Routing::PrefixAffinity => Some(affinity::prefix_key(req)),
            Routing::LeastLoaded => None,
        };
        let mut attempt = 0u32;
        let mut avoid = None;
        loop {
            attempt += 1;
            self.limits.admit(est_tokens).await;
            let slot = self.pool.acquire(avoid, affinity_key).await;
            let index = slot.index;
            let started = Instant::now();
            // One span per HTTP attempt; it nests in the worker's task span (job, task, attempt).
            let span = tracing::info_span!(
                "backend_request",
                backend = %self.name,
                endpoint = %crate::redact::mask_text(&slot.url),
                attempt,
                status = tracing::field::Empty,
            );
            let result =
                tracing::Instrument::instrument(self.send_once(&slot.url, req), span.clone()).await;
            span.record(
                "status",
                match &result {
                    Ok(_) => 200u16,
                    Err(f) => match &f.error {
                        BackendError::Status { status, .. } => *status,
                        _ => 0,
                    },
                },
            );
            let elapsed = started.elapsed();
            match result {
                Ok(mut resp) => {
                    resp.endpoint = crate::redact::mask_text(&slot.url);
                    self.pool.finish(slot, Outcome::Ok(elapsed));
                    resp.latency_ms = elapsed.as_millis() as u64;
                    resp.attempts = attempt;
                    self.limits
                        .settle(est_tokens, resp.prompt_tokens + resp.completion_tokens);
                    self.counters.requests_ok.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .prompt_tokens
                        .fetch_add(resp.prompt_tokens, Ordering::Relaxed);
                    self.counters
                        .completion_tokens
                        .fetch_add(resp.completion_tokens, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(fail) => {
                    self.pool.finish(slot, fail.outcome);
                    self.limits.settle(est_tokens, 0);
                    let e = fail.error;
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
                    avoid = Some(index);
                    let delay = self.backoff.delay(attempt, fail.retry_after);
                    tracing::debug!(backend = %self.name, attempt, ?delay, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
