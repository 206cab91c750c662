//! `evolve`: Evol-Instruct (WizardLM). Each row's instruction is evolved for `rounds` rounds,
//! one operator per round (see [`super::evolve_ops`]), then answered.
//!
//! Parameters: `rounds` (default 3), `operators` (subset of the six, default all),
//! `min_words` (default 3, elimination), `on_eliminated` (`keep_last`, default, or `remove`),
//! `answer` (default true), `answer_backend` (default `backend`), `instruction_column` (default
//! `instruction`) or `template` for the starting instruction. `system_prompt`, `samples` apply
//! to the answer.
//!
//! Elimination: an evolution that fails the checks ends the row's evolution. With `keep_last`
//! the last good instruction is answered (the failed attempt is still listed in `evolution`);
//! a row whose very first round fails has no evolved instruction and is removed with reason
//! `evolve:eliminated`, as is every row with a failed round under `remove`. An answer that is a
//! refusal is removed with the same reason (WizardLM's "hard to respond to" rule).
//!
//! Columns: `evolution` — JSON list of `{round, operator, instruction[, eliminated]}`, round 0
//! being the seed instruction; `evolve_rounds` — successful rounds; `evolved_instruction`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::{check_rounds, check_template, CheckScope, ConfigError, StageColumns, StageConfig};
use super::evolve_ops::{self, OPERATORS};
use super::model_call::{model_call_config, ModelCall};
use super::textutil::{find_phrase, REFUSAL_PHRASES};
use super::{llm, Item, Outcome, Stage, StageContext, StageError};
use crate::backend::Backend;
use crate::record::{record_id, ChatMessage};
use crate::template::PromptTemplate;

pub const REMOVED_REASON: &str = "evolve:eliminated";

/// What happens to a row whose evolution fails a round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnEliminated {
    /// Answer the last good instruction (a row whose first round fails is removed).
    #[default]
    KeepLast,
    /// Remove the row.
    Remove,
}

model_call_config! {
    /// `evolve` settings, as written in the job file. `system_prompt` and `samples` apply to
    /// the answer.
    pub struct EvolveConfig {
        /// Renders the starting instruction; without it the `instruction_column` value is used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub instruction_column: Option<String>,
        /// Evolution rounds (default 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rounds: Option<u32>,
        /// Operators drawn from (default all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub operators: Option<Vec<String>>,
        /// Shortest acceptable evolved instruction, in words (default 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub min_words: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub on_eliminated: Option<OnEliminated>,
        /// Whether the evolved instruction is answered (default true).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub answer: Option<bool>,
        /// Backend answering the evolved instruction (default `backend`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub answer_backend: Option<String>,
    }
}

impl EvolveConfig {
    fn column(&self) -> &str {
        self.instruction_column.as_deref().unwrap_or("instruction")
    }

    fn operators(&self) -> Result<Vec<String>, ConfigError> {
        let operators = self
            .operators
            .clone()
            .unwrap_or_else(|| OPERATORS.iter().map(|s| s.to_string()).collect());
        if let Some(bad) = operators.iter().find(|o| !OPERATORS.contains(&o.as_str())) {
            return Err(ConfigError::new(
                "operators",
                format!(
                    "unknown operator `{bad}` (known: {})",
                    OPERATORS.join(", ")
                ),
            ));
        }
        if operators.is_empty() {
            return Err(ConfigError::new("operators", "must not be empty"));
        }
        Ok(operators)
    }
}

impl StageConfig for EvolveConfig {
    fn check(&self, scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        scope.backend("backend", &self.backend)?;
        if let Some(b) = &self.answer_backend {
            scope.backend("answer_backend", b)?;
        }
        check_template("template", self.template.as_deref())?;
        check_rounds(self.rounds)?;
        self.operators().map(|_| ())
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
        reads.adding([
            "evolution",
            "evolve_rounds",
            "evolved_instruction",
            "instruction",
            "completion",
        ])
    }

    fn template(&self) -> Option<&str> {
        self.template.as_deref()
    }

    fn build(&self, index: usize, ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Evolve::new(self, index, ctx)?))
    }
}

pub struct Evolve {
    name: String,
    template: Option<PromptTemplate>,
    column: String,
    rounds: u32,
    operators: Vec<String>,
    min_words: usize,
    remove_on_elimination: bool,
    answer: bool,
    backend: Arc<Backend>,
    answer_backend: Arc<Backend>,
    call: ModelCall,
    ctx: StageContext,
}

impl Evolve {
    pub fn new(config: &EvolveConfig, index: usize, ctx: &StageContext) -> Result<Self, StageError> {
        let at = |m: String| StageError::Config(format!("pipeline[{index}] (evolve): {m}"));
        let backend = ctx.backend(&config.backend)?;
        Ok(Evolve {
            name: "evolve".to_string(),
            template: llm::optional_template(config.template.as_deref()).map_err(at)?,
            column: config.column().to_string(),
            rounds: config.rounds.unwrap_or(3),
            operators: config.operators().map_err(|e| at(e.to_string()))?,
            min_words: config.min_words.unwrap_or(3),
            remove_on_elimination: config.on_eliminated.unwrap_or_default()
                == OnEliminated::Remove,
            answer: config.answer.unwrap_or(true),
            answer_backend: llm::backend_or(config.answer_backend.as_deref(), ctx, &backend)?,
            backend,
            call: config.model_call(),
            ctx: ctx.clone(),
        })
    }

    /// Runs the rounds; `Ok(None)` = eliminated. Accumulates the calls' tokens.
    async fn evolve(
        &self,
        item: &Item,
        start: String,
        evolution: &mut Vec<Value>,
        tokens: &mut (u64, u64),
    ) -> Result<Option<(String, u32)>, String> {
        let mut current = start;
        let mut good = 0u32;
        for round in 1..=self.rounds {
            let op = evolve_ops::choose(&self.operators, self.ctx.job_seed, item.seed.index, round);
            let msgs = vec![ChatMessage::new("user", evolve_ops::prompt(op, &current))];
            let req = llm::request(
                &self.call,
                msgs,
                1,
                self.ctx.job_seed,
                item.seed.index,
                round as u64,
            );
            let resp = self
                .backend
                .generate(&req)
                .await
                .map_err(|e| format!("round {round} ({op}): {e}"))?;
            tokens.0 += resp.prompt_tokens;
            tokens.1 += resp.completion_tokens;
            let evolved = evolve_ops::clean(resp.choices.first().map_or("", |c| c.text.as_str()));
            match evolve_ops::eliminated(&current, &evolved, self.min_words) {
                None => {
                    evolution.push(json!({"round": round, "operator": op, "instruction": evolved}));
                    current = evolved;
                    good += 1;
                }
                Some(why) => {
                    tracing::debug!(row = item.seed.index, round, op, %why, "evolution eliminated");
                    evolution.push(json!({"round": round, "operator": op,
                        "instruction": evolved, "eliminated": why}));
                    if self.remove_on_elimination || good == 0 {
                        return Ok(None);
                    }
                    break;
                }
            }
        }
        Ok(Some((current, good)))
    }
}

#[async_trait]
impl Stage for Evolve {
    fn name(&self) -> &str {
        &self.name
    }

    fn extra_columns(&self) -> Vec<String> {
        vec![
            "evolution".into(),
            "evolve_rounds".into(),
            "evolved_instruction".into(),
        ]
    }

    fn concurrency(&self) -> usize {
        self.backend.concurrency_limit()
    }

    async fn process(&self, mut item: Item) -> Vec<Outcome> {
        let start = match llm::instruction(&item, self.template.as_ref(), &self.column) {
            Ok(i) => i,
            Err(e) => return vec![llm::fail(&self.ctx, &item, &self.name, e)],
        };
        let mut evolution = vec![json!({"round": 0, "operator": "seed", "instruction": start})];
        let mut tokens = (0u64, 0u64);
        let outcome = self.evolve(&item, start, &mut evolution, &mut tokens).await;
        let (job_name, job_seed) = (&self.ctx.job_name, self.ctx.job_seed);
        {
            let r = &mut item.record;
            r.id = record_id(job_name, job_seed, item.seed.index, &self.name, 0);
            r.stage = self.name.clone();
            r.prompt_tokens += tokens.0;
            r.completion_tokens += tokens.1;
            r.extra
                .insert("evolution".into(), Value::Array(evolution).to_string());
            r.model = self.backend.model().to_string();
        }
        let (last, good) = match outcome {
            Err(e) => return vec![llm::fail(&self.ctx, &item, &self.name, e)],
            Ok(None) => {
                return vec![Outcome::Removed {
                    item,
                    reason: REMOVED_REASON.into(),
                }]
            }
            Ok(Some(x)) => x,
        };
        item.record
            .extra
            .insert("evolve_rounds".into(), good.to_string());
        item.record
            .extra
            .insert("evolved_instruction".into(), last.clone());
        item.context
            .insert("instruction".into(), Value::String(last.clone()));
        if !self.answer {
            item.record.completion = last.clone();
            item.record.finish_reason = "stop".into();
            item.context
                .insert("completion".into(), Value::String(last));
            return vec![Outcome::Keep(item)];
        }
        let messages = llm::user_messages(self.call.system_prompt.as_deref(), &last);
        let req = llm::request(
            &self.call,
            messages.clone(),
            self.call.samples(),
            job_seed,
            item.seed.index,
            0,
        );
        let resp = match self.answer_backend.generate(&req).await {
            Ok(r) => r,
            Err(e) => {
                return vec![llm::fail(
                    &self.ctx,
                    &item,
                    &self.name,
                    format!("answer: {e}"),
                )]
            }
        };
        let missing = llm::missing_samples(
            &self.ctx,
            &item,
            &self.name,
            &self.answer_backend,
            &resp,
            self.call.samples(),
            "answer: ",
        );
        let n = resp.choices.len();
        resp.choices
            .iter()
            .enumerate()
            .map(|(i, choice)| {
                let mut it = item.clone();
                if i > 0 {
                    it.counters.clear();
                    it.record.prompt_tokens = 0;
                    it.record.completion_tokens = 0;
                }
                let r = &mut it.record;
                r.id = record_id(job_name, job_seed, item.seed.index, &self.name, i as u32);
                r.sample_index = i as u32;
                r.prompt = Some(last.clone());
                let mut msgs = messages.clone();
                msgs.push(ChatMessage::new("assistant", choice.text.clone()));
                r.messages = Some(msgs);
                r.completion = choice.text.clone();
                r.finish_reason = choice.finish_reason.clone();
                let (p, c) = llm::usage_share(&resp, i, n);
                r.prompt_tokens += p;
                r.completion_tokens += c;
                r.latency_ms = resp.latency_ms;
                llm::set_lineage(
                    r,
                    &self.answer_backend,
                    &self.call,
                    &resp,
                    self.template.as_ref(),
                );
                it.context
                    .insert("completion".into(), Value::String(choice.text.clone()));
                if find_phrase(&choice.text, REFUSAL_PHRASES).is_some() {
                    Outcome::Removed {
                        item: it,
                        reason: REMOVED_REASON.into(),
                    }
                } else {
                    Outcome::Keep(it)
                }
            })
            .chain(missing)
            .collect()
    }
}
