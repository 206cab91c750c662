//! POST /v1/chat/completions and POST /v1/completions.
//!
//! Order of work per request: count it, parse (and record), check the model,
//! draw a fault, generate the text, then occupy a slot for the simulated GPU
//! time and answer. Faults are decided before queueing, so a hung request
//! never holds a slot.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{
    AssistantMessage, ChatChoice, ChatCompletion, InferenceRequest, PromptTokensDetails,
    TextChoice, TextCompletion, Usage,
};
use crate::engine::{generate, request_hash, Format, Sample, Sampling};
use crate::error::ApiError;
use crate::faults::Fault;
use crate::state::AppState;
use crate::text::count_tokens;

/// Largest `n` accepted (vLLM rejects absurd values too).
const MAX_N: u32 = 128;
/// `max_tokens` is clamped to this so one request cannot allocate gigabytes.
const MAX_TOKENS_CAP: u64 = 32_768;
/// How long a "hung" request sleeps if the server keeps running.
const HANG: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completion,
}

/// POST /v1/chat/completions.
pub async fn chat(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(&s, Endpoint::Chat, &body).await
}

/// POST /v1/completions.
pub async fn completions(State(s): State<Arc<AppState>>, body: Bytes) -> Response {
    handle(&s, Endpoint::Completion, &body).await
}

async fn handle(s: &AppState, ep: Endpoint, body: &[u8]) -> Response {
    let _in_flight = s.stats.begin_request();
    let resp = serve_request(s, ep, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    s.stats.record_status(resp.status().as_u16());
    resp
}

/// A prompt to complete: the full text (token count, seed) and the part the
/// reply rules look at (last user message for chat, the prompt otherwise).
struct Prompt<'a> {
    text: Cow<'a, str>,
    matched: &'a str,
}

async fn serve_request(s: &AppState, ep: Endpoint, body: &[u8]) -> Result<Response, ApiError> {
    let req = parse(s, body)?;
    if !s.serves(&req.model) {
        return Err(ApiError::unknown_model(&req.model));
    }
    let n = req.n.unwrap_or(1);
    if n == 0 || n > MAX_N {
        return Err(ApiError::bad_request(format!(
            "n must be between 1 and {MAX_N}, got {n}"
        )));
    }
    // A server that ignores `n` answers one sample, and says nothing about it.
    let n = if s.args.ignore_n { 1 } else { n };
    let prompts = match ep {
        Endpoint::Chat => vec![chat_prompt(&req)?],
        Endpoint::Completion => completion_prompts(&req)?,
    };
    let format = format_of(&req)?;

    // How many of the generated samples the reply carries (all, unless a reply fault).
    let mut keep = usize::MAX;
    match s.faults.draw() {
        Fault::None => {}
        Fault::RateLimit => return Err(ApiError::rate_limited(s.args.retry_after_s)),
        Fault::ServerError => return Err(ApiError::internal()),
        Fault::Hang => return Err(hang(s).await),
        Fault::EmptyChoices => keep = 0,
        Fault::ShortN => keep = (prompts.len() * n as usize).saturating_sub(1),
    }

    let stops = req.stop.as_ref().map(|l| l.0.as_slice()).unwrap_or(&[]);
    let sampling = Sampling {
        model: &req.model,
        seed: req.seed_u64().unwrap_or(s.args.seed),
        max_tokens: req
            .max_completion_tokens
            .or(req.max_tokens)
            .unwrap_or(s.args.max_tokens_default)
            .min(MAX_TOKENS_CAP),
        stops,
        format,
    };
    let mut samples = Vec::with_capacity(prompts.len() * n as usize);
    let mut prompt_tokens = 0;
    let mut first_hash = 0;
    for (i, p) in prompts.iter().enumerate() {
        prompt_tokens += count_tokens(&p.text);
        let hash = request_hash(&sampling, &p.text);
        if i == 0 {
            first_hash = hash;
        }
        for j in 0..n {
            samples.push(generate(&sampling, &s.rules, &p.text, p.matched, hash, j));
        }
    }

    samples.truncate(keep);
    let longest = samples.iter().map(|x| x.tokens).max().unwrap_or(0);
    let texts: Vec<&str> = prompts.iter().map(|p| p.text.as_ref()).collect();
    let cached_tokens = occupy_slot(s, &texts, longest).await;

    let completion_tokens = samples.iter().map(|x| x.tokens).sum();
    s.stats.record_tokens(prompt_tokens, completion_tokens);
    s.stats.record_cached_tokens(cached_tokens);
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        prompt_tokens_details: s
            .prefix_cache
            .enabled()
            .then_some(PromptTokensDetails { cached_tokens }),
    };
    let serial = s.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(respond(ep, &req.model, first_hash, serial, samples, usage))
}

/// Parses the body; with `--record` keeps it verbatim first (even if it then
/// fails validation, so tests see exactly what a client sent).
fn parse(s: &AppState, body: &[u8]) -> Result<InferenceRequest, ApiError> {
    let bad = |e: serde_json::Error| ApiError::bad_request(format!("invalid request body: {e}"));
    match &s.recorded {
        None => serde_json::from_slice(body).map_err(bad),
        Some(recorded) => {
            let v: Value = serde_json::from_slice(body).map_err(bad)?;
            let req = InferenceRequest::deserialize(&v).map_err(bad);
            recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(v);
            req
        }
    }
}

fn chat_prompt(req: &InferenceRequest) -> Result<Prompt<'_>, ApiError> {
    let msgs = match req.messages.as_deref() {
        Some(m) if !m.is_empty() => m,
        Some(_) => return Err(ApiError::bad_request("`messages` must not be empty")),
        None => return Err(ApiError::bad_request("missing field `messages`")),
    };
    let matched = msgs
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .unwrap_or(&msgs[msgs.len() - 1]);
    let text = if msgs.len() == 1 {
        Cow::Borrowed(msgs[0].content.0.as_str())
    } else {
        let parts: Vec<&str> = msgs.iter().map(|m| m.content.0.as_str()).collect();
        Cow::Owned(parts.join("\n"))
    };
    Ok(Prompt {
        text,
        matched: &matched.content.0,
    })
}

fn completion_prompts(req: &InferenceRequest) -> Result<Vec<Prompt<'_>>, ApiError> {
    let list = match &req.prompt {
        Some(l) if !l.0.is_empty() => &l.0,
        Some(_) => return Err(ApiError::bad_request("`prompt` must not be empty")),
        None => return Err(ApiError::bad_request("missing field `prompt`")),
    };
    Ok(list
        .iter()
        .map(|p| Prompt {
            text: Cow::Borrowed(p),
            matched: p,
        })
        .collect())
}

fn format_of(req: &InferenceRequest) -> Result<Format<'_>, ApiError> {
    let Some(rf) = &req.response_format else {
        return Ok(Format::Text);
    };
    match rf.kind.as_str() {
        "text" => Ok(Format::Text),
        "json_object" => Ok(Format::JsonObject),
        "json_schema" => Ok(
            match rf.json_schema.as_ref().and_then(|j| j.schema.as_ref()) {
                Some(schema) => Format::JsonSchema(schema),
                None => Format::JsonObject,
            },
        ),
        other => Err(ApiError::bad_request(format!(
            "unsupported response_format type `{other}`"
        ))),
    }
}

/// Sleeps "forever" without a slot; released early when the server stops.
async fn hang(s: &AppState) -> ApiError {
    s.stats.record_hang();
    let mut shutdown = s.shutdown.clone();
    tokio::select! {
        _ = tokio::time::sleep(HANG) => {}
        _ = shutdown.changed() => {}
    }
    ApiError::shutting_down()
}

/// Waits for a slot (if slots are limited), then holds it for `latency_ms` + prefill +
/// `decode_ms_per_token * decode_tokens`, and returns the prompt tokens found in the prefix
/// cache. Prefill is `prefill_ms_per_token` per prompt token, a cached one at
/// `cached_prefill_factor` of that; the prompts enter the cache when the slot is taken (the
/// server prefills them then). `decode_tokens` is the longest sample: the `n` samples of a
/// request decode together as one batch in one slot, so the request takes as long as its
/// longest sample.
async fn occupy_slot(s: &AppState, prompts: &[&str], decode_tokens: u64) -> u64 {
    let permit = match &s.slots {
        Some(sem) => {
            let _queued = s.stats.queued();
            sem.acquire().await.ok()
        }
        None => None,
    };
    let busy = s.stats.slot_busy();
    let (mut total, mut cached) = (0u64, 0u64);
    for p in prompts {
        total += count_tokens(p);
        cached += s.prefix_cache.admit(p);
    }
    let prefill = s.args.prefill_ms_per_token
        * ((total - cached) as f64 + cached as f64 * s.args.cached_prefill_factor);
    let ms = s.args.latency_ms as f64 + prefill + s.args.decode_ms_per_token * decode_tokens as f64;
    if ms > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
    }
    drop(busy);
    drop(permit);
    cached
}

fn respond(
    ep: Endpoint,
    model: &str,
    hash: u64,
    serial: u64,
    samples: Vec<Sample>,
    usage: Usage,
) -> Response {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let indexed = (0u32..).zip(samples);
    match ep {
        Endpoint::Chat => Json(ChatCompletion {
            id: format!("chatcmpl-{hash:016x}{serial:08x}"),
            object: "chat.completion",
            created,
            model,
            choices: indexed
                .map(|(index, x)| ChatChoice {
                    index,
                    message: AssistantMessage {
                        role: "assistant",
                        content: x.text,
                    },
                    logprobs: None,
                    finish_reason: x.finish_reason,
                })
                .collect(),
            usage,
        })
        .into_response(),
        Endpoint::Completion => Json(TextCompletion {
            id: format!("cmpl-{hash:016x}{serial:08x}"),
            object: "text_completion",
            created,
            model,
            choices: indexed
                .map(|(index, x)| TextChoice {
                    index,
                    text: x.text,
                    logprobs: None,
                    finish_reason: x.finish_reason,
                })
                .collect(),
            usage,
        })
        .into_response(),
    }
}
