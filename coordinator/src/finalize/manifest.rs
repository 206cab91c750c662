//! Finalizing a job once every task has ended: whole-job dedup, the manifest, the dataset card.
//!
//! The manifest lists only the files of accepted completions, which are stored per task with
//! its current attempt. It also records what is missing and why: the failed tasks with their
//! rows, the failure reasons, and the accounting identity.
//!
//! Fencing: only the current leader finalizes. The finalizer asks [`LeaderCheck`] right before
//! each object-store side effect, and writes the manifest with a conditional put (create if
//! absent, else replace only the version it read), so of two finalizers racing over one output
//! (a deposed leader and its successor) exactly one wins. Files are deleted only by the winner
//! and only after its manifest is stored: every `part-*` file the stored manifest does not list
//! (outputs of fenced-off attempts, originals replaced by dedup, `-d` files of an interrupted
//! earlier run). A loser deletes nothing and leaves the card to the winner.
//!
//! A manifest of the same job is never replaced (it is computed from the same ended tasks), so
//! a finalizer run again after a crash that followed the manifest write leaves it as it is; the
//! files a crash kept it from deleting stay unlisted (readers ignore them). A manifest of
//! another job (an earlier run into the same output) is replaced conditionally on the version
//! read; stores that cannot do that (local files, S3 without `AWS_CONDITIONAL_PUT=etag`)
//! replace it after the leader check only.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use synthforge_core::manifest::{Accounting, FailedTask, Manifest, PutOutcome, TaskRows};
use synthforge_core::spec::JobSpec;
use synthforge_core::stats::SeedOutcomes;
use synthforge_core::storage::{self, Location};

use crate::control::scheduler::{Finalizer, LeaderCheck};
use crate::model::{JobRecord, TaskRecord, TaskState, TaskStats};

/// Dedups (when the pipeline has a `dedup` stage), writes `_manifest.json` and `README.md`
/// for a job whose tasks have all ended. Returns the manifest that is stored (another
/// finalizer's, when that one won the race).
pub async fn write_manifest(
    job: &JobRecord,
    spec: &JobSpec,
    tasks: &[TaskRecord],
    leader: &LeaderCheck,
) -> Result<Manifest, String> {
    let root = storage::open(&spec.output.path).map_err(|e| e.to_string())?;
    // The dataset is the generation tasks' files; dedup phase tasks only wrote edges.
    let mut files: Vec<_> = tasks
        .iter()
        .filter(|t| !t.is_dedup())
        .flat_map(|t| t.files.iter().cloned())
        .collect();
    let mut stats = TaskStats::default();
    for t in tasks {
        stats.add(&t.stats);
    }
    let mut removed = stats.removed.clone();
    if let Some(dp) = crate::finalize::dedup::job_params(spec).map_err(|e| e.to_string())? {
        leader().await?;
        let out = crate::finalize::dedup::run(&root, spec, tasks, files)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(job = %job.id, exact = out.exact, near = out.near, rewritten = out.replaced.len(), clustered = out.clustered, near_threshold = dp.threshold, "whole-job dedup done");
        *removed.entry("dedup_exact".into()).or_default() += out.exact;
        *removed.entry("dedup_near".into()).or_default() += out.near;
        files = out.files;
    }
    let mut m = Manifest::new(&job.id, &job.name, files);
    // Byte-range line inputs are planned without a row count: their tasks counted the rows.
    m.seed_rows = job.rows_total.max(stats.rows_in);
    m.prompt_tokens = stats.prompt_tokens;
    m.completion_tokens = stats.completion_tokens;
    m.removed = removed;
    m.pii_redactions = stats.pii_redactions.clone();
    m.failed_tasks = failed_tasks(tasks);
    m.task_rows = counted_task_rows(tasks);
    m.failure_reasons = crate::finalize::failures::reasons(&root, &m.files).await;
    let failed_task_rows = m.failed_tasks.iter().map(|t| t.rows).sum();
    // Per seed row, as the worker of each completed task counted it (and the coordinator
    // checked on completion): records are not seed rows once a stage samples `n > 1`.
    let mut seeds = SeedOutcomes::default();
    for t in tasks.iter().filter(|t| t.state == TaskState::Done) {
        seeds.add(&t.stats.seeds);
    }
    m.accounting = Accounting::new(
        m.seed_rows,
        seeds.output,
        seeds.removed_total(),
        seeds.failed_total(),
        failed_task_rows,
    );
    m.accounting.removed_by_reason = seeds.removed;
    m.accounting.failed_by_stage = seeds.failed;
    if !m.accounting.balances() {
        tracing::warn!(job = %job.id, accounting = ?m.accounting, "seed rows and outcomes differ");
    }
    let previous = Manifest::read_versioned(&root)
        .await
        .map_err(|e| e.to_string())?;
    // A manifest of this job is never replaced: every finalizer of a job computes it from the
    // same ended tasks, so one that finds it stored (a rerun after a crash, or a racing
    // finalizer that won) leaves it, and its files, as they are.
    if let Some(stored) = previous
        .as_ref()
        .and_then(|p| p.manifest.as_ref())
        .filter(|s| s.job_id == job.id)
    {
        tracing::warn!(job = %job.id, "the manifest of this job is written already; leaving it and its files alone");
        return Ok(stored.clone());
    }
    leader().await?;
    match m
        .write_if(&root, previous.as_ref().map(|p| &p.version))
        .await
        .map_err(|e| e.to_string())?
    {
        PutOutcome::Won => {}
        PutOutcome::Unconditional => {
            tracing::warn!(job = %job.id, "the output store cannot replace a manifest conditionally; written after the leader check only");
        }
        PutOutcome::Lost => {
            let stored = Manifest::read(&root).await.map_err(|e| e.to_string())?;
            if stored.job_id != job.id {
                return Err(format!(
                    "another job (`{}`) wrote the manifest of this output concurrently",
                    stored.job_id
                ));
            }
            tracing::warn!(job = %job.id, "another finalizer wrote the manifest first; leaving its files alone");
            return Ok(stored);
        }
    }
    leader().await?;
    remove_unlisted(&root, &job.id, &m).await;
    crate::finalize::dedup::remove_phase_files(&root, &job.id).await;
    leader().await?;
    crate::finalize::card::write(&root, job, spec, &m, &stats)
        .await
        .map_err(|e| e.to_string())?;
    Ok(m)
}

/// The tasks that used up their attempts, with the rows they leave out of the dataset.
fn failed_tasks(tasks: &[TaskRecord]) -> Vec<FailedTask> {
    tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .map(|t| FailedTask {
            task_id: t.task_id,
            object: t.slice.object_url.clone(),
            first_row: t.slice.global_row_start,
            rows: t.slice.row_count,
            error: t.last_error.clone(),
        })
        .collect()
}

/// The rows each completed byte-range task read (their counts were not planned).
fn counted_task_rows(tasks: &[TaskRecord]) -> Vec<TaskRows> {
    tasks
        .iter()
        .filter(|t| t.state == TaskState::Done && t.slice.planned_rows().is_none())
        .map(|t| TaskRows {
            task_id: t.task_id,
            object: t.slice.object_url.clone(),
            byte_start: t.slice.byte_start,
            byte_end: t.slice.byte_end,
            rows: t.stats.rows_in,
        })
        .collect()
}

/// Deletes every `part-*` file in `data/` and `failures/` that the stored manifest `m` does
/// not list. Only the finalizer whose manifest won may call this.
async fn remove_unlisted(root: &Location, job_id: &str, m: &Manifest) {
    let keep: HashSet<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
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
            if !keep.contains(rel.as_str()) && name.starts_with("part-") {
                tracing::info!(job = %job_id, file = %rel, "removing a file the manifest does not list");
                if let Err(e) = prefix.store.delete(&meta.location).await {
                    tracing::warn!(job = %job_id, file = %rel, error = %e, "could not delete an unlisted file");
                }
            }
        }
    }
}

/// The default finalizer: dedup (if asked for), manifest and dataset card.
pub fn manifest_finalizer() -> Finalizer {
    Arc::new(|job, spec, tasks, leader| {
        Box::pin(async move { write_manifest(&job, &spec, &tasks, &leader).await })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use synthforge_core::input::TaskSlice;
    use synthforge_core::record::Record;
    use synthforge_core::sink::{TaskSink, WrittenFile};
    use synthforge_core::spec::InputFormat;

    use crate::model::JobState;

    fn spec(out: &str) -> JobSpec {
        JobSpec::from_yaml(
            &format!(
                "name: race\ninput: {{path: /tmp/x.jsonl, format: jsonl}}\npipeline:\n  - {{stage: generate, backend: m, template: \"{{{{ text }}}}\"}}\nbackends:\n  m: {{url: \"http://127.0.0.1:1/v1\", model: x}}\noutput: {{path: '{out}'}}\n"
            ),
            "t",
        )
        .unwrap()
    }

    fn job() -> JobRecord {
        JobRecord {
            id: "race-1".into(),
            name: "race".into(),
            spec_yaml: String::new(),
            state: JobState::Finalizing,
            output: String::new(),
            tasks_total: 1,
            rows_total: 2,
            created_ms: 0,
            finished_ms: 0,
            error: String::new(),
            input_fingerprint: Default::default(),
            finalize_removed: Default::default(),
            planning: None,
        }
    }

    /// Writes attempt `attempt` of task 0 (two rows) and returns its files.
    async fn write_attempt(root: &Location, attempt: u32) -> Vec<WrittenFile> {
        let mut sink = TaskSink::new(root, 0, attempt, vec![], "zstd", 10).unwrap();
        for i in 0..2 {
            sink.push(Record {
                id: format!("r{i}-{attempt}"),
                completion: "text".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        sink.finish().await.unwrap()
    }

    /// Task 0 done by `attempt` with `files`: one finalizer's view of the job.
    fn done(attempt: u32, files: Vec<WrittenFile>) -> Vec<TaskRecord> {
        let mut t = TaskRecord::new(
            "race-1",
            0,
            TaskSlice {
                object_url: "/tmp/x.jsonl".into(),
                format: InputFormat::Jsonl,
                row_start: 0,
                row_count: 2,
                byte_start: 0,
                byte_end: 0,
                row_groups: vec![],
                global_row_start: 0,
            },
        );
        t.state = TaskState::Done;
        t.attempt = attempt;
        t.stats.rows_in = 2;
        t.stats.rows_out = 2;
        t.stats.seeds.output = 2;
        t.files = files;
        vec![t]
    }

    fn leading() -> LeaderCheck {
        Arc::new(|| Box::pin(async { Ok(()) }))
    }

    #[tokio::test]
    async fn of_two_racing_finalizers_one_writes_the_manifest_and_none_of_its_files_is_deleted() {
        for round in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let out = dir.path().display().to_string();
            let root = storage::open(&out).unwrap();
            // Two views that disagree on the accepted attempt, so a wrong deletion would show.
            let a = write_attempt(&root, 1).await;
            let b = write_attempt(&root, 2).await;
            let spec = spec(&out);
            let (ta, tb) = (done(1, a.clone()), done(2, b.clone()));
            let (leader, job) = (leading(), job());
            let (ra, rb) = tokio::join!(
                write_manifest(&job, &spec, &ta, &leader),
                write_manifest(&job, &spec, &tb, &leader),
            );
            let (ma, mb) = (ra.unwrap(), rb.unwrap());
            let stored = Manifest::read(&root).await.unwrap();
            assert_eq!(
                ma.files, stored.files,
                "round {round}: both report the stored manifest"
            );
            assert_eq!(mb.files, stored.files, "round {round}");
            let winner = if stored.files == a { &a } else { &b };
            assert_eq!(&stored.files, winner, "round {round}: one view, not a mix");
            for f in winner {
                assert!(
                    dir.path().join(&f.path).exists(),
                    "round {round}: the winner's {} was deleted",
                    f.path
                );
            }
            assert!(dir.path().join("README.md").exists());
        }
    }

    #[tokio::test]
    async fn a_finalizer_that_lost_leadership_writes_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().display().to_string();
        let root = storage::open(&out).unwrap();
        let stray = write_attempt(&root, 1).await;
        let accepted = write_attempt(&root, 2).await;
        let deposed: LeaderCheck =
            Arc::new(|| Box::pin(async { Err("leadership lost".to_string()) }));
        let err = write_manifest(&job(), &spec(&out), &done(2, accepted.clone()), &deposed)
            .await
            .unwrap_err();
        assert!(err.contains("leadership lost"), "{err}");
        assert!(!dir.path().join("_manifest.json").exists());
        assert!(dir.path().join(&stray[0].path).exists(), "nothing deleted");
        // The leader finalizes: the fenced-off attempt's file goes, the accepted one stays.
        let m = write_manifest(&job(), &spec(&out), &done(2, accepted.clone()), &leading())
            .await
            .unwrap();
        assert_eq!(m.files, accepted);
        assert!(!dir.path().join(&stray[0].path).exists(), "stray removed");
        assert!(dir.path().join(&accepted[0].path).exists());
        assert!(m.accounting.balances(), "{:?}", m.accounting);
    }

    #[tokio::test]
    async fn a_failed_task_is_recorded_with_its_rows_and_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().display().to_string();
        let mut t = done(1, vec![]).remove(0);
        t.state = TaskState::Failed;
        t.last_error = "backend down".into();
        let m = write_manifest(&job(), &spec(&out), &[t], &leading())
            .await
            .unwrap();
        assert_eq!(
            m.failed_tasks,
            vec![FailedTask {
                task_id: 0,
                object: "/tmp/x.jsonl".into(),
                first_row: 0,
                rows: 2,
                error: "backend down".into(),
            }]
        );
        assert_eq!(m.accounting.failed_task_rows, 2);
        assert!(m.accounting.balances());
        let card = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
        assert!(
            card.contains("Failed tasks") && card.contains("backend down"),
            "{card}"
        );
    }
}
