//! `dedup` (worker half): fingerprints every record so the coordinator can deduplicate the
//! whole job after generation.
//!
//! Comparing records needs the whole job, which no worker sees; hashing them needs only the
//! record, and that CPU work belongs with the workers. This stage therefore keeps every item
//! and fills two columns: [`HASH_COLUMN`] (exact hash of the normalized text) and
//! [`BANDS_COLUMN`] (MinHash LSH band hashes). The coordinator's finalizer reads just those
//! columns from all data files and removes duplicates (`dedup_exact`, `dedup_near`).

use async_trait::async_trait;
use serde_json::Value;

use super::{Item, Outcome, Stage, StageContext, StageError};
use crate::minhash::{encode_bands, exact_hash, MinHashConfig, MinHasher};
use crate::spec::StageSpec;

/// Exact-duplicate key column (32 hex digits).
pub const HASH_COLUMN: &str = "dedup_hash";
/// MinHash band hashes column (`bands` × 16 hex digits, comma-separated).
pub const BANDS_COLUMN: &str = "dedup_bands";

/// What a `dedup` stage entry asks for: which text to compare and the LSH shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupParams {
    /// Record fields joined (by a newline) into the compared text: `completion`, `prompt`, or
    /// any extra column / context key (e.g. `question`, `answer`).
    pub columns: Vec<String>,
    pub minhash: MinHashConfig,
    /// Whether near-duplicate removal runs (exact removal always does).
    pub near: bool,
}

/// Reads and checks a `dedup` entry's params (`columns`, `shingle`, `bands`, `rows`, `near`).
/// Shared by spec validation, the stage and the coordinator so they cannot disagree.
pub fn params(spec: &StageSpec) -> Result<DedupParams, String> {
    let mut cfg = MinHashConfig::default();
    let num = |key: &str, default: usize, max: usize| -> Result<usize, String> {
        match spec.params.get(key) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
                _ => Err(format!(
                    "`{key}` must be an integer from 1 to {max}, got {v}"
                )),
            },
        }
    };
    cfg.shingle = num("shingle", cfg.shingle, 64)?;
    cfg.bands = num("bands", cfg.bands, 64)?;
    cfg.rows = num("rows", cfg.rows, 64)?;
    let columns = match spec.params.get("columns") {
        None => vec!["completion".to_string()],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`columns` entries must be strings, got {v}"))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(format!(
                "`columns` must be a column name or a non-empty list, got {v}"
            ))
        }
    };
    let near = match spec.params.get("near") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(format!("`near` must be true or false, got {v}")),
    };
    for key in spec.params.keys() {
        if !["columns", "shingle", "bands", "rows", "near"].contains(&key.as_str()) {
            return Err(format!(
                "unknown parameter `{key}` (known: columns, shingle, bands, rows, near)"
            ));
        }
    }
    Ok(DedupParams {
        columns,
        minhash: cfg,
        near,
    })
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
    pub fn new(spec: &StageSpec, index: usize, _ctx: &StageContext) -> Result<Self, StageError> {
        let params =
            params(spec).map_err(|m| StageError::Config(format!("pipeline[{index}]: {m}")))?;
        Ok(Dedup {
            name: spec.stage.clone(),
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
        vec![HASH_COLUMN.to_string(), BANDS_COLUMN.to_string()]
    }

    async fn process(&self, mut item: Item) -> Vec<Outcome> {
        let text = item_text(&item, &self.params.columns);
        let bands = if self.params.near {
            encode_bands(&self.hasher.band_hashes(&text))
        } else {
            String::new()
        };
        item.record
            .extra
            .insert(HASH_COLUMN.into(), exact_hash(&text));
        item.record.extra.insert(BANDS_COLUMN.into(), bands);
        vec![Outcome::Keep(item)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> StageSpec {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn params_defaults_and_errors() {
        let p = params(&spec("stage: dedup")).unwrap();
        assert_eq!(p.columns, vec!["completion"]);
        assert_eq!(
            (p.minhash.bands, p.minhash.rows, p.minhash.shingle),
            (14, 8, 5)
        );
        let p = params(&spec(
            "stage: dedup\ncolumns: [question, answer]\nbands: 20\nrows: 5",
        ))
        .unwrap();
        assert_eq!(p.columns, vec!["question", "answer"]);
        assert_eq!(p.minhash.bands, 20);
        let e = params(&spec("stage: dedup\nbands: 0")).unwrap_err();
        assert!(e.contains("`bands`"), "{e}");
        let e = params(&spec("stage: dedup\nthreshold: 0.8")).unwrap_err();
        assert!(e.contains("threshold"), "{e}");
    }
}
