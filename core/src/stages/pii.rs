//! `pii`: redacts personal data (see [`super::pii_detect`]) with placeholders like `[EMAIL]`.
//!
//! Placed before a model stage, it rewrites the seed row itself (every string column of the
//! context, and the seed kept for failure records), so the personal data never reaches a
//! backend nor `failures/`. Placed after one, it rewrites the record's prompt, completion,
//! chat messages and extra columns (and the context). `target: input | output | auto`
//! (default `auto`: input while the row has no completion yet) picks the mode; `types` limits
//! the kinds (default [`DEFAULT_KINDS`]: all but `person_name`, which is asked for by name);
//! `columns` limits the seed columns rewritten in input mode.
//!
//! Counts per kind go into the item's `counters` as `pii:<kind>`, which the worker sums into
//! the dataset card. In input mode the context's columns are counted; in output mode the
//! prompt, completion and extra columns (messages repeat prompt and completion, so they are
//! redacted without being counted again).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::{CheckScope, ConfigError, StageColumns, StageConfig};
use super::pii_detect::{self, Kind, DEFAULT_KINDS};
use super::{Item, Outcome, Stage, StageContext, StageError};
use crate::input::SeedRow;

/// What a `pii` stage rewrites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The seed row while the row has no completion yet, else the output.
    #[default]
    Auto,
    Input,
    Output,
}

/// `pii` settings, as written in the job file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiiConfig {
    /// Kinds of personal data to redact (default all but `person_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// Seed columns rewritten in input mode (default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

impl PiiConfig {
    fn kinds(&self) -> Result<Vec<Kind>, ConfigError> {
        match &self.types {
            Some(names) => {
                pii_detect::kinds_named(names).map_err(|m| ConfigError::new("types", m))
            }
            None => Ok(DEFAULT_KINDS.to_vec()),
        }
    }
}

impl StageConfig for PiiConfig {
    fn check(&self, _scope: &CheckScope<'_>) -> Result<(), ConfigError> {
        self.kinds().map(|_| ())
    }

    fn columns(&self) -> StageColumns {
        StageColumns::default().reading("columns", self.columns.iter().flatten())
    }

    fn build(&self, index: usize, _ctx: &StageContext) -> Result<Arc<dyn Stage>, StageError> {
        Ok(Arc::new(Pii::new(self, index)?))
    }
}

pub struct Pii {
    name: String,
    kinds: Vec<Kind>,
    columns: Option<Vec<String>>,
    target: Target,
}

impl Pii {
    pub fn new(config: &PiiConfig, index: usize) -> Result<Self, StageError> {
        let kinds = config
            .kinds()
            .map_err(|e| StageError::Config(format!("pipeline[{index}] (pii): {e}")))?;
        Ok(Pii {
            name: "pii".to_string(),
            kinds,
            columns: config.columns.clone(),
            target: config.target.unwrap_or_default(),
        })
    }

    fn selected(&self, column: &str) -> bool {
        self.columns
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == column))
    }

    /// Redacts every string inside `v` (recursively), counting into `counts`.
    fn value(&self, v: &mut Value, counts: &mut BTreeMap<String, u64>) {
        match v {
            Value::String(s) => *s = pii_detect::redact(s, &self.kinds, counts),
            Value::Array(a) => a.iter_mut().for_each(|x| self.value(x, counts)),
            Value::Object(o) => o.values_mut().for_each(|x| self.value(x, counts)),
            _ => {}
        }
    }

    fn columns_of(&self, map: &mut Map<String, Value>, counts: &mut BTreeMap<String, u64>) {
        for (k, v) in map.iter_mut() {
            if self.selected(k) {
                self.value(v, counts);
            }
        }
    }

    fn input(&self, item: &mut Item, counts: &mut BTreeMap<String, u64>) {
        self.columns_of(&mut item.context, counts);
        let mut seed: SeedRow = (*item.seed).clone();
        self.columns_of(&mut seed.columns, &mut BTreeMap::new());
        item.seed = Arc::new(seed);
    }

    fn output(&self, item: &mut Item, counts: &mut BTreeMap<String, u64>) {
        let silent = &mut BTreeMap::new();
        let r = &mut item.record;
        if let Some(p) = r.prompt.as_mut() {
            *p = pii_detect::redact(p, &self.kinds, counts);
        }
        r.completion = pii_detect::redact(&r.completion, &self.kinds, counts);
        for v in r.extra.values_mut() {
            *v = pii_detect::redact(v, &self.kinds, counts);
        }
        for m in r.messages.iter_mut().flatten() {
            m.content = pii_detect::redact(&m.content, &self.kinds, silent);
        }
        for v in item.context.values_mut() {
            self.value(v, silent);
        }
        let mut seed: SeedRow = (*item.seed).clone();
        self.columns_of(&mut seed.columns, silent);
        item.seed = Arc::new(seed);
    }
}

#[async_trait]
impl Stage for Pii {
    fn name(&self) -> &str {
        &self.name
    }

    async fn process(&self, mut item: Item) -> Vec<Outcome> {
        let mut counts = BTreeMap::new();
        let input = match self.target {
            Target::Input => true,
            Target::Output => false,
            Target::Auto => item.record.prompt.is_none() && item.record.completion.is_empty(),
        };
        if input {
            self.input(&mut item, &mut counts);
        } else {
            self.output(&mut item, &mut counts);
        }
        for (k, n) in counts {
            *item.counters.entry(format!("pii:{k}")).or_default() += n;
        }
        vec![Outcome::Keep(item)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn item(text: &str) -> Item {
        let mut columns = Map::new();
        columns.insert("text".into(), Value::String(text.into()));
        columns.insert("n".into(), Value::from(3));
        Item {
            seed: Arc::new(SeedRow {
                index: 0,
                id: "r0".into(),
                columns: columns.clone(),
                source: "s.jsonl:1".into(),
            }),
            record: Record::default(),
            context: columns,
            counters: Default::default(),
        }
    }

    fn stage(params: Value) -> Pii {
        let config: PiiConfig = serde_json::from_value(params).unwrap();
        Pii::new(&config, 0).unwrap()
    }

    #[tokio::test]
    async fn input_mode_rewrites_context_and_seed() {
        let out = stage(serde_json::json!({}))
            .process(item("write to bob@corp.com"))
            .await;
        let Outcome::Keep(it) = &out[0] else { panic!() };
        assert_eq!(it.context["text"], "write to [EMAIL]");
        assert_eq!(it.seed.columns["text"], "write to [EMAIL]");
        assert_eq!(it.counters["pii:email"], 1);
    }

    #[tokio::test]
    async fn names_only_when_asked_for() {
        let text = "Dr. Okafor can be reached at 221B Baker Street";
        let out = stage(serde_json::json!({})).process(item(text)).await;
        let Outcome::Keep(it) = &out[0] else { panic!() };
        assert_eq!(it.context["text"], "Dr. Okafor can be reached at [ADDRESS]");
        let out = stage(serde_json::json!({"types": ["person_name"]}))
            .process(item(text))
            .await;
        let Outcome::Keep(it) = &out[0] else { panic!() };
        assert_eq!(
            it.context["text"],
            "Dr. [NAME] can be reached at 221B Baker Street"
        );
        assert_eq!(it.counters["pii:person_name"], 1);
    }

    #[tokio::test]
    async fn output_mode_counts_once() {
        let mut it = item("x");
        it.record.prompt = Some("call 555-123-4567".into());
        it.record.completion = "ok, mail a@b.io".into();
        it.record.messages = Some(vec![crate::record::ChatMessage::new(
            "assistant",
            "ok, mail a@b.io",
        )]);
        let out = stage(serde_json::json!({})).process(it).await;
        let Outcome::Keep(it) = &out[0] else { panic!() };
        assert_eq!(it.record.completion, "ok, mail [EMAIL]");
        assert_eq!(
            it.record.messages.as_ref().unwrap()[0].content,
            "ok, mail [EMAIL]"
        );
        assert_eq!(it.counters["pii:email"], 1);
        assert_eq!(it.counters["pii:phone"], 1);
    }
}
