//! `distill`: a teacher chat model answers an instruction taken from the seed row.
//!
//! The instruction is the rendered `template`, or the `instruction_column` value (default
//! `instruction`) as is. `samples` answers per instruction come from one request (`n`). The
//! output's `messages` column is the chat as sent plus the answer: `[system?, user, assistant]`,
//! ready for supervised fine-tuning. Adds `instruction` to the context for later stages.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::llm;
use super::{Item, Outcome, Stage, StageContext, StageError};
use crate::backend::Backend;
use crate::spec::StageSpec;
use crate::template::PromptTemplate;

pub struct Distill {
    name: String,
    template: Option<PromptTemplate>,
    column: String,
    samples: u32,
    backend: Arc<Backend>,
    spec: StageSpec,
    ctx: StageContext,
}

impl Distill {
    pub fn new(spec: &StageSpec, index: usize, ctx: &StageContext) -> Result<Self, StageError> {
        let at = |m: String| StageError::Config(format!("pipeline[{index}] (distill): {m}"));
        let backend = spec
            .backend
            .as_deref()
            .ok_or_else(|| at("`backend` is required".into()))?;
        Ok(Distill {
            name: spec.stage.clone(),
            template: llm::optional_template(spec).map_err(at)?,
            column: llm::str_param(spec, "instruction_column")
                .map_err(at)?
                .unwrap_or("instruction")
                .to_string(),
            samples: spec.samples.unwrap_or(1).max(1),
            backend: ctx.backend(backend)?,
            spec: spec.clone(),
            ctx: ctx.clone(),
        })
    }
}

#[async_trait]
impl Stage for Distill {
    fn name(&self) -> &str {
        &self.name
    }

    fn concurrency(&self) -> usize {
        self.backend.concurrency_limit()
    }

    async fn process(&self, mut item: Item) -> Vec<Outcome> {
        let instruction = match llm::instruction(&item, self.template.as_ref(), &self.column) {
            Ok(i) => i,
            Err(e) => return vec![llm::fail(&self.ctx, &item, &self.name, e)],
        };
        item.context
            .insert("instruction".into(), Value::String(instruction.clone()));
        let messages = llm::user_messages(self.spec.system_prompt.as_deref(), &instruction);
        let req = llm::request(
            &self.spec,
            messages.clone(),
            self.samples,
            self.ctx.job.seed,
            item.seed.index,
            0,
        );
        let resp = match self.backend.generate(&req).await {
            Ok(r) => r,
            Err(e) => return vec![llm::fail(&self.ctx, &item, &self.name, e)],
        };
        let job = &self.ctx.job;
        resp.choices
            .iter()
            .enumerate()
            .map(|(i, choice)| {
                let mut it =
                    llm::sample_item(&item, job, &self.name, &instruction, &messages, &resp, i);
                let r = &mut it.record;
                llm::set_lineage(r, &self.backend, &self.spec, &resp, self.template.as_ref());
                it.context
                    .insert("completion".into(), Value::String(choice.text.clone()));
                Outcome::Keep(it)
            })
            .collect()
    }
}
