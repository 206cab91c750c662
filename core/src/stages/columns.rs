//! The pipeline's columns checked as a whole: every column a stage reads must exist when the
//! stage runs, as a seed column, a column an earlier stage added, or one of the record's own
//! fields. A misspelt column (`dedup columns: [txt]`) would otherwise compare empty texts,
//! redact nothing or check nothing, silently.

use std::collections::BTreeSet;

use super::StageSpec;

/// Record fields every stage can read (empty until a stage fills them).
pub const RECORD_FIELDS: &[&str] = &["completion", "prompt"];

/// A read of a column that is not there when the stage runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipeline[{index}].{field}: {message}")]
pub struct ColumnError {
    /// Position of the stage in the pipeline.
    pub index: usize,
    /// The stage's field that named the column (`columns`, `fields`, `template`...).
    pub field: String,
    pub message: String,
}

/// Checks the reads of every stage of `pipeline` and returns the first problem; see
/// [`pipeline_column_problems`].
pub fn check_pipeline_columns(
    pipeline: &[StageSpec],
    seed_columns: Option<&BTreeSet<String>>,
) -> Result<(), ColumnError> {
    match pipeline_column_problems(pipeline, seed_columns)
        .into_iter()
        .next()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Every read of a column that is not there when its stage runs, in pipeline order.
/// `seed_columns` are the seed rows' columns when known (a text input, the input's schema, or
/// rows read by `synthforge validate`); when `None`, a column that no stage adds may still be
/// a seed column and is not reported. Each message lists the columns available at that stage
/// and suggests the closest one.
pub fn pipeline_column_problems(
    pipeline: &[StageSpec],
    seed_columns: Option<&BTreeSet<String>>,
) -> Vec<ColumnError> {
    let mut problems = Vec::new();
    // Seed columns first (what the user wrote), then the record's fields, then what stages add.
    let mut available: Vec<String> = seed_columns
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default();
    for c in RECORD_FIELDS {
        if !available.iter().any(|a| a == c) {
            available.push(c.to_string());
        }
    }
    for (index, stage) in pipeline.iter().enumerate() {
        let columns = stage.config().columns();
        if seed_columns.is_some() {
            for read in &columns.reads {
                if available.contains(&read.column) {
                    continue;
                }
                let guess = crate::suggest::closest(&read.column, &available)
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                problems.push(ColumnError {
                    index,
                    field: read.field.clone(),
                    message: format!(
                        "no column `{}` when this stage runs{guess} (available: {})",
                        read.column,
                        available.join(", ")
                    ),
                });
            }
        }
        for c in columns.adds {
            if !available.contains(&c) {
                available.push(c);
            }
        }
    }
    problems
}
