//! InstructLab taxonomy (format v3) as seed rows: every `qna.yaml` under a root is one row.
//!
//! The top-level folder decides the kind (`knowledge`, `compositional_skills`,
//! `foundational_skills`); the folder path is kept as `taxonomy_path` so every generated pair
//! can be traced back to its leaf. Knowledge entries name a `document` in git; it is kept as a
//! column but never fetched: grounding comes from the seed `context` blocks and, when a job
//! sets `document_dir`, from local markdown files chunked by [`chunk_markdown`].
//!
//! Older leaves are read too: knowledge written before version 3 has one `question`/`answer`
//! per seed example with an optional `context` (examples sharing a context become one
//! passage); one without any context reads, and `taxonomy_qa` refuses it unless
//! `document_dir` grounds it. YAML merge keys (`<<: *anchor`) are applied before the fields
//! are read, and a key the format does not have is an error with the closest known key.

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

/// The columns of every taxonomy seed row ([`TaxonomyEntry::to_columns`]): known before any
/// leaf is read, so a stage naming another column is refused at once.
pub const SEED_COLUMNS: [&str; 8] = [
    "taxonomy_path",
    "kind",
    "task_description",
    "domain",
    "created_by",
    "seed_examples",
    "document_outline",
    "document",
];

/// Keys a leaf may have at the top level, in a seed example, and in a knowledge Q&A.
const TOP_KEYS: [&str; 7] = [
    "version",
    "created_by",
    "domain",
    "task_description",
    "seed_examples",
    "document_outline",
    "document",
];
const EXAMPLE_KEYS: [&str; 4] = ["context", "questions_and_answers", "question", "answer"];
const QA_KEYS: [&str; 2] = ["question", "answer"];

/// Unknown keys of one mapping, as an error naming `at`, the key, and a suggestion.
fn unknown_keys(map: &serde_norway::Mapping, known: &[&str], at: &str) -> Result<(), String> {
    for k in map.keys() {
        let name = match k {
            serde_norway::Value::String(s) => s.clone(),
            other => serde_norway::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        if known.contains(&name.as_str()) {
            continue;
        }
        let hint = crate::suggest::hint(&name, known);
        return Err(format!("unknown key `{name}`{at} ({hint})"));
    }
    Ok(())
}

/// Refuses keys the format does not have, so a misspelt `seed examples:` is reported as
/// such rather than as a leaf without examples.
fn check_keys(value: &serde_norway::Value) -> Result<(), String> {
    let Some(top) = value.as_mapping() else {
        return Err("expected a mapping at the top level".into());
    };
    unknown_keys(top, &TOP_KEYS, "")?;
    let examples = top
        .get("seed_examples")
        .and_then(serde_norway::Value::as_sequence);
    for (i, ex) in examples.into_iter().flatten().enumerate() {
        let Some(ex) = ex.as_mapping() else { continue };
        unknown_keys(ex, &EXAMPLE_KEYS, &format!(" in `seed_examples[{i}]`"))?;
        let qas = ex
            .get("questions_and_answers")
            .and_then(serde_norway::Value::as_sequence);
        for (j, qa) in qas.into_iter().flatten().enumerate() {
            if let Some(qa) = qa.as_mapping() {
                unknown_keys(
                    qa,
                    &QA_KEYS,
                    &format!(" in `seed_examples[{i}].questions_and_answers[{j}]`"),
                )?;
            }
        }
    }
    Ok(())
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
    // Merge keys (`<<: *anchor`) are resolved on the parsed value: deserializing directly
    // would drop the merged fields silently.
    let mut value: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| err(e.to_string()))?;
    value.apply_merge().map_err(|e| err(e.to_string()))?;
    check_keys(&value).map_err(err)?;
    let raw: RawQna = serde_norway::from_value(value).map_err(|e| err(e.to_string()))?;
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
        // Knowledge before version 3 (and unversioned leaves written that way): one
        // `question`/`answer` per example, `context` optional; the example has no
        // `questions_and_answers`. Examples sharing a context are grouped below.
        let pre_v3 = raw.version.is_none_or(|v| v < 3)
            && ex.questions_and_answers.is_none()
            && (ex.question.is_some() || ex.answer.is_some());
        let pairs = if kind == TaxonomyKind::Knowledge && pre_v3 {
            let (q, a) = (clean(&ex.question), clean(&ex.answer));
            if q.is_empty() || a.is_empty() {
                return Err(err(format!(
                    "{}: needs a question and an answer (knowledge format version {})",
                    at("question"),
                    raw.version.map_or("1-2".to_string(), |v| v.to_string())
                )));
            }
            let pair = QaPair {
                question: q,
                answer: a,
            };
            match examples.last_mut() {
                Some(SeedExample {
                    context: last,
                    pairs,
                }) if context.is_some() && *last == context => {
                    pairs.push(pair);
                    continue;
                }
                _ => vec![pair],
            }
        } else if kind == TaxonomyKind::Knowledge {
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
    /// A skill whose seed examples carry a `context`: its questions are about that text, so
    /// every generated pair must keep one.
    pub fn is_grounded_skill(&self) -> bool {
        self.kind != TaxonomyKind::Knowledge
            && self.seed_examples.iter().any(|e| e.context.is_some())
    }

    /// The seed-row columns templates and stages read (their names: [`SEED_COLUMNS`]).
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

    fn edge(leaf: &str) -> String {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/taxonomy_edges"
        );
        std::fs::read_to_string(format!("{dir}/{leaf}/{QNA_FILE}")).unwrap()
    }

    #[test]
    fn pre_v3_knowledge_is_read_and_grouped_by_context() {
        let leaf = "knowledge/history/printing_press_v1";
        let e = parse_qna(&edge(leaf), leaf).unwrap();
        assert_eq!(e.kind, TaxonomyKind::Knowledge);
        // Three v1 examples, two sharing a context: two passages, three pairs.
        assert_eq!(e.seed_examples.len(), 2, "{:?}", e.seed_examples);
        assert_eq!(e.seed_examples[0].pairs.len(), 2);
        assert!(e.seed_examples[0]
            .context
            .as_deref()
            .unwrap()
            .starts_with("Johannes Gutenberg"));
        assert_eq!(e.seed_examples[1].pairs[0].answer, "About 49.");
        assert_eq!(e.document["patterns"][0], "printing_press.md");

        // Without any context a v2 leaf still reads (pairs as examples, no passage).
        let leaf = "knowledge/history/abacus_v2_no_context";
        let e = parse_qna(&edge(leaf), leaf).unwrap();
        assert_eq!(e.seed_examples.len(), 2);
        assert!(e.seed_examples.iter().all(|x| x.context.is_none()));

        // Version 3 keeps its own shape: `questions_and_answers` is required.
        let v3 = "version: 3\nseed_examples:\n  - context: c\n    question: q\n    answer: a\n";
        let err = parse_qna(v3, "knowledge/x").unwrap_err().to_string();
        assert!(
            err.contains("seed_examples[0].questions_and_answers"),
            "{err}"
        );
        let bad = "version: 1\nseed_examples:\n  - context: c\n    question: q\n";
        let err = parse_qna(bad, "knowledge/x").unwrap_err().to_string();
        assert!(
            err.contains("seed_examples[0].question") && err.contains("version 1"),
            "{err}"
        );
    }

    #[test]
    fn merge_keys_are_honoured() {
        let leaf = "compositional_skills/extraction/named_entities/ical";
        let e = parse_qna(&edge(leaf), leaf).unwrap();
        assert_eq!(e.seed_examples.len(), 3);
        for ex in &e.seed_examples {
            let c = ex.context.as_deref().expect("merged context");
            assert!(c.contains("SUMMARY:Quarterly planning"), "{c}");
        }
        // The merging example's own keys win over the anchor's.
        assert_eq!(e.seed_examples[1].pairs[0].answer, "Room 4B");
        assert!(e.is_grounded_skill());
    }

    #[test]
    fn misspelt_keys_are_unknown_with_a_suggestion() {
        let leaf = "compositional_skills/linguistics/misspelt";
        let err = parse_qna(&edge(leaf), leaf).unwrap_err().to_string();
        assert!(
            err.contains("unknown key `seed examples`")
                && err.contains("did you mean `seed_examples`?")
                && !err.contains("at least one example"),
            "{err}"
        );
        let nested = "seed_examples:\n  - questoin: q\n    answer: a\n";
        let err = parse_qna(nested, "compositional_skills/x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key `questoin` in `seed_examples[0]`")
                && err.contains("did you mean `question`?"),
            "{err}"
        );
        let far = "zzz: 1\nseed_examples:\n  - question: q\n    answer: a\n";
        let err = parse_qna(far, "compositional_skills/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("known: `version`"), "{err}");
    }

    #[test]
    fn seed_columns_are_the_row_columns() {
        let e = parse_qna(
            "seed_examples:\n  - question: q?\n    answer: a.\n",
            "compositional_skills/x",
        )
        .unwrap();
        let columns = e.to_columns();
        let mut keys: Vec<&str> = columns.keys().map(String::as_str).collect();
        let mut want = SEED_COLUMNS.to_vec();
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
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
