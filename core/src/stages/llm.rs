//! What every model-calling stage shares at run time: building a request from its
//! [`ModelCall`] settings, accumulating a
//! call's tokens into a record (so the dataset card's totals include critics, judges and
//! evolution calls, not only the final answer), and the record's lineage fields.

use std::sync::Arc;

use super::model_call::ModelCall;
use super::{Item, Outcome, StageContext, StageError};
use crate::backend::{Backend, GenRequest, GenResponse};
use crate::record::{ChatMessage, Record};
use crate::template::PromptTemplate;

/// A request for `messages` with the stage's sampling parameters. `salt` varies the seed per
/// call of a row (round, role) so that repeated calls are not identical requests.
pub fn request(
    call: &ModelCall,
    messages: Vec<ChatMessage>,
    n: u32,
    job_seed: u64,
    row: u64,
    salt: u64,
) -> GenRequest {
    GenRequest {
        messages,
        prompt: None,
        max_tokens: call.max_tokens,
        temperature: call.temperature,
        top_p: call.top_p,
        n: Some(n.max(1)),
        stop: call.stop.clone(),
        seed: Some(job_seed ^ row ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        response_format: call.response_format.clone(),
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
    ctx: &StageContext,
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
    r.id = crate::record::record_id(
        &ctx.job_name,
        ctx.job_seed,
        item.seed.index,
        stage,
        i as u32,
    );
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

/// Fills the model/sampling lineage of a record produced by `backend` under `call`.
pub fn set_lineage(
    record: &mut Record,
    backend: &Backend,
    call: &ModelCall,
    resp: &GenResponse,
    template: Option<&PromptTemplate>,
) {
    record.model = backend.model().to_string();
    record.backend_model = resp.model.clone();
    record.temperature = call.temperature.or(backend.spec().temperature);
    record.top_p = call.top_p.or(backend.spec().top_p);
    record.max_tokens = call.max_tokens.or(backend.spec().max_tokens);
    if let Some(t) = template {
        record.template_hash = t.hash().to_string();
    }
}

/// The backend named by an optional role setting (`critic_backend`...), or `fallback`.
pub fn backend_or(
    name: Option<&str>,
    ctx: &StageContext,
    fallback: &Arc<Backend>,
) -> Result<Arc<Backend>, StageError> {
    match name {
        None => Ok(fallback.clone()),
        Some(name) => ctx.backend(name),
    }
}

/// A failure outcome naming the seed row's position, the stage and the reason.
pub fn fail(ctx: &StageContext, item: &Item, stage: &str, msg: impl std::fmt::Display) -> Outcome {
    let error = format!("{}: stage `{stage}`: {msg}", item.seed.source);
    Outcome::Failed(ctx.failure(item, stage, error))
}

/// One failure row per sample of an `asked`-sample call that the backend did not return, even
/// after asking again (see [`Backend::generate`]): a short reply never makes samples vanish.
/// `what` prefixes the reason (`"draft: "`, `"answer: "`) where a stage makes several calls.
pub fn missing_samples(
    ctx: &StageContext,
    item: &Item,
    stage: &str,
    backend: &Backend,
    resp: &GenResponse,
    asked: u32,
    what: &str,
) -> Vec<Outcome> {
    let Some(short) = backend.shortfall(resp, asked) else {
        return Vec::new();
    };
    (resp.choices.len()..asked.max(1) as usize)
        .map(|i| fail(ctx, item, stage, format!("{what}sample {i}: {short}")))
        .collect()
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

/// An optional template compiled (its syntax was checked with the configuration).
pub fn optional_template(source: Option<&str>) -> Result<Option<PromptTemplate>, String> {
    source
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
