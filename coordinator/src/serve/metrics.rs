//! Prometheus text exposition, rendered from the scheduler's live state on each scrape.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::control::scheduler::Scheduler;
use crate::telemetry::{Telemetry, TASK_SECONDS_BUCKETS};

pub(crate) fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub async fn render(sched: &Scheduler, telemetry: &Telemetry) -> String {
    let jobs = sched.jobs().await;
    let workers = sched.workers().await;
    let mut out = String::new();
    family(
        &mut out,
        "synthforge_tasks",
        "gauge",
        "Tasks by job and state.",
    );
    for j in &jobs {
        let id = esc(&j.record.id);
        for (state, n) in [
            ("pending", j.tasks_pending),
            ("leased", j.tasks_leased),
            ("done", j.tasks_done),
            ("failed", j.tasks_failed),
        ] {
            let _ = writeln!(
                out,
                "synthforge_tasks{{job=\"{id}\",state=\"{state}\"}} {n}"
            );
        }
    }
    family(
        &mut out,
        "synthforge_queue_depth",
        "gauge",
        "Pending tasks across running jobs (what an autoscaler scales workers on).",
    );
    let depth: u64 = jobs
        .iter()
        .filter(|j| !j.record.state.is_terminal())
        .map(|j| j.tasks_pending)
        .sum();
    let _ = writeln!(out, "synthforge_queue_depth {depth}");
    family(
        &mut out,
        "synthforge_rows_generated_total",
        "counter",
        "Output rows committed, by job.",
    );
    for j in &jobs {
        let _ = writeln!(
            out,
            "synthforge_rows_generated_total{{job=\"{}\"}} {}",
            esc(&j.record.id),
            j.stats.rows_out
        );
    }
    family(
        &mut out,
        "synthforge_rows_failed_total",
        "counter",
        "Seed rows written to failures, by job.",
    );
    for j in &jobs {
        let _ = writeln!(
            out,
            "synthforge_rows_failed_total{{job=\"{}\"}} {}",
            esc(&j.record.id),
            j.stats.rows_failed
        );
    }
    family(
        &mut out,
        "synthforge_rows_removed_total",
        "counter",
        "Rows removed on purpose, by job and reason.",
    );
    for j in &jobs {
        for (reason, n) in &j.stats.removed {
            let _ = writeln!(
                out,
                "synthforge_rows_removed_total{{job=\"{}\",reason=\"{}\"}} {n}",
                esc(&j.record.id),
                esc(reason)
            );
        }
    }
    family(
        &mut out,
        "synthforge_tokens_total",
        "counter",
        "Tokens by job and kind (prompt, completion).",
    );
    for j in &jobs {
        let id = esc(&j.record.id);
        let _ = writeln!(
            out,
            "synthforge_tokens_total{{job=\"{id}\",kind=\"prompt\"}} {}",
            j.stats.prompt_tokens
        );
        let _ = writeln!(
            out,
            "synthforge_tokens_total{{job=\"{id}\",kind=\"completion\"}} {}",
            j.stats.completion_tokens
        );
    }
    family(
        &mut out,
        "synthforge_workers",
        "gauge",
        "Workers seen in the last 30 seconds.",
    );
    let now = synthforge_core::now_ms();
    let live = workers
        .iter()
        .filter(|w| now.saturating_sub(w.last_seen_ms) < 30_000)
        .count();
    let _ = writeln!(out, "synthforge_workers {live}");
    render_live(&mut out, telemetry, &jobs);
    render_backends(&mut out, telemetry);
    crate::control::compaction::render_metrics(&mut out, &sched.store_maintenance());
    out
}

/// Rates, lease expirations and task durations from the coordinator's telemetry.
fn render_live(out: &mut String, t: &Telemetry, jobs: &[crate::control::scheduler::JobView]) {
    family(
        out,
        "synthforge_rows_per_second",
        "gauge",
        "Seed rows finished per second over the last 10 s, by running job.",
    );
    family(
        out,
        "synthforge_tokens_per_second",
        "gauge",
        "Tokens (prompt + completion) per second over the last 10 s, by running job.",
    );
    for j in jobs.iter().filter(|j| !j.record.state.is_terminal()) {
        let r = t.job_rate(&j.record.id);
        let id = esc(&j.record.id);
        let _ = writeln!(
            out,
            "synthforge_rows_per_second{{job=\"{id}\"}} {}",
            r.rows_per_s
        );
        let _ = writeln!(
            out,
            "synthforge_tokens_per_second{{job=\"{id}\"}} {}",
            r.tokens_per_s
        );
    }
    family(
        out,
        "synthforge_lease_expirations_total",
        "counter",
        "Leases that expired before their worker completed or renewed them.",
    );
    let _ = writeln!(
        out,
        "synthforge_lease_expirations_total {}",
        t.lease_expirations.load(Ordering::Relaxed)
    );
    family(
        out,
        "synthforge_task_duration_seconds",
        "histogram",
        "Time from lease to accepted completion of a task.",
    );
    let (counts, sum) = t.task_duration_histogram();
    for (le, n) in TASK_SECONDS_BUCKETS.iter().zip(&counts) {
        let _ = writeln!(
            out,
            "synthforge_task_duration_seconds_bucket{{le=\"{le}\"}} {n}"
        );
    }
    let total = counts.last().copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "synthforge_task_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let _ = writeln!(out, "synthforge_task_duration_seconds_sum {sum}");
    let _ = writeln!(out, "synthforge_task_duration_seconds_count {total}");
}

/// Reads one gauge value off an endpoint.
type EndpointGauge = fn(&crate::telemetry::EndpointView) -> f64;

/// Backend endpoints as the workers report them, summed over workers.
fn render_backends(out: &mut String, telemetry: &Telemetry) {
    let eps = telemetry.endpoints();
    let labels = |e: &crate::telemetry::EndpointView| {
        format!(
            "job=\"{}\",backend=\"{}\",endpoint=\"{}\"",
            esc(&e.job_id),
            esc(&e.backend),
            esc(&e.url)
        )
    };
    family(
        out,
        "synthforge_backend_requests_total",
        "counter",
        "Backend requests by outcome: status=\"ok\", an HTTP status code, or \"transport\" (connection error or timeout).",
    );
    for e in &eps {
        let l = labels(e);
        let _ = writeln!(
            out,
            "synthforge_backend_requests_total{{{l},status=\"ok\"}} {}",
            e.requests_ok
        );
        for (code, n) in &e.errors_by_code {
            let status = if *code == 0 {
                "transport".to_string()
            } else {
                code.to_string()
            };
            let _ = writeln!(
                out,
                "synthforge_backend_requests_total{{{l},status=\"{status}\"}} {n}"
            );
        }
    }
    let gauges: [(&str, &str, EndpointGauge); 4] = [
        (
            "synthforge_backend_in_flight",
            "Requests in flight per endpoint, summed over workers.",
            |e| e.in_flight as f64,
        ),
        (
            "synthforge_backend_concurrency_limit",
            "Current concurrency limit per endpoint, summed over workers.",
            |e| e.limit as f64,
        ),
        (
            "synthforge_backend_latency_p50_seconds",
            "Median request latency per endpoint (request-weighted over workers).",
            |e| e.latency_p50_ms / 1000.0,
        ),
        (
            "synthforge_backend_latency_p95_seconds",
            "95th percentile request latency per endpoint (highest over workers).",
            |e| e.latency_p95_ms / 1000.0,
        ),
    ];
    for (name, help, value) in gauges {
        family(out, name, "gauge", help);
        for e in &eps {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(e), value(e));
        }
    }
}
