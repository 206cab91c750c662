//! What every stage's configuration provides: its own checks, the columns it reads and adds,
//! and the constructor of the runnable stage.
//!
//! A configuration is plain data parsed from the job file (`#[serde(deny_unknown_fields)]`, so a
//! misspelt key fails with its name and line); everything a stage needs to know about the rest of
//! the job at validation time comes in through [`CheckScope`], never from the job spec itself.

use std::sync::Arc;

use super::{Stage, StageContext, StageError};
use crate::template::PromptTemplate;

/// A configuration problem, naming the stage's field (`threshold`, `columns`...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a stage's checks may consult about the rest of the job.
#[derive(Debug, Clone, Copy)]
pub struct CheckScope<'a> {
    /// Names of the job's `backends` entries.
    pub backends: &'a [&'a str],
}

impl CheckScope<'_> {
    /// `Ok` when `name` is one of the job's backends; the error names `field`.
    pub fn backend(&self, field: &str, name: &str) -> Result<(), ConfigError> {
        if self.backends.contains(&name) {
            Ok(())
        } else {
            Err(ConfigError::new(
                field,
                format!("no backend named `{name}` in `backends`"),
            ))
        }
    }
}

/// A column a stage reads, with the field of its configuration that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRead {
    pub field: String,
    pub column: String,
}

/// The columns a stage reads (from the seed row, earlier stages or the record) and the columns
/// it adds for later stages and the output, so a pipeline can be checked as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageColumns {
    pub reads: Vec<ColumnRead>,
    pub adds: Vec<String>,
}

impl StageColumns {
    /// Adds reads of `columns`, named by `field`.
    pub fn reading<S: AsRef<str>>(
        mut self,
        field: &str,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        for c in columns {
            let column = c.as_ref().to_string();
            if !self
                .reads
                .iter()
                .any(|r| r.field == field && r.column == column)
            {
                self.reads.push(ColumnRead {
                    field: field.to_string(),
                    column,
                });
            }
        }
        self
    }

    /// Adds the top-level variables of the template in `field`, except those the stage
    /// provides to the template itself (`provided`). A template that does not compile reads
    /// nothing here: [`StageConfig::check`] reports it.
    pub fn reading_template(self, field: &str, source: Option<&str>, provided: &[&str]) -> Self {
        let vars: Vec<String> = source
            .and_then(|s| PromptTemplate::new(s).ok())
            .map(|t| t.variables())
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !provided.contains(&v.as_str()))
            .collect();
        self.reading(field, vars)
    }

    /// Adds columns this stage fills.
    pub fn adding<S: AsRef<str>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        for c in columns {
            let c = c.as_ref().to_string();
            if !self.adds.contains(&c) {
                self.adds.push(c);
            }
        }
        self
    }
}

/// `Ok` when `source` compiles as a prompt template; the error names `field`.
pub fn check_template(field: &str, source: Option<&str>) -> Result<(), ConfigError> {
    match source {
        Some(s) => PromptTemplate::new(s)
            .map(|_| ())
            .map_err(|e| ConfigError::new(field, e.to_string())),
        None => Ok(()),
    }
}

/// Most rounds of one iterating stage (`evolve`, `revise`): each round is a model call per row.
pub const MAX_ROUNDS: u32 = 10;

/// Bounds an iterating stage's `rounds`: each round is another model call per row.
pub fn check_rounds(rounds: Option<u32>) -> Result<(), ConfigError> {
    match rounds {
        Some(n) if n > MAX_ROUNDS => Err(ConfigError::new(
            "rounds",
            format!("{n} rounds; at most {MAX_ROUNDS} are accepted"),
        )),
        _ => Ok(()),
    }
}

/// One stage kind's configuration. The registry (`super::registry`) maps each `stage:` name to
/// its implementation.
pub trait StageConfig {
    /// Checks that need more than types: ranges, names of backends, template syntax.
    fn check(&self, _scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The columns the stage reads and adds.
    fn columns(&self) -> StageColumns;

    /// The prompt template the stage renders over the seed row, for previews.
    fn template(&self) -> Option<&str> {
        None
    }

    /// Whether the stage must be the last of the pipeline (it runs over the whole job).
    fn last_only(&self) -> bool {
        false
    }

    /// The runnable stage for one task; `index` is its position in the pipeline.
    fn build(&self, index: usize, ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError>;
}
