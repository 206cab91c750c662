//! Prompt templates: Jinja (minijinja) over a seed row's columns and stage context.
//!
//! Templates are compiled once per task and rendered per row. Undefined variables are an
//! error (strict mode): a typo in a column name must fail loudly, not send an empty prompt.

use std::sync::Arc;

/// Names minijinja provides itself (loop helpers, globals); never reported as missing columns.
const BUILTINS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
    "caller",
    "varargs",
    "kwargs",
];

use minijinja::{Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};

/// A compiled prompt template with its lineage hash.
#[derive(Clone)]
pub struct PromptTemplate {
    env: Arc<Environment<'static>>,
    hash: String,
    source: Arc<str>,
    /// Top-level variables, computed once: checked per row to name a missing column.
    vars: Arc<Vec<String>>,
}

impl std::fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTemplate")
            .field("hash", &self.hash)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template syntax: {0}")]
    Syntax(String),
    #[error("template render: {0}")]
    Render(String),
    #[error("missing column {}: the template reads it but the row has no such field (row has: {})", .missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "), .present.join(", "))]
    MissingColumn {
        missing: Vec<String>,
        present: Vec<String>,
    },
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    if let Some(line) = e.line() {
        if !msg.contains("line") {
            msg.push_str(&format!(" (template line {line})"));
        }
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

impl PromptTemplate {
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(false);
        env.add_template_owned("prompt", source.to_string())
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let hash = hex::encode(&Sha256::digest(source.as_bytes())[..8]);
        let vars = {
            let t = env.get_template("prompt").expect("just added");
            let mut v: Vec<String> = t.undeclared_variables(false).into_iter().collect();
            v.sort();
            v
        };
        Ok(PromptTemplate {
            env: Arc::new(env),
            hash,
            source: source.into(),
            vars: Arc::new(vars),
        })
    }

    /// Short content hash, stored with every record as lineage.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Top-level variables the template reads (seed columns and context keys).
    pub fn variables(&self) -> Vec<String> {
        self.vars.as_ref().clone()
    }

    /// Renders; a top-level variable absent from `ctx` (or null) is reported by name, so a row
    /// without its text column fails with "missing column `text`", not a generic render error.
    pub fn render(&self, ctx: &serde_json::Value) -> Result<String, TemplateError> {
        if let Some(obj) = ctx.as_object() {
            let missing: Vec<String> = self
                .vars
                .iter()
                .filter(|v| obj.get(v.as_str()).is_none_or(|x| x.is_null()))
                .filter(|v| !BUILTINS.contains(&v.as_str()))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let mut present: Vec<String> = obj.keys().cloned().collect();
                present.sort();
                return Err(TemplateError::MissingColumn { missing, present });
            }
        }
        let t = self.env.get_template("prompt").expect("added in new()");
        t.render(ctx)
            .map_err(|e| TemplateError::Render(describe(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_columns_and_reports_variables() {
        let t = PromptTemplate::new("Write for {{ audience }} about {{ text | upper }}").unwrap();
        assert_eq!(t.variables(), vec!["audience", "text"]);
        let out = t
            .render(&json!({"text": "bees", "audience": "kids"}))
            .unwrap();
        assert_eq!(out, "Write for kids about BEES");
        assert_eq!(t.hash().len(), 16);
    }

    #[test]
    fn missing_column_is_an_error_naming_it() {
        let t = PromptTemplate::new("About {{ txet }}").unwrap();
        let e = t.render(&json!({"text": "bees"})).unwrap_err().to_string();
        assert!(
            e.contains("missing column `txet`") && e.contains("text"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_reported() {
        let e = PromptTemplate::new("About {{ text ")
            .unwrap_err()
            .to_string();
        assert!(e.contains("syntax"), "{e}");
    }
}
