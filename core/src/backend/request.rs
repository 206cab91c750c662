//! One HTTP attempt: build the OpenAI body (chat or completions), send it with the per-request
//! timeout, and map the answer to a response or to an error plus what the pool should learn.

use std::time::Duration;

use super::endpoint::Outcome;
use super::openai::{ChatBody, CommonParams, CompletionBody, WireResponse};
use super::retry::parse_retry_after;
use super::{Backend, BackendError, GenChoice, GenRequest, GenResponse};
use crate::spec::backend::{BackendApi, BackendSpec};

/// `max_tokens` assumed for budgeting when neither the request nor the backend sets one.
const DEFAULT_MAX_TOKENS_ESTIMATE: u64 = 256;

/// A failed attempt: the error for the caller, the server's `Retry-After`, and the outcome for
/// the endpoint's health and limiter.
pub(super) struct Failure {
    pub error: BackendError,
    pub retry_after: Option<Duration>,
    pub outcome: Outcome,
}

/// The prompt's size in tokens, estimated as bytes / 4 (the usual rule of thumb for English
/// BPE), each chat message counting a few bytes of framing.
pub(super) fn estimate_prompt_tokens(req: &GenRequest) -> u64 {
    let prompt_bytes: usize = match &req.prompt {
        Some(p) => p.len(),
        None => req.messages.iter().map(|m| m.content.len() + 4).sum(),
    };
    prompt_bytes as u64 / 4
}

/// Tokens a request may consume, for tokens-per-minute budgets: the estimated prompt plus
/// `max_tokens` for every sample.
pub(super) fn estimate_tokens(req: &GenRequest, spec: &BackendSpec) -> u64 {
    let max_tokens = req
        .max_tokens
        .or(spec.max_tokens)
        .map(u64::from)
        .unwrap_or(DEFAULT_MAX_TOKENS_ESTIMATE);
    estimate_prompt_tokens(req) + max_tokens * u64::from(req.n.unwrap_or(1).max(1))
}

impl Backend {
    pub(super) async fn send_once(
        &self,
        base: &str,
        req: &GenRequest,
    ) -> Result<GenResponse, Failure> {
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
        let transport = |e: reqwest::Error| Failure {
            outcome: if e.is_timeout() {
                Outcome::Timeout
            } else {
                Outcome::Transport
            },
            error: self.transport(base, &e),
            retry_after: None,
        };
        let resp = self
            .authed(self.http.post(&url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs_f64(self.spec.timeout_s.max(0.001)))
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = resp.text().await.unwrap_or_default();
            return Err(Failure {
                error: BackendError::Status {
                    backend: self.name.clone(),
                    endpoint: crate::redact::mask_text(base),
                    status: status.as_u16(),
                    body: text.chars().take(500).collect(),
                },
                retry_after,
                outcome: Outcome::Status(status.as_u16()),
            });
        }
        let bytes = resp.bytes().await.map_err(transport)?;
        let wire: WireResponse = serde_json::from_slice(&bytes).map_err(|e| Failure {
            error: BackendError::Transport {
                backend: self.name.clone(),
                endpoint: crate::redact::mask_text(base),
                message: format!("response is not an OpenAI completion: {e}"),
            },
            retry_after: None,
            outcome: Outcome::Transport,
        })?;
        let resp = to_response(wire);
        // A 200 without any choice would make a row vanish downstream: it is a bad reply,
        // retried like an undecodable one and, when retries run out, a failure row with this
        // reason. Fewer choices than `n` is not an attempt error: some servers (llama.cpp)
        // ignore `n`, so [`Backend::generate`] asks again for the missing samples instead.
        if resp.choices.is_empty() {
            return Err(Failure {
                error: BackendError::ShortReply {
                    backend: self.name.clone(),
                    endpoint: crate::redact::mask_text(base),
                    got: 0,
                    asked: req.n.unwrap_or(1).max(1) as usize,
                },
                retry_after: None,
                outcome: Outcome::Transport,
            });
        }
        Ok(resp)
    }
}

fn to_response(wire: WireResponse) -> GenResponse {
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
    GenResponse {
        choices: choices.into_iter().map(|(_, c)| c).collect(),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        model: wire.model,
        latency_ms: 0,
        attempts: 0,
        endpoint: String::new(),
    }
}
