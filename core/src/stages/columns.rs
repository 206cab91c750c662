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

/// Checks the reads of every stage of `pipeline`. `seed_columns` are the seed rows' columns
/// when known (a text input, or rows read by `synthforge validate`); when `None`, a column
/// that no stage adds may still be a seed column and is not reported.
pub fn check_pipeline_columns(
    pipeline: &[StageSpec],
    seed_columns: Option<&BTreeSet<String>>,
) -> Result<(), ColumnError> {
    let mut available: BTreeSet<String> = RECORD_FIELDS.iter().map(|c| c.to_string()).collect();
    let mut added: Vec<String> = Vec::new();
    for (index, stage) in pipeline.iter().enumerate() {
        let columns = stage.config().columns();
        if let Some(seed) = seed_columns {
            for read in &columns.reads {
                if available.contains(&read.column) || seed.contains(&read.column) {
                    continue;
                }
                let seed_list = seed.iter().cloned().collect::<Vec<_>>().join(", ");
                let mut others: Vec<&str> = RECORD_FIELDS.to_vec();
                others.extend(added.iter().map(String::as_str));
                return Err(ColumnError {
                    index,
                    field: read.field.clone(),
                    message: format!(
                        "column `{}` is neither a seed column ({}) nor added by an earlier \
                         stage or the record ({})",
                        read.column,
                        if seed_list.is_empty() {
                            "none"
                        } else {
                            &seed_list
                        },
                        others.join(", ")
                    ),
                });
            }
        }
        for c in columns.adds {
            if available.insert(c.clone()) {
                added.push(c);
            }
        }
    }
    Ok(())
}
