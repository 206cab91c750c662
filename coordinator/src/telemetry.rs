//! Live telemetry the dashboard, `/api` and `/metrics` show beyond the scheduler's durable
//! state: per-job and per-worker throughput over time, the backend snapshots workers report in
//! heartbeats, task durations, lease expirations and a few sampled output rows.
//!
//! Everything here is in memory and lossy by design (bounded rings, last snapshot wins): it is
//! for watching a job, not for accounting — the scheduler's stats remain the truth.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use synthforge_core::backend::{BackendSnapshot, EndpointSnapshot};
use synthforge_core::sink::WrittenFile;

/// Points kept per series; when full, every other point is dropped (resolution halves), so a
/// job of any length keeps its whole history in bounded memory.
const MAX_POINTS: usize = 720;
/// Rates shown as "now" are averaged over this window.
const RATE_WINDOW_MS: u64 = 10_000;
/// Each point of the rate history is averaged over this window.
const SMOOTH_MS: u64 = 5_000;
/// Sampled output rows kept per job.
pub const MAX_SAMPLES: usize = 12;
/// A worker's backend snapshot older than this no longer counts as in flight.
const STALE_MS: u64 = 30_000;
/// Upper bounds (seconds) of the task duration histogram.
pub const TASK_SECONDS_BUCKETS: [f64; 10] =
    [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// One point of a cumulative series.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    pub t_ms: u64,
    pub rows: u64,
    pub tokens: u64,
}

/// A throughput sample derived from two consecutive points.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RatePoint {
    pub t_ms: u64,
    pub rows_per_s: f64,
    pub tokens_per_s: f64,
}

#[derive(Debug, Default)]
struct Series {
    points: VecDeque<Point>,
    /// The newest point, even when it came sooner than `every_ms` after the last stored one.
    latest: Option<Point>,
    /// Minimum spacing between stored points; doubles each time the ring is thinned.
    every_ms: u64,
}

impl Series {
    fn push(&mut self, p: Point) {
        if self.every_ms == 0 {
            self.every_ms = 1_000;
        }
        self.latest = Some(p);
        if self
            .points
            .back()
            .is_none_or(|last| p.t_ms >= last.t_ms + self.every_ms)
        {
            self.points.push_back(p);
            if self.points.len() > MAX_POINTS {
                self.points = self.points.iter().copied().step_by(2).collect();
                self.every_ms *= 2;
            }
        }
    }

    /// Stored points plus the newest one.
    fn all(&self) -> Vec<Point> {
        let mut v: Vec<Point> = self.points.iter().copied().collect();
        if let Some(l) = self.latest {
            if v.last().is_none_or(|b| l.t_ms > b.t_ms) {
                v.push(l);
            }
        }
        v
    }

    /// One rate per point, each over the [`SMOOTH_MS`] before it (or the spacing between
    /// points, when wider): progress arrives in heartbeat-sized steps, so point-to-point rates
    /// would saw-tooth.
    fn rates(&self) -> Vec<RatePoint> {
        let v = self.all();
        let mut out = Vec::with_capacity(v.len());
        let mut a = 0;
        for (b, pb) in v.iter().enumerate().skip(1) {
            while a + 1 < b && v[a + 1].t_ms + SMOOTH_MS <= pb.t_ms {
                a += 1;
            }
            if pb.t_ms > v[a].t_ms {
                out.push(rate(&v[a], pb));
            }
        }
        out
    }

    /// Rate over the last [`RATE_WINDOW_MS`] (or the whole series when shorter).
    fn current(&self) -> RatePoint {
        let v = self.all();
        let zero = RatePoint {
            t_ms: 0,
            rows_per_s: 0.0,
            tokens_per_s: 0.0,
        };
        let Some(last) = v.last() else {
            return zero;
        };
        let first = v
            .iter()
            .find(|p| p.t_ms + RATE_WINDOW_MS >= last.t_ms)
            .unwrap_or(last);
        if first.t_ms == last.t_ms {
            return RatePoint {
                t_ms: last.t_ms,
                ..zero
            };
        }
        rate(first, last)
    }
}

fn rate(a: &Point, b: &Point) -> RatePoint {
    let dt = (b.t_ms - a.t_ms) as f64 / 1000.0;
    RatePoint {
        t_ms: b.t_ms,
        rows_per_s: b.rows.saturating_sub(a.rows) as f64 / dt,
        tokens_per_s: b.tokens.saturating_sub(a.tokens) as f64 / dt,
    }
}

/// A generated row, as read back from a committed output file. Untrusted text: the dashboard
/// inserts it with `textContent` only.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleRow {
    pub task_id: u64,
    pub seed_id: String,
    pub model: String,
    pub stage: String,
    pub prompt: String,
    pub completion: String,
}

/// A committed data file waiting to be sampled.
#[derive(Debug, Clone)]
pub struct SampleSource {
    pub job_id: String,
    pub task_id: u64,
    pub path: String,
}

/// What one worker last reported about one job's backends.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerBackends {
    pub worker: String,
    pub job_id: String,
    pub at_ms: u64,
    pub backends: Vec<BackendSnapshot>,
}

/// One endpoint of one job's backend, summed over the workers that use it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointView {
    pub job_id: String,
    pub backend: String,
    pub model: String,
    pub url: String,
    /// Sum of the workers' current concurrency limits for this endpoint.
    pub limit: u64,
    pub in_flight: u64,
    pub requests_ok: u64,
    pub errors_by_code: BTreeMap<u16, u64>,
    /// Request-weighted mean of the workers' medians (an approximation across workers).
    pub latency_p50_ms: f64,
    /// Highest p95 any worker reports (conservative).
    pub latency_p95_ms: f64,
    pub ejected: bool,
    pub workers: u64,
    pub retries: u64,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<String, Series>,
    workers: HashMap<String, Series>,
    backends: BTreeMap<(String, String), WorkerBackends>,
    samples: HashMap<String, VecDeque<SampleRow>>,
    files_seen: HashMap<String, u64>,
    to_sample: VecDeque<SampleSource>,
    task_started: HashMap<(String, u64, u32), u64>,
}

/// The coordinator's live telemetry; one per scheduler.
#[derive(Debug, Default)]
pub struct Telemetry {
    inner: Mutex<Inner>,
    /// Leases that ran out before the worker finished or heartbeated.
    pub lease_expirations: AtomicU64,
    /// Task durations (lease to accepted completion): cumulative counts per bucket, then the
    /// `+Inf` count, plus the sum in milliseconds.
    task_buckets: [AtomicU64; TASK_SECONDS_BUCKETS.len() + 1],
    task_sum_ms: AtomicU64,
}

impl Telemetry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a job's cumulative progress (seed rows done, tokens spent).
    pub fn record_job(&self, job_id: &str, p: Point) {
        self.lock()
            .jobs
            .entry(job_id.to_string())
            .or_default()
            .push(p);
    }

    /// Records a worker's cumulative rows done.
    pub fn record_worker(&self, worker: &str, p: Point) {
        self.lock()
            .workers
            .entry(worker.to_string())
            .or_default()
            .push(p);
    }

    pub fn job_rates(&self, job_id: &str) -> Vec<RatePoint> {
        self.lock()
            .jobs
            .get(job_id)
            .map(Series::rates)
            .unwrap_or_default()
    }

    pub fn job_rate(&self, job_id: &str) -> RatePoint {
        self.lock()
            .jobs
            .get(job_id)
            .map(Series::current)
            .unwrap_or(RatePoint {
                t_ms: 0,
                rows_per_s: 0.0,
                tokens_per_s: 0.0,
            })
    }

    pub fn worker_rate(&self, worker: &str) -> f64 {
        self.lock()
            .workers
            .get(worker)
            .map(|s| s.current().rows_per_s)
            .unwrap_or(0.0)
    }

    /// Stores a worker's latest backend snapshot for a job (from a heartbeat).
    pub fn record_backends(&self, worker: &str, job_id: &str, backends: Vec<BackendSnapshot>) {
        if backends.is_empty() {
            return;
        }
        let at_ms = synthforge_core::now_ms();
        self.lock().backends.insert(
            (worker.to_string(), job_id.to_string()),
            WorkerBackends {
                worker: worker.into(),
                job_id: job_id.into(),
                at_ms,
                backends,
            },
        );
    }

    /// Tokens spent on a job so far according to the workers' backend counters (these include
    /// tasks still running, unlike the scheduler's completed-task stats).
    pub fn backend_tokens(&self, job_id: &str) -> u64 {
        self.lock()
            .backends
            .values()
            .filter(|w| w.job_id == job_id)
            .flat_map(|w| &w.backends)
            .map(|b| b.prompt_tokens + b.completion_tokens)
            .sum()
    }

    /// The backends a worker last reported (for `/api/workers`).
    pub fn worker_backends(&self, worker: &str) -> Vec<WorkerBackends> {
        self.lock()
            .backends
            .values()
            .filter(|w| w.worker == worker)
            .cloned()
            .collect()
    }

    /// Every endpoint of every job's backends, summed over workers.
    pub fn endpoints(&self) -> Vec<EndpointView> {
        let now = synthforge_core::now_ms();
        let inner = self.lock();
        let mut out: BTreeMap<(String, String, String), (EndpointView, f64)> = BTreeMap::new();
        for w in inner.backends.values() {
            let fresh = now.saturating_sub(w.at_ms) < STALE_MS;
            for b in &w.backends {
                for (i, e) in b.endpoints.iter().enumerate() {
                    let key = (w.job_id.clone(), b.name.clone(), e.url.clone());
                    let (v, weighted) = out.entry(key).or_insert_with(|| {
                        (
                            EndpointView {
                                job_id: w.job_id.clone(),
                                backend: b.name.clone(),
                                model: b.model.clone(),
                                url: e.url.clone(),
                                ..Default::default()
                            },
                            0.0,
                        )
                    });
                    add_endpoint(v, weighted, e, fresh);
                    if i == 0 {
                        v.retries += b.retries;
                    }
                }
            }
        }
        out.into_values()
            .map(|(mut v, weighted)| {
                if v.requests_ok > 0 {
                    v.latency_p50_ms = weighted / v.requests_ok as f64;
                }
                v
            })
            .collect()
    }

    /// Notes a lease handed out, to time the task.
    pub fn task_leased(&self, job_id: &str, task_id: u64, attempt: u32) {
        let now = synthforge_core::now_ms();
        self.lock()
            .task_started
            .insert((job_id.to_string(), task_id, attempt), now);
    }

    /// Notes an accepted completion: times the task and queues its data files for sampling.
    pub fn task_completed(&self, job_id: &str, task_id: u64, attempt: u32, files: &[WrittenFile]) {
        let now = synthforge_core::now_ms();
        let mut inner = self.lock();
        if let Some(start) = inner
            .task_started
            .remove(&(job_id.to_string(), task_id, attempt))
        {
            let ms = now.saturating_sub(start);
            self.task_sum_ms.fetch_add(ms, Ordering::Relaxed);
            let s = ms as f64 / 1000.0;
            for (i, le) in TASK_SECONDS_BUCKETS.iter().enumerate() {
                if s <= *le {
                    self.task_buckets[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            self.task_buckets[TASK_SECONDS_BUCKETS.len()].fetch_add(1, Ordering::Relaxed);
        }
        let seen = inner.files_seen.entry(job_id.to_string()).or_default();
        *seen += 1;
        // Sample every committed file until the ring is full, then every tenth: samples keep
        // refreshing over a long job without reading much.
        let have = inner.samples.get(job_id).map_or(0, VecDeque::len);
        let tenth = inner.files_seen[job_id] % 10;
        if have < MAX_SAMPLES || tenth == 0 {
            if let Some(f) = files.iter().find(|f| f.kind == "data" && f.rows > 0) {
                inner.to_sample.push_back(SampleSource {
                    job_id: job_id.to_string(),
                    task_id,
                    path: f.path.clone(),
                });
            }
        }
        if inner.to_sample.len() > 64 {
            inner.to_sample.pop_front();
        }
    }

    /// Cumulative bucket counts (last = `+Inf`) and the sum in seconds.
    pub fn task_duration_histogram(&self) -> (Vec<u64>, f64) {
        let counts = self
            .task_buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        (
            counts,
            self.task_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }

    pub fn next_sample_source(&self) -> Option<SampleSource> {
        self.lock().to_sample.pop_front()
    }

    pub fn add_samples(&self, job_id: &str, rows: Vec<SampleRow>) {
        let mut inner = self.lock();
        let ring = inner.samples.entry(job_id.to_string()).or_default();
        for r in rows {
            ring.push_back(r);
            if ring.len() > MAX_SAMPLES {
                ring.pop_front();
            }
        }
    }

    pub fn samples(&self, job_id: &str) -> Vec<SampleRow> {
        self.lock()
            .samples
            .get(job_id)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn add_endpoint(v: &mut EndpointView, weighted: &mut f64, e: &EndpointSnapshot, fresh: bool) {
    if fresh {
        v.limit += e.limit;
        v.in_flight += e.in_flight;
        v.ejected |= e.ejected;
    }
    v.workers += 1;
    v.requests_ok += e.requests_ok;
    *weighted += e.latency_p50_ms * e.requests_ok as f64;
    v.latency_p95_ms = v.latency_p95_ms.max(e.latency_p95_ms);
    for (code, n) in &e.errors_by_code {
        *v.errors_by_code.entry(*code).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_rates_and_thinning() {
        let mut s = Series::default();
        for i in 0..2000u64 {
            s.push(Point {
                t_ms: i * 1000,
                rows: i * 10,
                tokens: i * 100,
            });
        }
        assert!(s.points.len() <= MAX_POINTS);
        let r = s.current();
        assert!((r.rows_per_s - 10.0).abs() < 1e-9, "{r:?}");
        assert!((r.tokens_per_s - 100.0).abs() < 1e-9, "{r:?}");
        assert!(s.rates().iter().all(|r| (r.rows_per_s - 10.0).abs() < 1e-9));
        // The whole history is still covered after thinning.
        assert_eq!(s.points.front().unwrap().t_ms, 0);
    }

    #[test]
    fn heartbeat_steps_give_a_smooth_rate() {
        // Progress arrives every 2 s in steps of 20 rows; samples come every second.
        let mut s = Series::default();
        for i in 0..30u64 {
            s.push(Point {
                t_ms: i * 1000,
                rows: (i / 2) * 20,
                tokens: 0,
            });
        }
        for r in s.rates().iter().skip(5) {
            assert!((r.rows_per_s - 10.0).abs() <= 2.0, "{r:?}");
        }
    }

    #[test]
    fn endpoints_sum_over_workers() {
        let t = Telemetry::default();
        let snap = |in_flight, ok, p50, p95| BackendSnapshot {
            name: "gen".into(),
            model: "m".into(),
            endpoints: vec![EndpointSnapshot {
                url: "http://a".into(),
                limit: 8,
                in_flight,
                requests_ok: ok,
                errors_by_code: [(429u16, 2u64)].into_iter().collect(),
                latency_p50_ms: p50,
                latency_p95_ms: p95,
                ejected: false,
            }],
            ..Default::default()
        };
        t.record_backends("w1", "j", vec![snap(3, 10, 100.0, 200.0)]);
        t.record_backends("w2", "j", vec![snap(5, 30, 200.0, 400.0)]);
        let e = t.endpoints();
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].limit, e[0].in_flight, e[0].requests_ok), (16, 8, 40));
        assert_eq!(e[0].errors_by_code[&429], 4);
        assert!((e[0].latency_p50_ms - 175.0).abs() < 1e-9);
        assert_eq!(e[0].latency_p95_ms, 400.0);
    }
}
