//! Reply rules: fixed answers for prompts containing a substring.
//!
//! Pipelines parse some replies (a judge's score, a yes/no filter), which
//! random prose cannot satisfy. Rules let a test or demo script those replies
//! while everything else stays generated.

use std::path::Path;

use serde::Deserialize;

use crate::text::hash_parts;
use crate::MockError;

/// One rule: if `contains` occurs in the last user message (or the prompt),
/// reply `reply`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReplyRule {
    /// Substring to look for (case-sensitive).
    pub contains: String,
    /// Reply text; `{hash}` is replaced by a digit derived from the prompt.
    pub reply: String,
}

/// Ordered rules; the first match wins.
#[derive(Debug, Clone, Default)]
pub struct ReplyRules(Vec<ReplyRule>);

impl ReplyRules {
    /// Rules from an explicit list (unit tests).
    #[cfg(test)]
    pub fn new(rules: Vec<ReplyRule>) -> Self {
        Self(rules)
    }

    /// Loads the JSON file given to `--reply-rules`.
    pub fn load(path: &Path) -> Result<Self, MockError> {
        let err = |reason: String| MockError::ReplyRules {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let rules: Vec<ReplyRule> =
            serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
        Ok(Self(rules))
    }

    /// Whether there is no rule at all (lets callers skip the scan).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The reply for a request, if a rule matches `match_text`. `{hash}`
    /// becomes `hash(prompt) % 10`, so different prompts get varied but
    /// reproducible digits (e.g. judge scores).
    pub fn reply_for(&self, match_text: &str, prompt: &str) -> Option<String> {
        let rule = self.0.iter().find(|r| match_text.contains(&r.contains))?;
        if rule.reply.contains("{hash}") {
            let digit = hash_parts(&[prompt.as_bytes()]) % 10;
            Some(rule.reply.replace("{hash}", &digit.to_string()))
        } else {
            Some(rule.reply.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ReplyRules {
        ReplyRules::new(vec![
            ReplyRule {
                contains: "judge".into(),
                reply: "Score: {hash}".into(),
            },
            ReplyRule {
                contains: "".into(),
                reply: "fallback".into(),
            },
        ])
    }

    #[test]
    fn first_match_wins_and_hash_is_a_digit() {
        let r = rules();
        let a = r.reply_for("please judge this", "p1").unwrap();
        assert!(a.starts_with("Score: "));
        let d = a.trim_start_matches("Score: ");
        assert_eq!(d.len(), 1);
        assert!(d.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(a, r.reply_for("please judge this", "p1").unwrap());
        assert_eq!(r.reply_for("other", "p").unwrap(), "fallback");
        let digits: std::collections::HashSet<_> = (0..50)
            .map(|i| r.reply_for("judge", &format!("prompt {i}")).unwrap())
            .collect();
        assert!(digits.len() > 3, "digits should vary: {digits:?}");
    }

    #[test]
    fn load_reports_bad_file() {
        let e = ReplyRules::load(Path::new("/nonexistent/rules.json")).unwrap_err();
        assert!(matches!(e, MockError::ReplyRules { .. }));
    }
}
