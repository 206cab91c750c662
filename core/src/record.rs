//! The output record and its Arrow schema (DESIGN.md §5).
//!
//! The schema is fixed except for `extra` columns (variation choices, stage outputs), which a
//! job declares up front so that every file of a dataset has the same schema.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    Float32Builder, Float64Builder, ListBuilder, StringBuilder, StructBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// One generated sample with its lineage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub seed_id: String,
    pub seed_index: u64,
    pub stage: String,
    pub sample_index: u32,
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub completion: String,
    /// The model name the job asked for.
    pub model: String,
    /// The model name the backend reported in its response.
    pub backend_model: String,
    pub finish_reason: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    pub job_id: String,
    pub task_id: u64,
    pub template_hash: String,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub seed: u64,
    pub score: Option<f64>,
    /// Declared extra columns (variation choices, stage outputs), stored as text.
    pub extra: BTreeMap<String, String>,
}

/// Stable record id: the same job, seed row, stage and sample always give the same id, so a
/// re-run or a retried task produces the same ids and duplicates are detectable.
pub fn record_id(
    job_name: &str,
    job_seed: u64,
    seed_index: u64,
    stage: &str,
    sample: u32,
) -> String {
    let mut h = Sha256::new();
    h.update(job_name.as_bytes());
    h.update([0]);
    h.update(job_seed.to_le_bytes());
    h.update(seed_index.to_le_bytes());
    h.update(stage.as_bytes());
    h.update([0]);
    h.update(sample.to_le_bytes());
    hex::encode(&h.finalize()[..16])
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

/// The dataset schema for a job with these extra columns.
pub fn record_schema(extra_columns: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("seed_id", DataType::Utf8, false),
        Field::new("seed_index", DataType::UInt64, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("sample_index", DataType::UInt32, false),
        Field::new("prompt", DataType::Utf8, true),
        Field::new(
            "messages",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(message_fields()),
                true,
            ))),
            true,
        ),
        Field::new("completion", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("backend_model", DataType::Utf8, false),
        Field::new("finish_reason", DataType::Utf8, false),
        Field::new("prompt_tokens", DataType::UInt64, false),
        Field::new("completion_tokens", DataType::UInt64, false),
        Field::new("latency_ms", DataType::UInt64, false),
        Field::new("job_id", DataType::Utf8, false),
        Field::new("task_id", DataType::UInt64, false),
        Field::new("template_hash", DataType::Utf8, false),
        Field::new("temperature", DataType::Float32, true),
        Field::new("top_p", DataType::Float32, true),
        Field::new("max_tokens", DataType::UInt32, true),
        Field::new("seed", DataType::UInt64, false),
        Field::new("score", DataType::Float64, true),
    ];
    for c in extra_columns {
        fields.push(Field::new(c, DataType::Utf8, true));
    }
    Arc::new(Schema::new(fields))
}

/// Columnar conversion of a batch of records.
pub fn records_to_batch(
    schema: &SchemaRef,
    extra_columns: &[String],
    records: &[Record],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let n = records.len();
    let s = |f: &dyn Fn(&Record) -> &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for r in records {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let so = |f: &dyn Fn(&Record) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for r in records {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let u = |f: &dyn Fn(&Record) -> u64| -> ArrayRef {
        let mut b = UInt64Builder::with_capacity(n);
        for r in records {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let mut sample = UInt32Builder::with_capacity(n);
    let mut max_tokens = UInt32Builder::with_capacity(n);
    let mut temperature = Float32Builder::with_capacity(n);
    let mut top_p = Float32Builder::with_capacity(n);
    let mut score = Float64Builder::with_capacity(n);
    let mut messages = ListBuilder::new(StructBuilder::from_fields(message_fields(), 4));
    for r in records {
        sample.append_value(r.sample_index);
        max_tokens.append_option(r.max_tokens);
        temperature.append_option(r.temperature);
        top_p.append_option(r.top_p);
        score.append_option(r.score);
        match &r.messages {
            Some(msgs) => {
                let st = messages.values();
                for m in msgs {
                    st.field_builder::<StringBuilder>(0)
                        .expect("role")
                        .append_value(&m.role);
                    st.field_builder::<StringBuilder>(1)
                        .expect("content")
                        .append_value(&m.content);
                    st.append(true);
                }
                messages.append(true);
            }
            None => messages.append(false),
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        s(&|r| &r.id),
        s(&|r| &r.seed_id),
        u(&|r| r.seed_index),
        s(&|r| &r.stage),
        Arc::new(sample.finish()),
        so(&|r| r.prompt.as_deref()),
        Arc::new(messages.finish()),
        s(&|r| &r.completion),
        s(&|r| &r.model),
        s(&|r| &r.backend_model),
        s(&|r| &r.finish_reason),
        u(&|r| r.prompt_tokens),
        u(&|r| r.completion_tokens),
        u(&|r| r.latency_ms),
        s(&|r| &r.job_id),
        u(&|r| r.task_id),
        s(&|r| &r.template_hash),
        Arc::new(temperature.finish()),
        Arc::new(top_p.finish()),
        Arc::new(max_tokens.finish()),
        u(&|r| r.seed),
        Arc::new(score.finish()),
    ];
    for c in extra_columns {
        columns.push(so(&|r| r.extra.get(c).map(|v| v.as_str())));
    }
    RecordBatch::try_new(schema.clone(), columns)
}

/// A seed row that could not be turned into output, with why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    pub seed_id: String,
    pub row_index: u64,
    /// Position in the input, e.g. `seeds.jsonl:17`.
    pub source: String,
    pub stage: String,
    pub error: String,
    /// The seed row (JSON) or raw line, so nothing is lost.
    pub input: String,
    pub job_id: String,
    pub task_id: u64,
}

pub fn failure_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seed_id", DataType::Utf8, false),
        Field::new("row_index", DataType::UInt64, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("input", DataType::Utf8, false),
        Field::new("job_id", DataType::Utf8, false),
        Field::new("task_id", DataType::UInt64, false),
    ]))
}

pub fn failures_to_batch(
    records: &[FailureRecord],
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let s = |f: &dyn Fn(&FailureRecord) -> &str| -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in records {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let u = |f: &dyn Fn(&FailureRecord) -> u64| -> ArrayRef {
        let mut b = UInt64Builder::new();
        for r in records {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    RecordBatch::try_new(
        failure_schema(),
        vec![
            s(&|r| &r.seed_id),
            u(&|r| r.row_index),
            s(&|r| &r.source),
            s(&|r| &r.stage),
            s(&|r| &r.error),
            s(&|r| &r.input),
            s(&|r| &r.job_id),
            u(&|r| r.task_id),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = record_id("job", 1, 5, "generate", 0);
        assert_eq!(a, record_id("job", 1, 5, "generate", 0));
        assert_ne!(a, record_id("job", 1, 5, "generate", 1));
        assert_ne!(a, record_id("job", 1, 6, "generate", 0));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn batch_matches_schema_with_extras_and_messages() {
        let extra = vec!["audience".to_string()];
        let schema = record_schema(&extra);
        let mut r = Record {
            id: "x".into(),
            completion: "c".into(),
            messages: Some(vec![ChatMessage::new("user", "hi")]),
            ..Default::default()
        };
        r.extra.insert("audience".into(), "kids".into());
        let b = records_to_batch(&schema, &extra, &[r, Record::default()]).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.num_columns(), schema.fields().len());
        let f = failures_to_batch(&[FailureRecord::default()]).unwrap();
        assert_eq!(f.num_rows(), 1);
    }
}
