//! Prometheus text exposition, rendered from the scheduler's live state on each scrape.

use std::fmt::Write;

use crate::scheduler::Scheduler;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub async fn render(sched: &Scheduler) -> String {
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
    out
}
