//! The seed columns a job reads, so that a columnar reader decodes only those.
//!
//! A job reads its `id_column`, the `text_column`, and whatever its stages read (the columns
//! they name, their templates' variables). A stage that reads every seed column (`pii`
//! rewrites all of them unless told which) makes the job read all. Unread columns are then
//! absent from the rows: a failure row's `input` holds the columns the job reads.

use std::collections::BTreeSet;

use crate::spec::JobSpec;

/// Stages that may read any seed column whatever their configuration says.
const READS_EVERY_SEED_COLUMN: &[&str] = &["pii"];

/// What a reader may leave out of a row: the columns the job reads (`None`: all of them).
/// Parquet decodes only these; other formats parse whole rows anyway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadColumns(pub Option<BTreeSet<String>>);

impl ReadColumns {
    /// Every column.
    pub fn all() -> Self {
        ReadColumns(None)
    }

    /// The columns `spec` reads, or all when a stage may read any.
    pub fn for_job(spec: &JobSpec) -> Self {
        if spec
            .pipeline
            .iter()
            .any(|s| READS_EVERY_SEED_COLUMN.contains(&s.kind()))
        {
            return Self::all();
        }
        let mut read: BTreeSet<String> = spec.input.id_column.iter().cloned().collect();
        read.insert(spec.input.text_column.clone());
        for stage in &spec.pipeline {
            read.extend(stage.config().columns().reads.into_iter().map(|r| r.column));
        }
        ReadColumns(Some(read))
    }

    /// Whether rows keep `column`.
    pub fn keeps(&self, column: &str) -> bool {
        self.0.as_ref().is_none_or(|c| c.contains(column))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pipeline: &str) -> JobSpec {
        let yaml = format!(
            r#"
name: cols
input: {{ path: /tmp/s.parquet, format: parquet, id_column: doc_id }}
backends:
  gen: {{ url: "http://127.0.0.1:1/v1", model: m }}
pipeline:
{pipeline}
output: {{ path: /tmp/out }}
"#
        );
        JobSpec::from_yaml(&yaml, "job.yaml").unwrap()
    }

    #[test]
    fn a_job_reads_its_id_and_what_its_stages_read() {
        let s = spec(
            "  - { stage: generate, backend: gen, template: \"Write about {{ topic }} for {{ audience }}\" }",
        );
        let cols = ReadColumns::for_job(&s);
        for c in ["doc_id", "topic", "audience"] {
            assert!(cols.keeps(c), "{c}: {cols:?}");
        }
        assert!(!cols.keeps("body"), "an unread column is left out");
    }

    #[test]
    fn a_pii_stage_reads_every_column() {
        let s = spec(
            "  - { stage: pii }\n  - { stage: generate, backend: gen, template: \"{{ topic }}\" }",
        );
        assert_eq!(ReadColumns::for_job(&s), ReadColumns::all());
        assert!(ReadColumns::all().keeps("anything"));
    }
}
