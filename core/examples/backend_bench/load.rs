//! Load generation and measurement: keep a backend offered `width` requests until a deadline,
//! sample the mock's busy slot time, and read this process's CPU time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synthforge_core::backend::{Backend, GenRequest};
use synthforge_core::record::ChatMessage;
use tokio::sync::Semaphore;

/// What a load run produced.
#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    /// Failure messages by kind (first 60 characters after the backend name).
    pub reasons: std::collections::BTreeMap<String, u64>,
}

pub fn request(i: u64) -> GenRequest {
    GenRequest {
        messages: vec![ChatMessage::new("user", format!("Write about topic {i}."))],
        max_tokens: Some(16),
        ..GenRequest::default()
    }
}

/// Keeps `width` requests in flight on `b` until `deadline`, then waits for those in flight.
pub async fn run_until(b: Arc<Backend>, width: usize, deadline: Instant) -> LoadResult {
    let sem = Arc::new(Semaphore::new(width));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(LoadResult::default()));
    let mut i = 0u64;
    while Instant::now() < deadline {
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => p.expect("open"),
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        i += 1;
        let (b, ok, failed) = (b.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            match b.generate(&request(i)).await {
                Ok(_) => {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    let mut f = failed.lock().unwrap();
                    f.failed += 1;
                    *f.reasons.entry(reason(&e.to_string())).or_default() += 1;
                }
            }
            drop(permit);
        });
    }
    let _ = sem.acquire_many(width as u32).await;
    let mut out = failed.lock().unwrap().clone();
    out.ok = ok.load(Ordering::Relaxed);
    out
}

/// Shortens an error to its kind: the backend name, URLs and response bodies removed.
pub fn reason(msg: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in msg.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let parts: Vec<&str> = out
        .split(": ")
        .filter(|p| !p.starts_with("http://") && !p.starts_with("backend `"))
        .collect();
    parts.join(": ").chars().take(80).collect()
}

/// Busy slot time samples of one mock: `(seconds since start, busy slot ms total)`.
#[derive(Debug, Default, Clone)]
pub struct BusyTrace {
    pub slots: f64,
    pub points: Vec<(f64, f64)>,
    /// Requests waiting for a slot at each sample, in the second half of the run.
    pub queued: Vec<f64>,
}

impl BusyTrace {
    /// Utilization between two times (fraction of `slots`).
    pub fn util(&self, from: f64, to: f64) -> f64 {
        let at = |t: f64| {
            self.points
                .iter()
                .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
                .copied()
                .unwrap_or((t, 0.0))
        };
        let (a, b) = (at(from), at(to));
        if b.0 <= a.0 {
            return 0.0;
        }
        (b.1 - a.1) / 1000.0 / (self.slots * (b.0 - a.0))
    }

    /// Mean number of requests queued at the server in the second half.
    pub fn mean_queued(&self) -> f64 {
        self.queued.iter().sum::<f64>() / self.queued.len().max(1) as f64
    }

    /// First time from which the trailing `window` seconds were at least `goal` utilized.
    pub fn time_to(&self, goal: f64, window: f64) -> Option<f64> {
        self.points
            .iter()
            .map(|p| p.0)
            .filter(|t| *t >= window)
            .find(|t| self.util(t - window, *t) >= goal)
            .map(|t| t - window)
    }
}

/// Samples `GET /stats` of every mock every 100 ms until `deadline`.
pub async fn trace_busy(bases: Vec<String>, start: Instant, deadline: Instant) -> Vec<BusyTrace> {
    let http = reqwest::Client::new();
    let mut traces: Vec<BusyTrace> = vec![BusyTrace::default(); bases.len()];
    let half = deadline.duration_since(start).as_secs_f64() / 2.0;
    while Instant::now() <= deadline {
        for (i, base) in bases.iter().enumerate() {
            if let Ok(r) = http.get(format!("{base}/stats")).send().await {
                if let Ok(v) = r.json::<serde_json::Value>().await {
                    traces[i].slots = v["slots"].as_f64().unwrap_or(0.0);
                    let t = start.elapsed().as_secs_f64();
                    let busy = v["busy_slot_ms_total"].as_f64().unwrap_or(0.0);
                    traces[i].points.push((t, busy));
                    if t >= half {
                        traces[i].queued.push(v["queued"].as_f64().unwrap_or(0.0));
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    traces
}

/// User + system CPU seconds of a process (Linux `/proc/<pid>/stat`).
pub fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after the command: state is index 0, utime 11, stime 12 (clock ticks of 1/100 s).
    (ticks(11) + ticks(12)) / 100.0
}
