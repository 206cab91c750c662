//! The job spec: one YAML file that says what to read, how to generate, where to write.
//!
//! The spec travels from the user to the coordinator to every worker, so it holds no secrets:
//! backends name the environment variable or file that holds their API key, never the key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::template::PromptTemplate;

/// A whole job, as written by the user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// Seed for every random choice (variations, shuffles): same job, same prompts.
    #[serde(default)]
    pub seed: u64,
    pub input: InputSpec,
    pub pipeline: Vec<StageSpec>,
    pub backends: BTreeMap<String, BackendSpec>,
    pub output: OutputSpec,
    #[serde(default)]
    pub scheduling: SchedulingSpec,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Parquet,
    Jsonl,
    Text,
    Taxonomy,
}

impl InputFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            InputFormat::Parquet => "parquet",
            InputFormat::Jsonl => "jsonl",
            InputFormat::Text => "text",
            InputFormat::Taxonomy => "taxonomy",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "parquet" => Some(InputFormat::Parquet),
            "jsonl" => Some(InputFormat::Jsonl),
            "text" => Some(InputFormat::Text),
            "taxonomy" => Some(InputFormat::Taxonomy),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Local path, `file://`, `s3://`, `gs://`, `az://` URL; may end in a glob (`*.parquet`).
    pub path: String,
    pub format: InputFormat,
    /// Column holding a stable id per seed row; without it the row's position is its id.
    #[serde(default)]
    pub id_column: Option<String>,
    /// Column holding the seed text (for `text` format every line is this column).
    #[serde(default = "default_text_column")]
    pub text_column: String,
    /// Read at most this many rows in total.
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default = "default_rows_per_task")]
    pub rows_per_task: u64,
}

fn default_text_column() -> String {
    "text".into()
}

fn default_rows_per_task() -> u64 {
    1000
}

/// One pipeline stage. The `stage` tag picks the method; stage-specific settings are kept in
/// `params` so new methods add fields without touching this type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageSpec {
    pub stage: String,
    /// Name of an entry in `backends` (stages that call a model).
    #[serde(default)]
    pub backend: Option<String>,
    /// Jinja template over the seed row's columns (and `variation`, stage outputs).
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Samples per row.
    #[serde(default)]
    pub samples: Option<u32>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Everything else the stage understands (variations, rounds, thresholds, ...).
    #[serde(flatten)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Which OpenAI-compatible endpoint a backend speaks.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendApi {
    #[default]
    Chat,
    Completions,
}

/// Concurrency: a fixed number or `auto` (find the backend's saturation point).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Concurrency {
    Fixed(u32),
    Auto(AutoKeyword),
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AutoKeyword {
    Auto,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency::Fixed(32)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// One base URL (ending in `/v1`) ...
    #[serde(default)]
    pub url: Option<String>,
    /// ... or several endpoints serving the same model.
    #[serde(default)]
    pub urls: Vec<String>,
    pub model: String,
    #[serde(default)]
    pub api: BackendApi,
    /// Name of the environment variable holding the API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Path of a file holding the API key (Kubernetes secrets mount as files).
    #[serde(default)]
    pub api_key_file: Option<String>,
    #[serde(default)]
    pub max_concurrency: Concurrency,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Sampling defaults for every request to this backend.
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

fn default_timeout_s() -> f64 {
    120.0
}

fn default_max_attempts() -> u32 {
    5
}

impl BackendSpec {
    /// All endpoint base URLs, `url` first.
    pub fn endpoints(&self) -> Vec<String> {
        let mut all: Vec<String> = self.url.iter().cloned().collect();
        all.extend(self.urls.iter().cloned());
        all
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub path: String,
    /// Rows per record batch written to Parquet (and per row group).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// zstd (default), snappy or none.
    #[serde(default = "default_compression")]
    pub compression: String,
}

fn default_batch_rows() -> usize {
    1024
}

fn default_compression() -> String {
    "zstd".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchedulingSpec {
    /// How long a worker holds a task without a heartbeat before it goes back to pending.
    #[serde(default = "default_lease_s")]
    pub lease_s: f64,
    /// Attempts per task before it is failed with its last error.
    #[serde(default = "default_task_attempts")]
    pub max_attempts: u32,
    /// Failure budget: a job whose failed seed rows (failed rows plus the rows of failed tasks)
    /// exceed this fraction of its seed rows ends `failed`, so a broken run is never reported
    /// as a success. Left out of the stored YAML at its default, so job ids stay stable.
    #[serde(
        default = "default_max_failed_fraction",
        skip_serializing_if = "is_default_max_failed_fraction"
    )]
    pub max_failed_fraction: f64,
}

fn default_lease_s() -> f64 {
    30.0
}

fn default_task_attempts() -> u32 {
    3
}

fn default_max_failed_fraction() -> f64 {
    0.01
}

fn is_default_max_failed_fraction(v: &f64) -> bool {
    *v == default_max_failed_fraction()
}

impl Default for SchedulingSpec {
    fn default() -> Self {
        SchedulingSpec {
            lease_s: default_lease_s(),
            max_attempts: default_task_attempts(),
            max_failed_fraction: default_max_failed_fraction(),
        }
    }
}

/// A spec problem, naming the field (and the line, where the YAML parser knows it).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: field `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

/// Stages this build knows how to run. Validation refuses anything else up front.
pub const KNOWN_STAGES: &[&str] = &[
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
];

impl JobSpec {
    /// Parse and validate; `file` is only used to name the source in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = serde_norway::from_str(text).map_err(|e| SpecError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        spec.validate(file)?;
        Ok(spec)
    }

    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a JobSpec always serializes")
    }

    /// Checks that need more than types: references, template syntax, numeric ranges.
    pub fn validate(&self, file: &str) -> Result<(), SpecError> {
        let invalid = |field: String, message: String| SpecError::Invalid {
            file: file.to_string(),
            field,
            message,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name".into(), "must not be empty".into()));
        }
        if self.input.rows_per_task == 0 {
            return Err(invalid(
                "input.rows_per_task".into(),
                "must be at least 1".into(),
            ));
        }
        if self.pipeline.is_empty() {
            return Err(invalid(
                "pipeline".into(),
                "needs at least one stage".into(),
            ));
        }
        for (name, backend) in &self.backends {
            let field = format!("backends.{name}");
            if backend.endpoints().is_empty() {
                return Err(invalid(field, "needs `url` or `urls`".into()));
            }
            for u in backend.endpoints() {
                if url::Url::parse(&u).is_err() {
                    return Err(invalid(format!("{field}.url"), format!("not a URL: {u}")));
                }
            }
            if let Concurrency::Fixed(0) = backend.max_concurrency {
                return Err(invalid(
                    format!("{field}.max_concurrency"),
                    "must be at least 1 or `auto`".into(),
                ));
            }
            if backend.max_attempts == 0 {
                return Err(invalid(
                    format!("{field}.max_attempts"),
                    "must be at least 1".into(),
                ));
            }
        }
        for (i, stage) in self.pipeline.iter().enumerate() {
            let at = |f: &str| format!("pipeline[{i}].{f}");
            if !KNOWN_STAGES.contains(&stage.stage.as_str()) {
                return Err(invalid(
                    at("stage"),
                    format!(
                        "unknown stage `{}` (known: {})",
                        stage.stage,
                        KNOWN_STAGES.join(", ")
                    ),
                ));
            }
            if let Some(b) = &stage.backend {
                if !self.backends.contains_key(b) {
                    return Err(invalid(
                        at("backend"),
                        format!("no backend named `{b}` in `backends`"),
                    ));
                }
            }
            if stage.stage == "dedup" {
                crate::stages::dedup::params(stage).map_err(|m| invalid(at("stage"), m))?;
                if i + 1 != self.pipeline.len() {
                    return Err(invalid(
                        at("stage"),
                        "`dedup` must be the last stage".into(),
                    ));
                }
            }
            if stage.stage == "taxonomy_qa" && stage.backend.is_none() {
                return Err(invalid(at("backend"), "required for `taxonomy_qa`".into()));
            }
            crate::stages::spec_checks::validate(stage, &self.backends)
                .map_err(|(field, message)| invalid(at(&field), message))?;
            if stage.stage == "generate" {
                if stage.backend.is_none() {
                    return Err(invalid(at("backend"), "required for `generate`".into()));
                }
                let Some(t) = &stage.template else {
                    return Err(invalid(at("template"), "required for `generate`".into()));
                };
                PromptTemplate::new(t).map_err(|e| invalid(at("template"), e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Columns of the seed rows that templates read (for checking the input before running).
    pub fn referenced_columns(&self) -> Vec<String> {
        let mut cols = Vec::new();
        for stage in &self.pipeline {
            if let Some(t) = &stage.template {
                if let Ok(t) = PromptTemplate::new(t) {
                    for c in t.variables() {
                        if !cols.contains(&c) {
                            cols.push(c);
                        }
                    }
                }
            }
        }
        cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: t
seed: 3
input: {path: /tmp/x.jsonl, format: jsonl}
pipeline:
  - stage: generate
    backend: m
    template: "Hi {{ text }}"
    variations: {audience: [kids, adults]}
backends:
  m: {url: "http://127.0.0.1:1/v1", model: x, max_concurrency: auto}
output: {path: /tmp/out}
"#;

    #[test]
    fn parses_good_spec_and_keeps_stage_params() {
        let s = JobSpec::from_yaml(GOOD, "job.yaml").unwrap();
        assert_eq!(s.pipeline[0].params["variations"]["audience"][1], "adults");
        assert_eq!(
            s.backends["m"].max_concurrency,
            Concurrency::Auto(AutoKeyword::Auto)
        );
        let again = JobSpec::from_yaml(&s.to_yaml(), "again").unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn unknown_field_names_line() {
        let bad = GOOD.replace("seed: 3", "seed: 3\nbogus: 1");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("job.yaml") && e.contains("bogus"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn template_error_names_field() {
        let bad = GOOD.replace("Hi {{ text }}", "Hi {{ text ");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pipeline[0].template"), "{e}");
    }

    #[test]
    fn unknown_backend_named() {
        let bad = GOOD.replace("backend: m", "backend: nope");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipeline[0].backend") && e.contains("nope"),
            "{e}"
        );
    }
}
