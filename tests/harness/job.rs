//! Job files for tests: a one-stage `generate` job against one backend, with every field a test
//! may want to vary exposed as a public field. String values are written as JSON strings, which
//! YAML reads as double-quoted scalars, so paths and templates never need hand escaping.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The template used by default; [`JobSpec::expected_prompt`] renders it for a seed text.
pub const DEFAULT_TEMPLATE: &str = "Write a short lesson about: {{ text }}";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeedFormat {
    Parquet,
    Jsonl,
    Text,
}

impl SeedFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SeedFormat::Parquet => "parquet",
            SeedFormat::Jsonl => "jsonl",
            SeedFormat::Text => "text",
        }
    }
}

#[derive(Clone, Debug)]
pub struct JobSpec {
    pub name: String,
    pub seed: u64,
    /// Path, `file://` or `s3://` URL, or glob.
    pub input_path: String,
    pub format: SeedFormat,
    pub id_column: String,
    pub text_column: String,
    pub rows_per_task: u64,
    /// `input.limit`. With a limit, JSONL/text are planned by scanning lines (exact rows per
    /// task) instead of byte ranges cut from sizes; tests that place rows in given tasks set it.
    pub limit: Option<u64>,
    pub template: String,
    pub max_tokens: u32,
    pub backend_url: String,
    pub model: String,
    pub max_concurrency: u32,
    /// Path or `s3://` URL.
    pub output_path: String,
    /// Raw YAML appended at the end (top-level keys), for fields this struct does not model.
    pub extra_yaml: String,
}

impl JobSpec {
    /// A job named `e2e` reading `input` (columns `id`, `text`, 100 rows per task) and writing
    /// to `output`, generating one completion per row with backend `mock` at `backend_url`.
    pub fn new(
        input: impl AsRef<OsStr>,
        format: SeedFormat,
        backend_url: &str,
        output: impl AsRef<OsStr>,
    ) -> Self {
        Self {
            name: "e2e".into(),
            seed: 7,
            input_path: input.as_ref().to_string_lossy().into_owned(),
            format,
            id_column: "id".into(),
            text_column: "text".into(),
            rows_per_task: 100,
            limit: None,
            template: DEFAULT_TEMPLATE.into(),
            max_tokens: 32,
            backend_url: backend_url.into(),
            model: "mock-model".into(),
            max_concurrency: 64,
            output_path: output.as_ref().to_string_lossy().into_owned(),
            extra_yaml: String::new(),
        }
    }

    /// The prompt [`DEFAULT_TEMPLATE`] renders for a row whose text is `text`.
    pub fn expected_prompt(text: &str) -> String {
        DEFAULT_TEMPLATE.replace("{{ text }}", text)
    }

    pub fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).expect("quote string");
        let mut yaml = format!(
            "name: {name}
seed: {seed}
input:
  path: {input}
  format: {format}
  id_column: {id_column}
  text_column: {text_column}
  rows_per_task: {rows_per_task}
{limit}pipeline:
  - stage: generate
    backend: mock
    template: {template}
    max_tokens: {max_tokens}
backends:
  mock:
    url: {url}
    model: {model}
    api: chat
    max_concurrency: {max_concurrency}
output:
  path: {output}
",
            name = q(&self.name),
            seed = self.seed,
            input = q(&self.input_path),
            format = self.format.as_str(),
            id_column = q(&self.id_column),
            text_column = q(&self.text_column),
            rows_per_task = self.rows_per_task,
            limit = self
                .limit
                .map_or(String::new(), |l| format!("  limit: {l}\n")),
            template = q(&self.template),
            max_tokens = self.max_tokens,
            url = q(&self.backend_url),
            model = q(&self.model),
            max_concurrency = self.max_concurrency,
            output = q(&self.output_path),
        );
        yaml.push_str(&self.extra_yaml);
        yaml
    }

    /// Writes the job to `path`.
    #[track_caller]
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_yaml())
            .unwrap_or_else(|e| panic!("write job {}: {e}", path.display()));
    }

    /// Writes the job to `<dir>/job.yaml` and returns that path.
    #[track_caller]
    pub fn write_to(&self, dir: &Path) -> PathBuf {
        let path = dir.join("job.yaml");
        self.write(&path);
        path
    }
}
