//! Per-endpoint concurrency limits: fixed, or adaptive (a gradient limiter on latency).
//!
//! The adaptive limiter finds a GPU server's saturation point without being told its batch size
//! K. Below K, latency stays at the server's no-load latency; beyond K, requests queue and
//! latency grows linearly with the excess. The limiter compares the average latency of a short
//! window of completed requests (`short`) with the long-run minimum of such window averages
//! (`base`, the no-load latency) and sets, once per window (Netflix concurrency-limits
//! "Gradient2"/TCP Vegas style):
//!
//! ```text
//! gradient  = clamp(TOLERANCE * base / short, 0.5, 1.0)
//! new_limit = limit * gradient + sqrt(limit)          (then smoothed)
//! ```
//!
//! While latency holds, the limit grows by `sqrt(limit)` per window (during the initial slow
//! start it doubles per window until latency first rises). With K slots and L requests in flight
//! (L > K), latency is `base * L / K`, so the fixed point is `L = TOLERANCE * K + sqrt(L)`: a
//! little above K, which keeps every slot busy with a short queue. Overload signals (429, 503,
//! 504, timeouts) cut the limit multiplicatively in proportion to their recent share of outcomes,
//! so a server shedding most requests halves it per window while sporadic faults barely move it.
//!
//! Fleet argument: N clients sharing one server all see the same queueing delay. Each applies
//! `L_i' = L_i * TOLERANCE * K / T + sqrt(L_i)` with `T = sum L_i`, so summing over clients gives
//! `T' = TOLERANCE * K + sum sqrt(L_i)`: the fleet total converges near `TOLERANCE * K`, not
//! `N * K`, without any coordination. See docs/backend-bench.md for the measurement.
//!
//! Samples are tagged with the limiter's epoch (bumped on every limit change); only samples of
//! requests sent under the current limit count, so a decision is never made on stale latencies.

use std::time::Duration;

/// Lowest adaptive limit: one request must always be able to flow.
pub const AUTO_MIN_LIMIT: u32 = 1;
/// Highest adaptive limit per endpoint.
pub const AUTO_MAX_LIMIT: u32 = 1024;
/// Starting adaptive limit per endpoint.
pub const AUTO_INITIAL_LIMIT: u32 = 8;
/// Queueing tolerated before the limit shrinks: latency up to this factor of the no-load
/// latency counts as "holding". 1.25 keeps every slot busy across latency noise with a queue of
/// about a quarter of the slots (measured: docs/backend-bench.md).
pub const TOLERANCE: f64 = 1.25;
/// Share of the computed new limit taken per window (smoothing against noise).
const SMOOTHING: f64 = 0.5;
/// Multiplicative decrease per window when every sample of it was an overload signal.
const OVERLOAD_BACKOFF: f64 = 0.5;
/// Weight of one outcome in the moving average of the overload share (about the last 30).
const OVERLOAD_RATE_ALPHA: f64 = 1.0 / 32.0;
/// Share of overload signals in a window that ends the initial doubling.
const SLOW_START_MAX_OVERLOAD: f64 = 0.1;
/// A window closes after this long even with few samples (low traffic).
const MAX_WINDOW: Duration = Duration::from_secs(1);

/// What became of one request on an endpoint, as the limiter sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A completed response and its latency.
    Latency(Duration),
    /// The server said it is overloaded (429, 503, 504) or the request timed out.
    Overload,
    /// Neither: a client error or a failure unrelated to load.
    Ignore,
}

/// The concurrency limit of one endpoint.
#[derive(Debug, Clone)]
pub enum Limiter {
    Fixed(u32),
    Gradient(Gradient),
}

impl Limiter {
    pub fn fixed(n: u32) -> Self {
        Limiter::Fixed(n.max(1))
    }

    pub fn adaptive() -> Self {
        Limiter::Gradient(Gradient::new(AUTO_INITIAL_LIMIT))
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> u32 {
        match self {
            Limiter::Fixed(n) => *n,
            Limiter::Gradient(g) => g.limit,
        }
    }

    /// Tag for a request sent now; pass it back with its outcome.
    pub fn epoch(&self) -> u64 {
        match self {
            Limiter::Fixed(_) => 0,
            Limiter::Gradient(g) => g.epoch,
        }
    }

    /// Notes how many requests are in flight right after one was sent: a limit that is not
    /// being used is not grown (a task with few rows says nothing about the server's capacity,
    /// and an untested high limit would overload it on the next burst).
    pub fn note_in_flight(&mut self, in_flight: u32) {
        if let Limiter::Gradient(g) = self {
            g.max_in_flight = g.max_in_flight.max(in_flight);
        }
    }

    /// Feeds one outcome at time `now_s` (seconds on any monotonic clock); returns the new
    /// limit when it changed.
    pub fn on_sample(&mut self, epoch: u64, signal: Signal, now_s: f64) -> Option<u32> {
        match self {
            Limiter::Fixed(_) => None,
            Limiter::Gradient(g) => g.on_sample(epoch, signal, now_s),
        }
    }
}

/// State of the adaptive limiter; see the module docs for the rule.
#[derive(Debug, Clone)]
pub struct Gradient {
    limit: u32,
    /// Exact (unrounded) limit, so small smoothed steps accumulate.
    estimate: f64,
    epoch: u64,
    /// Minimum window-average latency seen (seconds): the no-load latency.
    base: Option<f64>,
    /// Doubling until latency first rises above the tolerance.
    slow_start: bool,
    window_start: Option<f64>,
    lat_sum: f64,
    lat_n: u32,
    overloads: u32,
    /// Moving average of the share of overload signals among outcomes.
    overload_rate: f64,
    /// Most requests in flight since the window opened.
    max_in_flight: u32,
}

impl Gradient {
    pub fn new(initial: u32) -> Self {
        let initial = initial.clamp(AUTO_MIN_LIMIT, AUTO_MAX_LIMIT);
        Gradient {
            limit: initial,
            estimate: initial as f64,
            epoch: 0,
            base: None,
            slow_start: true,
            window_start: None,
            lat_sum: 0.0,
            lat_n: 0,
            overloads: 0,
            overload_rate: 0.0,
            max_in_flight: 0,
        }
    }

    /// Samples a window needs before it decides: half the limit (so the average reflects the
    /// queue the limit creates), at least 4.
    fn window_len(&self) -> u32 {
        (self.limit / 2).max(4)
    }

    fn on_sample(&mut self, epoch: u64, signal: Signal, now_s: f64) -> Option<u32> {
        match signal {
            Signal::Latency(_) => self.overload_rate *= 1.0 - OVERLOAD_RATE_ALPHA,
            Signal::Overload => {
                self.overload_rate += OVERLOAD_RATE_ALPHA * (1.0 - self.overload_rate);
            }
            Signal::Ignore => {}
        }
        if epoch != self.epoch {
            // Sent under an older limit: still useful for the no-load latency estimate.
            if let Signal::Latency(d) = signal {
                if self.base.is_none() {
                    self.base = Some(d.as_secs_f64());
                }
            }
            return None;
        }
        let start = *self.window_start.get_or_insert(now_s);
        match signal {
            Signal::Latency(d) => {
                self.lat_sum += d.as_secs_f64();
                self.lat_n += 1;
            }
            Signal::Overload => self.overloads += 1,
            Signal::Ignore => return None,
        }
        let n = self.lat_n + self.overloads;
        if n < self.window_len() && now_s - start < MAX_WINDOW.as_secs_f64() {
            return None;
        }
        self.close_window()
    }

    fn close_window(&mut self) -> Option<u32> {
        // The overload share comes from the moving average over all outcomes, not from this
        // window: fast failures (a 429 answers in a millisecond) complete within a window far
        // more often than the successes sent alongside them, so a window's own share is biased.
        let overload_share = self.overload_rate;
        let mut target = self.estimate;
        if self.lat_n > 0 {
            let short = self.lat_sum / self.lat_n as f64;
            let base = match self.base {
                Some(b) if b <= short => b,
                _ => {
                    self.base = Some(short);
                    short
                }
            };
            let ratio = TOLERANCE * base / short.max(1e-6);
            if self.slow_start && ratio >= 1.0 && overload_share < SLOW_START_MAX_OVERLOAD {
                target = self.estimate * 2.0;
            } else {
                self.slow_start = false;
                let gradient = ratio.clamp(0.5, 1.0);
                let computed = self.estimate * gradient + self.estimate.sqrt();
                target = self.estimate * (1.0 - SMOOTHING) + computed * SMOOTHING;
            }
        }
        if self.max_in_flight * 2 < self.limit {
            // Application-limited: the caller offered less than half the limit.
            target = target.min(self.estimate);
        }
        if overload_share > 0.001 {
            // Proportional: a few random 429s/timeouts trim the limit a little (latency growth
            // still decides), a server shedding most requests halves it every window.
            target *= 1.0 - OVERLOAD_BACKOFF * overload_share;
        }
        if overload_share >= SLOW_START_MAX_OVERLOAD {
            self.slow_start = false;
        }
        self.estimate = target.clamp(AUTO_MIN_LIMIT as f64, AUTO_MAX_LIMIT as f64);
        self.window_start = None;
        self.lat_sum = 0.0;
        self.lat_n = 0;
        self.overloads = 0;
        self.max_in_flight = 0;
        let new_limit = self.estimate.round() as u32;
        if new_limit != self.limit {
            self.limit = new_limit;
            self.epoch += 1;
            Some(new_limit)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closed-loop simulation of K slots with fixed service time: latency is `service * max(1,
    /// L/K)`. Returns the limit after `windows` windows.
    fn simulate(k: f64, clients: usize, windows: usize) -> Vec<u32> {
        let service = 0.2;
        let mut ls: Vec<Limiter> = (0..clients).map(|_| Limiter::adaptive()).collect();
        let mut now = 0.0;
        for _ in 0..windows {
            let total: f64 = ls.iter().map(|l| l.limit() as f64).sum();
            let lat = service * (total / k).max(1.0);
            now += lat;
            for l in ls.iter_mut() {
                let e = l.epoch();
                l.note_in_flight(l.limit());
                for _ in 0..l.limit() {
                    l.on_sample(e, Signal::Latency(Duration::from_secs_f64(lat)), now);
                }
            }
        }
        ls.iter().map(|l| l.limit()).collect()
    }

    #[test]
    fn converges_above_k_single_client() {
        for k in [16.0, 64.0, 200.0] {
            let l = simulate(k, 1, 200)[0] as f64;
            assert!(l >= k && l <= 2.0 * k, "K={k}: limit {l}");
        }
    }

    #[test]
    fn fleet_total_converges_near_k() {
        let ls = simulate(64.0, 4, 400);
        let total: u32 = ls.iter().sum();
        assert!((64..=160).contains(&total), "{ls:?}");
    }

    #[test]
    fn overload_cuts_and_fixed_stays() {
        let mut l = Limiter::Gradient(Gradient::new(100));
        for i in 0..200 {
            let e = l.epoch();
            l.on_sample(e, Signal::Overload, i as f64 * 0.001);
        }
        assert!(l.limit() <= 25, "{}", l.limit());
        // Sporadic overloads (3%) with latency holding: the limit still grows.
        let mut l = Limiter::Gradient(Gradient::new(16));
        for i in 0..3000 {
            let e = l.epoch();
            l.note_in_flight(l.limit());
            let s = if i % 33 == 0 {
                Signal::Overload
            } else {
                Signal::Latency(Duration::from_millis(200))
            };
            l.on_sample(e, s, i as f64 * 0.001);
        }
        assert!(l.limit() > 64, "{}", l.limit());
        // Offered only 2 at a time, the limit does not grow.
        let mut l = Limiter::Gradient(Gradient::new(16));
        for i in 0..1000 {
            let e = l.epoch();
            l.note_in_flight(2);
            l.on_sample(
                e,
                Signal::Latency(Duration::from_millis(200)),
                i as f64 * 0.01,
            );
        }
        assert_eq!(l.limit(), 16);
        let mut f = Limiter::fixed(7);
        assert_eq!(f.on_sample(0, Signal::Overload, 0.0), None);
        assert_eq!(f.limit(), 7);
    }
}
