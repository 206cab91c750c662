//! Pipeline stages: the generation methods of the field.
//!
//! A stage turns one [`Item`] into zero or more outcomes: kept items (possibly several samples),
//! items removed with a reason (filters, judges), or failures with a reason. The worker chains
//! stages with bounded concurrency so that every backend stays busy; the coordinator runs
//! whole-job steps (dedup) after generation.
//!
//! Each stage's file holds its configuration (what the job file says, checked on its own), the
//! columns it reads and adds, and the runnable stage; the list below registers it.

pub mod columns;
pub mod config;
pub mod evolve_ops;
pub mod judge_parse;
pub mod llm;
pub mod model_call;
pub mod pii_checks;
pub mod pii_context;
pub mod pii_detect;
pub mod pii_eval;
pub mod pii_names;
mod pii_rules;
mod registry;
pub mod tagged;
pub mod textutil;
pub mod variations;

// The stages: `stage:` name => module::Configuration as StageSpec variant.
registry::stage_registry! {
    "generate" => generate::GenerateConfig as Generate,
    "taxonomy_qa" => taxonomy_qa::TaxonomyQaConfig as TaxonomyQa,
    "dedup" => dedup::DedupConfig as Dedup,
    "distill" => distill::DistillConfig as Distill,
    "evolve" => evolve::EvolveConfig as Evolve,
    "revise" => revise::ReviseConfig as Revise,
    "judge" => judge::JudgeConfig as Judge,
    "filter" => filter::FilterConfig as Filter,
    "pii" => pii::PiiConfig as Pii,
    "decontaminate" => decontaminate::DecontaminateConfig as Decontaminate,
}

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::backend::Backend;
use crate::input::SeedRow;
use crate::record::{FailureRecord, Record};

/// A row travelling through the pipeline: its seed, the record being built, and the template
/// context (seed columns plus what earlier stages added).
#[derive(Debug, Clone)]
pub struct Item {
    pub seed: Arc<SeedRow>,
    pub record: Record,
    pub context: Map<String, Value>,
    /// Event counts the worker sums into task stats by prefix: `pii:<type>` → PII redactions
    /// per type; anything else is ignored by the worker but kept for stages downstream.
    pub counters: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug)]
pub enum Outcome {
    Keep(Item),
    /// Removed on purpose (filter, judge, dedup): counted by reason, not a failure.
    Removed {
        item: Item,
        reason: String,
    },
    Failed(FailureRecord),
}

/// What every stage of a task shares: the job's identity and seed, and its backends (never the
/// job spec itself, which is built from the stages' configurations).
#[derive(Clone)]
pub struct StageContext {
    pub job_id: String,
    /// The job's `name` (part of every record id).
    pub job_name: String,
    /// The job's `seed` (variations, request seeds, record ids).
    pub job_seed: u64,
    pub task_id: u64,
    pub backends: HashMap<String, Arc<Backend>>,
}

impl StageContext {
    /// A failure record for an item at a stage, keeping the seed row so nothing is lost.
    pub fn failure(&self, item: &Item, stage: &str, error: String) -> FailureRecord {
        FailureRecord {
            seed_id: item.seed.id.clone(),
            row_index: item.seed.index,
            source: item.seed.source.clone(),
            stage: stage.to_string(),
            error,
            input: Value::Object(item.seed.columns.clone()).to_string(),
            job_id: self.job_id.clone(),
            task_id: self.task_id,
        }
    }

    pub fn backend(&self, name: &str) -> Result<Arc<Backend>, StageError> {
        self.backends
            .get(name)
            .cloned()
            .ok_or_else(|| StageError::Config(format!("no backend named `{name}`")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("stage config: {0}")]
    Config(String),
}

#[async_trait]
pub trait Stage: Send + Sync {
    fn name(&self) -> &str;
    /// Extra output columns this stage fills (declared so every file has one schema).
    fn extra_columns(&self) -> Vec<String> {
        Vec::new()
    }
    /// In-flight items this stage wants (a backend stage: its backend's limit).
    fn concurrency(&self) -> usize {
        256
    }
    async fn process(&self, item: Item) -> Vec<Outcome>;
}

/// Builds the stage for one pipeline entry. `index` is its position in the pipeline.
pub fn build_stage(
    spec: &StageSpec,
    index: usize,
    ctx: &StageContext,
) -> Result<Arc<dyn Stage>, StageError> {
    spec.config().build(index, ctx)
}

/// The starting item for a seed row.
pub fn seed_item(ctx: &StageContext, seed: SeedRow) -> Item {
    let record = Record {
        seed_id: seed.id.clone(),
        seed_index: seed.index,
        job_id: ctx.job_id.clone(),
        task_id: ctx.task_id,
        seed: ctx.job_seed,
        ..Default::default()
    };
    let context = seed.columns.clone();
    Item {
        seed: Arc::new(seed),
        record,
        context,
        counters: Default::default(),
    }
}
