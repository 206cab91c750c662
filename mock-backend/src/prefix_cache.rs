//! A per-server prompt prefix cache, modelled on vLLM's automatic prefix caching (and SGLang's
//! radix cache): the prompt is cut into blocks of [`BLOCK_TOKENS`] tokens, each full block is
//! named by a hash of every token up to its end (so a block only matches after the same
//! prefix), and an LRU keeps up to `capacity` blocks. A request's cached tokens are its
//! leading blocks found in the cache; their prefill costs a fraction of an uncached token's.
//!
//! Why the mock has one: routing that sends requests sharing a prefix to the same endpoint
//! (`routing: prefix_affinity`) only pays off through the servers' caches, so the backend
//! bench needs servers whose speed depends on what they have seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::text::hash_parts;

/// Tokens per cache block (vLLM's default block size).
pub const BLOCK_TOKENS: usize = 16;

/// The cache of one server; `capacity` 0 disables it.
#[derive(Debug)]
pub struct PrefixCache {
    capacity: usize,
    lru: Mutex<Lru>,
}

/// Blocks by chain hash with their last-use stamp, and the stamps in order for eviction.
#[derive(Debug, Default)]
struct Lru {
    stamp_of: HashMap<u64, u64>,
    by_stamp: BTreeMap<u64, u64>,
    clock: u64,
}

impl Lru {
    fn touch(&mut self, block: u64) {
        self.clock += 1;
        if let Some(old) = self.stamp_of.insert(block, self.clock) {
            self.by_stamp.remove(&old);
        }
        self.by_stamp.insert(self.clock, block);
    }

    fn evict_to(&mut self, capacity: usize) {
        while self.stamp_of.len() > capacity {
            let Some((_, block)) = self.by_stamp.pop_first() else {
                break;
            };
            self.stamp_of.remove(&block);
        }
    }
}

impl PrefixCache {
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            capacity,
            lru: Mutex::new(Lru::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Looks `prompt` up and then caches all its full blocks (as a server does once it has
    /// prefilled them). Returns how many of its leading tokens were already cached.
    pub fn admit(&self, prompt: &str) -> u64 {
        if !self.enabled() {
            return 0;
        }
        let words: Vec<&str> = prompt.split_whitespace().collect();
        let mut chain = 0u64;
        let blocks: Vec<u64> = words
            .chunks_exact(BLOCK_TOKENS)
            .map(|block| {
                let mut parts: Vec<&[u8]> = Vec::with_capacity(BLOCK_TOKENS + 1);
                let prev = chain.to_le_bytes();
                parts.push(&prev);
                parts.extend(block.iter().map(|w| w.as_bytes()));
                chain = hash_parts(&parts);
                chain
            })
            .collect();
        let mut lru = self.lru.lock().unwrap_or_else(PoisonError::into_inner);
        let hits = blocks
            .iter()
            .take_while(|b| lru.stamp_of.contains_key(b))
            .count();
        for b in &blocks {
            lru.touch(*b);
        }
        lru.evict_to(self.capacity);
        (hits * BLOCK_TOKENS) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(prefix: &str, n: usize) -> String {
        (0..n)
            .map(|i| format!("{prefix}{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_shared_prefix_hits_by_whole_blocks() {
        let cache = PrefixCache::new(1000);
        let doc = words("d", 40); // two full blocks and 8 words
        assert_eq!(cache.admit(&format!("{doc} write a poem")), 0);
        // Same document, another instruction after it: the two full blocks are cached.
        assert_eq!(cache.admit(&format!("{doc} write a story")), 32);
        // The instruction first: nothing matches (a block matches only after the same prefix).
        assert_eq!(cache.admit(&format!("write a story {doc}")), 0);
    }

    #[test]
    fn least_recently_used_blocks_go_first() {
        let cache = PrefixCache::new(2);
        let a = words("a", 16);
        let b = words("b", 16);
        let c = words("c", 16);
        cache.admit(&a);
        cache.admit(&b);
        assert_eq!(cache.admit(&a), 16, "a touched again: b is now the oldest");
        cache.admit(&c);
        assert_eq!(cache.admit(&a), 16);
        assert_eq!(cache.admit(&b), 0, "b was evicted");
    }

    #[test]
    fn disabled_cache_never_hits() {
        let cache = PrefixCache::new(0);
        let a = words("a", 64);
        cache.admit(&a);
        assert_eq!(cache.admit(&a), 0);
    }
}
