//! Requests-per-minute and tokens-per-minute token buckets for hosted APIs.
//!
//! Hosted APIs (OpenAI, Anthropic-compatible gateways, ...) enforce per-key budgets per minute and
//! answer 429 beyond them; pacing below the budget avoids paying for those round trips and the
//! Retry-After stalls. Tokens are charged up front with an estimate (prompt bytes / 4 +
//! `max_tokens`, as the providers themselves count) and corrected from the response's `usage`.
//! The bucket may go negative after a correction; later requests then wait it off.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A bucket refilled continuously at `per_minute / 60` per second, holding at most `burst`.
#[derive(Debug)]
struct Bucket {
    /// The whole budget; this process gets `1 / share` of it.
    per_minute: f64,
    rate_per_s: f64,
    burst: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1) as f64;
        // A sixth of the minute's budget may go at once: enough to fill a pipeline quickly,
        // small enough not to trip per-second sub-limits some providers add.
        let burst = (per_minute / 6.0).max(1.0);
        Bucket {
            per_minute,
            rate_per_s: per_minute / 60.0,
            burst,
            level: burst,
            at: Instant::now(),
        }
    }

    /// Takes `1 / workers` of the budget: the other workers of the fleet pace with the rest.
    fn set_share(&mut self, workers: u32, now: Instant) {
        self.refill(now);
        let n = workers.max(1) as f64;
        self.rate_per_s = self.per_minute / 60.0 / n;
        self.burst = (self.per_minute / 6.0 / n).max(1.0);
        self.level = self.level.min(self.burst);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.rate_per_s).min(self.burst);
        self.at = now;
    }

    /// Time until `amount` is available (zero: take it now). `amount` above the burst is
    /// clamped so a single huge request can still go once the bucket is full.
    fn wait_for(&mut self, amount: f64, now: Instant) -> Duration {
        self.refill(now);
        let need = amount.min(self.burst);
        if self.level >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.level) / self.rate_per_s)
        }
    }
}

/// The per-minute budgets of one backend (per worker process).
#[derive(Debug)]
pub struct RateLimits {
    requests: Option<Mutex<Bucket>>,
    tokens: Option<Mutex<Bucket>>,
}

impl RateLimits {
    pub fn new(requests_per_minute: Option<u32>, tokens_per_minute: Option<u32>) -> Self {
        RateLimits {
            requests: requests_per_minute.map(|n| Mutex::new(Bucket::new(n))),
            tokens: tokens_per_minute.map(|n| Mutex::new(Bucket::new(n))),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.requests.is_none() && self.tokens.is_none()
    }

    /// Waits until one request of about `est_tokens` tokens fits both budgets, then charges it.
    pub async fn admit(&self, est_tokens: u64) {
        loop {
            let now = Instant::now();
            let wait = {
                let mut rq = self
                    .requests
                    .as_ref()
                    .map(|b| b.lock().unwrap_or_else(PoisonError::into_inner));
                let mut tk = self
                    .tokens
                    .as_ref()
                    .map(|b| b.lock().unwrap_or_else(PoisonError::into_inner));
                let w1 = rq.as_mut().map_or(Duration::ZERO, |b| b.wait_for(1.0, now));
                let w2 = tk
                    .as_mut()
                    .map_or(Duration::ZERO, |b| b.wait_for(est_tokens as f64, now));
                let wait = w1.max(w2);
                if wait.is_zero() {
                    if let Some(b) = rq.as_mut() {
                        b.level -= 1.0;
                    }
                    if let Some(b) = tk.as_mut() {
                        b.level -= est_tokens as f64;
                    }
                }
                wait
            };
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The budgets are the whole fleet's (one API key shared by many workers): with `workers`
    /// processes sharing them, this one paces to its equal share. The coordinator reports the
    /// number in heartbeat replies.
    pub fn set_share(&self, workers: u32) {
        let now = Instant::now();
        for b in [&self.requests, &self.tokens].into_iter().flatten() {
            b.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .set_share(workers, now);
        }
    }

    /// Corrects the token charge once the real usage is known.
    pub fn settle(&self, estimated: u64, actual: u64) {
        if let Some(b) = &self.tokens {
            let mut b = b.lock().unwrap_or_else(PoisonError::into_inner);
            b.level += estimated as f64 - actual as f64;
            b.level = b.level.min(b.burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_share_divides_the_budget() {
        let t0 = Instant::now();
        let mut b = Bucket::new(600); // 10/s, burst 100
        b.set_share(4, t0); // 2.5/s, burst 25
        for _ in 0..25 {
            assert_eq!(b.wait_for(1.0, t0), Duration::ZERO);
            b.level -= 1.0;
        }
        let w = b.wait_for(1.0, t0);
        assert!(
            w >= Duration::from_millis(390) && w <= Duration::from_millis(410),
            "{w:?}"
        );
        b.set_share(1, t0);
        assert!(b.wait_for(1.0, t0) <= Duration::from_millis(110));
    }

    #[test]
    fn a_fleet_told_its_size_before_its_first_request_bursts_one_budget_together() {
        // Four workers, each told the fleet size with its lease (before any request): together
        // they take a sixth of the minute's budget at once, as one process alone would; not
        // four sixths.
        let limits: Vec<RateLimits> = (0..4).map(|_| RateLimits::new(Some(600), None)).collect();
        for l in &limits {
            l.set_share(4);
        }
        let t0 = Instant::now();
        let mut at_once = 0;
        for l in &limits {
            let mut b = l.requests.as_ref().unwrap().lock().unwrap();
            while b.wait_for(1.0, t0).is_zero() {
                b.level -= 1.0;
                at_once += 1;
            }
        }
        assert_eq!(at_once, 100, "600/min: a burst of 100 for the whole fleet");
    }

    #[test]
    fn bucket_paces_after_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(600); // 10/s, burst 100
        for _ in 0..100 {
            assert_eq!(b.wait_for(1.0, t0), Duration::ZERO);
            b.level -= 1.0;
        }
        let w = b.wait_for(1.0, t0);
        assert!(
            w >= Duration::from_millis(90) && w <= Duration::from_millis(110),
            "{w:?}"
        );
        assert_eq!(
            b.wait_for(1.0, t0 + Duration::from_millis(100)),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn settle_charges_actual_usage() {
        let r = RateLimits::new(None, Some(6000)); // 100/s, burst 1000
        r.admit(100).await;
        r.settle(100, 1000);
        let mut b = r.tokens.as_ref().unwrap().lock().unwrap();
        assert!(b.wait_for(100.0, Instant::now()) >= Duration::from_millis(900));
    }
}
