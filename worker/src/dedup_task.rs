//! Running a dedup phase task: read the bucket partition's fingerprints from the job's data
//! parts, confirm candidate pairs, write the edges (attempt-named) and commit them like any
//! task output. The lease machinery (heartbeats, fencing, retries) is the generation tasks'.

use synthforge_core::dedup_phase::fingerprints::{bucket_task, read_parts_list, write_edges};
use synthforge_core::dedup_phase::{edges_path, DedupWork, EDGES_KIND};
use synthforge_core::sink::WrittenFile;
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::dedup::job_params;
use synthforge_core::stages::StageError;
use synthforge_core::stats::TaskStats;
use synthforge_core::storage;
use synthforge_proto as pb;
use tokio_util::sync::CancellationToken;

use crate::error::TaskError;
use crate::task::{TaskEnd, TaskRunner};

impl TaskRunner {
    /// Runs one bucket task of the dedup phase to its commit.
    pub(crate) async fn execute_dedup(
        &self,
        lease: &pb::TaskLease,
        spec: &JobSpec,
        work: DedupWork,
        lease_lost: &CancellationToken,
        hand_back: &CancellationToken,
    ) -> Result<TaskEnd, TaskError> {
        let params = job_params(spec)
            .map_err(|e| StageError::Config(format!("dedup: {e}")))?
            .ok_or_else(|| {
                StageError::Config("dedup task of a job without a `dedup` stage".into())
            })?;
        let root = storage::open(&spec.output.path)?;
        let run = async {
            let parts = read_parts_list(&root).await?;
            // Heartbeats report no rows: the job's row progress counts seed rows only.
            let mut records = 0;
            let edges =
                bucket_task(&root, &parts, &work, params.threshold, |n| records = n).await?;
            tracing::debug!(records, parts = parts.parts.len(), "fingerprints read");
            Ok::<_, TaskError>(edges)
        };
        let edges = tokio::select! {
            biased;
            () = lease_lost.cancelled() => return Ok(TaskEnd::LeaseLost),
            () = hand_back.cancelled() => return Ok(TaskEnd::Aborted),
            edges = run => edges?,
        };
        let path = edges_path(lease.task_id, lease.attempt);
        let bytes = write_edges(&root, &path, &edges).await?;
        tracing::info!(work = %work.label(), edges = edges.len(), "dedup bucket task done");
        let file = WrittenFile {
            path: path.clone(),
            rows: edges.len() as u64,
            bytes,
            kind: EDGES_KIND.to_string(),
        };
        let resp = self
            .client
            .complete(pb::CompleteRequest {
                worker_id: self.worker_id.clone(),
                job_id: lease.job_id.clone(),
                task_id: lease.task_id,
                attempt: lease.attempt,
                files: vec![pb::OutputFile::from(&file)],
                stats: Some(pb::TaskStats::from(&TaskStats::default())),
            })
            .await?;
        if !resp.accepted {
            tracing::warn!(reason = %resp.reason, "dedup completion rejected; deleting our edges");
            let loc = root.child(&path);
            let _ = object_store::ObjectStoreExt::delete(loc.store.as_ref(), &loc.path).await;
            return Ok(TaskEnd::Rejected(resp.reason));
        }
        Ok(TaskEnd::Completed {
            rows_out: 0,
            rows_failed: 0,
        })
    }
}
