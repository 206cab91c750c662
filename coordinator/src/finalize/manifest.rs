//! Finalizing a job once every task has ended: whole-job dedup, the manifest, the dataset card.
//!
//! The manifest lists only the files of accepted completions, which are stored per task with
//! its current attempt; files of fenced-off attempts are removed from storage here too, so a
//! slow worker's late output never lingers beside the dataset.
//!
//! Order matters for a finalizer that is interrupted and run again (leader change, restart):
//! stray files are removed first (this also drops `-d` files of an interrupted earlier run,
//! which are recomputed), dedup writes its rewritten files under new names, the manifest is
//! written, and only then are the originals of rewritten files deleted. The one window left is
//! a crash while deleting those originals; a rerun then reports the missing file by name.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use synthforge_core::manifest::Manifest;
use synthforge_core::spec::JobSpec;
use synthforge_core::storage;

use crate::control::scheduler::Finalizer;
use crate::model::{JobRecord, TaskRecord, TaskStats};

/// Dedups (when the pipeline has a `dedup` stage), writes `_manifest.json` and `README.md`
/// for a job whose tasks have all ended.
pub async fn write_manifest(
    job: &JobRecord,
    spec: &JobSpec,
    tasks: &[TaskRecord],
) -> Result<Manifest, String> {
    let root = storage::open(&spec.output.path).map_err(|e| e.to_string())?;
    let mut files: Vec<_> = tasks.iter().flat_map(|t| t.files.iter().cloned()).collect();
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
    let mut removed = stats.removed.clone();
    let mut replaced = Vec::new();
    if let Some(dp) = crate::finalize::dedup::job_params(spec).map_err(|e| e.to_string())? {
        let out = crate::finalize::dedup::run(&root, spec, &dp, files)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(job = %job.id, exact = out.exact, near = out.near, rewritten = out.replaced.len(), "whole-job dedup done");
        *removed.entry("dedup_exact".into()).or_default() += out.exact;
        *removed.entry("dedup_near".into()).or_default() += out.near;
        files = out.files;
        replaced = out.replaced;
    }
    let mut m = Manifest::new(&job.id, &job.name, files);
    m.seed_rows = job.rows_total;
    m.prompt_tokens = stats.prompt_tokens;
    m.completion_tokens = stats.completion_tokens;
    m.removed = removed;
    m.write(&root).await.map_err(|e| e.to_string())?;
    for path in replaced {
        let loc = root.child(&path);
        if let Err(e) = loc.store.delete(&loc.path).await {
            tracing::warn!(job = %job.id, file = %path, error = %e, "could not delete a file replaced by dedup");
        }
    }
    crate::finalize::card::write(&root, job, spec, &m, &stats)
        .await
        .map_err(|e| e.to_string())?;
    Ok(m)
}

/// The default finalizer: dedup (if asked for), manifest and dataset card.
pub fn manifest_finalizer() -> Finalizer {
    Arc::new(|job, spec, tasks| {
        Box::pin(async move { write_manifest(&job, &spec, &tasks).await.map(|_| ()) })
    })
}
