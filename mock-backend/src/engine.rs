//! What the "model" answers: one deterministic completion per sample.

use serde_json::Value;

use crate::json_gen;
use crate::rules::ReplyRules;
use crate::text::{
    apply_stop, count_tokens, hash_parts, prose, reply_length, sample_seed, truncate_tokens,
    SplitMix64,
};

/// Shape of the reply, from `response_format`.
#[derive(Debug, Clone, Copy)]
pub enum Format<'a> {
    /// Prose.
    Text,
    /// Any JSON object.
    JsonObject,
    /// A JSON object following this schema.
    JsonSchema(&'a Value),
}

/// Sampling settings shared by all samples of a request.
#[derive(Debug, Clone, Copy)]
pub struct Sampling<'a> {
    /// Model name (part of the text seed: two models answer differently).
    pub model: &'a str,
    /// Request seed, or `--seed`.
    pub seed: u64,
    /// Word limit.
    pub max_tokens: u64,
    /// Stop sequences.
    pub stops: &'a [String],
    /// Reply shape.
    pub format: Format<'a>,
}

/// One generated sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The text.
    pub text: String,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
    /// Its word count.
    pub tokens: u64,
}

/// Hash identifying (model, prompt, seed); all samples derive from it.
pub fn request_hash(s: &Sampling<'_>, prompt: &str) -> u64 {
    hash_parts(&[s.model.as_bytes(), prompt.as_bytes(), &s.seed.to_le_bytes()])
}

/// Generates sample `index` for `prompt`. `match_text` (last user message,
/// or the prompt) is what reply rules look at; `hash` is [`request_hash`].
///
/// Text mode: between `max_tokens / 2` and `max_tokens` words, `length` when
/// the limit is reached. JSON modes ignore the word limit (a truncated JSON
/// object would be useless) and finish with `stop`. Rule replies are cut to
/// `max_tokens` words. Stop sequences apply last, in every mode.
pub fn generate(
    s: &Sampling<'_>,
    rules: &ReplyRules,
    prompt: &str,
    match_text: &str,
    hash: u64,
    index: u32,
) -> Sample {
    let mut rng = SplitMix64::new(sample_seed(hash, index));
    let ruled = if rules.is_empty() {
        None
    } else {
        rules.reply_for(match_text, prompt)
    };
    let (mut text, mut finish_reason) = match ruled {
        Some(mut reply) => {
            let cut = truncate_tokens(&mut reply, s.max_tokens);
            (reply, if cut { "length" } else { "stop" })
        }
        None => {
            let words = reply_length(&mut rng, s.max_tokens);
            match s.format {
                Format::Text => {
                    let finish = if words == s.max_tokens {
                        "length"
                    } else {
                        "stop"
                    };
                    (prose(rng.next_u64(), words), finish)
                }
                Format::JsonObject => (json_gen::json_object(&mut rng, words), "stop"),
                Format::JsonSchema(schema) => {
                    (json_gen::from_schema(&mut rng, schema, words), "stop")
                }
            }
        }
    };
    if apply_stop(&mut text, s.stops) {
        finish_reason = "stop";
    }
    let tokens = count_tokens(&text);
    Sample {
        text,
        finish_reason,
        tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ReplyRule;

    fn sampling(max_tokens: u64) -> Sampling<'static> {
        Sampling {
            model: "m",
            seed: 0,
            max_tokens,
            stops: &[],
            format: Format::Text,
        }
    }

    #[test]
    fn deterministic_and_distinct() {
        let s = sampling(40);
        let r = ReplyRules::default();
        let h = request_hash(&s, "hello");
        let a = generate(&s, &r, "hello", "hello", h, 0);
        let b = generate(&s, &r, "hello", "hello", h, 0);
        let c = generate(&s, &r, "hello", "hello", h, 1);
        let h2 = request_hash(&s, "hello!");
        let d = generate(&s, &r, "hello!", "hello!", h2, 0);
        assert_eq!(a.text, b.text);
        assert_ne!(a.text, c.text);
        assert_ne!(a.text, d.text);
        assert!((20..=40).contains(&a.tokens));
        assert_eq!(a.tokens, count_tokens(&a.text));
        assert_eq!(a.finish_reason == "length", a.tokens == 40);
    }

    #[test]
    fn rule_reply_is_truncated() {
        let r = ReplyRules::new(vec![ReplyRule {
            contains: "x".into(),
            reply: "one two three".into(),
        }]);
        let s = sampling(2);
        let out = generate(&s, &r, "x", "x", 0, 0);
        assert_eq!(out.text, "one two");
        assert_eq!(out.finish_reason, "length");
        let s = sampling(10);
        let out = generate(&s, &r, "x", "x", 0, 0);
        assert_eq!(
            (out.text.as_str(), out.finish_reason),
            ("one two three", "stop")
        );
    }
}
