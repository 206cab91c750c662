//! Fault injection: 429s, 500s, hung requests and short 200 replies (no `choices`, or fewer
//! than `n`) at configured rates.
//!
//! Decisions come from a counter hashed with `--seed` instead of a shared RNG
//! behind a mutex: lock-free under load, and the same seed reproduces the same
//! sequence of faults in request-arrival order.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::text::{mix64, SplitMix64};

/// What to do with a request before serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Serve normally.
    None,
    /// Answer 429 with `Retry-After`.
    RateLimit,
    /// Answer 500.
    ServerError,
    /// Never answer (until the server stops).
    Hang,
    /// Answer 200 with an empty `choices` list.
    EmptyChoices,
    /// Answer 200 with one choice fewer than asked (`n` - 1).
    ShortN,
}

/// Draws one [`Fault`] per request. Rates are exclusive: a single uniform draw
/// `u` gives 429 if `u < rate_429`, else 500 if `u < rate_429 + rate_500`, else
/// a hang if below the sum of all three, then an empty `choices` list, then a reply one
/// choice short.
#[derive(Debug)]
pub struct FaultInjector {
    seed: u64,
    counter: AtomicU64,
    rate_429: f64,
    rate_500: f64,
    rate_hang: f64,
    rate_empty: f64,
    rate_short: f64,
}

impl FaultInjector {
    /// Injector with the given seed and probabilities.
    pub fn new(seed: u64, rate_429: f64, rate_500: f64, rate_hang: f64) -> Self {
        Self {
            seed: mix64(seed ^ 0xFA01_7FA0_17FA_017F),
            counter: AtomicU64::new(0),
            rate_429,
            rate_500,
            rate_hang,
            rate_empty: 0.0,
            rate_short: 0.0,
        }
    }

    /// Also answers 200s without choices (`empty`) or one short of `n` (`short`).
    pub fn with_reply_faults(mut self, empty: f64, short: f64) -> Self {
        self.rate_empty = empty;
        self.rate_short = short;
        self
    }

    /// Whether any fault can ever be injected (skips the draw otherwise).
    pub fn enabled(&self) -> bool {
        self.rate_429 > 0.0
            || self.rate_500 > 0.0
            || self.rate_hang > 0.0
            || self.rate_empty > 0.0
            || self.rate_short > 0.0
    }

    /// The fault for the next request.
    pub fn draw(&self) -> Fault {
        if !self.enabled() {
            return Fault::None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let u = SplitMix64::new(self.seed ^ mix64(n)).unit_f64();
        let mut edge = self.rate_429;
        if u < edge {
            return Fault::RateLimit;
        }
        edge += self.rate_500;
        if u < edge {
            return Fault::ServerError;
        }
        edge += self.rate_hang;
        if u < edge {
            return Fault::Hang;
        }
        edge += self.rate_empty;
        if u < edge {
            return Fault::EmptyChoices;
        }
        edge += self.rate_short;
        if u < edge {
            return Fault::ShortN;
        }
        Fault::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_respected() {
        let f = FaultInjector::new(3, 0.2, 0.1, 0.05);
        let mut counts = [0u32; 4];
        for _ in 0..20_000 {
            counts[match f.draw() {
                Fault::None => 0,
                Fault::RateLimit => 1,
                Fault::ServerError => 2,
                Fault::Hang => 3,
                Fault::EmptyChoices | Fault::ShortN => 4,
            }] += 1;
        }
        let frac = |c: u32| f64::from(c) / 20_000.0;
        assert!((frac(counts[1]) - 0.2).abs() < 0.02, "{counts:?}");
        assert!((frac(counts[2]) - 0.1).abs() < 0.02, "{counts:?}");
        assert!((frac(counts[3]) - 0.05).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn reply_fault_rates_are_respected() {
        let f = FaultInjector::new(5, 0.1, 0.0, 0.0).with_reply_faults(0.2, 0.3);
        let (mut empty, mut short, mut limited) = (0u32, 0u32, 0u32);
        for _ in 0..20_000 {
            match f.draw() {
                Fault::EmptyChoices => empty += 1,
                Fault::ShortN => short += 1,
                Fault::RateLimit => limited += 1,
                _ => {}
            }
        }
        let frac = |c: u32| f64::from(c) / 20_000.0;
        assert!((frac(empty) - 0.2).abs() < 0.02, "{empty}");
        assert!((frac(short) - 0.3).abs() < 0.02, "{short}");
        assert!((frac(limited) - 0.1).abs() < 0.02, "{limited}");
        let only = FaultInjector::new(0, 0.0, 0.0, 0.0).with_reply_faults(0.0, 1.0);
        assert!(only.enabled());
        assert!((0..100).all(|_| only.draw() == Fault::ShortN));
    }

    #[test]
    fn same_seed_same_sequence() {
        let a = FaultInjector::new(9, 0.5, 0.0, 0.0);
        let b = FaultInjector::new(9, 0.5, 0.0, 0.0);
        let sa: Vec<_> = (0..100).map(|_| a.draw()).collect();
        let sb: Vec<_> = (0..100).map(|_| b.draw()).collect();
        assert_eq!(sa, sb);
        let all = FaultInjector::new(0, 1.0, 0.0, 0.0);
        assert!((0..100).all(|_| all.draw() == Fault::RateLimit));
        let none = FaultInjector::new(0, 0.0, 0.0, 0.0);
        assert!((0..100).all(|_| none.draw() == Fault::None));
    }
}
