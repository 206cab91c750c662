//! Whole-job deduplication, the finalizer's part: cluster resolution and the rewrite.
//!
//! Workers fingerprint each record during generation (the `dedup` stage), then the job's
//! dedup phase runs as leased tasks, one per bucket partition, each writing the duplicate
//! pairs it confirmed (`synthforge_core::dedup_phase`, docs/dedup.md). Once they have all
//! committed, the finalizer:
//! 1. reads the edges of the accepted dedup attempts, one file at a time, into a union-find
//!    that holds only records that are in some edge (duplicates and their survivors);
//! 2. keeps the smallest `(seed_index, sample_index, id)` of each cluster and removes the
//!    rest (`dedup_exact` when an earlier record has the same normalized-text hash, else
//!    `dedup_near`) — deterministic whatever the task order, worker count or retries;
//! 3. rewrites only the data files that lose rows, under new names (`…-d.parquet`).
//!
//! The coordinator never holds a fingerprint of a record that has no duplicate.

use std::collections::BTreeMap;

use arrow_array::BooleanArray;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use synthforge_core::dedup_phase::clusters::ClusterBuilder;
use synthforge_core::dedup_phase::fingerprints::read_edges;
use synthforge_core::dedup_phase::{DEDUP_DIR, EDGES_KIND};
use synthforge_core::input::ObjectReader;
use synthforge_core::manifest::Manifest;
use synthforge_core::sink::{ParquetFileSink, WrittenFile};
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::dedup::DedupParams;
use synthforge_core::stats::TaskStats;

use crate::finalize::dedup_plan::parts_of;
use crate::model::{TaskRecord, TaskState};
use synthforge_core::storage::Location;

/// A finalized job's stats: its completed tasks' sums plus the rows the finalizer removed
/// beyond what the tasks reported (`dedup_exact`, `dedup_near`: the manifest's removals minus
/// the tasks'), and those removals by reason (kept in the job record, to survive a restart). So
/// `stats.removed` shows every removal and `rows_out` the rows the dataset really has.
pub fn stats_after_finalize(
    tasks: &[TaskRecord],
    manifest: &Manifest,
) -> (TaskStats, BTreeMap<String, u64>) {
    let mut stats = TaskStats::default();
    for t in tasks.iter().filter(|t| t.state == TaskState::Done) {
        stats.add(&t.stats);
    }
    let removed: BTreeMap<String, u64> = manifest
        .removed
        .iter()
        .map(|(reason, n)| {
            let by_tasks = stats.removed.get(reason).copied().unwrap_or(0);
            (reason.clone(), n.saturating_sub(by_tasks))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    stats.count_removed_at_finalize(&removed);
    (stats, removed)
}

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("dedup: reading `{path}`: {message}")]
    Read { path: String, message: String },
    #[error("dedup: writing `{path}`: {message}")]
    Write { path: String, message: String },
    #[error("dedup: job spec: {0}")]
    Spec(String),
    /// The dedup phase did not complete: a task of it failed, or it never ran.
    #[error("dedup: {0}")]
    Phase(String),
}

/// The `dedup` entry of a job's pipeline, if it has one.
pub fn job_params(spec: &JobSpec) -> Result<Option<DedupParams>, DedupError> {
    synthforge_core::stages::dedup::job_params(spec).map_err(|e| DedupError::Spec(e.to_string()))
}

/// What deduplication did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DedupOutcome {
    /// The dataset's files after dedup: rewritten data files replace their originals.
    pub files: Vec<WrittenFile>,
    pub exact: u64,
    pub near: u64,
    /// Original files that were rewritten: delete them once the new manifest is written.
    pub replaced: Vec<String>,
    /// Records the cluster resolution held (duplicates and their survivors).
    pub clustered: usize,
}

fn read_err(path: &str) -> impl Fn(String) -> DedupError + '_ {
    move |message| DedupError::Read {
        path: path.to_string(),
        message,
    }
}

/// Name of the rewritten version of a data file.
pub fn deduped_name(path: &str) -> String {
    match path.strip_suffix(".parquet") {
        Some(stem) => format!("{stem}-d.parquet"),
        None => format!("{path}-d"),
    }
}

/// Writes `path` without the rows in `drop` (sorted row numbers) as [`deduped_name`].
async fn rewrite(
    root: &Location,
    spec: &JobSpec,
    path: &str,
    drop: &[u32],
) -> Result<Option<WrittenFile>, DedupError> {
    let err = read_err(path);
    let loc = root.child(path);
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| err(e.to_string()))?;
    let schema = builder.schema().clone();
    let mut stream = builder.build().map_err(|e| err(e.to_string()))?;
    let new_path = deduped_name(path);
    let werr = |m: String| DedupError::Write {
        path: new_path.clone(),
        message: m,
    };
    let mut sink = ParquetFileSink::new(
        root,
        &new_path,
        "data",
        schema,
        &spec.output.compression,
        spec.output.batch_rows.max(1) * 8,
    )
    .map_err(|e| werr(e.to_string()))?;
    let mut row = 0u32;
    let mut d = drop.iter().peekable();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|_| {
                let gone = d.peek() == Some(&&row);
                if gone {
                    d.next();
                }
                row += 1;
                Some(!gone)
            })
            .collect();
        let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
            .map_err(|e| werr(e.to_string()))?;
        sink.write_batch(&kept)
            .await
            .map_err(|e| werr(e.to_string()))?;
    }
    sink.finish().await.map_err(|e| werr(e.to_string()))
}

/// Resolves the dedup phase's edges into clusters and rewrites the data files that lose
/// rows. `files` are the generation tasks' files; failure files pass through unchanged.
pub async fn run(
    root: &Location,
    spec: &JobSpec,
    tasks: &[TaskRecord],
    files: Vec<WrittenFile>,
) -> Result<DedupOutcome, DedupError> {
    let phase: Vec<&TaskRecord> = tasks.iter().filter(|t| t.is_dedup()).collect();
    if phase.is_empty() {
        return Err(DedupError::Phase(
            "the dedup phase did not run (no dedup tasks)".into(),
        ));
    }
    if let Some(t) = phase.iter().find(|t| t.state != TaskState::Done) {
        let label = t.dedup.as_ref().map(|w| w.label()).unwrap_or_default();
        return Err(DedupError::Phase(format!(
            "dedup task {} ({label}) did not complete: {}",
            t.task_id, t.last_error
        )));
    }
    // The parts list the tasks read: the same pure function of the ended generation tasks.
    let parts = parts_of(tasks);
    let mut clusters = ClusterBuilder::default();
    for f in phase
        .iter()
        .flat_map(|t| t.files.iter())
        .filter(|f| f.kind == EDGES_KIND)
    {
        let edges = read_edges(root, &f.path)
            .await
            .map_err(|e| read_err(&f.path)(e.to_string()))?;
        for e in &edges {
            clusters.add(e);
        }
    }
    let clustered = clusters.len();
    let removals = clusters.removals();
    let mut outcome = DedupOutcome {
        exact: removals.exact,
        near: removals.near,
        clustered,
        ..Default::default()
    };
    let mut jobs = Vec::new();
    for (part, rows) in removals.by_part {
        let path = parts.parts.get(part as usize).cloned().ok_or_else(|| {
            DedupError::Phase(format!(
                "an edge names part {part} of {}",
                parts.parts.len()
            ))
        })?;
        jobs.push((path, rows));
    }
    // Owned inputs: the scheduler's boxed finalizer future must be `Send` for all lifetimes.
    let rewritten: Vec<(String, Option<WrittenFile>)> = futures::stream::iter(jobs)
        .map(|(path, rows)| {
            let (root, spec) = (root.clone(), spec.clone());
            async move {
                let new = rewrite(&root, &spec, &path, &rows).await?;
                tracing::info!(file = %path, removed = rows.len(), "dedup rewrote data file");
                Ok::<_, DedupError>((path, new))
            }
        })
        .buffered(4)
        .try_collect()
        .await?;
    let mut rewritten: std::collections::HashMap<String, Option<WrittenFile>> =
        rewritten.into_iter().collect();
    outcome.replaced = rewritten.keys().cloned().collect();
    outcome.replaced.sort();
    for f in files {
        match rewritten.remove(&f.path) {
            Some(Some(new)) => outcome.files.push(new),
            Some(None) => {} // every row of the file was a duplicate
            None => outcome.files.push(f),
        }
    }
    Ok(outcome)
}

/// Deletes the dedup phase's working files (parts list, edges). Only the finalizer whose
/// manifest won may call this; a failure leaves them behind, harmless (readers ignore them).
pub async fn remove_phase_files(root: &Location, job_id: &str) {
    let dir = root.child(DEDUP_DIR);
    let listed: Vec<_> = dir
        .store
        .list(Some(&dir.path))
        .try_collect()
        .await
        .unwrap_or_default();
    for meta in listed {
        if let Err(e) = dir.store.delete(&meta.location).await {
            tracing::warn!(job = %job_id, file = %meta.location, error = %e, "could not delete a dedup phase file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_at_finalize_are_what_the_manifest_adds_to_the_tasks() {
        let (job, mut tasks) = crate::control::store::conformance::job("j", 3);
        for (i, t) in tasks.iter_mut().enumerate() {
            t.stats = TaskStats {
                rows_in: 10,
                rows_out: 8,
                removed: BTreeMap::from([("judge".to_string(), 2)]),
                ..Default::default()
            };
            // The third task failed: its stats do not count.
            t.state = if i < 2 {
                TaskState::Done
            } else {
                TaskState::Failed
            };
        }
        let mut m = Manifest::new(&job.id, &job.name, Vec::new());
        m.removed = BTreeMap::from([
            ("judge".to_string(), 4),
            ("dedup_exact".to_string(), 5),
            ("dedup_near".to_string(), 0),
        ]);
        let (stats, removed) = stats_after_finalize(&tasks, &m);
        assert_eq!(removed, BTreeMap::from([("dedup_exact".to_string(), 5)]));
        assert_eq!((stats.rows_in, stats.rows_out), (20, 11));
        assert_eq!(stats.removed["judge"], 4);
        assert_eq!(stats.removed["dedup_exact"], 5);
    }

    #[test]
    fn rewritten_names_are_distinct() {
        assert_eq!(
            deduped_name("data/part-000003-1.parquet"),
            "data/part-000003-1-d.parquet"
        );
    }
}
