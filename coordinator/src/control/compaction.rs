//! The leader's store housekeeping loop: folds finished jobs' task records into summaries,
//! watches the store's space alarm, and compacts the store's history (etcd revisions).
//!
//! Why here and not in etcd alone: etcd's own `--auto-compaction-*` flags are a deployment
//! choice the coordinator cannot rely on, and folding needs the scheduler (which jobs have
//! their manifest written). Only the leader runs it: a standby is fenced off the store anyway.
//! Defragmentation (giving freed pages back to the file system) blocks an etcd member while it
//! runs, so it stays an operator action (docs/sizing.md).

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::control::ha::Leadership;
use crate::control::scheduler::Scheduler;
use crate::control::store::{MaintenanceStats, TaskStore};

/// How often finished jobs are folded and the space alarm is read: soon after a job ends, and
/// soon after an operator disarms the alarm.
pub const FOLD_EVERY: Duration = Duration::from_secs(5);

/// Compacts the store's history every `compaction_interval` (zero: never) to the revision it
/// saw one interval earlier, and folds finished jobs every [`FOLD_EVERY`], while this
/// coordinator leads (`gate`: `None` for a single coordinator, which always leads).
pub async fn run(
    sched: Arc<Scheduler>,
    store: Arc<dyn TaskStore>,
    gate: Option<Arc<Leadership>>,
    compaction_interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(FOLD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_compaction: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        if gate.as_ref().is_some_and(|g| !g.is_leader()) {
            // A new term starts its compaction clock afresh.
            last_compaction = None;
            continue;
        }
        if let Err(e) = store.refresh_space_alarm().await {
            tracing::warn!(error = %e, "cannot read the state store's alarms");
        }
        match sched.fold_finished().await {
            Ok(pass) if pass.folded + pass.restored > 0 => {
                tracing::info!(
                    folded = pass.folded,
                    restored = pass.restored,
                    "finished jobs folded"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "folding finished jobs failed; retried"),
        }
        if compaction_interval.is_zero()
            || last_compaction.is_some_and(|t| t.elapsed() < compaction_interval)
        {
            continue;
        }
        last_compaction = Some(Instant::now());
        // The first call of a term only notes the revision: history of one whole interval
        // is always kept (a leader's recovery reads at one pinned revision).
        if let Err(e) = store.compact_history().await {
            tracing::warn!(error = %e, "compacting the state store's history failed; retried");
        }
    }
}

/// The store's housekeeping as Prometheus text (appended to `/metrics`).
pub fn render_metrics(out: &mut String, m: &MaintenanceStats) {
    let mut family = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    family(
        "synthforge_store_jobs_folded_total",
        "counter",
        "Finished jobs whose task records were folded into one summary by this coordinator.",
        m.jobs_folded.to_string(),
    );
    family(
        "synthforge_store_task_records_deleted_total",
        "counter",
        "Task records deleted by folds of finished jobs.",
        m.task_records_deleted.to_string(),
    );
    family(
        "synthforge_store_compactions_total",
        "counter",
        "Compactions of the state store's history (etcd) by this coordinator.",
        m.compactions.to_string(),
    );
    family(
        "synthforge_store_compacted_revision",
        "gauge",
        "The etcd revision history was last compacted to (0: not yet).",
        m.compacted_revision.to_string(),
    );
    family(
        "synthforge_store_out_of_space",
        "gauge",
        "1 while the state store refuses writes for lack of space (etcd NOSPACE alarm).",
        u8::from(m.out_of_space).to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_name_every_counter_with_help_and_type() {
        let mut out = String::new();
        render_metrics(
            &mut out,
            &MaintenanceStats {
                jobs_folded: 2,
                task_records_deleted: 200,
                compactions: 3,
                compacted_revision: 4_000,
                out_of_space: true,
            },
        );
        for line in [
            "synthforge_store_jobs_folded_total 2",
            "synthforge_store_task_records_deleted_total 200",
            "synthforge_store_compactions_total 3",
            "synthforge_store_compacted_revision 4000",
            "synthforge_store_out_of_space 1",
            "# TYPE synthforge_store_compactions_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
