//! `revise`: generate → critique → revise for `rounds` rounds (Phi-4-style self-revision, or
//! multi-agent when the roles use different backends).
//!
//! With a `template`, the stage drafts `samples` answers itself with `backend`; without one it
//! revises the `completion` an earlier stage produced (keeping that record's id). Each round the
//! critic (`critic_backend`, default `backend`) reviews the current answer and the reviser
//! (`reviser_backend`, default `backend`) rewrites it. `critique_template` / `revise_template`
//! override the built-in prompts; they see the row's context plus `prompt`, `completion` and
//! (revise only) `critique`.
//!
//! Columns: `draft` (the first answer), `critiques` (JSON list, one per round),
//! `revision_rounds`, `critic_model`, `reviser_model`. `completion` is the final answer.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::config::{check_rounds, check_template, CheckScope, ConfigError, StageColumns, StageConfig};
use super::model_call::{model_call_config, ModelCall};
use super::{llm, Item, Outcome, Stage, StageContext, StageError};
use crate::backend::{Backend, GenResponse};
use crate::record::ChatMessage;
use crate::template::PromptTemplate;

const CRITIQUE: &str = "You are a demanding reviewer. Review the response to the task below. \
List the concrete problems (factual errors, missing steps, unclear passages, unmet \
requirements) and say how to fix each. Do not rewrite the response.\n\n\
## Task\n{{ prompt }}\n\n## Response\n{{ completion }}\n\n## Critique\n";

const REVISE: &str = "Revise the response to the task so that it addresses every point of \
the critique. Reply with the improved response only.\n\n\
## Task\n{{ prompt }}\n\n## Response\n{{ completion }}\n\n## Critique\n{{ critique }}\n\n\
## Improved response\n";

model_call_config! {
    /// `revise` settings, as written in the job file.
    pub struct ReviseConfig {
        /// Drafts the answers; without it the completion of an earlier stage is revised.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template: Option<String>,
        /// Backend of the critic (default `backend`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub critic_backend: Option<String>,
        /// Backend of the reviser (default `backend`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reviser_backend: Option<String>,
        /// Sees the row's context plus `prompt` and `completion`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub critique_template: Option<String>,
        /// Sees the row's context plus `prompt`, `completion` and `critique`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revise_template: Option<String>,
        /// Critique/revise rounds (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rounds: Option<u32>,
    }
}

impl StageConfig for ReviseConfig {
    fn check(&self, scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        scope.backend("backend", &self.backend)?;
        for (field, name) in [
            ("critic_backend", &self.critic_backend),
            ("reviser_backend", &self.reviser_backend),
        ] {
            if let Some(name) = name {
                scope.backend(field, name)?;
            }
        }
        check_template("template", self.template.as_deref())?;
        check_template("critique_template", self.critique_template.as_deref())?;
        check_template("revise_template", self.revise_template.as_deref())?;
        if self.rounds == Some(0) {
            return Err(ConfigError::new("rounds", "must be at least 1"));
        }
        check_rounds(self.rounds)
    }

    fn columns(&self) -> StageColumns {
        StageColumns::default()
            .reading_template("template", self.template.as_deref(), &[])
            .reading_template(
                "critique_template",
                self.critique_template.as_deref(),
                &["prompt", "completion"],
            )
            .reading_template(
                "revise_template",
                self.revise_template.as_deref(),
                &["prompt", "completion", "critique"],
            )
            .adding([
                "prompt",
                "completion",
                "draft",
                "critiques",
                "revision_rounds",
                "critic_model",
                "reviser_model",
            ])
    }

    fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    fn build(&self, index: usize, ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Revise::new(self, index, ctx)?))
    }
}

pub struct Revise {
    name: String,
    template: Option<PromptTemplate>,
    critique: PromptTemplate,
    revise: PromptTemplate,
    rounds: u32,
    backend: Arc<Backend>,
    critic: Arc<Backend>,
    reviser: Arc<Backend>,
    call: ModelCall,
    ctx: StageContext,
}

/// The template in `source`, or the built-in `default`.
fn template_or(key: &str, source: Option<&str>, default: &str) -> Result<PromptTemplate, String> {
    PromptTemplate::new(source.unwrap_or(default)).map_err(|e| format!("`{key}`: {e}"))
}

impl Revise {
    pub fn new(config: &ReviseConfig, index: usize, ctx: &StageContext) -> Result<Self, StageError> {
        let at = |m: String| StageError::Config(format!("pipeline[{index}] (revise): {m}"));
        let backend = ctx.backend(&config.backend)?;
        let critique_source = config.critique_template.as_deref();
        let revise_source = config.revise_template.as_deref();
        Ok(Revise {
            name: "revise".to_string(),
            template: llm::optional_template(config.template.as_deref()).map_err(at)?,
            critique: template_or("critique_template", critique_source, CRITIQUE).map_err(at)?,
            revise: template_or("revise_template", revise_source, REVISE).map_err(at)?,
            rounds: config.rounds.unwrap_or(1),
            critic: llm::backend_or(config.critic_backend.as_deref(), ctx, &backend)?,
            reviser: llm::backend_or(config.reviser_backend.as_deref(), ctx, &backend)?,
            backend,
            call: config.model_call(),
            ctx: ctx.clone(),
        })
    }

    /// One call with one user message; returns the text and adds usage to `item`'s record.
    async fn ask(
        &self,
        backend: &Backend,
        item: &mut Item,
        user: String,
        salt: u64,
    ) -> Result<String, String> {
        let msgs = vec![ChatMessage::new("user", user)];
        let req = llm::request(
            &self.call,
            msgs,
            1,
            self.ctx.job_seed,
            item.seed.index,
            salt,
        );
        let resp: GenResponse = backend.generate(&req).await.map_err(|e| e.to_string())?;
        llm::add_usage(&mut item.record, &resp);
        Ok(resp
            .choices
            .into_iter()
            .next()
            .map(|c| c.text)
            .unwrap_or_default())
    }

    /// Critique/revise rounds over the item's current `completion`.
    async fn rounds(&self, mut item: Item, prompt: String) -> Outcome {
        let mut critiques = Vec::new();
        let draft = item.record.completion.clone();
        let sample = item.record.sample_index as u64;
        for round in 1..=self.rounds {
            let mut vars = item.context.clone();
            vars.insert("prompt".into(), Value::String(prompt.clone()));
            vars.insert(
                "completion".into(),
                Value::String(item.record.completion.clone()),
            );
            let salt = 1000 * (sample + 1) + 2 * round as u64;
            let text = match self.critique.render(&Value::Object(vars.clone())) {
                Ok(t) => t,
                Err(e) => {
                    return llm::fail(
                        &self.ctx,
                        &item,
                        &self.name,
                        format!("critique_template: {e}"),
                    )
                }
            };
            let critique = match self.ask(&self.critic, &mut item, text, salt).await {
                Ok(c) => c,
                Err(e) => {
                    return llm::fail(
                        &self.ctx,
                        &item,
                        &self.name,
                        format!("round {round} critique: {e}"),
                    )
                }
            };
            vars.insert("critique".into(), Value::String(critique.clone()));
            critiques.push(Value::String(critique));
            let text = match self.revise.render(&Value::Object(vars)) {
                Ok(t) => t,
                Err(e) => {
                    return llm::fail(
                        &self.ctx,
                        &item,
                        &self.name,
                        format!("revise_template: {e}"),
                    )
                }
            };
            match self.ask(&self.reviser, &mut item, text, salt + 1).await {
                Ok(revised) => item.record.completion = revised,
                Err(e) => {
                    return llm::fail(
                        &self.ctx,
                        &item,
                        &self.name,
                        format!("round {round} revise: {e}"),
                    )
                }
            }
        }
        let r = &mut item.record;
        if let Some(msgs) = r.messages.as_mut() {
            match msgs.last_mut() {
                Some(last) if last.role == "assistant" => last.content = r.completion.clone(),
                _ => msgs.push(ChatMessage::new("assistant", r.completion.clone())),
            }
        }
        r.extra.insert("draft".into(), draft);
        r.extra
            .insert("critiques".into(), Value::Array(critiques).to_string());
        r.extra
            .insert("revision_rounds".into(), self.rounds.to_string());
        r.extra
            .insert("critic_model".into(), self.critic.model().to_string());
        r.extra
            .insert("reviser_model".into(), self.reviser.model().to_string());
        item.context
            .insert("completion".into(), Value::String(r.completion.clone()));
        Outcome::Keep(item)
    }

    /// Drafts `samples` answers from the template, with a failure row for each draft the
    /// backend did not return.
    async fn drafts(
        &self,
        mut item: Item,
        t: &PromptTemplate,
    ) -> Result<(Vec<(Item, String)>, Vec<Outcome>), Outcome> {
        let prompt = t
            .render(&Value::Object(item.context.clone()))
            .map_err(|e| llm::fail(&self.ctx, &item, &self.name, e))?;
        let messages = llm::user_messages(self.call.system_prompt.as_deref(), &prompt);
        let req = llm::request(
            &self.call,
            messages.clone(),
            self.call.samples(),
            self.ctx.job_seed,
            item.seed.index,
            0,
        );
        let resp = self
            .backend
            .generate(&req)
            .await
            .map_err(|e| llm::fail(&self.ctx, &item, &self.name, format!("draft: {e}")))?;
        item.context
            .insert("prompt".into(), Value::String(prompt.clone()));
        let missing = llm::missing_samples(
            &self.ctx,
            &item,
            &self.name,
            &self.backend,
            &resp,
            self.call.samples(),
            "draft: ",
        );
        let drafts = resp
            .choices
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let mut it =
                    llm::sample_item(&item, &self.ctx, &self.name, &prompt, &messages, &resp, i);
                let r = &mut it.record;
                llm::set_lineage(r, &self.backend, &self.call, &resp, Some(t));
                (it, prompt.clone())
            })
            .collect();
        Ok((drafts, missing))
    }
}

#[async_trait]
impl Stage for Revise {
    fn name(&self) -> &str {
        &self.name
    }

    fn extra_columns(&self) -> Vec<String> {
        [
            "draft",
            "critiques",
            "revision_rounds",
            "critic_model",
            "reviser_model",
        ]
        .map(String::from)
        .to_vec()
    }

    fn concurrency(&self) -> usize {
        self.backend.concurrency_limit()
    }

    async fn process(&self, item: Item) -> Vec<Outcome> {
        let (work, missing) = match &self.template {
            Some(t) => match self.drafts(item, t).await {
                Ok(w) => w,
                Err(failed) => return vec![failed],
            },
            None => {
                if !item.context.contains_key("completion") {
                    let msg = "no `template` and no `completion` from an earlier stage to revise";
                    return vec![llm::fail(&self.ctx, &item, &self.name, msg)];
                }
                let prompt = item
                    .record
                    .prompt
                    .clone()
                    .or_else(|| {
                        item.context
                            .get("instruction")
                            .and_then(|v| v.as_str().map(String::from))
                    })
                    .unwrap_or_default();
                (vec![(item, prompt)], Vec::new())
            }
        };
        let mut out =
            futures::future::join_all(work.into_iter().map(|(it, p)| self.rounds(it, p))).await;
        out.extend(missing);
        out
    }
}
