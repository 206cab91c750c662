//! A job file built from structured input: a valid skeleton (name, input, one backend,
//! output) and a pipeline of known stage kinds whose fields are drawn from the names the
//! stage configs really have, with values of every YAML shape. Random text rarely gets past
//! `stage:`; this reaches each stage's own checks and the pipeline's column check.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const STAGES: &[&str] = &[
    "generate",
    "taxonomy_qa",
    "dedup",
    "distill",
    "evolve",
    "revise",
    "judge",
    "filter",
    "pii",
    "decontaminate",
    "nonesuch",
];

/// Field names of the spec sections and stage configs (from `core/src/spec` and `stages`).
const KEYS: &[&str] = &[
    "adds", "answer", "answer_backend", "api", "backend", "bands", "batch_rows", "benchmark",
    "benchmark_field", "chunk_words", "column", "columns", "compression", "credential",
    "critic_backend", "critique_template", "document_dir", "dup_ngram", "examples", "field",
    "fields", "format", "grams", "id_column", "input", "instruction_column", "json", "lease_s",
    "limit", "max_attempts", "max_concurrency", "max_dup_ngram_ratio", "max_failed_fraction",
    "max_prompt_tokens", "max_tokens", "max_words", "message", "min_words", "minhash", "model",
    "n", "name", "near", "ngram", "on_eliminated", "operators", "output", "pairs", "passages",
    "path", "phrases", "pipeline", "reads", "refusal", "requests_per_minute", "revise_template",
    "reviser_backend", "rounds", "rows", "rows_per_task", "rubric", "scale", "scheduling",
    "seed", "shingle", "stage", "system_prompt", "target", "temperature", "template",
    "text_column", "threshold", "timeout_s", "tokens_per_minute", "too_short", "top_p",
    "types", "url", "urls", "variations", "api_key_env", "api_key_file",
];

/// Strings that mean something somewhere: backend and column names, templates, paths, enums.
const WORDS: &[&str] = &[
    "m", "other", "text", "id", "instruction", "response", "score", "audience", "kids", "auto",
    "chat", "completions", "jsonl", "parquet", "taxonomy", "email", "phone", "ipv4", "redact",
    "drop", "keep", "exact", "minhash", "{{ text }}", "{{ instruction }}", "{{ response }}",
    "Q: {{ text }} {{ audience }}", "{% for x in text %}{{ x }}{% endfor %}", "{{", "{% if %}",
    "../up", "/tmp/out", "s3://bucket/out", "file:///tmp/out", "http://127.0.0.1:1/v1",
    "not a url", "", " ", "0", "1/10", "deepen", "concretize", "breadth", "{{ critique }}",
    "examples/data/benchmark.jsonl", "knowledge", "compositional_skills",
];

#[derive(Arbitrary, Debug)]
enum Val {
    Word(u8),
    Text(String),
    Int(i64),
    Small(u8),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<Val>),
    Map(Vec<(u8, Val)>),
}

impl Val {
    fn to_json(&self, depth: usize) -> Value {
        match self {
            Val::Word(i) => json!(WORDS[*i as usize % WORDS.len()]),
            Val::Text(s) => json!(s),
            Val::Int(n) => json!(n),
            Val::Small(n) => json!(n),
            Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Val::Bool(b) => json!(b),
            Val::Null => Value::Null,
            Val::List(_) | Val::Map(_) if depth > 5 => Value::Null,
            Val::List(items) => Value::Array(items.iter().map(|v| v.to_json(depth + 1)).collect()),
            Val::Map(fields) => Value::Object(fields_to_map(fields, depth + 1)),
        }
    }
}

fn fields_to_map(fields: &[(u8, Val)], depth: usize) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in fields {
        // Keys from the real field names mostly; sometimes a variable or column name.
        let key = if *k < 200 {
            KEYS[*k as usize % KEYS.len()]
        } else {
            WORDS[*k as usize % WORDS.len()]
        };
        m.insert(key.to_string(), v.to_json(depth));
    }
    m
}

#[derive(Arbitrary, Debug)]
struct Stage {
    kind: u8,
    fields: Vec<(u8, Val)>,
}

#[derive(Arbitrary, Debug)]
struct Doc {
    format: u8,
    input: Vec<(u8, Val)>,
    backend: Vec<(u8, Val)>,
    pipeline: Vec<Stage>,
    top: Vec<(u8, Val)>,
}

fn merge(into: &mut Map<String, Value>, fields: &[(u8, Val)]) {
    into.extend(fields_to_map(fields, 0));
}

fuzz_target!(|doc: Doc| {
    let formats = ["jsonl", "text", "parquet", "taxonomy"];
    let mut input = json!({
        "path": "/tmp/in.jsonl",
        "format": formats[doc.format as usize % formats.len()],
    })
    .as_object()
    .cloned()
    .expect("object");
    merge(&mut input, &doc.input);
    let mut backend = json!({"url": "http://127.0.0.1:1/v1", "model": "x"})
        .as_object()
        .cloned()
        .expect("object");
    merge(&mut backend, &doc.backend);
    let pipeline: Vec<Value> = doc
        .pipeline
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("stage".into(), json!(STAGES[s.kind as usize % STAGES.len()]));
            m.insert("backend".into(), json!("m"));
            m.insert("template".into(), json!("{{ text }}"));
            merge(&mut m, &s.fields);
            Value::Object(m)
        })
        .collect();
    let mut root = json!({
        "name": "fuzz",
        "input": input,
        "backends": {"m": backend},
        "pipeline": pipeline,
        "output": {"path": "/tmp/fuzz-out"},
    })
    .as_object()
    .cloned()
    .expect("object");
    merge(&mut root, &doc.top);
    let Ok(yaml) = serde_norway::to_string(&Value::Object(root)) else {
        return;
    };
    synthforge_fuzz::check_spec(&yaml);
});
