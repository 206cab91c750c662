//! The dashboard: a single page (HTML, JS, CSS compiled into the binary, no CDN — clusters
//! often have no internet) plus the background sampler that feeds its charts and sample rows.

pub mod samples;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::control::scheduler::Scheduler;
use crate::telemetry::{Point, Telemetry};

pub const INDEX_HTML: &str = include_str!("index.html");
pub const APP_JS: &str = include_str!("app.js");
pub const APP_CSS: &str = include_str!("app.css");

/// Samples throughput once a second and reads sample rows of newly committed files, until
/// `stop` is cancelled (the coordinator stops it with its servers).
pub async fn run_sampler(sched: &Scheduler, telemetry: &Telemetry, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        sample_once(sched, telemetry).await;
        read_samples(sched, telemetry).await;
    }
}

/// Records one point per job (seed rows done, tokens spent) and per worker (rows done).
pub async fn sample_once(sched: &Scheduler, t: &Telemetry) {
    let now = synthforge_core::now_ms();
    for j in sched.jobs().await {
        if j.record.state.is_terminal() && j.record.finished_ms + 5_000 < now {
            continue;
        }
        let rows = j.stats.rows_in + j.rows_in_flight;
        let done_tokens = j.stats.prompt_tokens + j.stats.completion_tokens;
        let tokens = done_tokens.max(t.backend_tokens(&j.record.id));
        t.record_job(
            &j.record.id,
            Point {
                t_ms: now,
                rows,
                tokens,
            },
        );
    }
    for w in sched.workers().await {
        let rows = w.rows_done_total + w.task_rows_done;
        t.record_worker(
            &w.id,
            Point {
                t_ms: now,
                rows,
                tokens: 0,
            },
        );
    }
}

/// Reads a few rows of at most a few queued committed files (bounded work per tick).
async fn read_samples(sched: &Scheduler, telemetry: &Telemetry) {
    for _ in 0..4 {
        let Some(src) = telemetry.next_sample_source() else {
            return;
        };
        let Some(job) = sched.job(&src.job_id).await else {
            continue;
        };
        match samples::read(&job.record.output, &src, 2).await {
            Ok(rows) => telemetry.add_samples(&src.job_id, rows),
            Err(e) => {
                tracing::debug!(job = %src.job_id, path = %src.path, error = %e, "cannot sample output file")
            }
        }
    }
}
