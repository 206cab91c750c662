//! Pipeline stages: the generation methods of the field.
//!
//! A stage turns one [`Item`] into zero or more outcomes: kept items (possibly several samples),
//! items removed with a reason (filters, judges), or failures with a reason. The worker chains
//! stages with bounded concurrency so that every backend stays busy; the coordinator runs
//! whole-job steps (dedup) after generation.

pub mod dedup;
pub mod generate;
// Issue 5 part A: method and quality stages.
pub mod decontaminate;
pub mod distill;
pub mod evolve;
pub mod evolve_ops;
pub mod filter;
pub mod judge;
pub mod judge_parse;
pub mod llm;
pub mod pii;
pub mod pii_detect;
pub mod revise;
pub mod spec_checks;
pub mod taxonomy_qa;
pub mod textutil;
pub mod variations;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::backend::Backend;
use crate::input::SeedRow;
use crate::record::{FailureRecord, Record};
use crate::spec::{JobSpec, StageSpec};

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

/// What every stage of a task shares.
#[derive(Clone)]
pub struct StageContext {
    pub job_id: String,
    pub job: Arc<JobSpec>,
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

/// Builds the stage for one spec entry. `index` is its position in the pipeline.
pub fn build_stage(
    spec: &StageSpec,
    index: usize,
    ctx: &StageContext,
) -> Result<Arc<dyn Stage>, StageError> {
    match spec.stage.as_str() {
        "generate" => Ok(Arc::new(generate::Generate::new(spec, index, ctx)?)),
        "distill" => Ok(Arc::new(distill::Distill::new(spec, index, ctx)?)),
        "evolve" => Ok(Arc::new(evolve::Evolve::new(spec, index, ctx)?)),
        "revise" => Ok(Arc::new(revise::Revise::new(spec, index, ctx)?)),
        "judge" => Ok(Arc::new(judge::Judge::new(spec, index, ctx)?)),
        "filter" => Ok(Arc::new(filter::Filter::new(spec, index)?)),
        "pii" => Ok(Arc::new(pii::Pii::new(spec, index)?)),
        "decontaminate" => Ok(Arc::new(decontaminate::Decontaminate::new(spec, index)?)),
        "taxonomy_qa" => Ok(Arc::new(taxonomy_qa::TaxonomyQa::new(spec, index, ctx)?)),
        "dedup" => Ok(Arc::new(dedup::Dedup::new(spec, index, ctx)?)),
        other => Err(StageError::Config(format!(
            "pipeline[{index}]: unknown stage `{other}`"
        ))),
    }
}

/// The starting item for a seed row.
pub fn seed_item(ctx: &StageContext, seed: SeedRow) -> Item {
    let record = Record {
        seed_id: seed.id.clone(),
        seed_index: seed.index,
        job_id: ctx.job_id.clone(),
        task_id: ctx.task_id,
        seed: ctx.job.seed,
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
