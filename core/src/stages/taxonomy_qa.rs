//! `taxonomy_qa`: InstructLab-style synthetic Q&A from taxonomy leaves (format v3).
//!
//! Knowledge leaves: one prompt per context passage (the seed `context` blocks, plus passages
//! of local documents when `document_dir` is set) with seed Q&A as examples, asking for `pairs`
//! new pairs answerable only from that passage. Skill leaves: one prompt with the seed
//! examples, asking for new examples in the same style. Every parsed pair becomes one kept
//! item (columns `question`, `answer`, `context`, `taxonomy_path`); a reply that yields no
//! pair becomes a failure that carries the reply, so nothing disappears silently.
//! Grounded skills (seed examples with a `context`) always keep a context: their
//! `response_format` schema gets a required `context` on the pair objects, the context leads
//! the user message, and a reply with a context-less pair fails with the reply.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::config::{CheckScope, ConfigError, StageColumns, StageConfig};
use super::model_call::{model_call_config, ModelCall};
use super::{Item, Outcome, Stage, StageContext, StageError};
use crate::backend::{Backend, GenRequest, GenResponse};
use crate::input::taxonomy::{chunk_markdown, TaxonomyEntry, TaxonomyKind};
use crate::record::{record_id, ChatMessage};

/// Output columns this stage fills.
pub const COLUMNS: [&str; 4] = ["question", "answer", "context", "taxonomy_path"];

mod parse;
pub use parse::{parse_pairs, ParsedPair};

model_call_config! {
    /// `taxonomy_qa` settings, as written in the job file.
    pub struct TaxonomyQaConfig {
        /// Pairs asked for per prompt (default 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pairs: Option<u32>,
        /// Seed pairs shown per prompt (default 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub examples: Option<usize>,
        /// Local copy of the knowledge documents, chunked into extra contexts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub document_dir: Option<PathBuf>,
        /// Words per document chunk (default 300).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub chunk_words: Option<usize>,
    }
}

impl TaxonomyQaConfig {
    fn pairs(&self) -> u32 {
        self.pairs.unwrap_or(3)
    }

    fn examples(&self) -> usize {
        self.examples.unwrap_or(3)
    }

    fn chunk_words(&self) -> usize {
        self.chunk_words.unwrap_or(300)
    }

    /// Every count is at least one.
    fn check_counts(&self) -> Result<(), ConfigError> {
        for (key, n) in [
            ("pairs", self.pairs() as usize),
            ("examples", self.examples()),
            ("chunk_words", self.chunk_words()),
        ] {
            if n == 0 {
                return Err(ConfigError::new(key, "must be a positive integer, got 0"));
            }
        }
        Ok(())
    }
}

impl StageConfig for TaxonomyQaConfig {
    fn check(&self, scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        scope.backend("backend", &self.backend)?;
        self.check_counts()
    }

    fn columns(&self) -> StageColumns {
        StageColumns::default().adding(COLUMNS).adding(["completion"])
    }

    fn build(&self, index: usize, ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(TaxonomyQa::new(self, index, ctx)?))
    }
}

pub struct TaxonomyQa {
    name: String,
    pairs: u32,
    /// Seed pairs shown per prompt.
    examples: usize,
    document_dir: Option<PathBuf>,
    chunk_words: usize,
    backend: Arc<Backend>,
    call: ModelCall,
    ctx: StageContext,
}

impl TaxonomyQa {
    pub fn new(
        config: &TaxonomyQaConfig,
        index: usize,
        ctx: &StageContext,
    ) -> Result<Self, StageError> {
        config
            .check_counts()
            .map_err(|e| StageError::Config(format!("pipeline[{index}]: {e}")))?;
        Ok(TaxonomyQa {
            name: "taxonomy_qa".to_string(),
            pairs: config.pairs(),
            examples: config.examples(),
            document_dir: config.document_dir.clone(),
            chunk_words: config.chunk_words(),
            backend: ctx.backend(&config.backend)?,
            call: config.model_call(),
            ctx: ctx.clone(),
        })
    }

    /// Context passages of a knowledge leaf: its seed contexts, then local document passages.
    async fn contexts(&self, entry: &TaxonomyEntry) -> Result<Vec<String>, String> {
        let mut out: Vec<String> = entry
            .seed_examples
            .iter()
            .filter_map(|e| e.context.clone())
            .collect();
        if let Some(dir) = &self.document_dir {
            for path in document_files(dir, entry).await? {
                let text = tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| format!("document {}: {e}", path.display()))?;
                out.extend(chunk_markdown(&text, self.chunk_words));
            }
        }
        Ok(out)
    }

    fn request(&self, prompt: &str, seed: u64, grounded: bool) -> GenRequest {
        GenRequest {
            messages: vec![ChatMessage::new("user", prompt.to_string())],
            prompt: None,
            max_tokens: self.call.max_tokens,
            temperature: self.call.temperature,
            top_p: self.call.top_p,
            n: Some(self.call.samples()),
            stop: self.call.stop.clone(),
            seed: Some(seed),
            // Structured output (e.g. a JSON schema of `{"pairs": [{question, answer}]}`)
            // where the backend supports it; the parser accepts both shapes.
            // A grounded skill's schema also asks for the `context` of each pair.
            response_format: self.call.response_format.clone().map(|mut f| {
                if grounded {
                    require_context(&mut f);
                }
                f
            }),
        }
    }

    /// Turns one response into kept items (one per pair) or failures (one per unparsable
    /// choice). `next` numbers the samples of the seed row across all its prompts.
    fn outcomes(
        &self,
        item: &Item,
        entry: &TaxonomyEntry,
        prompt: &str,
        context: Option<&str>,
        resp: GenResponse,
        next: &mut u32,
    ) -> Vec<Outcome> {
        let mut out = Vec::new();
        // Usage is per request: the first record of the response carries it, so totals add up.
        let mut usage = Some((resp.prompt_tokens, resp.completion_tokens));
        for choice in resp.choices {
            let parsed = parse_pairs(&choice.text).and_then(|p| {
                // A grounded skill's question is about its context ("this sentence"): a pair
                // without one would be unanswerable, so the reply fails rather than losing it.
                if entry.is_grounded_skill() && p.iter().any(|p| p.context.is_none()) {
                    Err(NO_CONTEXT.to_string())
                } else {
                    Ok(p)
                }
            });
            let pairs = match parsed {
                Ok(p) => p,
                Err(why) => {
                    let msg = format!(
                        "{}: stage `{}`: {why}; reply: {}",
                        item.seed.source, self.name, choice.text
                    );
                    out.push(Outcome::Failed(self.ctx.failure(item, &self.name, msg)));
                    continue;
                }
            };
            for pair in pairs.into_iter().take(self.pairs as usize) {
                let k = *next;
                *next += 1;
                let mut it = item.clone();
                let ctx_text = pair.context.clone().or(context.map(str::to_string));
                let r = &mut it.record;
                r.id = record_id(
                    &self.ctx.job_name,
                    self.ctx.job_seed,
                    item.seed.index,
                    &self.name,
                    k,
                );
                r.stage = self.name.clone();
                r.sample_index = k;
                r.prompt = Some(prompt.to_string());
                let mut user = pair.question.clone();
                if entry.kind != TaxonomyKind::Knowledge {
                    if let Some(c) = &pair.context {
                        user = format!("{c}\n\n{user}");
                    }
                }
                r.messages = Some(vec![
                    ChatMessage::new("user", user),
                    ChatMessage::new("assistant", pair.answer.clone()),
                ]);
                r.completion = pair.answer.clone();
                r.model = self.backend.model().to_string();
                r.backend_model = resp.model.clone();
                r.finish_reason = choice.finish_reason.clone();
                let (p, c) = usage.take().unwrap_or((0, 0));
                r.prompt_tokens = p;
                r.completion_tokens = c;
                r.latency_ms = resp.latency_ms;
                r.template_hash = crate::template::PromptTemplate::new(PROMPT_VERSION)
                    .map(|t| t.hash().to_string())
                    .unwrap_or_default();
                r.temperature = self.call.temperature.or(self.backend.spec().temperature);
                r.top_p = self.call.top_p.or(self.backend.spec().top_p);
                r.max_tokens = self.call.max_tokens.or(self.backend.spec().max_tokens);
                r.extra.insert("question".into(), pair.question.clone());
                r.extra.insert("answer".into(), pair.answer.clone());
                r.extra
                    .insert("taxonomy_path".into(), entry.taxonomy_path.clone());
                if let Some(c) = &ctx_text {
                    r.extra.insert("context".into(), c.clone());
                }
                it.context
                    .insert("question".into(), Value::String(pair.question));
                it.context
                    .insert("completion".into(), Value::String(pair.answer.clone()));
                it.context
                    .insert("answer".into(), Value::String(pair.answer));
                out.push(Outcome::Keep(it));
            }
        }
        out
    }
}

/// The prompts a `taxonomy_qa` entry sends for a leaf, from its seed contexts only (local
/// documents are read at run time): for `synthforge validate`-style previews.
pub fn preview_prompts(config: &TaxonomyQaConfig, entry: &TaxonomyEntry) -> Vec<String> {
    let (pairs, examples) = (config.pairs(), config.examples());
    if entry.kind == TaxonomyKind::Knowledge {
        entry
            .seed_examples
            .iter()
            .filter_map(|e| e.context.as_deref())
            .map(|c| knowledge_prompt(entry, c, pairs, examples))
            .collect()
    } else {
        vec![skill_prompt(entry, pairs, examples)]
    }
}

/// Adds a required string `context` to every object schema of `format` that has `question`
/// and `answer` properties (the pair items), so structured output keeps a grounded skill's
/// context even when the job's schema names only question and answer.
pub fn require_context(format: &mut Value) {
    match format {
        Value::Object(o) => {
            let is_pair = o
                .get("properties")
                .and_then(Value::as_object)
                .is_some_and(|p| p.contains_key("question") && p.contains_key("answer"));
            if is_pair {
                if let Some(Value::Object(p)) = o.get_mut("properties") {
                    p.entry("context")
                        .or_insert_with(|| serde_json::json!({"type": "string"}));
                }
                match o.get_mut("required") {
                    Some(Value::Array(r)) => {
                        if !r.iter().any(|v| v == "context") {
                            r.push("context".into());
                        }
                    }
                    _ => {
                        o.insert("required".into(), serde_json::json!(["context"]));
                    }
                }
            }
            o.values_mut().for_each(require_context);
        }
        Value::Array(a) => a.iter_mut().for_each(require_context),
        _ => {}
    }
}

const NO_CONTEXT: &str =
    "grounded skill: a generated pair has no `context` (the text the question is about)";

/// Identifies the built-in prompt wording in `template_hash` (bump when the prompts change).
const PROMPT_VERSION: &str = "taxonomy_qa prompts v1";

/// Files of `dir` that ground a leaf: `dir/<taxonomy_path>/*.md` when that folder exists,
/// else the files of `dir` matching the leaf's `document.patterns` (as InstructLab resolves
/// them in the document repo, here against a local copy).
async fn document_files(
    dir: &std::path::Path,
    entry: &TaxonomyEntry,
) -> Result<Vec<PathBuf>, String> {
    let leaf = dir.join(&entry.taxonomy_path);
    let (folder, patterns): (PathBuf, Vec<String>) = if leaf.is_dir() {
        (leaf, vec!["*.md".into()])
    } else {
        let pats = entry
            .document
            .get("patterns")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        (dir.to_path_buf(), pats)
    };
    let mut rd = tokio::fs::read_dir(&folder)
        .await
        .map_err(|e| format!("document_dir {}: {e}", folder.display()))?;
    let mut files = Vec::new();
    while let Some(e) = rd.next_entry().await.map_err(|e| e.to_string())? {
        let name = e.file_name().to_string_lossy().into_owned();
        if patterns.iter().any(|p| wildcard(p, &name)) {
            files.push(e.path());
        }
    }
    files.sort();
    Ok(files)
}

/// `*` / `?` wildcard match on a file name.
fn wildcard(pat: &str, name: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    let pat = pat.rsplit('/').next().unwrap_or(pat);
    go(
        &pat.chars().collect::<Vec<_>>(),
        &name.chars().collect::<Vec<_>>(),
    )
}

fn example_block(entry: &TaxonomyEntry, max: usize, with_context: bool) -> String {
    let mut s = String::new();
    for ex in &entry.seed_examples {
        for p in &ex.pairs {
            if s.matches("[QUESTION]").count() >= max {
                return s;
            }
            if with_context {
                if let Some(c) = &ex.context {
                    s.push_str(&format!("[CONTEXT]\n{c}\n"));
                }
            }
            s.push_str(&format!(
                "[QUESTION]\n{}\n[ANSWER]\n{}\n\n",
                p.question, p.answer
            ));
        }
    }
    s
}

const JSON_INSTRUCTION: &str =
    "Reply with only a JSON list of objects with the keys \"question\" and \"answer\"";

/// The prompt for one knowledge passage: grounded strictly in `context`.
pub fn knowledge_prompt(
    entry: &TaxonomyEntry,
    context: &str,
    pairs: u32,
    examples: usize,
) -> String {
    let mut s = format!(
        "You are helping create training data about the domain \"{}\".\n",
        entry.domain
    );
    if !entry.document_outline.is_empty() {
        s.push_str(&format!(
            "The source document covers: {}\n",
            entry.document_outline
        ));
    }
    s.push_str(&format!(
        "\nContext:\n<context>\n{context}\n</context>\n\nHere are example questions and answers written for this kind of document:\n\n{}",
        example_block(entry, examples, false)
    ));
    s.push_str(&format!(
        "Generate {pairs} new question and answer pairs that can be answered using only the information in the context above. \
Do not repeat the examples and do not use outside knowledge. {JSON_INSTRUCTION}.\n"
    ));
    s
}

/// The prompt for a skill leaf: new examples in the style of the seeds.
pub fn skill_prompt(entry: &TaxonomyEntry, pairs: u32, examples: usize) -> String {
    let grounded = entry.is_grounded_skill();
    let mut s = format!(
        "You are helping create training data that teaches this skill: {}\n\nHere are examples of the task:\n\n{}",
        entry.task_description,
        example_block(entry, examples, grounded)
    );
    let keys = if grounded {
        format!("{JSON_INSTRUCTION} and \"context\" (the text the question is about)")
    } else {
        JSON_INSTRUCTION.to_string()
    };
    s.push_str(&format!(
        "Generate {pairs} new, diverse examples of the same task in the same style and format. {keys}.\n"
    ));
    s
}

#[async_trait]
impl Stage for TaxonomyQa {
    fn name(&self) -> &str {
        &self.name
    }

    fn extra_columns(&self) -> Vec<String> {
        COLUMNS.iter().map(|c| c.to_string()).collect()
    }

    fn concurrency(&self) -> usize {
        self.backend.concurrency_limit()
    }

    async fn process(&self, item: Item) -> Vec<Outcome> {
        let fail = |msg: String| {
            let msg = format!("{}: stage `{}`: {msg}", item.seed.source, self.name);
            vec![Outcome::Failed(self.ctx.failure(&item, &self.name, msg))]
        };
        let entry = match TaxonomyEntry::from_columns(&item.seed.columns) {
            Ok(e) => e,
            Err(e) => return fail(format!("{e} (input.format must be `taxonomy`)")),
        };
        let prompts: Vec<(String, Option<String>)> = if entry.kind == TaxonomyKind::Knowledge {
            match self.contexts(&entry).await {
                Ok(cs) => cs
                    .into_iter()
                    .map(|c| {
                        (
                            knowledge_prompt(&entry, &c, self.pairs, self.examples),
                            Some(c),
                        )
                    })
                    .collect(),
                Err(e) => return fail(e),
            }
        } else {
            vec![(skill_prompt(&entry, self.pairs, self.examples), None)]
        };
        if prompts.is_empty() {
            // Knowledge written before format version 3 may carry no `context` at all.
            return fail(
                "knowledge leaf has no context passage to ground generation in: its seed examples \
(the version 1-2 `question`/`answer` shape) carry no `context` and no `document_dir` passage \
matched; set `document_dir` to a local copy of its `document`"
                    .into(),
            );
        }
        let base_seed = self.ctx.job_seed ^ item.seed.index;
        let calls = prompts.iter().enumerate().map(|(i, (p, _))| {
            let req = self.request(
                p,
                base_seed.wrapping_add(i as u64),
                entry.is_grounded_skill(),
            );
            let backend = self.backend.clone();
            async move { backend.generate(&req).await }
        });
        let responses = futures::future::join_all(calls).await;
        let mut out = Vec::new();
        let mut next = 0u32;
        for ((prompt, context), resp) in prompts.iter().zip(responses) {
            match resp {
                Ok(r) => out.extend(self.outcomes(
                    &item,
                    &entry,
                    prompt,
                    context.as_deref(),
                    r,
                    &mut next,
                )),
                Err(e) => {
                    let msg = format!("{}: {e}", item.seed.source);
                    out.push(Outcome::Failed(self.ctx.failure(&item, &self.name, msg)));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounded_skills_require_context_in_the_example_schema() {
        let job: Value = serde_norway::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/taxonomy_qa.yaml"
        )))
        .unwrap();
        let mut format = job["pipeline"][0]["response_format"].clone();
        let items = "/json_schema/schema/properties/pairs/items";
        assert!(format.pointer(items).is_some(), "{format}");
        require_context(&mut format);
        let items = format.pointer(items).unwrap();
        assert_eq!(items["properties"]["context"]["type"], "string");
        assert_eq!(
            items["required"],
            serde_json::json!(["question", "answer", "context"])
        );
        // Idempotent, and the outer object (no question/answer) is left alone.
        let once = format.clone();
        require_context(&mut format);
        assert_eq!(format, once);
        assert_eq!(
            format.pointer("/json_schema/schema/required").unwrap(),
            &serde_json::json!(["pairs"])
        );
    }

    #[test]
    fn wildcard_matches_file_names() {
        assert!(wildcard("*.md", "chickadee.md"));
        assert!(wildcard("docs/chick?dee.md", "chickadee.md"));
        assert!(!wildcard("*.md", "chickadee.txt"));
    }
}
