//! `filter`: cheap heuristics (datatrove/FineWeb style) that remove degenerate samples without
//! a model call. Each check removes with its own reason so the dataset card says why rows went:
//!
//! | parameter | removes when | reason |
//! |---|---|---|
//! | `min_words`, `max_words` | word count outside the bounds | `filter:length` |
//! | `max_dup_ngram_ratio` (+ `dup_ngram`, default 3) | fraction of repeated n-grams above it | `filter:repetition` |
//! | `refusal: true` | a refusal phrase ("I'm sorry", "as an AI"...) | `filter:refusal` |
//! | `phrases: [...]` | one of the given boilerplate phrases | `filter:boilerplate` |
//! | `json: true` | not valid JSON (a surrounding code fence is allowed) | `filter:json` |
//!
//! Checks run in that order on the `field` (default `completion`: the record's completion; any
//! other name is read from the row's context). The first failing check decides the reason.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::config::{CheckScope, ConfigError, StageColumns, StageConfig};
use super::textutil::{
    dup_ngram_ratio, find_phrase, strip_code_fence, word_count, REFUSAL_PHRASES,
};
use super::{Item, Outcome, Stage, StageContext, StageError};

/// `filter` settings, as written in the job file; at least one check must be configured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_words: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_words: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_dup_ngram_ratio: Option<f64>,
    /// n of the repetition check (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dup_ngram: Option<usize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refusal: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phrases: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
    /// The text checked: `completion` (default) or a column of the row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl FilterConfig {
    fn field(&self) -> &str {
        self.field.as_deref().unwrap_or("completion")
    }
}

impl StageConfig for FilterConfig {
    fn check(&self, _scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        Checks::from_config(self).map(|_| ())
    }

    fn columns(&self) -> StageColumns {
        StageColumns::default().reading("field", [self.field()])
    }

    fn build(&self, index: usize, _ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Filter::new(self, index)?))
    }
}

/// The configured checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checks {
    pub min_words: Option<usize>,
    pub max_words: Option<usize>,
    pub max_dup_ngram_ratio: Option<f64>,
    pub dup_ngram: usize,
    pub refusal: bool,
    pub phrases: Vec<String>,
    pub json: bool,
}

impl Checks {
    /// The checks of a configuration; at least one must be configured, bounds must be sane.
    pub fn from_config(config: &FilterConfig) -> Result<Checks, ConfigError> {
        let c = Checks {
            min_words: config.min_words,
            max_words: config.max_words,
            max_dup_ngram_ratio: config.max_dup_ngram_ratio,
            dup_ngram: config.dup_ngram.unwrap_or(3).max(1),
            refusal: config.refusal,
            phrases: config.phrases.clone(),
            json: config.json,
        };
        if let (Some(lo), Some(hi)) = (c.min_words, c.max_words) {
            if lo > hi {
                return Err(ConfigError::new(
                    "min_words",
                    format!("`min_words` {lo} is above `max_words` {hi}"),
                ));
            }
        }
        if let Some(r) = c.max_dup_ngram_ratio {
            if !(0.0..=1.0).contains(&r) {
                return Err(ConfigError::new(
                    "max_dup_ngram_ratio",
                    format!("`max_dup_ngram_ratio` must be within 0..1, got {r}"),
                ));
            }
        }
        if c == (Checks {
            dup_ngram: c.dup_ngram,
            ..Default::default()
        }) {
            return Err(ConfigError::new(
                "stage",
                "no check configured (min_words, max_words, max_dup_ngram_ratio, \
                 refusal, phrases, json)",
            ));
        }
        Ok(c)
    }

    /// The removal reason for `text`, or `None` to keep it.
    pub fn reason(&self, text: &str) -> Option<&'static str> {
        let words = word_count(text);
        if self.min_words.is_some_and(|m| words < m) || self.max_words.is_some_and(|m| words > m) {
            return Some("filter:length");
        }
        if let Some(max) = self.max_dup_ngram_ratio {
            if dup_ngram_ratio(text, self.dup_ngram) > max {
                return Some("filter:repetition");
            }
        }
        if self.refusal && find_phrase(text, REFUSAL_PHRASES).is_some() {
            return Some("filter:refusal");
        }
        if find_phrase(text, &self.phrases).is_some() {
            return Some("filter:boilerplate");
        }
        if self.json && serde_json::from_str::<serde_json::Value>(strip_code_fence(text)).is_err() {
            return Some("filter:json");
        }
        None
    }
}

pub struct Filter {
    name: String,
    field: String,
    checks: Checks,
}

impl Filter {
    pub fn new(config: &FilterConfig, index: usize) -> Result<Self, StageError> {
        let checks = Checks::from_config(config)
            .map_err(|e| StageError::Config(format!("pipeline[{index}] (filter): {e}")))?;
        Ok(Filter {
            name: "filter".to_string(),
            field: config.field().to_string(),
            checks,
        })
    }
}

#[async_trait]
impl Stage for Filter {
    fn name(&self) -> &str {
        &self.name
    }

    async fn process(&self, item: Item) -> Vec<Outcome> {
        let reason = if self.field == "completion" {
            self.checks.reason(&item.record.completion)
        } else {
            let text = match item.context.get(&self.field) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            self.checks.reason(&text)
        };
        match reason {
            Some(r) => vec![Outcome::Removed {
                item,
                reason: r.to_string(),
            }],
            None => vec![Outcome::Keep(item)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(params: serde_json::Value) -> FilterConfig {
        serde_json::from_value(params).unwrap()
    }

    #[test]
    fn each_check_has_its_reason() {
        let c = Checks::from_config(&spec(serde_json::json!({
            "min_words": 3, "max_words": 40, "max_dup_ngram_ratio": 0.3,
            "refusal": true, "phrases": ["Lorem ipsum"], "json": true
        })))
        .unwrap();
        assert_eq!(c.reason("too short"), Some("filter:length"));
        assert_eq!(c.reason(&"word ".repeat(41)), Some("filter:length"));
        assert_eq!(
            c.reason("a b c a b c a b c a b c"),
            Some("filter:repetition")
        );
        assert_eq!(
            c.reason("I'm sorry, I cannot help with that request."),
            Some("filter:refusal")
        );
        assert_eq!(
            c.reason("lorem IPSUM dolor sit amet"),
            Some("filter:boilerplate")
        );
        assert_eq!(c.reason("this is not json at all"), Some("filter:json"));
        assert_eq!(
            c.reason("```json\n{\"answer\": \"forty two\", \"ok\": true}\n```"),
            None
        );
    }

    #[test]
    fn needs_a_check_and_sane_bounds() {
        assert!(Checks::from_config(&spec(serde_json::json!({}))).is_err());
        assert!(
            Checks::from_config(&spec(serde_json::json!({"min_words": 5, "max_words": 2}))).is_err()
        );
        assert!(Checks::from_config(&spec(serde_json::json!({"max_dup_ngram_ratio": 2.0}))).is_err());
        assert!(serde_json::from_value::<FilterConfig>(serde_json::json!({"min_words": "x"})).is_err());
        assert!(
            serde_json::from_value::<FilterConfig>(serde_json::json!({"threshhold": 1})).is_err()
        );
    }
}
