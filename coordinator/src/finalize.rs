//! Finalizing a job: the manifest (and later whole-job steps) once every task has ended.
//!
//! The manifest lists only the files of accepted completions, which are stored per task with
//! its current attempt; files of fenced-off attempts are removed from storage here too, so a
//! slow worker's late output never lingers beside the dataset.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use synthforge_core::manifest::Manifest;
use synthforge_core::spec::JobSpec;
use synthforge_core::storage;

use crate::model::{JobRecord, TaskRecord, TaskStats};
use crate::scheduler::Finalizer;

/// Writes `_manifest.json` for a job whose tasks have all ended.
pub async fn write_manifest(
    job: &JobRecord,
    spec: &JobSpec,
    tasks: &[TaskRecord],
) -> Result<Manifest, String> {
    let root = storage::open(&spec.output.path).map_err(|e| e.to_string())?;
    let files: Vec<_> = tasks.iter().flat_map(|t| t.files.iter().cloned()).collect();
    let mut stats = TaskStats::default();
    for t in tasks {
        stats.add(&t.stats);
    }
    let keep: HashSet<String> = files.iter().map(|f| f.path.clone()).collect();
    for dir in ["data", "failures"] {
        let prefix = root.child(dir);
        let listed: Vec<_> = prefix
            .store
            .list(Some(&prefix.path))
            .try_collect()
            .await
            .unwrap_or_default();
        for meta in listed {
            let name = meta.location.filename().unwrap_or_default().to_string();
            let rel = format!("{dir}/{name}");
            if !keep.contains(&rel) && name.starts_with("part-") {
                tracing::info!(job = %job.id, file = %rel, "removing output of a fenced-off attempt");
                let _ = prefix.store.delete(&meta.location).await;
            }
        }
    }
    let mut m = Manifest::new(&job.id, &job.name, files);
    m.seed_rows = job.rows_total;
    m.prompt_tokens = stats.prompt_tokens;
    m.completion_tokens = stats.completion_tokens;
    m.removed = stats.removed.clone();
    m.write(&root).await.map_err(|e| e.to_string())?;
    Ok(m)
}

/// The default finalizer: manifest only.
pub fn manifest_finalizer() -> Finalizer {
    Arc::new(|job, spec, tasks| {
        Box::pin(async move { write_manifest(&job, &spec, &tasks).await.map(|_| ()) })
    })
}
