//! Retry policy: jittered exponential backoff that honours the server's `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// Full-jitter exponential backoff (AWS architecture blog): spreads retries of many clients so
/// a backend that just shed load is not hit by a synchronized wave.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (1 = first retry). A server-given `Retry-After` is a
    /// floor: retrying sooner only earns another 429.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.cap);
        let jittered = ceiling.mul_f64(rand::rng().random_range(0.0..=1.0));
        match retry_after {
            Some(ra) => ra.max(jittered).min(self.cap.max(ra)),
            None => jittered,
        }
    }
}

/// Parses `Retry-After` as seconds (the HTTP-date form is rare for APIs and ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_cap_and_respect_retry_after() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        for attempt in 1..20 {
            let d = b.delay(attempt, None);
            assert!(d <= Duration::from_secs(2));
        }
        let d = b.delay(1, Some(Duration::from_secs(3)));
        assert!(d >= Duration::from_secs(3));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
