//! `judge`: an LLM critic scores each sample against a rubric; samples under `threshold` are
//! removed with reason `judge`.
//!
//! Parameters: `rubric` (text), `scale` (`"1-10"` default, or e.g. `"0-5"`), `threshold`
//! (optional; without it nothing is removed, scores are only recorded), `template` (optional;
//! default built-in prompt asking for `{"score": n, "rationale": "..."}`; it sees the row's
//! context plus `prompt`, `completion`, `rubric`, `min_score`, `max_score`).
//! The reply is parsed by [`super::judge_parse`]; an unparsable or out-of-scale reply makes the
//! sample a failure whose error quotes the reply.
//!
//! Columns: `score` (the record's score field), `judge_rationale`, `judge_model`. The record
//! keeps its id; the judge call's tokens are added to the record's token counts.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::config::{check_template, CheckScope, ConfigError, StageColumns, StageConfig};
use super::judge_parse;
use super::model_call::{model_call_config, ModelCall};
use super::{llm, Item, Outcome, Stage, StageContext, StageError};
use crate::backend::Backend;
use crate::template::PromptTemplate;

pub const REMOVED_REASON: &str = "judge";

const DEFAULT_RUBRIC: &str = "Helpfulness, factual correctness, clarity and completeness of the \
response for the prompt. Penalise errors, padding, repetition and refusals.";

const DEFAULT_TEMPLATE: &str = "You are an impartial judge of training data quality. Score the \
response below against the rubric on a scale from {{ min_score }} to {{ max_score }} \
({{ max_score }} is best).\n\n## Rubric\n{{ rubric }}\n\n## Prompt\n{{ prompt }}\n\n\
## Response\n{{ completion }}\n\n## Verdict\nReply with JSON only: \
{\"score\": <number>, \"rationale\": \"<one or two sentences>\"}";

/// Longest reply quoted in a failure's error.
const MAX_QUOTED: usize = 2000;

/// Variables the judge's template gets besides the row's context.
const PROVIDED: &[&str] = &["prompt", "completion", "rubric", "min_score", "max_score"];

model_call_config! {
    /// `judge` settings, as written in the job file.
    pub struct JudgeConfig {
        /// The judge's prompt (default: a built-in prompt asking for a JSON verdict).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rubric: Option<String>,
        /// `"1-10"` (default), `"0-5"`...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub scale: Option<String>,
        /// Samples scored below it are removed; without it scores are only recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub threshold: Option<f64>,
    }
}

impl JudgeConfig {
    fn bounds(&self) -> Result<(f64, f64), ConfigError> {
        parse_scale(self.scale.as_deref().unwrap_or("1-10")).map_err(|m| ConfigError::new("scale", m))
    }
}

impl StageConfig for JudgeConfig {
    fn check(&self, scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        scope.backend("backend", &self.backend)?;
        check_template("template", self.template.as_deref())?;
        self.bounds().map(|_| ())
    }

    fn columns(&self) -> StageColumns {
        StageColumns::default()
            .reading_template("template", self.template.as_deref(), PROVIDED)
            .adding(["score", "judge_rationale", "judge_model"])
    }

    fn build(&self, index: usize, ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Judge::new(self, index, ctx)?))
    }
}

pub struct Judge {
    name: String,
    template: PromptTemplate,
    rubric: String,
    min: f64,
    max: f64,
    threshold: Option<f64>,
    backend: Arc<Backend>,
    call: ModelCall,
    ctx: StageContext,
}

/// Parses `"1-10"` / `"0-5"` into bounds.
pub fn parse_scale(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("`scale` must look like \"1-10\", got `{s}`"))?;
    let lo: f64 = a
        .trim()
        .parse()
        .map_err(|_| format!("`scale`: bad lower bound `{a}`"))?;
    let hi: f64 = b
        .trim()
        .parse()
        .map_err(|_| format!("`scale`: bad upper bound `{b}`"))?;
    if lo >= hi {
        return Err(format!("`scale`: {lo} is not below {hi}"));
    }
    Ok((lo, hi))
}

/// A scale bound for the prompt: `1`, not `1.0`, when it is whole.
fn bound(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

impl Judge {
    pub fn new(config: &JudgeConfig, index: usize, ctx: &StageContext) -> Result<Self, StageError> {
        let at = |m: String| StageError::Config(format!("pipeline[{index}] (judge): {m}"));
        let (min, max) = config.bounds().map_err(|e| at(e.to_string()))?;
        let template = PromptTemplate::new(config.template.as_deref().unwrap_or(DEFAULT_TEMPLATE))
            .map_err(|e| at(format!("template: {e}")))?;
        Ok(Judge {
            name: "judge".to_string(),
            template,
            rubric: config
                .rubric
                .clone()
                .unwrap_or_else(|| DEFAULT_RUBRIC.to_string()),
            min,
            max,
            threshold: config.threshold,
            backend: ctx.backend(&config.backend)?,
            call: config.model_call(),
            ctx: ctx.clone(),
        })
    }

    fn prompt_of(item: &Item) -> String {
        if let Some(p) = &item.record.prompt {
            return p.clone();
        }
        item.record
            .messages
            .iter()
            .flatten()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.clone())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Stage for Judge {
    fn name(&self) -> &str {
        &self.name
    }

    fn extra_columns(&self) -> Vec<String> {
        vec!["judge_rationale".into(), "judge_model".into()]
    }

    fn concurrency(&self) -> usize {
        self.backend.concurrency_limit()
    }

    async fn process(&self, mut item: Item) -> Vec<Outcome> {
        let mut vars = item.context.clone();
        vars.insert("prompt".into(), Value::String(Self::prompt_of(&item)));
        vars.insert(
            "completion".into(),
            Value::String(item.record.completion.clone()),
        );
        vars.insert("rubric".into(), Value::String(self.rubric.clone()));
        vars.insert("min_score".into(), bound(self.min));
        vars.insert("max_score".into(), bound(self.max));
        let text = match self.template.render(&Value::Object(vars)) {
            Ok(t) => t,
            Err(e) => return vec![llm::fail(&self.ctx, &item, &self.name, e)],
        };
        let msgs = llm::user_messages(self.call.system_prompt.as_deref(), &text);
        let salt = 7000 + item.record.sample_index as u64;
        let req = llm::request(
            &self.call,
            msgs,
            1,
            self.ctx.job_seed,
            item.seed.index,
            salt,
        );
        let resp = match self.backend.generate(&req).await {
            Ok(r) => r,
            Err(e) => return vec![llm::fail(&self.ctx, &item, &self.name, e)],
        };
        llm::add_usage(&mut item.record, &resp);
        let reply = resp.choices.first().map(|c| c.text.as_str()).unwrap_or("");
        let verdict = match judge_parse::parse(reply, self.min, self.max) {
            Ok(v) => v,
            Err(why) => {
                let quoted: String = reply.chars().take(MAX_QUOTED).collect();
                let msg = format!(
                    "sample {} ({}): unparsable judge reply: {why}; reply: {quoted:?}",
                    item.record.sample_index, item.record.id
                );
                return vec![llm::fail(&self.ctx, &item, &self.name, msg)];
            }
        };
        let r = &mut item.record;
        r.score = Some(verdict.score);
        r.extra.insert("judge_rationale".into(), verdict.rationale);
        r.extra
            .insert("judge_model".into(), self.backend.model().to_string());
        item.context.insert("score".into(), verdict.score.into());
        match self.threshold {
            Some(t) if verdict.score < t => vec![Outcome::Removed {
                item,
                reason: REMOVED_REASON.into(),
            }],
            _ => vec![Outcome::Keep(item)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales() {
        assert_eq!(parse_scale("1-10"), Ok((1.0, 10.0)));
        assert_eq!(parse_scale("0 - 5"), Ok((0.0, 5.0)));
        assert!(parse_scale("5-1").is_err());
        assert!(parse_scale("ten").is_err());
    }

    #[test]
    fn default_template_renders() {
        let t = PromptTemplate::new(DEFAULT_TEMPLATE).unwrap();
        let out = t
            .render(
                &serde_json::json!({"prompt": "P", "completion": "C", "rubric": "R",
                "min_score": 1.0, "max_score": 10.0}),
            )
            .unwrap();
        assert!(
            out.contains("## Response\nC") && out.contains("{\"score\""),
            "{out}"
        );
    }
}
