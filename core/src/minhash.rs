//! Text fingerprints for whole-job deduplication: an exact hash of normalized text and MinHash
//! LSH band hashes for near duplicates.
//!
//! Workers compute fingerprints next to generation (CPU work that scales with workers); the
//! coordinator then only compares small fixed-size values across the whole job. Everything
//! here is deterministic across processes and machines: permutations come from a fixed seed,
//! and no hash depends on a per-process random state.

use sha2::{Digest, Sha256};

/// Mersenne prime 2^61 - 1: the modulus of the universal hash family used as permutations
/// (as in datatrove's MinHash).
const MERSENNE_61: u64 = (1 << 61) - 1;

/// LSH parameters. The defaults follow FineWeb: 5-word shingles, 14 bands × 8 rows = 112
/// permutations, which flags pairs with Jaccard similarity around 0.8 and above
/// (P(candidate) = 1 - (1 - J^8)^14: 0.92 at J = 0.8, 0.05 at J = 0.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinHashConfig {
    /// Words per shingle.
    pub shingle: usize,
    pub bands: usize,
    pub rows: usize,
    /// Seed of the permutation family; every worker of a job must use the same one.
    pub seed: u64,
}

impl Default for MinHashConfig {
    fn default() -> Self {
        MinHashConfig {
            shingle: 5,
            bands: 14,
            rows: 8,
            seed: 0x5EED_D0D0,
        }
    }
}

/// Normalized text for comparison: lowercase, punctuation removed, whitespace collapsed to one
/// space, trimmed. Two texts that differ only in case, punctuation or spacing normalize alike.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
        } else if c.is_alphanumeric() {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.extend(c.to_lowercase());
        }
        // Anything else (punctuation, symbols, control characters) is dropped.
    }
    out
}

/// Exact-duplicate key: the first 128 bits of SHA-256 over the normalized text, as 32 hex digits.
pub fn exact_hash(text: &str) -> String {
    let digest = Sha256::digest(normalize(text).as_bytes());
    hex::encode(&digest[..16])
}

/// 64-bit FNV-1a: a fixed, seedless hash so shingle hashes agree across processes.
fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final avalanche (splitmix64 finalizer): FNV alone mixes the high bits poorly.
    let mut z = h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `v mod (2^61 - 1)` without a 128-bit division (the hot loop of signing).
#[inline]
fn mod_mersenne(v: u128) -> u64 {
    let p = MERSENNE_61 as u128;
    let r = (v & p) + (v >> 61);
    let mut r = ((r & p) + (r >> 61)) as u64;
    if r >= MERSENNE_61 {
        r -= MERSENNE_61;
    }
    r
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A MinHash signer with its permutations drawn once; cheap to share between threads.
#[derive(Debug, Clone)]
pub struct MinHasher {
    config: MinHashConfig,
    a: Vec<u64>,
    b: Vec<u64>,
}

impl MinHasher {
    pub fn new(config: MinHashConfig) -> MinHasher {
        let n = config.bands * config.rows;
        let mut state = config.seed;
        let mut a = Vec::with_capacity(n);
        let mut b = Vec::with_capacity(n);
        for _ in 0..n {
            a.push(splitmix(&mut state) % (MERSENNE_61 - 1) + 1);
            b.push(splitmix(&mut state) % MERSENNE_61);
        }
        MinHasher { config, a, b }
    }

    pub fn config(&self) -> &MinHashConfig {
        &self.config
    }

    /// Hashes of the word shingles of the normalized text. A text shorter than one shingle is
    /// one shingle; an empty text has none.
    pub fn shingles(&self, text: &str) -> Vec<u64> {
        let norm = normalize(text);
        let words: Vec<&str> = norm.split(' ').filter(|w| !w.is_empty()).collect();
        if words.is_empty() {
            return Vec::new();
        }
        let k = self.config.shingle.max(1);
        let mut out: Vec<u64> = if words.len() <= k {
            vec![fnv1a(words.join(" ").as_bytes(), 0)]
        } else {
            words
                .windows(k)
                .map(|w| {
                    // Hash word by word with a separator instead of allocating the joined string.
                    let mut h = 0u64;
                    for word in w {
                        h = fnv1a(word.as_bytes(), h.rotate_left(17) ^ 0x20);
                    }
                    h
                })
                .collect()
        };
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The MinHash signature (`bands * rows` values); all `u64::MAX` for an empty text.
    pub fn signature(&self, text: &str) -> Vec<u64> {
        let shingles = self.shingles(text);
        let mut sig = vec![u64::MAX; self.a.len()];
        for &s in &shingles {
            let x = (s % MERSENNE_61) as u128;
            for (i, slot) in sig.iter_mut().enumerate() {
                let v = mod_mersenne(self.a[i] as u128 * x + self.b[i] as u128);
                if v < *slot {
                    *slot = v;
                }
            }
        }
        sig
    }

    /// One hash per band: texts sharing any band hash are near-duplicate candidates. The band
    /// index is mixed in so equal rows in different bands never collide.
    pub fn band_hashes(&self, text: &str) -> Vec<u64> {
        self.bands_of(&self.signature(text))
    }

    /// The band hashes of a signature computed before (see [`MinHasher::band_hashes`]).
    pub fn bands_of(&self, sig: &[u64]) -> Vec<u64> {
        sig.chunks(self.config.rows)
            .enumerate()
            .map(|(band, rows)| {
                let mut h = fnv1a(&(band as u64).to_le_bytes(), 0x00ba_0d00);
                for r in rows {
                    h = fnv1a(&r.to_le_bytes(), h);
                }
                h
            })
            .collect()
    }
}

/// Band hashes as text for a string column: fixed-width hex values joined by `,`.
pub fn encode_bands(bands: &[u64]) -> String {
    bands
        .iter()
        .map(|b| format!("{b:016x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Inverse of [`encode_bands`]; `None` when a value is not 16 hex digits.
pub fn decode_bands(text: &str) -> Option<Vec<u64>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|p| {
            if p.len() == 16 {
                u64::from_str_radix(p, 16).ok()
            } else {
                None
            }
        })
        .collect()
}

/// Bits kept per signature slot in the stored sketch (b-bit MinHash, Li & König 2010).
pub const SKETCH_BITS: u32 = 16;

/// The signature cut to its low [`SKETCH_BITS`] bits per slot: what the data parts carry so a
/// dedup bucket task can confirm a candidate pair without the text. Two slots that differ
/// agree by chance with probability 2^-16, which moves an estimated Jaccard by less than
/// 0.0001, far below the estimate's own sampling error (about 0.04 with 112 slots).
pub fn sketch(signature: &[u64]) -> Vec<u16> {
    signature.iter().map(|v| (*v & 0xffff) as u16).collect()
}

/// A sketch as text for a string column: 4 hex digits per slot, no separator.
pub fn encode_sketch(sketch: &[u16]) -> String {
    let mut out = String::with_capacity(sketch.len() * 4);
    for v in sketch {
        out.push_str(&format!("{v:04x}"));
    }
    out
}

/// Inverse of [`encode_sketch`]; `None` when the text is not a whole number of 4-hex-digit slots.
pub fn decode_sketch(text: &str) -> Option<Vec<u16>> {
    if !text.len().is_multiple_of(4) || !text.is_ascii() {
        return None;
    }
    (0..text.len() / 4)
        .map(|i| u16::from_str_radix(&text[i * 4..i * 4 + 4], 16).ok())
        .collect()
}

/// Estimated Jaccard similarity of two sketches (share of equal slots); 0 when their lengths
/// differ (different LSH shapes are never compared).
pub fn sketch_jaccard(a: &[u16], b: &[u16]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Estimated Jaccard similarity of two signatures (share of equal slots).
pub fn estimated_jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize, salt: &str) -> String {
        (0..n)
            .map(|i| format!("w{salt}{}", (i * 7919) % 1000))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn normalize_ignores_case_punctuation_and_spacing() {
        assert_eq!(normalize("  Hello,   World!\n"), "hello world");
        assert_eq!(exact_hash("Hello, world."), exact_hash("hello   WORLD"));
        assert_ne!(exact_hash("hello world"), exact_hash("hello there world"));
        assert_eq!(exact_hash("x").len(), 32);
    }

    #[test]
    fn near_duplicates_share_a_band_and_distinct_texts_do_not() {
        let h = MinHasher::new(MinHashConfig::default());
        let base = words(200, "a");
        let mut near: Vec<&str> = base.split(' ').collect();
        near[100] = "changed";
        let near = near.join(" ");
        let other = words(200, "b");
        let (sb, sn, so) = (h.signature(&base), h.signature(&near), h.signature(&other));
        assert!(
            estimated_jaccard(&sb, &sn) > 0.8,
            "{}",
            estimated_jaccard(&sb, &sn)
        );
        assert!(estimated_jaccard(&sb, &so) < 0.1);
        let (bb, bn, bo) = (
            h.band_hashes(&base),
            h.band_hashes(&near),
            h.band_hashes(&other),
        );
        assert_eq!(bb.len(), 14);
        assert!(bb.iter().zip(&bn).any(|(x, y)| x == y));
        assert!(!bb.iter().zip(&bo).any(|(x, y)| x == y));
    }

    #[test]
    fn sketches_round_trip_and_estimate_like_full_signatures() {
        let h = MinHasher::new(MinHashConfig::default());
        let base = words(200, "a");
        let mut near: Vec<&str> = base.split(' ').collect();
        near[50] = "changed";
        let near = near.join(" ");
        let (sb, sn) = (h.signature(&base), h.signature(&near));
        let (kb, kn) = (sketch(&sb), sketch(&sn));
        assert_eq!(kb.len(), 112);
        assert_eq!(decode_sketch(&encode_sketch(&kb)).unwrap(), kb);
        assert_eq!(encode_sketch(&kb).len(), 448);
        let full = estimated_jaccard(&sb, &sn);
        let cut = sketch_jaccard(&kb, &kn);
        // Truncation can only add chance agreements, and at 16 bits almost never does.
        assert!(cut >= full && cut - full < 0.02, "{full} vs {cut}");
        assert!(decode_sketch("abc").is_none());
        assert!(decode_sketch("zzzz").is_none());
        assert_eq!(sketch_jaccard(&kb, &kb[..10]), 0.0);
    }

    #[test]
    fn fast_modulus_matches_division() {
        let p = MERSENNE_61 as u128;
        for v in [
            0u128,
            1,
            p - 1,
            p,
            p + 1,
            2 * p,
            (p - 1) * (p - 1) + (p - 1),
            u64::MAX as u128,
        ] {
            assert_eq!(mod_mersenne(v) as u128, v % p, "{v}");
        }
    }

    #[test]
    fn deterministic_and_round_trips() {
        let a = MinHasher::new(MinHashConfig::default()).band_hashes("one two three four five six");
        let b = MinHasher::new(MinHashConfig::default()).band_hashes("one two three four five six");
        assert_eq!(a, b);
        assert_eq!(decode_bands(&encode_bands(&a)).unwrap(), a);
        assert!(decode_bands("zz").is_none());
        // Short and empty texts still fingerprint.
        let h = MinHasher::new(MinHashConfig::default());
        assert_eq!(h.band_hashes("hi").len(), 14);
        assert_eq!(h.shingles("  ,, ").len(), 0);
    }
}
