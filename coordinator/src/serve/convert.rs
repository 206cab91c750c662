//! Wire conversions of coordinator-only types. Core types (task slices, files, stats, backend
//! snapshots) convert in `synthforge_proto::convert`, the one layer both sides share.

use synthforge_proto as pb;

use crate::control::scheduler::JobView;

impl From<&JobView> for pb::JobStatus {
    fn from(v: &JobView) -> Self {
        pb::JobStatus {
            job_id: v.record.id.clone(),
            name: v.record.name.clone(),
            state: v.record.state.as_str().to_string(),
            tasks_total: v.record.tasks_total,
            tasks_pending: v.tasks_pending,
            tasks_leased: v.tasks_leased,
            tasks_done: v.tasks_done,
            tasks_failed: v.tasks_failed,
            rows_total: v.record.rows_total,
            stats: Some(pb::TaskStats::from(&v.stats)),
            output: v.record.output.clone(),
            error: v.record.error.clone(),
            created_unix_ms: v.record.created_ms,
            finished_unix_ms: v.record.finished_ms,
            waiting: v.waiting.clone().unwrap_or_default(),
            planning: v.record.planning.as_ref().map(|p| pb::PlanningProgress {
                objects_total: p.objects_total,
                objects_planned: p.objects_planned,
                tasks_written: p.tasks_written,
                rows_planned: p.rows_planned,
            }),
        }
    }
}
