//! The `backends` section of a job file: named model endpoints and their limits.
//!
//! Plain data with no dependency on the rest of the crate, so that the clients in `backend` can use
//! it without depending on the whole job spec.

use serde::{Deserialize, Serialize};

/// Which OpenAI-compatible endpoint a backend speaks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendApi {
    #[default]
    Chat,
    Completions,
}

/// How a backend with several endpoints picks one for a request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Requests whose prompts begin alike go to the same endpoint (consistent hashing with
    /// bounded loads), so the servers' prefix caches serve the shared part; no endpoint goes
    /// above 1.25× its share and none idles while requests wait (`core/src/backend/affinity.rs`).
    /// Opt-in until its bench meets its goal (docs/backend-bench.md, scenario e).
    PrefixAffinity,
    /// The endpoint with the fewest outstanding requests relative to its limit.
    #[default]
    LeastLoaded,
}

/// Concurrency: a fixed number or `auto` (find the backend's saturation point).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Concurrency {
    Fixed(u32),
    Auto(AutoKeyword),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoKeyword {
    Auto,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency::Fixed(32)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// One base URL (ending in `/v1`) ...
    #[serde(default)]
    pub url: Option<String>,
    /// ... or several endpoints serving the same model.
    #[serde(default)]
    pub urls: Vec<String>,
    pub model: String,
    #[serde(default)]
    pub api: BackendApi,
    /// Name of a credential the operator configured on the workers (`--credential NAME=...`);
    /// the job never says where a key lives, so it cannot point a worker's secrets at its URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Refused at validation (see [`BackendSpec::credential`]); parsed only to say so clearly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Refused at validation, like `api_key_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<String>,
    /// Requests in flight to this backend **per worker process**, not per cluster: each
    /// worker keeps one pool per job and backend, shared by all its tasks of the job, so `N`
    /// workers put up to `N × max_concurrency` requests in flight (tests/tests/concurrency.rs).
    /// A fixed number caps that pool (all its endpoints together, and each endpoint alone);
    /// `auto` gives each endpoint of each worker its own adaptive limit, with no pool-wide cap.
    /// To bound a whole cluster's load, divide by the number of workers (or use
    /// `requests_per_minute` / `tokens_per_minute`, which are shared across the fleet).
    #[serde(default)]
    pub max_concurrency: Concurrency,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Sampling defaults for every request to this backend.
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Largest prompt sent, in estimated tokens (bytes / 4); a row whose prompt is larger becomes
    /// a failure row instead of a request. Default [`DEFAULT_MAX_PROMPT_TOKENS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prompt_tokens: Option<u64>,
    /// Endpoint choice for a pool of several `urls` (one endpoint: no choice to make).
    #[serde(default)]
    pub routing: Routing,
}

/// The prompt cap when a backend sets none: large enough for long-context models, small
/// enough that one oversized seed row cannot become a multi-megabyte request.
pub const DEFAULT_MAX_PROMPT_TOKENS: u64 = 128_000;

fn default_timeout_s() -> f64 {
    120.0
}

fn default_max_attempts() -> u32 {
    5
}

impl BackendSpec {
    /// The prompt cap in force (estimated tokens).
    pub fn prompt_token_cap(&self) -> u64 {
        self.max_prompt_tokens.unwrap_or(DEFAULT_MAX_PROMPT_TOKENS)
    }

    /// All endpoint base URLs, `url` first.
    pub fn endpoints(&self) -> Vec<String> {
        let mut all: Vec<String> = self.url.iter().cloned().collect();
        all.extend(self.urls.iter().cloned());
        all
    }
}
