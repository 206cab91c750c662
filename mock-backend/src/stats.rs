//! Counters behind GET /stats, all lock-free atomics so they never become the
//! bottleneck, plus RAII guards that keep the gauges right even when a client
//! disconnects and its request future is dropped midway.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde_json::{json, Map, Value};

/// Statuses the server can answer on inference endpoints (one counter each).
const STATUSES: [u16; 6] = [200, 400, 404, 429, 500, 503];

/// Server-wide counters. Busy slot time is what benchmarks compare against
/// wall time: `utilization` says whether the client kept the "GPU" saturated.
#[derive(Debug)]
pub struct Stats {
    origin: Instant,
    slots: usize,
    /// Microseconds since `origin` of the last reset.
    reset_at_us: AtomicU64,
    requests_total: AtomicU64,
    by_status: [AtomicU64; STATUSES.len()],
    hung_total: AtomicU64,
    in_flight: AtomicU64,
    /// Most requests in flight at once since the last reset: what a client's concurrency
    /// limit really allowed (tests compare it with `max_concurrency`).
    in_flight_peak: AtomicU64,
    queued: AtomicU64,
    busy_slots: AtomicU64,
    /// Sum of the start times (µs since origin) of currently held slots, so
    /// in-progress busy time is `busy_slots * now - busy_started_sum`.
    busy_started_sum_us: AtomicU64,
    busy_us_total: AtomicU64,
    prompt_tokens_total: AtomicU64,
    /// Prompt tokens found in the prefix cache (`--prefix-cache-blocks`).
    prompt_tokens_cached: AtomicU64,
    completion_tokens_total: AtomicU64,
}

impl Stats {
    /// Fresh counters for a server with `slots` slots (0 = unlimited).
    pub fn new(slots: usize) -> Self {
        Self {
            origin: Instant::now(),
            slots,
            reset_at_us: AtomicU64::new(0),
            requests_total: AtomicU64::new(0),
            by_status: Default::default(),
            hung_total: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            in_flight_peak: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            busy_slots: AtomicU64::new(0),
            busy_started_sum_us: AtomicU64::new(0),
            busy_us_total: AtomicU64::new(0),
            prompt_tokens_total: AtomicU64::new(0),
            prompt_tokens_cached: AtomicU64::new(0),
            completion_tokens_total: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// Counts a received inference request and marks it in flight until the
    /// returned guard drops.
    pub fn begin_request(&self) -> Gauge<'_> {
        self.requests_total.fetch_add(1, Relaxed);
        let gauge = Gauge::up(&self.in_flight);
        self.in_flight_peak
            .fetch_max(self.in_flight.load(Relaxed), Relaxed);
        gauge
    }

    /// Marks a request as waiting for a slot until the guard drops.
    pub fn queued(&self) -> Gauge<'_> {
        Gauge::up(&self.queued)
    }

    /// Counts the status of an answered inference request.
    pub fn record_status(&self, status: u16) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status) {
            self.by_status[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a request that was chosen to hang.
    pub fn record_hang(&self) {
        self.hung_total.fetch_add(1, Relaxed);
    }

    /// Adds a served request's token usage.
    pub fn record_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens_total.fetch_add(prompt, Relaxed);
        self.completion_tokens_total.fetch_add(completion, Relaxed);
    }

    /// Adds prompt tokens a request found in the prefix cache.
    pub fn record_cached_tokens(&self, cached: u64) {
        self.prompt_tokens_cached.fetch_add(cached, Relaxed);
    }

    /// Starts accounting busy time for one slot until the guard drops.
    pub fn slot_busy(&self) -> BusySlot<'_> {
        let start = self.now_us();
        self.busy_started_sum_us.fetch_add(start, Relaxed);
        self.busy_slots.fetch_add(1, Relaxed);
        BusySlot { stats: self, start }
    }

    /// Zeroes the counters and restarts the utilization clock. Gauges
    /// (in flight, queued, busy slots) describe the present and are kept.
    pub fn reset(&self) {
        self.reset_at_us.store(self.now_us(), Relaxed);
        for c in [
            &self.requests_total,
            &self.hung_total,
            &self.busy_us_total,
            &self.prompt_tokens_total,
            &self.prompt_tokens_cached,
            &self.completion_tokens_total,
        ] {
            c.store(0, Relaxed);
        }
        for c in &self.by_status {
            c.store(0, Relaxed);
        }
        // The peak of the new window starts from what is in flight now.
        self.in_flight_peak
            .store(self.in_flight.load(Relaxed), Relaxed);
    }

    /// The GET /stats document.
    pub fn snapshot(&self) -> Value {
        let now = self.now_us();
        let reset_at = self.reset_at_us.load(Relaxed).min(now);
        let window_us = now - reset_at;
        let busy = self.busy_slots.load(Relaxed);
        let in_progress = busy
            .saturating_mul(now)
            .saturating_sub(self.busy_started_sum_us.load(Relaxed))
            .min(busy.saturating_mul(window_us));
        let busy_us = self.busy_us_total.load(Relaxed) + in_progress;
        let utilization = if self.slots == 0 || window_us == 0 {
            Value::Null
        } else {
            let u = busy_us as f64 / (self.slots as f64 * window_us as f64);
            json!(u.clamp(0.0, 1.0))
        };
        let by_status: Map<String, Value> = STATUSES
            .iter()
            .zip(&self.by_status)
            .map(|(s, c)| (s.to_string(), json!(c.load(Relaxed))))
            .collect();
        json!({
            "requests_total": self.requests_total.load(Relaxed),
            "requests_by_status": by_status,
            "hung_total": self.hung_total.load(Relaxed),
            "in_flight": self.in_flight.load(Relaxed),
            "in_flight_peak": self.in_flight_peak.load(Relaxed),
            "queued": self.queued.load(Relaxed),
            "slots": self.slots,
            "busy_slots": busy,
            "busy_slot_ms_total": busy_us as f64 / 1000.0,
            "utilization": utilization,
            "prompt_tokens_total": self.prompt_tokens_total.load(Relaxed),
            "prompt_tokens_cached": self.prompt_tokens_cached.load(Relaxed),
            "completion_tokens_total": self.completion_tokens_total.load(Relaxed),
            "uptime_ms": now / 1000,
            "since_reset_ms": window_us / 1000,
        })
    }
}

/// Increments a gauge on creation and decrements it on drop.
#[derive(Debug)]
pub struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Relaxed);
        Self(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// A slot being busy; on drop its busy time (clipped to the current stats
/// window) is added to `busy_slot_ms_total`.
#[derive(Debug)]
pub struct BusySlot<'a> {
    stats: &'a Stats,
    start: u64,
}

impl Drop for BusySlot<'_> {
    fn drop(&mut self) {
        let s = self.stats;
        let now = s.now_us();
        let from = self.start.max(s.reset_at_us.load(Relaxed));
        s.busy_us_total.fetch_add(now.saturating_sub(from), Relaxed);
        s.busy_slots.fetch_sub(1, Relaxed);
        s.busy_started_sum_us.fetch_sub(self.start, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_and_reset() {
        let s = Stats::new(2);
        {
            let _r = s.begin_request();
            let _q = s.queued();
            let snap = s.snapshot();
            assert_eq!(snap["in_flight"], 1);
            assert_eq!(snap["queued"], 1);
            let _r2 = s.begin_request();
            assert_eq!(s.snapshot()["in_flight_peak"], 2);
        }
        // The peak stays after the requests end, until a reset.
        assert_eq!(s.snapshot()["in_flight_peak"], 2);
        s.record_status(200);
        s.record_status(429);
        s.record_tokens(3, 4);
        s.record_cached_tokens(2);
        {
            let _b = s.slot_busy();
            std::thread::sleep(std::time::Duration::from_millis(20));
            assert!(s.snapshot()["busy_slot_ms_total"].as_f64().unwrap() >= 19.0);
        }
        let snap = s.snapshot();
        assert_eq!(snap["in_flight"], 0);
        assert_eq!(snap["queued"], 0);
        assert_eq!(snap["requests_total"], 2);
        assert_eq!(snap["requests_by_status"]["200"], 1);
        assert_eq!(snap["requests_by_status"]["429"], 1);
        assert_eq!(snap["completion_tokens_total"], 4);
        assert_eq!(snap["prompt_tokens_cached"], 2);
        assert!(snap["busy_slot_ms_total"].as_f64().unwrap() >= 20.0);
        let u = snap["utilization"].as_f64().unwrap();
        assert!(u > 0.0 && u <= 1.0);
        s.reset();
        let snap = s.snapshot();
        assert_eq!(snap["requests_total"], 0);
        assert_eq!(snap["busy_slot_ms_total"], 0.0);
        assert_eq!(snap["in_flight_peak"], 0);
        assert!(Stats::new(0).snapshot()["utilization"].is_null());
    }
}
