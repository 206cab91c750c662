//! Prompt templates: Jinja (minijinja) over a seed row's columns and stage context.
//!
//! Templates are compiled once per task and rendered per row. Undefined variables are an
//! error (strict mode): a typo in a column name must fail loudly, not send an empty prompt.

use std::collections::HashSet;
use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};

/// A compiled prompt template with its lineage hash.
#[derive(Clone)]
pub struct PromptTemplate {
    env: Arc<Environment<'static>>,
    hash: String,
    source: Arc<str>,
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
        Ok(PromptTemplate {
            env: Arc::new(env),
            hash,
            source: source.into(),
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
        let t = self.env.get_template("prompt").expect("added in new()");
        let vars: HashSet<String> = t.undeclared_variables(false);
        let mut v: Vec<String> = vars.into_iter().collect();
        v.sort();
        v
    }

    pub fn render(&self, ctx: &serde_json::Value) -> Result<String, TemplateError> {
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
        assert!(e.contains("undefined"), "{e}");
    }

    #[test]
    fn syntax_error_reported() {
        let e = PromptTemplate::new("About {{ text ")
            .unwrap_err()
            .to_string();
        assert!(e.contains("syntax"), "{e}");
    }
}
