//! Prefix-affinity routing: requests whose prompts begin alike go to the same endpoint, so the
//! server's prefix cache (vLLM's automatic prefix caching, SGLang's radix cache) serves their
//! shared prefix instead of prefilling it again — the samples and variations of one seed row,
//! whose prompts share the seed text, are the common case.
//!
//! The key is a hash of the prompt's beginning: every system message (they precede everything
//! else, and the server caches them too) and the first [`PREFIX_BYTES`] bytes of the rest.
//! Routing on the prompt itself, not on a key the stages would have to pass, matches exactly
//! what the server can reuse: two prompts that diverge early gain nothing from sharing an
//! endpoint, whatever row they came from. (So a template that puts the seed text before the
//! variation's instruction is what makes variations of a row share a cache entry.)
//!
//! The endpoint is chosen by weighted rendezvous hashing (highest random weight: the endpoint
//! with the highest score of key and endpoint wins, so adding or removing an endpoint moves only
//! the keys it wins or owned; the score is weighted by the endpoint's concurrency limit, so an
//! endpoint with 4× the slots is the first choice of 4× the keys) with bounded loads (Mirrokni, Thorup and Zadimoghaddam, "Consistent
//! Hashing with Bounded Loads", 2018): an endpoint is skipped while its in-flight requests are
//! at `LOAD_FACTOR` × its fair share of the pool's load, its share weighted by its concurrency
//! limit, so a hot prefix cannot overload one endpoint; the request then goes to the key's
//! next endpoint in rendezvous order. Any endpoint with a free slot is used before a request
//! waits, so the pool stays as busy as with least-loaded picking.

use std::hash::Hasher;

use super::openai::GenRequest;

/// Bytes of the non-system prompt that name its prefix: a seed document's first ~256 tokens.
pub const PREFIX_BYTES: usize = 1024;

/// An endpoint takes keyed requests up to this multiple of its fair share of the pool's load
/// (the `c = 1 + ε` of bounded-load consistent hashing; 1.25 keeps the busiest endpoint within
/// 25% of the mean while most keys stay on their first choice).
pub const LOAD_FACTOR: f64 = 1.25;

/// The routing key of a request: a hash of its system messages and the first
/// [`PREFIX_BYTES`] of what follows.
pub fn prefix_key(req: &GenRequest) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    let mut rest = Vec::with_capacity(PREFIX_BYTES);
    let push = |text: &str, rest: &mut Vec<u8>| {
        let room = PREFIX_BYTES - rest.len();
        rest.extend_from_slice(&text.as_bytes()[..text.len().min(room)]);
    };
    match &req.prompt {
        Some(p) if req.messages.is_empty() => push(p, &mut rest),
        _ => {
            let mut leading_system = true;
            for m in &req.messages {
                if leading_system && m.role == "system" {
                    h.write(m.content.as_bytes());
                    h.write_u8(0xff);
                    continue;
                }
                leading_system = false;
                if rest.len() >= PREFIX_BYTES {
                    break;
                }
                push(&m.role, &mut rest);
                push(":", &mut rest);
                push(&m.content, &mut rest);
            }
        }
    }
    h.write(&rest);
    h.finish()
}

/// An endpoint's stable identity for rendezvous hashing (its URL, so the order of `urls` in a
/// job file does not matter).
pub fn endpoint_seed(url: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(url.as_bytes());
    h.finish()
}

/// The weighted rendezvous score of an endpoint of capacity `weight` for `key`:
/// `-weight / ln(u)` with `u` a uniform hash of both in (0, 1), so the chance that an endpoint
/// scores highest is its share of the total weight (Schindelhauer and Schomaker, 2005).
pub fn weighted_score(key: u64, endpoint: u64, weight: f64) -> f64 {
    let u = ((score(key, endpoint) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    weight / -u.ln()
}

/// A well-mixed hash of a key and an endpoint.
pub fn score(key: u64, endpoint: u64) -> u64 {
    // SplitMix64's finalizer over the combination.
    let mut z = key ^ endpoint.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The most requests an endpoint of concurrency limit `limit` takes for keyed routing while
/// the pool has `in_flight` requests (this one included) over endpoints whose limits sum to
/// `total_limit`: `LOAD_FACTOR` × its weighted share, at least one.
pub fn load_bound(in_flight: u32, limit: u32, total_limit: u64) -> u32 {
    let share = f64::from(in_flight) * f64::from(limit) / total_limit.max(1) as f64;
    ((LOAD_FACTOR * share).ceil() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChatMessage;

    fn chat(system: &str, user: &str) -> GenRequest {
        GenRequest {
            messages: vec![
                ChatMessage::new("system", system),
                ChatMessage::new("user", user),
            ],
            ..GenRequest::default()
        }
    }

    #[test]
    fn prompts_sharing_their_beginning_share_a_key() {
        let doc = "photosynthesis ".repeat(200); // 3,000 bytes
        let a = chat(
            "You write textbooks.",
            &format!("{doc}\nWrite for children."),
        );
        let b = chat(
            "You write textbooks.",
            &format!("{doc}\nWrite for experts."),
        );
        assert_eq!(
            prefix_key(&a),
            prefix_key(&b),
            "differ only after the prefix"
        );
        let c = chat("You write textbooks.", "Write for experts about bees.");
        assert_ne!(prefix_key(&a), prefix_key(&c));
        let d = chat("You write poems.", &format!("{doc}\nWrite for children."));
        assert_ne!(
            prefix_key(&a),
            prefix_key(&d),
            "the system prompt is part of it"
        );
        // A long system prompt does not crowd out the document.
        let long_system = "rules ".repeat(1000);
        let e = chat(&long_system, "about bees");
        let f = chat(&long_system, "about wasps");
        assert_ne!(prefix_key(&e), prefix_key(&f));
    }

    #[test]
    fn completions_prompts_are_keyed_too() {
        let req = |p: &str| GenRequest {
            prompt: Some(p.into()),
            ..GenRequest::default()
        };
        assert_eq!(prefix_key(&req("abc")), prefix_key(&req("abc")));
        assert_ne!(prefix_key(&req("abc")), prefix_key(&req("abd")));
    }

    #[test]
    fn rendezvous_spreads_keys_evenly_and_moves_few_when_an_endpoint_goes() {
        let urls: Vec<u64> = (0..4)
            .map(|i| endpoint_seed(&format!("http://gpu-{i}:8000/v1")))
            .collect();
        let owner = |key: u64, eps: &[u64]| {
            eps.iter()
                .copied()
                .max_by_key(|e| score(key, *e))
                .expect("endpoints")
        };
        let mut counts = [0u32; 4];
        let mut moved = 0;
        for k in 0..20_000u64 {
            let key = score(k, 7); // arbitrary well-mixed keys
            let o = owner(key, &urls);
            counts[urls.iter().position(|u| *u == o).unwrap()] += 1;
            if o != urls[3] && owner(key, &urls[..3]) != o {
                moved += 1;
            }
        }
        for c in counts {
            assert!((4_500..5_500).contains(&c), "{counts:?}");
        }
        assert_eq!(
            moved, 0,
            "removing an endpoint moves only the keys it owned"
        );
    }

    #[test]
    fn weighted_scores_give_first_choices_in_proportion_to_capacity() {
        let eps: Vec<(u64, f64)> = [16.0, 32.0, 64.0]
            .iter()
            .enumerate()
            .map(|(i, w)| (endpoint_seed(&format!("http://gpu-{i}/v1")), *w))
            .collect();
        let mut counts = [0u32; 3];
        for k in 0..28_000u64 {
            let key = score(k, 11);
            let (i, _) = eps
                .iter()
                .enumerate()
                .max_by(|a, b| {
                    weighted_score(key, a.1 .0, a.1 .1)
                        .total_cmp(&weighted_score(key, b.1 .0, b.1 .1))
                })
                .unwrap();
            counts[i] += 1;
        }
        // Expected 4,000 / 8,000 / 16,000.
        assert!((3_600..4_400).contains(&counts[0]), "{counts:?}");
        assert!((7_400..8_600).contains(&counts[1]), "{counts:?}");
        assert!((15_200..16_800).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn load_bound_is_a_weighted_share_with_slack() {
        // 8 in flight over four equal endpoints: fair share 2, bound 3 (2 × 1.25 rounded up).
        assert_eq!(load_bound(8, 16, 64), 3);
        // A bigger endpoint takes more.
        assert_eq!(load_bound(8, 32, 64), 5);
        assert_eq!(load_bound(1, 16, 64), 1, "at least one");
    }
}
