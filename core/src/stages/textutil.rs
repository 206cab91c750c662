//! Text helpers shared by the quality stages (filter, evolve, decontaminate, judge): the same
//! normalisation and n-gramming everywhere, so that a threshold means the same thing in each.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};

/// Lowercases and replaces every non-alphanumeric character by a space, then splits on
/// whitespace: "Hello, World!" → ["hello", "world"]. Used before n-gramming so punctuation and
/// case differences do not hide an overlap.
pub fn normalized_words(text: &str) -> Vec<String> {
    let lowered: String = text
        .chars()
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    lowered.split_whitespace().map(str::to_string).collect()
}

/// Words as a human counts them (whitespace separated), for length bounds.
pub fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// A stable 64-bit hash of an n-gram of words (the words joined by one space). `DefaultHasher`
/// with its fixed keys is deterministic for a given build, which is all a per-job cache needs.
pub fn hash_ngram(words: &[String]) -> u64 {
    let mut h = DefaultHasher::new();
    for w in words {
        w.hash(&mut h);
        0xffu8.hash(&mut h);
    }
    h.finish()
}

/// Hashes of every n-gram of `words` (none when there are fewer than `n` words).
pub fn ngram_hashes(words: &[String], n: usize) -> impl Iterator<Item = u64> + '_ {
    let n = n.max(1);
    words.windows(n).map(hash_ngram)
}

/// Fraction of n-grams that repeat an earlier n-gram of the same text (0.0 for texts with fewer
/// than `n` words). "a b c a b c a b c" with n=3 has 7 trigrams of which 4 repeat → 0.57.
/// This is the datatrove/Gopher "duplicate n-gram" signal for degenerate, looping generations.
pub fn dup_ngram_ratio(text: &str, n: usize) -> f64 {
    let words = normalized_words(text);
    let total = words.len().saturating_sub(n.max(1) - 1);
    if words.len() < n.max(1) || total == 0 {
        return 0.0;
    }
    let mut seen = HashSet::with_capacity(total);
    let dup = ngram_hashes(&words, n).filter(|h| !seen.insert(*h)).count();
    dup as f64 / total as f64
}

/// Phrases by which chat models refuse or talk about themselves instead of answering.
pub const REFUSAL_PHRASES: &[&str] = &[
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "as an ai",
    "as a language model",
    "as an ai language model",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot help with",
    "i can't help with",
    "i cannot assist",
    "i can't assist",
    "i'm unable to",
    "i am unable to",
    "i won't be able to",
    "cannot comply",
];

/// The first of `phrases` that `text` contains, compared case-insensitively and with curly
/// apostrophes straightened (models emit both).
pub fn find_phrase<'a, S: AsRef<str>>(text: &str, phrases: &'a [S]) -> Option<&'a str> {
    let t = text.to_lowercase().replace(['\u{2019}', '\u{2018}'], "'");
    phrases
        .iter()
        .map(AsRef::as_ref)
        .find(|p| !p.is_empty() && t.contains(&p.to_lowercase()))
}

/// Strips a surrounding Markdown code fence (```json … ```), which models add around JSON.
pub fn strip_code_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let body = match rest.find('\n') {
        Some(i) => &rest[i + 1..],
        None => rest,
    };
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_punctuation() {
        assert_eq!(
            normalized_words("Hello, World!  It's"),
            ["hello", "world", "it", "s"]
        );
        assert_eq!(
            ngram_hashes(&normalized_words("The cat sat."), 2).collect::<Vec<_>>(),
            ngram_hashes(&normalized_words("the CAT  sat"), 2).collect::<Vec<_>>()
        );
    }

    #[test]
    fn dup_ratio_flags_loops_not_prose() {
        let looped = dup_ngram_ratio("a b c a b c a b c", 3);
        assert!((looped - 4.0 / 7.0).abs() < 1e-9, "{looped}");
        assert_eq!(dup_ngram_ratio("one two three four five six", 3), 0.0);
        assert_eq!(dup_ngram_ratio("too short", 3), 0.0);
    }

    #[test]
    fn phrases_and_fences() {
        assert_eq!(
            find_phrase("Well, I\u{2019}m sorry but no.", REFUSAL_PHRASES),
            Some("i'm sorry")
        );
        assert_eq!(
            find_phrase("Photosynthesis converts light.", REFUSAL_PHRASES),
            None
        );
        assert_eq!(strip_code_fence("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_code_fence(" {\"a\": 1} "), "{\"a\": 1}");
    }
}
