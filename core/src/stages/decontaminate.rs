//! `decontaminate`: removes samples that share a long word n-gram with a benchmark, so that an
//! evaluation does not test what the model was trained on (Cosmopedia used 10-grams, Phi and
//! the GPT-3 paper 13-grams).
//!
//! Parameters: `benchmark` (path of a JSONL file whose lines carry `benchmark_field`, default
//! `text` — or a plain text file, one passage per line), `ngram` (default 13), `fields`
//! (default `[completion]`; `prompt` and context names also work). Texts are normalised
//! (lowercase, punctuation → space) before n-gramming. Benchmark passages shorter than `ngram`
//! words cannot match and are counted in a log line. Matches are removed with reason
//! `decontaminate`.
//!
//! The benchmark's n-gram set is built once per process for each (file, size, field) and
//! shared by every task of the job through a cache, so a large benchmark is not re-read per task.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::config::{CheckScope, ConfigError, StageColumns, StageConfig};
use super::textutil::{ngram_hashes, normalized_words};
use super::{Item, Outcome, Stage, StageContext, StageError};

pub const REMOVED_REASON: &str = "decontaminate";

/// `decontaminate` settings, as written in the job file. The benchmark file is not opened by
/// the checks (the coordinator may not see the workers' files); building the stage reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecontaminateConfig {
    /// Path of the benchmark: JSONL (`benchmark_field` of each line) or text (one passage a line).
    pub benchmark: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark_field: Option<String>,
    /// n-gram size (default 13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngram: Option<usize>,
    /// Texts compared (default `[completion]`; `prompt` and context columns also work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl DecontaminateConfig {
    fn ngram(&self) -> usize {
        self.ngram.unwrap_or(13)
    }

    fn fields(&self) -> Vec<String> {
        self.fields
            .clone()
            .unwrap_or_else(|| vec!["completion".into()])
    }
}

impl StageConfig for DecontaminateConfig {
    fn check(&self, _scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        if self.ngram() == 0 {
            return Err(ConfigError::new("ngram", "must be at least 1"));
        }
        Ok(())
    }

    fn columns(&self) -> StageColumns {
        StageColumns::default().reading("fields", self.fields())
    }

    fn build(&self, index: usize, _ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Decontaminate::new(self, index)?))
    }
}

/// Hashed n-grams of a benchmark.
#[derive(Debug, Default)]
pub struct NgramIndex {
    pub n: usize,
    pub grams: HashSet<u64>,
    pub passages: usize,
    pub too_short: usize,
}

impl NgramIndex {
    /// Builds the index from passages.
    pub fn build<'a>(n: usize, passages: impl IntoIterator<Item = &'a str>) -> NgramIndex {
        let mut idx = NgramIndex {
            n,
            ..Default::default()
        };
        for p in passages {
            let words = normalized_words(p);
            idx.passages += 1;
            if words.len() < n {
                idx.too_short += 1;
            }
            idx.grams.extend(ngram_hashes(&words, n));
        }
        idx
    }

    /// Whether `text` shares an n-gram with the benchmark.
    /// Distinct benchmark n-grams indexed.
    pub fn len(&self) -> usize {
        self.grams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grams.is_empty()
    }

    pub fn contaminated(&self, text: &str) -> bool {
        let words = normalized_words(text);
        let hit = ngram_hashes(&words, self.n).any(|h| self.grams.contains(&h));
        hit
    }
}

/// Reads benchmark passages: JSONL (`.jsonl`/`.json`/`.ndjson`) lines' `field`, else text lines.
pub fn read_passages(path: &Path, field: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("benchmark `{}`: {e}", path.display()))?;
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "json" | "ndjson")
    );
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if !jsonl {
            out.push(line.to_string());
            continue;
        }
        let at = |m: String| format!("benchmark `{}` line {}: {m}", path.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| at(format!("not JSON: {e}")))?;
        match v.get(field) {
            Some(serde_json::Value::String(s)) => out.push(s.clone()),
            Some(other) => out.push(other.to_string()),
            None => return Err(at(format!("no field `{field}`"))),
        }
    }
    Ok(out)
}

/// (path, size, field, file length, modification time): a changed file is re-read.
type CacheKey = (String, usize, String, u64, Option<std::time::SystemTime>);

fn cache() -> &'static Mutex<HashMap<CacheKey, Arc<NgramIndex>>> {
    static C: OnceLock<Mutex<HashMap<CacheKey, Arc<NgramIndex>>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

/// The index for a benchmark, built on first use and cached for the process (a long-running
/// worker serves many jobs; the lock is held while building so a file is read once).
pub fn load(path: &str, n: usize, field: &str) -> Result<Arc<NgramIndex>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("benchmark `{path}`: {e}"))?;
    let key = (
        path.to_string(),
        n,
        field.to_string(),
        meta.len(),
        meta.modified().ok(),
    );
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(idx) = c.get(&key) {
        return Ok(idx.clone());
    }
    let passages = read_passages(Path::new(path), field)?;
    let idx = Arc::new(NgramIndex::build(n, passages.iter().map(String::as_str)));
    tracing::info!(
        benchmark = path,
        n,
        passages = idx.passages,
        ngrams = idx.grams.len(),
        too_short = idx.too_short,
        "decontamination index built"
    );
    c.insert(key, idx.clone());
    Ok(idx)
}

pub struct Decontaminate {
    name: String,
    index: Arc<NgramIndex>,
    fields: Vec<String>,
}

impl Decontaminate {
    pub fn new(config: &DecontaminateConfig, index: usize) -> Result<Self, StageError> {
        let at = |m: String| StageError::Config(format!("pipeline[{index}] (decontaminate): {m}"));
        let n = config.ngram();
        if n == 0 {
            return Err(at("`ngram` must be at least 1".into()));
        }
        let field = config.benchmark_field.as_deref().unwrap_or("text");
        Ok(Decontaminate {
            name: "decontaminate".to_string(),
            index: load(&config.benchmark, n, field).map_err(at)?,
            fields: config.fields(),
        })
    }

    fn text<'a>(item: &'a Item, field: &str) -> Option<std::borrow::Cow<'a, str>> {
        match field {
            "completion" => Some(item.record.completion.as_str().into()),
            "prompt" => item.record.prompt.as_deref().map(Into::into),
            other => match item.context.get(other)? {
                serde_json::Value::String(s) => Some(s.as_str().into()),
                v => Some(v.to_string().into()),
            },
        }
    }
}

#[async_trait]
impl Stage for Decontaminate {
    fn name(&self) -> &str {
        &self.name
    }

    async fn process(&self, item: Item) -> Vec<Outcome> {
        let hit = self
            .fields
            .iter()
            .filter_map(|f| Self::text(&item, f))
            .any(|t| self.index.contaminated(&t));
        if hit {
            vec![Outcome::Removed {
                item,
                reason: REMOVED_REASON.into(),
            }]
        } else {
            vec![Outcome::Keep(item)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_after_normalisation() {
        let idx = NgramIndex::build(5, ["The quick brown fox jumps over the lazy dog.", "tiny"]);
        assert_eq!((idx.passages, idx.too_short), (2, 1));
        assert!(idx.contaminated("Story: THE QUICK, brown fox -- jumps! Then it slept."));
        assert!(!idx.contaminated("The quick brown cat jumps over a lazy dog."));
        assert!(!idx.contaminated("tiny"));
    }

    #[test]
    fn reads_jsonl_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("b.jsonl");
        std::fs::write(&j, "{\"question\": \"q1\"}\n\n{\"question\": \"q2\"}\n").unwrap();
        assert_eq!(read_passages(&j, "question").unwrap(), ["q1", "q2"]);
        let e = read_passages(&j, "text").unwrap_err();
        assert!(e.contains("line 1") && e.contains("`text`"), "{e}");
        let t = dir.path().join("b.txt");
        std::fs::write(&t, "one\ntwo\n").unwrap();
        assert_eq!(read_passages(&t, "text").unwrap(), ["one", "two"]);
        assert!(read_passages(&dir.path().join("nope"), "text")
            .unwrap_err()
            .contains("nope"));
    }
}
