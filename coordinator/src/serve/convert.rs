//! Conversions between wire (proto) types and core/scheduler types.

use synthforge_core::input::TaskSlice;
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::InputFormat;
use synthforge_proto as pb;

use crate::control::scheduler::JobView;
use crate::model::TaskStats;

pub fn slice_to_pb(s: &TaskSlice) -> pb::TaskInput {
    pb::TaskInput {
        object_url: s.object_url.clone(),
        format: s.format.as_str().to_string(),
        row_start: s.row_start,
        row_count: s.row_count,
        byte_start: s.byte_start,
        byte_end: s.byte_end,
        row_groups: s.row_groups.clone(),
        global_row_start: s.global_row_start,
    }
}

pub fn slice_from_pb(p: &pb::TaskInput) -> Result<TaskSlice, String> {
    Ok(TaskSlice {
        object_url: p.object_url.clone(),
        format: InputFormat::parse(&p.format)
            .ok_or_else(|| format!("unknown input format `{}`", p.format))?,
        row_start: p.row_start,
        row_count: p.row_count,
        byte_start: p.byte_start,
        byte_end: p.byte_end,
        row_groups: p.row_groups.clone(),
        global_row_start: p.global_row_start,
    })
}

pub fn stats_to_pb(s: &TaskStats) -> pb::TaskStats {
    pb::TaskStats {
        rows_in: s.rows_in,
        rows_out: s.rows_out,
        rows_failed: s.rows_failed,
        prompt_tokens: s.prompt_tokens,
        completion_tokens: s.completion_tokens,
        removed: s.removed.clone().into_iter().collect(),
        prompt_tokens_by_model: s.prompt_tokens_by_model.clone().into_iter().collect(),
        completion_tokens_by_model: s.completion_tokens_by_model.clone().into_iter().collect(),
        pii_redactions: s.pii_redactions.clone().into_iter().collect(),
    }
}

pub fn stats_from_pb(p: &pb::TaskStats) -> TaskStats {
    TaskStats {
        rows_in: p.rows_in,
        rows_out: p.rows_out,
        rows_failed: p.rows_failed,
        prompt_tokens: p.prompt_tokens,
        completion_tokens: p.completion_tokens,
        removed: p.removed.clone().into_iter().collect(),
        prompt_tokens_by_model: p.prompt_tokens_by_model.clone().into_iter().collect(),
        completion_tokens_by_model: p.completion_tokens_by_model.clone().into_iter().collect(),
        pii_redactions: p.pii_redactions.clone().into_iter().collect(),
    }
}

pub fn file_to_pb(f: &WrittenFile) -> pb::OutputFile {
    pb::OutputFile {
        path: f.path.clone(),
        rows: f.rows,
        bytes: f.bytes,
        kind: f.kind.clone(),
    }
}

pub fn file_from_pb(f: &pb::OutputFile) -> WrittenFile {
    WrittenFile {
        path: f.path.clone(),
        rows: f.rows,
        bytes: f.bytes,
        kind: f.kind.clone(),
    }
}

pub fn job_to_pb(v: &JobView) -> pb::JobStatus {
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
        stats: Some(stats_to_pb(&v.stats)),
        output: v.record.output.clone(),
        error: v.record.error.clone(),
        created_unix_ms: v.record.created_ms,
        finished_unix_ms: v.record.finished_ms,
    }
}
