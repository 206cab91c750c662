//! Deterministic prose generation and the crate's token model.
//!
//! A "token" is a whitespace-separated word everywhere in this crate, so that
//! `usage` numbers are easy to predict in tests. Text is drawn from a small
//! PRNG seeded by a hash of the request, so the same request always yields the
//! same text and different prompts yield different texts.

use sha2::{Digest, Sha256};

use crate::vocab::VOCAB;

/// Number of tokens (whitespace-separated words) in `text`.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// SplitMix64: a tiny, well-mixed PRNG whose output is stable across crate
/// versions (unlike `rand`'s generators), so generated text never changes.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// Generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform integer in `lo..=hi` (slight modulo bias is irrelevant here).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Uniform float in `[0, 1)`.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Finaliser of SplitMix64; also used to derive independent sub-seeds.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64-bit hash of the given parts (SHA-256, truncated). Parts are
/// length-prefixed so `("ab","c")` and `("a","bc")` differ.
pub fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("sha256 has 32 bytes"))
}

/// Seed of sample `index` of a request whose hash is `request_hash`.
pub fn sample_seed(request_hash: u64, index: u32) -> u64 {
    mix64(request_hash ^ mix64(u64::from(index) + 1))
}

/// Deterministic number of words for a reply limited to `max_tokens`:
/// between `max_tokens / 2` (at least 1) and `max_tokens`, inclusive.
pub fn reply_length(rng: &mut SplitMix64, max_tokens: u64) -> u64 {
    if max_tokens == 0 {
        return 0;
    }
    rng.range((max_tokens / 2).max(1), max_tokens)
}

/// Appends `words` words of prose to `out`: capitalised sentences of 5–16
/// words ending in `.`, `?` or `!`, with occasional commas.
pub fn push_prose(rng: &mut SplitMix64, words: u64, out: &mut String) {
    let mut left_in_sentence = 0u64;
    for i in 0..words {
        let start = left_in_sentence == 0;
        if start {
            left_in_sentence = rng.range(5, 16);
        }
        left_in_sentence -= 1;
        let word = VOCAB[(rng.next_u64() % VOCAB.len() as u64) as usize];
        if i > 0 || !out.is_empty() {
            out.push(' ');
        }
        if start {
            let mut chars = word.chars();
            if let Some(c) = chars.next() {
                out.extend(c.to_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(word);
        }
        let last = i + 1 == words;
        if left_in_sentence == 0 || last {
            out.push(match rng.next_u64() % 10 {
                0 => '?',
                1 => '!',
                _ => '.',
            });
        } else if left_in_sentence > 2 && rng.range(0, 8) == 0 {
            out.push(',');
        }
    }
}

/// `words` words of prose seeded by `seed`.
pub fn prose(seed: u64, words: u64) -> String {
    let mut out = String::with_capacity(words as usize * 8);
    push_prose(&mut SplitMix64::new(seed), words, &mut out);
    out
}

/// Keeps at most `max_tokens` words of `text`, preserving the original
/// spacing of what is kept. Returns whether anything was cut.
pub fn truncate_tokens(text: &mut String, max_tokens: u64) -> bool {
    let mut seen = 0u64;
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_word = false;
        } else if !in_word {
            in_word = true;
            if seen == max_tokens {
                let kept = text[..i].trim_end().len();
                text.truncate(kept);
                return true;
            }
            seen += 1;
        }
    }
    false
}

/// Cuts `text` before the earliest occurrence of any of `stops` (the stop
/// string itself is not returned, as in OpenAI). Returns whether it cut.
pub fn apply_stop(text: &mut String, stops: &[String]) -> bool {
    let cut = stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min();
    match cut {
        Some(at) => {
            text.truncate(at);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_is_deterministic_and_sized() {
        let a = prose(42, 50);
        assert_eq!(a, prose(42, 50));
        assert_ne!(a, prose(43, 50));
        assert_eq!(count_tokens(&a), 50);
        assert!(a.chars().next().unwrap().is_uppercase());
        assert!(a.ends_with(['.', '?', '!']));
    }

    #[test]
    fn vocab_words_are_single_tokens() {
        assert!(VOCAB.len() >= 300, "vocab has {}", VOCAB.len());
        for w in VOCAB {
            assert_eq!(count_tokens(w), 1, "{w:?}");
        }
    }

    #[test]
    fn reply_length_bounds() {
        let mut rng = SplitMix64::new(1);
        for max in [1u64, 2, 3, 10, 64] {
            for _ in 0..200 {
                let n = reply_length(&mut rng, max);
                assert!(n >= (max / 2).max(1) && n <= max, "{n} for {max}");
            }
        }
        assert_eq!(reply_length(&mut rng, 0), 0);
    }

    #[test]
    fn truncate_keeps_spacing() {
        let mut s = "one  two\nthree four".to_string();
        assert!(truncate_tokens(&mut s, 3));
        assert_eq!(s, "one  two\nthree");
        let mut s = "one two".to_string();
        assert!(!truncate_tokens(&mut s, 2));
        let mut s = "one two".to_string();
        assert!(truncate_tokens(&mut s, 0));
        assert_eq!(s, "");
    }

    #[test]
    fn stop_cuts_at_earliest() {
        let mut s = "alpha beta gamma delta".to_string();
        assert!(apply_stop(&mut s, &["delta".into(), "beta".into()]));
        assert_eq!(s, "alpha ");
        let mut s = "alpha".to_string();
        assert!(!apply_stop(&mut s, &["zeta".into(), String::new()]));
    }

    #[test]
    fn hash_parts_is_length_prefixed() {
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
        assert_ne!(sample_seed(1, 0), sample_seed(1, 1));
    }
}
