//! Where a job's seed rows come from: the `input` section of a job file.
//!
//! Plain data with no dependency on the rest of the crate, so that the readers in `input` can use
//! it without depending on the whole job spec (which depends on the stages, which read input).

use serde::{Deserialize, Serialize};

/// The seed corpus' file format.
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
