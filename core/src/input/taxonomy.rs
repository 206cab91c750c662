//! InstructLab taxonomy (format v3) as seed rows: every `qna.yaml` under a root is one row.
//!
//! The top-level folder decides the kind (`knowledge`, `compositional_skills`,
//! `foundational_skills`); the folder path is kept as `taxonomy_path` so every generated pair
//! can be traced back to its leaf. Knowledge entries name a `document` in git; it is kept as a
//! column but never fetched: grounding comes from the seed `context` blocks and, when a job
//! sets `document_dir`, from local markdown files chunked by [`chunk_markdown`].

use object_store::ObjectStoreExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::input::{BadRow, SeedError, SeedItem, SeedRow, TaskSlice};
use crate::spec::input::{InputFormat, InputSpec};
use crate::storage::{self, Location, StorageError};

/// File name of a taxonomy leaf.
pub const QNA_FILE: &str = "qna.yaml";

/// What a leaf teaches, from its top-level folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaxonomyKind {
    Knowledge,
    CompositionalSkill,
    FoundationalSkill,
}

impl TaxonomyKind {
    /// The folder name, also used as the `kind` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaxonomyKind::Knowledge => "knowledge",
            TaxonomyKind::CompositionalSkill => "compositional_skills",
            TaxonomyKind::FoundationalSkill => "foundational_skills",
        }
    }

    /// The kind named by the first known folder of a taxonomy path (so a root that is the
    /// taxonomy itself or a folder above it both work).
    pub fn of_path(taxonomy_path: &str) -> Option<TaxonomyKind> {
        taxonomy_path.split('/').find_map(|seg| match seg {
            "knowledge" => Some(TaxonomyKind::Knowledge),
            "compositional_skills" => Some(TaxonomyKind::CompositionalSkill),
            "foundational_skills" => Some(TaxonomyKind::FoundationalSkill),
            _ => None,
        })
    }

    pub fn parse(s: &str) -> Option<TaxonomyKind> {
        Self::of_path(s)
    }
}

#[derive(Debug, Deserialize)]
struct RawQna {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    task_description: Option<String>,
    #[serde(default)]
    seed_examples: Vec<RawExample>,
    #[serde(default)]
    document_outline: Option<String>,
    #[serde(default)]
    document: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RawExample {
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    questions_and_answers: Option<Vec<RawQa>>,
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    answer: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawQa {
    #[serde(default)]
    question: Option<String>,
    #[serde(default)]
    answer: Option<String>,
}

/// One question/answer pair, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QaPair {
    pub question: String,
    pub answer: String,
}

/// A seed example: knowledge has a context with several pairs; a skill has one pair and,
/// for grounded skills, a context.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeedExample {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    pub pairs: Vec<QaPair>,
}

/// A parsed `qna.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaxonomyEntry {
    pub taxonomy_path: String,
    pub kind: TaxonomyKind,
    pub created_by: String,
    pub task_description: String,
    pub domain: String,
    pub seed_examples: Vec<SeedExample>,
    pub document_outline: String,
    /// The `document` block (repo, commit, patterns) as written; informational only.
    pub document: Value,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct TaxonomyError {
    pub file: String,
    pub message: String,
}

fn clean(s: &Option<String>) -> String {
    s.as_deref().unwrap_or("").trim().to_string()
}

/// Parses one `qna.yaml`. `taxonomy_path` is its folder relative to the taxonomy root (e.g.
/// `knowledge/science/animals/birds/black_capped_chickadee`); errors name it and the field.
pub fn parse_qna(text: &str, taxonomy_path: &str) -> Result<TaxonomyEntry, TaxonomyError> {
    let file = format!("{taxonomy_path}/{QNA_FILE}");
    let err = |message: String| TaxonomyError {
        file: file.clone(),
        message,
    };
    let kind = TaxonomyKind::of_path(taxonomy_path).ok_or_else(|| {
        err("not under `knowledge/`, `compositional_skills/` or `foundational_skills/`".into())
    })?;
    let raw: RawQna = serde_norway::from_str(text).map_err(|e| err(e.to_string()))?;
    if let Some(v) = raw.version {
        if !(1..=3).contains(&v) {
            return Err(err(format!(
                "field `version`: {v} is not supported (1 to 3)"
            )));
        }
    }
    if raw.seed_examples.is_empty() {
        return Err(err(
            "field `seed_examples`: needs at least one example".into()
        ));
    }
    let mut examples = Vec::with_capacity(raw.seed_examples.len());
    for (i, ex) in raw.seed_examples.iter().enumerate() {
        let at = |f: &str| format!("field `seed_examples[{i}].{f}`");
        let context = ex
            .context
            .as_ref()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        let pairs = if kind == TaxonomyKind::Knowledge {
            if context.is_none() {
                return Err(err(format!("{}: required for knowledge", at("context"))));
            }
            let qas = ex.questions_and_answers.as_deref().unwrap_or_default();
            if qas.is_empty() {
                return Err(err(format!(
                    "{}: required for knowledge",
                    at("questions_and_answers")
                )));
            }
            let mut pairs = Vec::new();
            for (j, qa) in qas.iter().enumerate() {
                let (q, a) = (clean(&qa.question), clean(&qa.answer));
                if q.is_empty() || a.is_empty() {
                    return Err(err(format!(
                        "{}: needs a question and an answer",
                        at(&format!("questions_and_answers[{j}]"))
                    )));
                }
                pairs.push(QaPair {
                    question: q,
                    answer: a,
                });
            }
            pairs
        } else {
            let (q, a) = (clean(&ex.question), clean(&ex.answer));
            if q.is_empty() {
                return Err(err(format!("{}: required for skills", at("question"))));
            }
            if a.is_empty() {
                return Err(err(format!("{}: required for skills", at("answer"))));
            }
            vec![QaPair {
                question: q,
                answer: a,
            }]
        };
        examples.push(SeedExample { context, pairs });
    }
    Ok(TaxonomyEntry {
        taxonomy_path: taxonomy_path.to_string(),
        kind,
        created_by: clean(&raw.created_by),
        task_description: clean(&raw.task_description),
        domain: clean(&raw.domain),
        seed_examples: examples,
        document_outline: clean(&raw.document_outline),
        document: raw.document.unwrap_or(Value::Null),
    })
}

impl TaxonomyEntry {
    /// The seed-row columns templates and stages read.
    pub fn to_columns(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("taxonomy_path".into(), json!(self.taxonomy_path));
        m.insert("kind".into(), json!(self.kind.as_str()));
        m.insert("task_description".into(), json!(self.task_description));
        m.insert("domain".into(), json!(self.domain));
        m.insert("created_by".into(), json!(self.created_by));
        m.insert(
            "seed_examples".into(),
            serde_json::to_value(&self.seed_examples).expect("examples serialize"),
        );
        m.insert("document_outline".into(), json!(self.document_outline));
        m.insert("document".into(), self.document.clone());
        m
    }

    /// Back from seed-row columns (what the `taxonomy_qa` stage receives).
    pub fn from_columns(m: &Map<String, Value>) -> Result<TaxonomyEntry, String> {
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let taxonomy_path = s("taxonomy_path");
        let kind = TaxonomyKind::parse(&s("kind"))
            .or_else(|| TaxonomyKind::of_path(&taxonomy_path))
            .ok_or_else(|| "seed row has no taxonomy `kind`".to_string())?;
        let seed_examples: Vec<SeedExample> =
            serde_json::from_value(m.get("seed_examples").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("column `seed_examples`: {e}"))?;
        Ok(TaxonomyEntry {
            taxonomy_path,
            kind,
            created_by: s("created_by"),
            task_description: s("task_description"),
            domain: s("domain"),
            seed_examples,
            document_outline: s("document_outline"),
            document: m.get("document").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Every `qna.yaml` under `root_url` with its taxonomy path, sorted (planner and reader list
/// the same way, so a task's row range names the same files).
pub async fn list_qna(root_url: &str) -> Result<Vec<(Location, String)>, StorageError> {
    let root = storage::open(root_url)?;
    let prefix = format!("{}/", root.url.trim_end_matches('/'));
    // A root inside the taxonomy (e.g. `.../taxonomy/knowledge`) keeps the folders from the
    // kind folder on, so paths still start with `knowledge/...` and the kind is known.
    let segments: Vec<&str> = root.path.as_ref().split('/').collect();
    let lead = segments
        .iter()
        .rposition(|s| TaxonomyKind::of_path(s).is_some())
        .map(|i| segments[i..].join("/"));
    let mut out = Vec::new();
    for (loc, _) in storage::list_objects(root_url).await? {
        if loc.path.filename() != Some(QNA_FILE) {
            continue;
        }
        let rel = loc.url.strip_prefix(&prefix).unwrap_or(&loc.url);
        let dir = rel
            .strip_suffix(QNA_FILE)
            .unwrap_or(rel)
            .trim_end_matches('/');
        let dir = match &lead {
            Some(l) if dir.is_empty() => l.clone(),
            Some(l) => format!("{l}/{dir}"),
            None => dir.to_string(),
        };
        out.push((loc, dir));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    if out.is_empty() {
        return Err(StorageError::NothingMatches(format!(
            "{prefix}**/{QNA_FILE}"
        )));
    }
    Ok(out)
}

/// Plans a taxonomy: one task per `rows_per_task` leaves, honouring `limit`. Returns the
/// tasks and the number of rows (leaves).
pub async fn plan_tasks(input: &InputSpec) -> Result<(Vec<TaskSlice>, u64), SeedError> {
    let files = list_qna(&input.path).await?;
    let total = (files.len() as u64).min(input.limit.unwrap_or(u64::MAX));
    let per = input.rows_per_task.max(1);
    let tasks = (0..total)
        .step_by(per as usize)
        .map(|start| TaskSlice {
            object_url: input.path.clone(),
            format: InputFormat::Taxonomy,
            row_start: start,
            row_count: per.min(total - start),
            byte_start: 0,
            byte_end: 0,
            row_groups: vec![],
            global_row_start: start,
        })
        .collect();
    Ok((tasks, total))
}

/// Reads a task's leaves; a file that does not parse becomes a bad row naming it and the field.
pub async fn read_rows(slice: &TaskSlice) -> Result<Vec<SeedItem>, SeedError> {
    let files = list_qna(&slice.object_url).await?;
    let start = slice.row_start as usize;
    let end = (start + slice.row_count as usize).min(files.len());
    let mut items = Vec::with_capacity(end.saturating_sub(start));
    for (i, (loc, tax_path)) in files.iter().enumerate().take(end).skip(start) {
        let index = slice.global_row_start + (i - start) as u64;
        let source = format!("{tax_path}/{QNA_FILE}");
        let bytes = loc
            .store
            .get(&loc.path)
            .await
            .map_err(|e| loc.store_error(e))?
            .bytes()
            .await
            .map_err(|e| loc.store_error(e))?;
        let text = String::from_utf8_lossy(&bytes);
        match parse_qna(&text, tax_path) {
            Ok(entry) => items.push(SeedItem::Row(SeedRow {
                index,
                id: tax_path.clone(),
                columns: entry.to_columns(),
                source,
            })),
            Err(e) => items.push(SeedItem::Bad(BadRow {
                index,
                id: Some(tax_path.clone()),
                source,
                error: e.to_string(),
                raw: text.into_owned(),
            })),
        }
    }
    Ok(items)
}

/// Markdown split into passages of at most about `max_words` words, on paragraph boundaries
/// (a paragraph longer than that is its own passage). Used to ground knowledge generation in
/// local documents.
pub fn chunk_markdown(text: &str, max_words: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut cur = String::new();
    let mut words = 0usize;
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        let n = para.split_whitespace().count();
        if words > 0 && words + n > max_words.max(1) {
            chunks.push(std::mem::take(&mut cur));
            words = 0;
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(para);
        words += n;
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skill_and_knowledge_shapes_are_checked() {
        let skill = "version: 3\ncreated_by: me\ntask_description: t\nseed_examples:\n  - question: q?\n    answer: a.\n";
        let e = parse_qna(skill, "compositional_skills/x").unwrap();
        assert_eq!(e.kind, TaxonomyKind::CompositionalSkill);
        assert_eq!(e.seed_examples[0].pairs[0].answer, "a.");
        let e = parse_qna(skill, "knowledge/x").unwrap_err().to_string();
        assert!(
            e.contains("knowledge/x/qna.yaml") && e.contains("seed_examples[0].context"),
            "{e}"
        );
        let e = parse_qna("seed_examples:\n  - question: q\n", "foundational_skills/y")
            .unwrap_err()
            .to_string();
        assert!(e.contains("seed_examples[0].answer"), "{e}");
        let e = parse_qna(skill, "other/z").unwrap_err().to_string();
        assert!(e.contains("other/z"), "{e}");
    }

    #[test]
    fn columns_round_trip() {
        let skill = "seed_examples:\n  - question: q?\n    answer: a.\n    context: c\n";
        let e = parse_qna(skill, "compositional_skills/grounded/x").unwrap();
        let back = TaxonomyEntry::from_columns(&e.to_columns()).unwrap();
        assert_eq!(back, e);
    }

    #[tokio::test]
    async fn lists_leaves_with_paths_from_the_kind_folder() {
        let dir = tempfile::tempdir().unwrap();
        let leaf = dir.path().join("tax/knowledge/a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(leaf.join(QNA_FILE), "x").unwrap();
        std::fs::write(leaf.join("attribution.txt"), "x").unwrap();
        let whole = list_qna(dir.path().join("tax").to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(
            whole.iter().map(|f| f.1.as_str()).collect::<Vec<_>>(),
            ["knowledge/a/b"]
        );
        let sub = list_qna(dir.path().join("tax/knowledge/a").to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(sub[0].1, "knowledge/a/b");
    }

    #[test]
    fn markdown_chunks_follow_paragraphs() {
        let text = "one two three\n\nfour five\n\nsix seven eight nine\n";
        assert_eq!(
            chunk_markdown(text, 5),
            vec!["one two three\n\nfour five", "six seven eight nine"]
        );
        assert!(chunk_markdown("  \n\n", 5).is_empty());
    }
}
