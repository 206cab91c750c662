//! Command-line flags of the mock backend.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::MockError;

/// Configuration of the mock inference server.
///
/// Every knob models one property of a real GPU server (vLLM-like) so that the
/// worker's adaptive concurrency, retries and timeouts can be exercised without
/// a GPU: `slots` is the batch size, `latency_ms` the prefill time,
/// `decode_ms_per_token` the decode speed and the `rate_*` flags inject faults.
/// All flags have defaults; [`MockArgs::default`] returns exactly those.
#[derive(clap::Args, Debug, Clone)]
pub struct MockArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// Comma-separated model names served; any other model gets a 404.
    /// The name `*` accepts every model.
    #[arg(long, value_delimiter = ',', default_value = "mock-model")]
    pub models: Vec<String>,

    /// Base (prefill) time per request, in milliseconds, spent holding a slot.
    #[arg(long = "latency-ms", default_value_t = 0)]
    pub latency_ms: u64,

    /// Decode time per generated token, in milliseconds, spent holding a slot.
    /// With `n` > 1 the samples decode together, so the longest one counts.
    #[arg(long = "decode-ms-per-token", default_value_t = 0.0)]
    pub decode_ms_per_token: f64,

    /// Prefill time per prompt token not found in the prefix cache, in milliseconds, spent
    /// holding a slot (on top of `--latency-ms`).
    #[arg(long = "prefill-ms-per-token", default_value_t = 0.0)]
    pub prefill_ms_per_token: f64,

    /// Blocks of 16 prompt tokens kept in this server's prefix cache (an LRU, like vLLM's
    /// automatic prefix caching; 0 = no cache). A request's leading blocks found in the cache
    /// are prefilled at `--cached-prefill-factor` of the uncached cost.
    #[arg(long = "prefix-cache-blocks", default_value_t = 0)]
    pub prefix_cache_blocks: usize,

    /// Cost of a cached prompt token relative to an uncached one (0 = free, 1 = no saving).
    #[arg(long = "cached-prefill-factor", default_value_t = 0.1)]
    pub cached_prefill_factor: f64,

    /// Number of concurrent batch slots (0 = unlimited). Requests beyond this
    /// wait in a FIFO queue for a free slot, like vLLM's scheduler. Queue time
    /// shows in the client's latency but not in busy slot time. Simplification:
    /// a request with `n` > 1 holds a single slot for all of its samples, as
    /// one batched sequence group.
    #[arg(long, default_value_t = 0)]
    pub slots: usize,

    /// Probability of answering 429 Too Many Requests (with `Retry-After`).
    #[arg(long = "rate-429", default_value_t = 0.0)]
    pub rate_429: f64,

    /// Probability of answering 500 Internal Server Error.
    #[arg(long = "rate-500", default_value_t = 0.0)]
    pub rate_500: f64,

    /// Probability that a request never gets an answer (it sleeps for an hour
    /// without holding a slot), to exercise client timeouts.
    #[arg(long = "rate-hang", default_value_t = 0.0)]
    pub rate_hang: f64,

    /// Probability of answering 200 with an empty `choices` list (a server bug
    /// clients must not turn into a silently dropped row).
    #[arg(long = "rate-empty-choices", default_value_t = 0.0)]
    pub rate_empty_choices: f64,

    /// Probability of answering 200 with one choice fewer than the request's
    /// `n` (none for `n` = 1), usage counting only the choices sent.
    #[arg(long = "rate-short-n", default_value_t = 0.0)]
    pub rate_short_n: f64,

    /// Answer one sample per prompt whatever `n` asks, as some servers do (llama.cpp's):
    /// clients must ask again for the missing samples rather than lose them.
    #[arg(long = "ignore-n", default_value_t = false)]
    pub ignore_n: bool,

    /// Value of the `Retry-After` header on injected 429s, in seconds.
    #[arg(long = "retry-after-s", default_value_t = 1)]
    pub retry_after_s: u64,

    /// Seed of the fault-injection sequence and of generated text (a request's
    /// own `seed` overrides it for text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// `max_tokens` used when a request does not set one.
    #[arg(long = "max-tokens-default", default_value_t = 64)]
    pub max_tokens_default: u64,

    /// Keep every received request body; served at GET /requests, cleared by
    /// DELETE /requests.
    #[arg(long, default_value_t = false)]
    pub record: bool,

    /// JSON file of reply rules: `[{"contains": "substring", "reply": "text"}]`.
    /// The first rule whose substring occurs in the last user message (or the
    /// prompt) fixes the reply; `{hash}` in it becomes a digit derived from the
    /// prompt hash.
    #[arg(long = "reply-rules", value_name = "FILE")]
    pub reply_rules: Option<PathBuf>,
}

/// Wrapper used only to obtain the flag defaults from clap itself, so that
/// [`MockArgs::default`] can never drift from the documented defaults.
#[derive(Parser)]
struct DefaultsOnly {
    #[command(flatten)]
    args: MockArgs,
}

impl Default for MockArgs {
    fn default() -> Self {
        DefaultsOnly::parse_from(["synthforge-mock-backend"]).args
    }
}

impl MockArgs {
    /// Rejects settings that cannot describe a server (bad probabilities,
    /// negative decode time, no models), before anything is bound.
    pub fn validate(&self) -> Result<(), MockError> {
        let rates = [
            ("--rate-429", self.rate_429),
            ("--rate-500", self.rate_500),
            ("--rate-hang", self.rate_hang),
            ("--rate-empty-choices", self.rate_empty_choices),
            ("--rate-short-n", self.rate_short_n),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(MockError::InvalidArgs(format!(
                    "{name} must be a probability in [0, 1], got {rate}"
                )));
            }
        }
        let sum = self.rate_429
            + self.rate_500
            + self.rate_hang
            + self.rate_empty_choices
            + self.rate_short_n;
        if sum > 1.0 + 1e-9 {
            return Err(MockError::InvalidArgs(format!(
                "--rate-429 + --rate-500 + --rate-hang + --rate-empty-choices + --rate-short-n \
                 must not exceed 1, got {sum}"
            )));
        }
        if !self.decode_ms_per_token.is_finite() || self.decode_ms_per_token < 0.0 {
            return Err(MockError::InvalidArgs(format!(
                "--decode-ms-per-token must be a finite number >= 0, got {}",
                self.decode_ms_per_token
            )));
        }
        for (name, v) in [
            ("--prefill-ms-per-token", self.prefill_ms_per_token),
            ("--cached-prefill-factor", self.cached_prefill_factor),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(MockError::InvalidArgs(format!(
                    "{name} must be a finite number >= 0, got {v}"
                )));
            }
        }
        if self.cached_prefill_factor > 1.0 {
            return Err(MockError::InvalidArgs(format!(
                "--cached-prefill-factor must be at most 1 (a cached token is never dearer), got {}",
                self.cached_prefill_factor
            )));
        }
        if self.models.iter().all(|m| m.trim().is_empty()) {
            return Err(MockError::InvalidArgs(
                "--models must name at least one model".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_flags() {
        let a = MockArgs::default();
        assert_eq!(a.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(a.models, vec!["mock-model".to_string()]);
        assert_eq!(a.latency_ms, 0);
        assert_eq!(a.decode_ms_per_token, 0.0);
        assert_eq!(a.slots, 0);
        assert_eq!(a.retry_after_s, 1);
        assert_eq!(a.max_tokens_default, 64);
        assert!(!a.record);
        assert!(a.reply_rules.is_none());
        a.validate().unwrap();
    }

    #[test]
    fn parses_flags() {
        let a = DefaultsOnly::parse_from([
            "x",
            "--models",
            "a,b",
            "--rate-429",
            "0.5",
            "--slots",
            "4",
            "--decode-ms-per-token",
            "1.5",
            "--record",
        ])
        .args;
        assert_eq!(a.models, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(a.rate_429, 0.5);
        assert_eq!(a.slots, 4);
        assert_eq!(a.decode_ms_per_token, 1.5);
        assert!(a.record);
    }

    #[test]
    fn rejects_bad_rates() {
        let a = MockArgs {
            rate_429: 0.7,
            rate_500: 0.7,
            ..MockArgs::default()
        };
        assert!(a.validate().is_err());
        let b = MockArgs {
            rate_hang: -0.1,
            ..MockArgs::default()
        };
        assert!(b.validate().is_err());
    }
}
