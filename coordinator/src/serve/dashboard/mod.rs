//! The dashboard: a single page (HTML, JS, CSS compiled into the binary, no CDN — clusters
//! often have no internet) plus the background sampler that feeds its charts and sample rows.

pub mod samples;

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::control::scheduler::Scheduler;
use crate::telemetry::Point;

pub const INDEX_HTML: &str = include_str!("index.html");
pub const APP_JS: &str = include_str!("app.js");
pub const APP_CSS: &str = include_str!("app.css");

/// Samples throughput once a second and reads sample rows of newly committed files, until the
/// scheduler is dropped (the task holds only a weak reference, so it never keeps one alive).
pub fn spawn_sampler(sched: Weak<Scheduler>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(s) = sched.upgrade() else {
                return;
            };
            sample_once(&s).await;
            read_samples(&s).await;
        }
    })
}

/// Records one point per job (seed rows done, tokens spent) and per worker (rows done).
pub async fn sample_once(sched: &Arc<Scheduler>) {
    let now = synthforge_core::now_ms();
    let t = &sched.telemetry;
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
async fn read_samples(sched: &Arc<Scheduler>) {
    for _ in 0..4 {
        let Some(src) = sched.telemetry.next_sample_source() else {
            return;
        };
        let Some(job) = sched.job(&src.job_id).await else {
            continue;
        };
        match samples::read(&job.record.output, &src, 2).await {
            Ok(rows) => sched.telemetry.add_samples(&src.job_id, rows),
            Err(e) => {
                tracing::debug!(job = %src.job_id, path = %src.path, error = %e, "cannot sample output file")
            }
        }
    }
}
