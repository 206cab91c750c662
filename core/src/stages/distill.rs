//! `distill`: a teacher chat model answers an instruction taken from the seed row.
//!
//! The instruction is the rendered `template`, or the `instruction_column` value (default
//! `instruction`) as is. `samples` answers per instruction come from one request (`n`). The
//! output's `messages` column is the chat as sent plus the answer: `[system?, user, assistant]`,
//! ready for supervised fine-tuning. Adds `instruction` to the context for later stages.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::config::{check_template, CheckScope, ConfigError, StageColumns, StageConfig};
use super::llm;
use super::model_call::{model_call_config, ModelCall};
use super::{Item, Outcome, Stage, StageContext, StageError};
use crate::backend::Backend;
use crate::template::PromptTemplate;

model_call_config! {
    /// `distill` settings, as written in the job file.
    pub struct DistillConfig {
        /// Renders the instruction; without it the `instruction_column` value is sent as is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template: Option<String>,
        /// Column holding the instruction (default `instruction`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub instruction_column: Option<String>,
    }
}

impl DistillConfig {
    fn column(&self) -> &str {
        self.instruction_column.as_deref().unwrap_or("instruction")
    }
}

impl StageConfig for DistillConfig {
    fn check(&self, scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        scope.backend("backend", &self.backend)?;
        check_template("template", self.template.as_deref())
    }

    fn columns(&self) -> StageColumns {
        let reads = match &self.template {
            Some(_) => StageColumns::default().reading_template(
                "template",
                self.template.as_deref(),
                &[],
            ),
            None => StageColumns::default().reading("instruction_column", [self.column()]),
        };
        reads.adding(["instruction", "completion"])
    }

    fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    fn build(&self, index: usize, ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Distill::new(self, index, ctx)?))
    }
}

pub struct Distill {
    name: String,
    template: Option<PromptTemplate>,
    column: String,
    backend: Arc<Backend>,
    call: ModelCall,
    ctx: StageContext,
}

impl Distill {
    pub fn new(config: &DistillConfig, index: usize, ctx: &StageContext) -> Result<Self, StageError> {
        let at = |m: String| StageError::Config(format!("pipeline[{index}] (distill): {m}"));
        Ok(Distill {
            name: "distill".to_string(),
            template: llm::optional_template(config.template.as_deref()).map_err(at)?,
            column: config.column().to_string(),
            backend: ctx.backend(&config.backend)?,
            call: config.model_call(),
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
        let messages = llm::user_messages(self.call.system_prompt.as_deref(), &instruction);
        let req = llm::request(
            &self.call,
            messages.clone(),
            self.call.samples(),
            self.ctx.job_seed,
            item.seed.index,
            0,
        );
        let resp = match self.backend.generate(&req).await {
            Ok(r) => r,
            Err(e) => return vec![llm::fail(&self.ctx, &item, &self.name, e)],
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
        resp.choices
            .iter()
            .enumerate()
            .map(|(i, choice)| {
                let mut it = llm::sample_item(
                    &item,
                    &self.ctx,
                    &self.name,
                    &instruction,
                    &messages,
                    &resp,
                    i,
                );
                let r = &mut it.record;
                llm::set_lineage(r, &self.backend, &self.call, &resp, self.template.as_ref());
                it.context
                    .insert("completion".into(), Value::String(choice.text.clone()));
                Outcome::Keep(it)
            })
            .chain(missing)
            .collect()
    }
}
