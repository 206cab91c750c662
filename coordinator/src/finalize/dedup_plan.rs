//! Planning the dedup phase once every generation task has ended (docs/dedup.md).
//!
//! The plan is a pure function of the ended generation tasks: the parts list (the data files
//! of the accepted completions, in task order) and one task per (exact | band) × hash range,
//! with ids following the generation tasks'. Any leader computes the same plan, so a phase
//! interrupted while its tasks were being stored is completed by adding the missing ones.

use object_store::ObjectStoreExt;
use synthforge_core::dedup_phase::{self, PartsList, PARTS_PATH};
use synthforge_core::input::TaskSlice;
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::dedup::DedupParams;
use synthforge_core::storage;

use crate::model::{TaskRecord, TaskState};

/// The data parts a dedup phase reads: those of the accepted generation completions.
pub fn parts_of(tasks: &[TaskRecord]) -> PartsList {
    let mut parts = Vec::new();
    for t in tasks
        .iter()
        .filter(|t| !t.is_dedup() && t.state == TaskState::Done)
    {
        parts.extend(
            t.files
                .iter()
                .filter(|f| f.kind == "data")
                .map(|f| f.path.clone()),
        );
    }
    PartsList { parts }
}

/// Every task of the job's dedup phase, numbered after the generation tasks.
pub fn phase_tasks(
    job_id: &str,
    spec: &JobSpec,
    params: &DedupParams,
    tasks: &[TaskRecord],
) -> Vec<TaskRecord> {
    let generation: Vec<&TaskRecord> = tasks.iter().filter(|t| !t.is_dedup()).collect();
    let records: u64 = generation
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .flat_map(|t| t.files.iter().filter(|f| f.kind == "data"))
        .map(|f| f.rows)
        .sum();
    let first_id = generation.len() as u64;
    let slice = TaskSlice {
        object_url: format!("{}/{PARTS_PATH}", spec.output.path.trim_end_matches('/')),
        format: spec.input.format,
        row_start: 0,
        row_count: 0,
        byte_start: 0,
        byte_end: 0,
        row_groups: Vec::new(),
        global_row_start: 0,
    };
    dedup_phase::plan(
        records,
        params.minhash.bands,
        params.near,
        params.partition_rows,
    )
    .into_iter()
    .enumerate()
    .map(|(i, work)| {
        let mut t = TaskRecord::new(job_id, first_id + i as u64, slice.clone());
        t.dedup = Some(work);
        t
    })
    .collect()
}

/// Writes the parts list the phase's tasks read. Deterministic content: writing it again (a
/// new leader completing the plan) changes nothing.
pub async fn write_parts(spec: &JobSpec, parts: &PartsList) -> Result<(), String> {
    let root = storage::open(&spec.output.path).map_err(|e| e.to_string())?;
    let loc = root.child(PARTS_PATH);
    let body = serde_json::to_vec(parts).map_err(|e| e.to_string())?;
    loc.store
        .put(&loc.path, body.into())
        .await
        .map_err(|e| format!("writing {PARTS_PATH}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use synthforge_core::dedup_phase::DedupKind;
    use synthforge_core::sink::WrittenFile;

    fn spec() -> JobSpec {
        JobSpec::from_yaml(
            "name: d\ninput: {path: /tmp/x.jsonl, format: jsonl}\npipeline:\n  - {stage: generate, backend: m, template: \"{{ text }}\"}\n  - {stage: dedup, partition_rows: 10}\nbackends:\n  m: {url: \"http://127.0.0.1:1/v1\", model: x}\noutput: {path: /tmp/out}\n",
            "t",
        )
        .unwrap()
    }

    #[test]
    fn plan_follows_the_accepted_parts() {
        let spec = spec();
        let params = synthforge_core::stages::dedup::job_params(&spec)
            .unwrap()
            .unwrap();
        let (_, mut tasks) = crate::control::store::conformance::job("j", 3);
        for (i, t) in tasks.iter_mut().enumerate() {
            t.state = if i == 1 {
                TaskState::Failed
            } else {
                TaskState::Done
            };
            t.files = vec![
                WrittenFile {
                    path: format!("data/part-{i:06}-1.parquet"),
                    rows: 8,
                    bytes: 1,
                    kind: "data".into(),
                },
                WrittenFile {
                    path: format!("failures/part-{i:06}-1.parquet"),
                    rows: 1,
                    bytes: 1,
                    kind: "failures".into(),
                },
            ];
        }
        let parts = parts_of(&tasks);
        assert_eq!(
            parts.parts,
            vec!["data/part-000000-1.parquet", "data/part-000002-1.parquet"]
        );
        // 16 records at 10 a partition: 2 ranges, exact + 14 bands each.
        let planned = phase_tasks("j", &spec, &params, &tasks);
        assert_eq!(planned.len(), 2 * 15);
        assert_eq!(planned[0].task_id, 3);
        assert_eq!(planned.last().unwrap().task_id, 3 + 29);
        assert!(planned.iter().all(|t| t.state == TaskState::Pending));
        assert_eq!(planned[0].dedup.as_ref().unwrap().kind, DedupKind::Exact);
        assert_eq!(planned[2].dedup.as_ref().unwrap().kind, DedupKind::Band(0));
        // The same ended tasks (with the phase's own tasks among them) plan the same phase.
        let mut with_phase = tasks.clone();
        with_phase.extend(planned.iter().cloned());
        assert_eq!(phase_tasks("j", &spec, &params, &with_phase), planned);
        assert_eq!(parts_of(&with_phase), parts);
    }
}
