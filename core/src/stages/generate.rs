//! `generate`: one prompt per seed row from a template (with variations), `samples` completions.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::config::{check_template, CheckScope, ConfigError, StageColumns, StageConfig};
use super::model_call::{model_call_config, ModelCall};
use super::variations::{self, Variations};
use super::{llm, Item, Outcome, Stage, StageContext, StageError};
use crate::backend::{Backend, GenRequest};
use crate::record::{record_id, ChatMessage};
use crate::template::PromptTemplate;

model_call_config! {
    /// `generate` settings, as written in the job file.
    pub struct GenerateConfig {
        /// Jinja template over the row's columns (and `variation`).
        pub template: String,
        /// Lists to draw one value from per row (audience, format, style...).
        #[serde(
            default,
            deserialize_with = "variations::deserialize",
            skip_serializing_if = "BTreeMap::is_empty"
        )]
        pub variations: Variations,
    }
}

impl GenerateConfig {
    /// What the template sees besides the row: the drawn variation, as a map and by name
    /// (only when there are variations).
    fn provided(&self) -> Vec<&str> {
        if self.variations.is_empty() {
            return Vec::new();
        }
        let mut p = vec!["variation"];
        p.extend(self.variations.keys().map(String::as_str));
        p
    }
}

impl StageConfig for GenerateConfig {
    fn check(&self, scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        scope.backend("backend", &self.backend)?;
        check_template("template", Some(&self.template))
    }

    fn columns(&self) -> StageColumns {
        StageColumns::default()
            .reading_template("template", Some(&self.template), &self.provided())
            .adding(self.provided())
            .adding(["completion"])
    }

    fn template(&self) -> Option<&str> {
        Some(&self.template)
    }

    fn build(&self, index: usize, ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Generate::new(self, index, ctx)?))
    }
}

pub struct Generate {
    name: String,
    template: PromptTemplate,
    variations: Variations,
    backend: Arc<Backend>,
    call: ModelCall,
    ctx: StageContext,
}

impl Generate {
    pub fn new(
        config: &GenerateConfig,
        index: usize,
        ctx: &StageContext,
    ) -> Result<Self, StageError> {
        let template = PromptTemplate::new(&config.template)
            .map_err(|e| StageError::Config(format!("pipeline[{index}]: {e}")))?;
        Ok(Generate {
            name: "generate".to_string(),
            template,
            variations: config.variations.clone(),
            backend: ctx.backend(&config.backend)?,
            call: config.model_call(),
            ctx: ctx.clone(),
        })
    }
}

#[async_trait]
impl Stage for Generate {
    fn name(&self) -> &str {
        &self.name
    }

    fn extra_columns(&self) -> Vec<String> {
        self.variations.keys().cloned().collect()
    }

    fn concurrency(&self) -> usize {
        self.backend.concurrency_limit()
    }

    async fn process(&self, mut item: Item) -> Vec<Outcome> {
        // Variations are drawn once per row; several samples share the prompt (so `n` works).
        let chosen: BTreeMap<String, String> =
            variations::choose(&self.variations, self.ctx.job_seed, item.seed.index, 0);
        if !chosen.is_empty() {
            item.context.insert(
                "variation".into(),
                serde_json::to_value(&chosen).expect("strings serialize"),
            );
            for (k, v) in &chosen {
                item.context
                    .entry(k.clone())
                    .or_insert_with(|| Value::String(v.clone()));
            }
        }
        let prompt = match self.template.render(&Value::Object(item.context.clone())) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("{}: pipeline stage `{}`: {e}", item.seed.source, self.name);
                return vec![Outcome::Failed(self.ctx.failure(&item, &self.name, msg))];
            }
        };
        let mut messages = Vec::new();
        if let Some(s) = &self.call.system_prompt {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        messages.push(ChatMessage::new("user", prompt.clone()));
        let req = GenRequest {
            messages: messages.clone(),
            prompt: None,
            max_tokens: self.call.max_tokens,
            temperature: self.call.temperature,
            top_p: self.call.top_p,
            n: Some(self.call.samples()),
            stop: self.call.stop.clone(),
            seed: Some(self.ctx.job_seed ^ item.seed.index),
            response_format: self.call.response_format.clone(),
        };
        let resp = match self.backend.generate(&req).await {
            Ok(r) => r,
            Err(e) => {
                let msg = format!("{}: {e}", item.seed.source);
                return vec![Outcome::Failed(self.ctx.failure(&item, &self.name, msg))];
            }
        };
        let missing = llm::missing_samples(
            &self.ctx,
            &item,
            &self.name,
            &self.backend,
            &resp,
            self.call.samples(),
            "",
        );
        let n = resp.choices.len().max(1) as u64;
        resp.choices
            .into_iter()
            .enumerate()
            .map(|(i, choice)| {
                let mut it = item.clone();
                if i > 0 {
                    // Seed-level counts (PII redactions, earlier stages' tokens) belong to one
                    // sample, not n.
                    it.counters.clear();
                    it.record.prompt_tokens = 0;
                    it.record.completion_tokens = 0;
                }
                let r = &mut it.record;
                r.id = record_id(
                    &self.ctx.job_name,
                    self.ctx.job_seed,
                    item.seed.index,
                    &self.name,
                    i as u32,
                );
                r.stage = self.name.clone();
                r.sample_index = i as u32;
                r.prompt = Some(prompt.clone());
                let mut msgs = messages.clone();
                msgs.push(ChatMessage::new("assistant", choice.text.clone()));
                r.messages = Some(msgs);
                r.completion = choice.text.clone();
                r.model = self.backend.model().to_string();
                r.backend_model = resp.model.clone();
                r.finish_reason = choice.finish_reason;
                // Usage is per request; split over samples so totals add up. Added to what
                // earlier stages of the row spent.
                r.prompt_tokens += if i == 0 { resp.prompt_tokens } else { 0 };
                r.completion_tokens += resp.completion_tokens / n
                    + if (i as u64) < resp.completion_tokens % n {
                        1
                    } else {
                        0
                    };
                r.latency_ms = resp.latency_ms;
                r.template_hash = self.template.hash().to_string();
                r.temperature = self.call.temperature.or(self.backend.spec().temperature);
                r.top_p = self.call.top_p.or(self.backend.spec().top_p);
                r.max_tokens = self.call.max_tokens.or(self.backend.spec().max_tokens);
                for (k, v) in &chosen {
                    r.extra.insert(k.clone(), v.clone());
                }
                it.context
                    .insert("completion".into(), Value::String(choice.text));
                Outcome::Keep(it)
            })
            .chain(missing)
            .collect()
    }
}
