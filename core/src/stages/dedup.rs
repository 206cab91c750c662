//! `dedup` (generation half): fingerprints every record so the job's dedup phase can
//! deduplicate the whole job after generation (docs/dedup.md).
//!
//! Comparing records needs the whole job, which no generation task sees; hashing them needs
//! only the record. This stage therefore keeps every item and fills three columns:
//! [`HASH_COLUMN`] (exact hash of the normalized text), [`BANDS_COLUMN`] (MinHash LSH band
//! hashes) and [`SIGNATURE_COLUMN`] (the MinHash signature cut to 16 bits a slot, which bucket
//! tasks use to confirm a band collision with the estimated Jaccard). The dedup phase's tasks
//! read just those columns (`crate::dedup_phase`) and remove duplicates (`dedup_exact`,
//! `dedup_near`).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::config::{CheckScope, ConfigError, StageColumns, StageConfig};
use super::{Item, Outcome, Stage, StageContext, StageError};
use crate::minhash::{encode_bands, encode_sketch, exact_hash, sketch, MinHashConfig, MinHasher};

/// Exact-duplicate key column (32 hex digits).
pub const HASH_COLUMN: &str = "dedup_hash";
/// MinHash band hashes column (`bands` × 16 hex digits, comma-separated).
pub const BANDS_COLUMN: &str = "dedup_bands";
/// MinHash signature sketch column (`bands × rows` slots × 4 hex digits; empty without `near`).
pub const SIGNATURE_COLUMN: &str = "dedup_signature";

/// Default estimated Jaccard a band collision must reach to count as a near duplicate.
pub const DEFAULT_THRESHOLD: f64 = 0.7;
/// Default records per hash range of a dedup bucket task: bounds a task's memory (a few
/// hundred bytes a record) whatever the job's size.
pub const DEFAULT_PARTITION_ROWS: u64 = 500_000;

/// `dedup` settings, as written in the job file (`columns`, `shingle`, `bands`, `rows`, `near`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// The compared text: one column name or a list (default `[completion]`).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Option::is_none"
    )]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shingle: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
    /// Whether near-duplicate removal runs (default true; exact removal always does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near: Option<bool>,
    /// Estimated Jaccard (0 to 1) a band collision must reach to be a near duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Records per hash range of one dedup task (the phase plans `ceil(records / this)`
    /// ranges per band): a dedup task's memory is proportional to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_rows: Option<u64>,
}

/// `columns: text` or `columns: [question, answer]`.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "a column name or a list of column names")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(c) => vec![c],
        OneOrMany::Many(cs) => cs,
    }))
}

/// What a `dedup` entry asks for: which text to compare and the LSH shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupParams {
    /// Record fields joined (by a newline) into the compared text: `completion`, `prompt`, or
    /// any extra column / context key (e.g. `question`, `answer`).
    pub columns: Vec<String>,
    pub minhash: MinHashConfig,
    /// Whether near-duplicate removal runs (exact removal always does).
    pub near: bool,
    /// Estimated Jaccard a band collision must reach to be a near duplicate.
    pub threshold: f64,
    /// Records per hash range of one dedup task.
    pub partition_rows: u64,
}

impl DedupConfig {
    /// The checked parameters with defaults filled in. Shared by spec validation, the stage and
    /// the coordinator's finalizer so they cannot disagree.
    pub fn params(&self) -> Result<DedupParams, ConfigError> {
        let mut cfg = MinHashConfig::default();
        let num = |key: &str, value: Option<usize>, default: usize| match value {
            None => Ok(default),
            Some(n) if (1..=64).contains(&n) => Ok(n),
            Some(n) => Err(ConfigError::new(
                key,
                format!("`{key}` must be an integer from 1 to 64, got {n}"),
            )),
        };
        cfg.shingle = num("shingle", self.shingle, cfg.shingle)?;
        cfg.bands = num("bands", self.bands, cfg.bands)?;
        cfg.rows = num("rows", self.rows, cfg.rows)?;
        let columns = match &self.columns {
            None => vec!["completion".to_string()],
            Some(c) if c.is_empty() => {
                return Err(ConfigError::new(
                    "columns",
                    "`columns` must be a column name or a non-empty list",
                ))
            }
            Some(c) => c.clone(),
        };
        let threshold = match self.threshold {
            None => DEFAULT_THRESHOLD,
            Some(t) if (0.0..=1.0).contains(&t) => t,
            Some(t) => {
                return Err(ConfigError::new(
                    "threshold",
                    format!("`threshold` must be between 0 and 1, got {t}"),
                ))
            }
        };
        let partition_rows = match self.partition_rows {
            None => DEFAULT_PARTITION_ROWS,
            Some(0) => {
                return Err(ConfigError::new(
                    "partition_rows",
                    "`partition_rows` must be at least 1",
                ))
            }
            Some(n) => n,
        };
        Ok(DedupParams {
            columns,
            minhash: cfg,
            near: self.near.unwrap_or(true),
            threshold,
            partition_rows,
        })
    }
}

impl StageConfig for DedupConfig {
    fn check(&self, _scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        self.params().map(|_| ())
    }

    fn columns(&self) -> StageColumns {
        let read = self.columns.clone().unwrap_or_else(|| vec!["completion".into()]);
        StageColumns::default()
            .reading("columns", read)
            .adding([HASH_COLUMN, BANDS_COLUMN, SIGNATURE_COLUMN])
    }

    fn last_only(&self) -> bool {
        true
    }

    fn build(&self, index: usize, _ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Dedup::new(self, index)?))
    }
}

/// The `dedup` entry of a job's pipeline, checked, if it has one: what the dedup phase's
/// planner, its bucket tasks and the finalizer all read, so they cannot disagree.
pub fn job_params(spec: &crate::spec::JobSpec) -> Result<Option<DedupParams>, ConfigError> {
    spec.pipeline
        .iter()
        .find_map(|s| match s {
            crate::spec::StageSpec::Dedup(d) => Some(d),
            _ => None,
        })
        .map(|d| d.params())
        .transpose()
}

/// The compared text of a record: its `columns` joined by newlines (missing ones are empty).
pub fn item_text(item: &Item, columns: &[String]) -> String {
    let r = &item.record;
    let parts: Vec<String> = columns
        .iter()
        .map(|c| match c.as_str() {
            "completion" => r.completion.clone(),
            "prompt" => r.prompt.clone().unwrap_or_default(),
            other => r
                .extra
                .get(other)
                .cloned()
                .or_else(|| match item.context.get(other) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Null) | None => None,
                    Some(v) => Some(v.to_string()),
                })
                .unwrap_or_default(),
        })
        .collect();
    parts.join("\n")
}

pub struct Dedup {
    name: String,
    params: DedupParams,
    hasher: MinHasher,
}

impl Dedup {
    pub fn new(config: &DedupConfig, index: usize) -> Result<Self, StageError> {
        let params = config
            .params()
            .map_err(|e| StageError::Config(format!("pipeline[{index}]: {e}")))?;
        Ok(Dedup {
            name: "dedup".to_string(),
            hasher: MinHasher::new(params.minhash),
            params,
        })
    }
}

#[async_trait]
impl Stage for Dedup {
    fn name(&self) -> &str {
        &self.name
    }

    fn extra_columns(&self) -> Vec<String> {
        vec![
            HASH_COLUMN.to_string(),
            BANDS_COLUMN.to_string(),
            SIGNATURE_COLUMN.to_string(),
        ]
    }

    async fn process(&self, mut item: Item) -> Vec<Outcome> {
        let text = item_text(&item, &self.params.columns);
        let (bands, signature) = if self.params.near {
            let sig = self.hasher.signature(&text);
            (
                encode_bands(&self.hasher.bands_of(&sig)),
                encode_sketch(&sketch(&sig)),
            )
        } else {
            (String::new(), String::new())
        };
        item.record
            .extra
            .insert(HASH_COLUMN.into(), exact_hash(&text));
        item.record.extra.insert(BANDS_COLUMN.into(), bands);
        item.record.extra.insert(SIGNATURE_COLUMN.into(), signature);
        vec![Outcome::Keep(item)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(yaml: &str) -> Result<DedupParams, String> {
        let c: DedupConfig = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        c.params().map_err(|e| e.to_string())
    }

    #[test]
    fn params_defaults_and_errors() {
        let p = params("{}").unwrap();
        assert_eq!(p.columns, vec!["completion"]);
        assert_eq!(
            (p.minhash.bands, p.minhash.rows, p.minhash.shingle),
            (14, 8, 5)
        );
        let p = params("columns: [question, answer]\nbands: 20\nrows: 5").unwrap();
        assert_eq!(p.columns, vec!["question", "answer"]);
        assert_eq!(p.minhash.bands, 20);
        assert_eq!(params("columns: text").unwrap().columns, vec!["text"]);
        let e = params("bands: 0").unwrap_err();
        assert!(e.contains("`bands`"), "{e}");
        let e = params("treshold: 0.8").unwrap_err();
        assert!(e.contains("treshold"), "{e}");
        let p = params("threshold: 0.85\npartition_rows: 1000").unwrap();
        assert_eq!((p.threshold, p.partition_rows), (0.85, 1000));
        assert_eq!(params("{}").unwrap().threshold, DEFAULT_THRESHOLD);
        let e = params("threshold: 1.5").unwrap_err();
        assert!(e.contains("`threshold`"), "{e}");
        let e = params("partition_rows: 0").unwrap_err();
        assert!(e.contains("`partition_rows`"), "{e}");
        let e = params("columns: []").unwrap_err();
        assert!(e.contains("columns"), "{e}");
    }
}
