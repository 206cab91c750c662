//! What every model-calling stage shares: building a request from a stage spec, accumulating a
//! call's tokens into a record (so the dataset card's totals include critics, judges and
//! evolution calls, not only the final answer), and the record's lineage fields.

use std::sync::Arc;

use super::{Item, Outcome, StageContext, StageError};
use crate::backend::{Backend, GenRequest, GenResponse};
use crate::record::{ChatMessage, Record};
use crate::spec::StageSpec;
use crate::template::PromptTemplate;

/// A request for `messages` with the stage's sampling parameters. `salt` varies the seed per
/// call of a row (round, role) so that repeated calls are not identical requests.
pub fn request(
    spec: &StageSpec,
    messages: Vec<ChatMessage>,
    n: u32,
    job_seed: u64,
    row: u64,
    salt: u64,
) -> GenRequest {
    GenRequest {
        messages,
        prompt: None,
        max_tokens: spec.max_tokens,
        temperature: spec.temperature,
        top_p: spec.top_p,
        n: Some(n.max(1)),
        stop: spec.stop.clone(),
        seed: Some(job_seed ^ row ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        response_format: spec.params.get("response_format").cloned(),
    }
}

/// `[system?, user]`.
pub fn user_messages(system: Option<&str>, user: &str) -> Vec<ChatMessage> {
    let mut m = Vec::with_capacity(2);
    if let Some(s) = system {
        m.push(ChatMessage::new("system", s));
    }
    m.push(ChatMessage::new("user", user));
    m
}

/// Adds a whole call's usage to a record (for calls made once per record: judge, critic).
pub fn add_usage(record: &mut Record, resp: &GenResponse) {
    record.prompt_tokens += resp.prompt_tokens;
    record.completion_tokens += resp.completion_tokens;
    record.latency_ms += resp.latency_ms;
}

/// Sample `i` of `n`'s share of a multi-sample call: prompt tokens go to sample 0, completion
/// tokens are split so that the shares add up to the call's total.
pub fn usage_share(resp: &GenResponse, i: usize, n: usize) -> (u64, u64) {
    let n = n.max(1) as u64;
    let i = i as u64;
    let p = if i == 0 { resp.prompt_tokens } else { 0 };
    let c = resp.completion_tokens / n + u64::from(i < resp.completion_tokens % n);
    (p, c)
}

/// The item for sample `i` of a multi-sample chat call: a copy of `item` whose record carries the
/// sample's id, prompt, `messages` + the reply, completion, finish reason and token share.
/// Seed-level counts (PII redactions, earlier stages' tokens) stay with sample 0 only, so totals
/// are not multiplied by the number of samples. The caller adds lineage and context.
pub fn sample_item(
    item: &Item,
    job: &crate::spec::JobSpec,
    stage: &str,
    prompt: &str,
    messages: &[ChatMessage],
    resp: &GenResponse,
    i: usize,
) -> Item {
    let choice = &resp.choices[i];
    let mut it = item.clone();
    if i > 0 {
        it.counters.clear();
        it.record.prompt_tokens = 0;
        it.record.completion_tokens = 0;
    }
    let r = &mut it.record;
    r.id = crate::record::record_id(&job.name, job.seed, item.seed.index, stage, i as u32);
    r.stage = stage.to_string();
    r.sample_index = i as u32;
    r.prompt = Some(prompt.to_string());
    let mut msgs = messages.to_vec();
    msgs.push(ChatMessage::new("assistant", choice.text.clone()));
    r.messages = Some(msgs);
    r.completion = choice.text.clone();
    r.finish_reason = choice.finish_reason.clone();
    let (p, c) = usage_share(resp, i, resp.choices.len());
    r.prompt_tokens += p;
    r.completion_tokens += c;
    r.latency_ms = resp.latency_ms;
    it
}

/// Fills the model/sampling lineage of a record produced by `backend` under `spec`.
pub fn set_lineage(
    record: &mut Record,
    backend: &Backend,
    spec: &StageSpec,
    resp: &GenResponse,
    template: Option<&PromptTemplate>,
) {
    record.model = backend.model().to_string();
    record.backend_model = resp.model.clone();
    record.temperature = spec.temperature.or(backend.spec().temperature);
    record.top_p = spec.top_p.or(backend.spec().top_p);
    record.max_tokens = spec.max_tokens.or(backend.spec().max_tokens);
    if let Some(t) = template {
        record.template_hash = t.hash().to_string();
    }
}

/// The backend named by a string parameter (`critic_backend`…), or `fallback` when absent.
pub fn backend_param(
    spec: &StageSpec,
    key: &str,
    ctx: &StageContext,
    fallback: &Arc<Backend>,
) -> Result<Arc<Backend>, StageError> {
    match spec.params.get(key) {
        None => Ok(fallback.clone()),
        Some(serde_json::Value::String(name)) => ctx.backend(name),
        Some(other) => Err(StageError::Config(format!(
            "`{key}` must be a backend name, got {other}"
        ))),
    }
}

/// A failure outcome naming the seed row's position, the stage and the reason.
pub fn fail(ctx: &StageContext, item: &Item, stage: &str, msg: impl std::fmt::Display) -> Outcome {
    let error = format!("{}: stage `{stage}`: {msg}", item.seed.source);
    Outcome::Failed(ctx.failure(item, stage, error))
}

/// The instruction of a row: the rendered `template` if given, else the `instruction_column`
/// value (default `instruction`) from the item's context.
pub fn instruction(
    item: &Item,
    template: Option<&PromptTemplate>,
    column: &str,
) -> Result<String, String> {
    if let Some(t) = template {
        return t
            .render(&serde_json::Value::Object(item.context.clone()))
            .map_err(|e| e.to_string());
    }
    match item.context.get(column) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(serde_json::Value::String(_)) => Err(format!("column `{column}` is empty")),
        Some(serde_json::Value::Null) | None => Err(format!("row has no column `{column}`")),
        Some(other) => Ok(other.to_string()),
    }
}

/// Reads an optional numeric parameter.
pub fn f64_param(spec: &StageSpec, key: &str) -> Result<Option<f64>, String> {
    match spec.params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a number, got {v}")),
    }
}

/// Reads an optional non-negative integer parameter.
pub fn u64_param(spec: &StageSpec, key: &str) -> Result<Option<u64>, String> {
    match spec.params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a non-negative integer, got {v}")),
    }
}

/// Reads an optional string parameter.
pub fn str_param<'a>(spec: &'a StageSpec, key: &str) -> Result<Option<&'a str>, String> {
    match spec.params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(format!("`{key}` must be a string, got {v}")),
    }
}

/// Reads an optional bool parameter.
pub fn bool_param(spec: &StageSpec, key: &str) -> Result<Option<bool>, String> {
    match spec.params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(format!("`{key}` must be true or false, got {v}")),
    }
}

/// Reads an optional list-of-strings parameter.
pub fn strings_param(spec: &StageSpec, key: &str) -> Result<Option<Vec<String>>, String> {
    match spec.params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{key}` must be a list of strings, got {x}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(format!("`{key}` must be a list of strings, got {v}")),
    }
}

/// The optional `template` compiled.
pub fn optional_template(spec: &StageSpec) -> Result<Option<PromptTemplate>, String> {
    spec.template
        .as_deref()
        .map(PromptTemplate::new)
        .transpose()
        .map_err(|e| format!("template: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_shares_add_up() {
        let resp = GenResponse {
            choices: vec![],
            prompt_tokens: 10,
            completion_tokens: 7,
            model: "m".into(),
            latency_ms: 1,
            attempts: 1,
            endpoint: String::new(),
        };
        let shares: Vec<(u64, u64)> = (0..3).map(|i| usage_share(&resp, i, 3)).collect();
        assert_eq!(shares.iter().map(|s| s.0).sum::<u64>(), 10);
        assert_eq!(shares.iter().map(|s| s.1).sum::<u64>(), 7);
        assert_eq!(shares[1].0, 0);
    }
}
