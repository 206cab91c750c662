//! One endpoint of a pool: its limiter, health (ejection with half-open probing) and numbers.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::limiter::{Limiter, Signal};
use super::EndpointSnapshot;

/// Consecutive failures (transport errors, timeouts, 5xx) that take an endpoint out.
pub const EJECT_AFTER: u32 = 5;
/// First ejection lasts this long; each failed probe doubles it up to [`EJECT_MAX`].
pub const EJECT_BASE: Duration = Duration::from_millis(500);
pub const EJECT_MAX: Duration = Duration::from_secs(30);
/// Latencies kept per endpoint for p50/p95.
const LATENCY_RING: usize = 1024;

/// The result of one attempt on an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok(Duration),
    /// HTTP error status.
    Status(u16),
    /// Connection failure, reset, unparsable response.
    Transport,
    /// No answer within the request timeout.
    Timeout,
    /// The caller gave up on the attempt (dropped) before an answer.
    Cancelled,
}

impl Outcome {
    /// Code for `errors_by_code` (0 = transport error or timeout).
    fn code(self) -> Option<u16> {
        match self {
            Outcome::Ok(_) | Outcome::Cancelled => None,
            Outcome::Status(s) => Some(s),
            Outcome::Transport | Outcome::Timeout => Some(0),
        }
    }

    /// Whether this says the endpoint itself is unwell (counts toward ejection).
    fn is_failure(self) -> bool {
        match self {
            Outcome::Status(s) => s >= 500,
            Outcome::Transport | Outcome::Timeout => true,
            _ => false,
        }
    }

    fn signal(self) -> Signal {
        match self {
            Outcome::Ok(d) => Signal::Latency(d),
            Outcome::Status(429 | 503 | 504) | Outcome::Timeout => Signal::Overload,
            _ => Signal::Ignore,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Health {
    Healthy,
    /// Out of rotation until `until`; then one probe request may go (half-open).
    Ejected {
        until: Instant,
        backoff: Duration,
    },
}

/// Mutable state of one endpoint; lives inside the pool's lock.
#[derive(Debug)]
pub struct EndpointState {
    pub url: String,
    pub limiter: Limiter,
    pub in_flight: u32,
    health: Health,
    consecutive_failures: u32,
    requests_ok: u64,
    errors_by_code: BTreeMap<u16, u64>,
    latencies_ms: VecDeque<f64>,
}

impl EndpointState {
    pub fn new(url: String, limiter: Limiter) -> Self {
        EndpointState {
            url,
            limiter,
            in_flight: 0,
            health: Health::Healthy,
            consecutive_failures: 0,
            requests_ok: 0,
            errors_by_code: BTreeMap::new(),
            latencies_ms: VecDeque::with_capacity(LATENCY_RING),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.health == Health::Healthy
    }

    /// Free request slots right now (0 when ejected; 1 for a due half-open probe).
    pub fn free(&self, now: Instant) -> u32 {
        match self.health {
            Health::Healthy => self.limiter.limit().saturating_sub(self.in_flight),
            Health::Ejected { until, .. } if now >= until && self.in_flight == 0 => 1,
            Health::Ejected { .. } => 0,
        }
    }

    /// Load relative to the limit, for least-outstanding picking across endpoints of
    /// different capacity.
    pub fn load(&self) -> f64 {
        self.in_flight as f64 / self.limiter.limit().max(1) as f64
    }

    /// Records an attempt's outcome. `others_healthy` says whether another endpoint is in
    /// rotation (the last healthy endpoint is never ejected). Returns how many extra slots
    /// opened (limit growth), so the pool can wake that many waiters.
    pub fn record(
        &mut self,
        epoch: u64,
        outcome: Outcome,
        now: Instant,
        now_s: f64,
        others_healthy: bool,
    ) -> u32 {
        let before = self.limiter.limit();
        if let Some(code) = outcome.code() {
            *self.errors_by_code.entry(code).or_default() += 1;
        }
        if let Outcome::Ok(d) = outcome {
            self.requests_ok += 1;
            if self.latencies_ms.len() == LATENCY_RING {
                self.latencies_ms.pop_front();
            }
            self.latencies_ms.push_back(d.as_secs_f64() * 1000.0);
        }
        if outcome.is_failure() {
            self.consecutive_failures += 1;
            match self.health {
                Health::Ejected { backoff, .. } => {
                    // The half-open probe failed: stay out, twice as long.
                    let backoff = (backoff * 2).min(EJECT_MAX);
                    self.health = Health::Ejected {
                        until: now + backoff,
                        backoff,
                    };
                }
                Health::Healthy if self.consecutive_failures >= EJECT_AFTER && others_healthy => {
                    tracing::warn!(endpoint = %crate::redact::mask_text(&self.url), failures = self.consecutive_failures, "endpoint ejected");
                    self.health = Health::Ejected {
                        until: now + EJECT_BASE,
                        backoff: EJECT_BASE,
                    };
                }
                Health::Healthy => {}
            }
        } else if !matches!(outcome, Outcome::Cancelled) {
            self.consecutive_failures = 0;
            if !self.is_healthy() {
                tracing::info!(endpoint = %crate::redact::mask_text(&self.url), "endpoint back in rotation");
                self.health = Health::Healthy;
            }
        }
        self.limiter.on_sample(epoch, outcome.signal(), now_s);
        self.limiter.limit().saturating_sub(before)
    }

    pub fn snapshot(&self) -> EndpointSnapshot {
        let mut sorted: Vec<f64> = self.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        EndpointSnapshot {
            url: self.url.clone(),
            limit: self.limiter.limit() as u64,
            in_flight: self.in_flight as u64,
            requests_ok: self.requests_ok,
            errors_by_code: self.errors_by_code.clone(),
            latency_p50_ms: percentile(&sorted, 0.50),
            latency_p95_ms: percentile(&sorted, 0.95),
            ejected: !self.is_healthy(),
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ejects_after_repeated_failures_and_readmits_on_success() {
        let t0 = Instant::now();
        let mut e = EndpointState::new("x".into(), Limiter::fixed(4));
        for _ in 0..EJECT_AFTER {
            e.record(0, Outcome::Transport, t0, 0.0, true);
        }
        assert!(!e.is_healthy());
        assert_eq!(e.free(t0), 0);
        assert_eq!(e.free(t0 + EJECT_BASE), 1, "half-open probe when due");
        e.record(0, Outcome::Status(500), t0 + EJECT_BASE, 0.0, true);
        assert_eq!(
            e.free(t0 + EJECT_BASE * 2),
            0,
            "failed probe doubles backoff"
        );
        e.record(0, Outcome::Ok(Duration::from_millis(5)), t0, 0.0, true);
        assert!(e.is_healthy());
        assert_eq!(e.snapshot().errors_by_code[&0], EJECT_AFTER as u64);
    }

    #[test]
    fn last_healthy_endpoint_is_never_ejected() {
        let t0 = Instant::now();
        let mut e = EndpointState::new("x".into(), Limiter::fixed(4));
        for _ in 0..20 {
            e.record(0, Outcome::Status(503), t0, 0.0, false);
        }
        assert!(e.is_healthy());
        e.record(0, Outcome::Status(429), t0, 0.0, true);
        assert!(e.is_healthy(), "429 is load, not ill health");
    }
}
