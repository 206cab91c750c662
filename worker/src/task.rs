//! Running one leased task: read seed rows, run the pipeline, stream records to Parquet,
//! heartbeat meanwhile, and commit (complete) — or clean up if the lease is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use synthforge_core::backend::{Backend, BackendError, Credentials};
use synthforge_core::input::TaskSlice;
use synthforge_core::sink::TaskSink;
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::{self, StageContext};
use synthforge_core::storage;
use synthforge_proto as pb;
use synthforge_proto::convert::required;
use tokio_util::sync::CancellationToken;

use crate::client::CoordinatorClient;
use crate::error::TaskError;
use crate::task_rows::{run_rows, RowsEnd, Stop};

/// Backends are kept per job across its tasks: connection pools, counters and (adaptive)
/// concurrency limits survive task boundaries. Their API keys come from the operator's
/// credentials of this worker, which a job names but never defines.
#[derive(Default)]
pub struct BackendCache {
    by_job: tokio::sync::Mutex<HashMap<String, HashMap<String, Arc<Backend>>>>,
    credentials: Arc<Credentials>,
}

impl BackendCache {
    pub fn new(credentials: Arc<Credentials>) -> BackendCache {
        BackendCache {
            by_job: Default::default(),
            credentials,
        }
    }

    async fn get(
        &self,
        job_id: &str,
        spec: &JobSpec,
    ) -> Result<HashMap<String, Arc<Backend>>, BackendError> {
        let mut m = self.by_job.lock().await;
        if let Some(b) = m.get(job_id) {
            return Ok(b.clone());
        }
        let mut out = HashMap::new();
        for (name, bspec) in &spec.backends {
            let b = Backend::with_credentials(name, bspec, &self.credentials)?;
            out.insert(name.clone(), Arc::new(b));
        }
        // Fail fast with a clear message on a model the server does not serve.
        for b in out.values() {
            b.check_model().await?;
        }
        m.insert(job_id.to_string(), out.clone());
        Ok(out)
    }
}

/// How a task ended, from the worker's side.
#[derive(Debug, PartialEq, Eq)]
pub enum TaskEnd {
    Completed { rows_out: u64, rows_failed: u64 },
    Rejected(String),
    LeaseLost,
    Failed(String),
    Aborted,
}

pub struct TaskRunner {
    pub worker_id: String,
    pub client: Arc<CoordinatorClient>,
    pub backends: Arc<BackendCache>,
    pub heartbeat_every: Duration,
}

impl TaskRunner {
    /// Runs the lease to its end. `hand_back` cancelled from outside (shutdown past its grace)
    /// stops the task and hands it back; a lease the coordinator no longer recognises (told by
    /// a heartbeat) stops it without handing back.
    pub async fn run(&self, lease: pb::TaskLease, hand_back: CancellationToken) -> TaskEnd {
        let span = tracing::info_span!("task", job = %lease.job_id, task_id = lease.task_id, attempt = lease.attempt);
        tracing::Instrument::instrument(self.run_in_span(lease, hand_back), span).await
    }

    async fn run_in_span(&self, lease: pb::TaskLease, hand_back: CancellationToken) -> TaskEnd {
        let lease_lost = CancellationToken::new();
        let rows_done = Arc::new(AtomicU64::new(0));
        let hb = self.spawn_heartbeat(&lease, lease_lost.clone(), rows_done.clone());
        let end = self
            .execute(&lease, &lease_lost, &hand_back, &rows_done)
            .await;
        hb.abort();
        let end = match end {
            Err(e) => {
                let end = TaskEnd::Failed(e.to_string());
                tracing::debug!(
                    permanent = e.permanent(),
                    "reporting the failure to the coordinator"
                );
                let _ = self
                    .client
                    .fail(fail_request(&self.worker_id, &lease, &e))
                    .await;
                return end;
            }
            Ok(end) => end,
        };
        // Ends without an error value are retryable: the row accounting check failed, or this
        // worker is shutting down.
        let retry = match &end {
            TaskEnd::Failed(why) => Some(why.clone()),
            TaskEnd::Aborted => Some(format!(
                "worker {} shut down before finishing",
                self.worker_id
            )),
            _ => None,
        };
        if let Some(error) = retry {
            let _ = self
                .client
                .fail(pb::FailRequest {
                    worker_id: self.worker_id.clone(),
                    job_id: lease.job_id.clone(),
                    task_id: lease.task_id,
                    attempt: lease.attempt,
                    error,
                    permanent: false,
                    unreachable_backend: String::new(),
                })
                .await;
        }
        end
    }

    fn spawn_heartbeat(
        &self,
        lease: &pb::TaskLease,
        lease_lost: CancellationToken,
        rows_done: Arc<AtomicU64>,
    ) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        // Beat well within the lease: a job's `lease_s` may be as short as the coordinator's
        // heartbeat interval, and a healthy worker must never lose its lease between beats.
        let lease_left = Duration::from_millis(
            lease
                .lease_deadline_unix_ms
                .saturating_sub(synthforge_core::now_ms()),
        );
        let every = if lease_left.is_zero() {
            self.heartbeat_every
        } else {
            self.heartbeat_every
                .min(lease_left / 3)
                .max(Duration::from_millis(100))
        };
        let cache = self.backends.clone();
        let req = pb::HeartbeatRequest {
            worker_id: self.worker_id.clone(),
            job_id: lease.job_id.clone(),
            task_id: lease.task_id,
            attempt: lease.attempt,
            progress: None,
            backends: Vec::new(),
        };
        // Each heartbeat carries this job's backend snapshots: the coordinator aggregates them
        // per endpoint for the dashboard and /metrics.
        // Never waits for the cache: another task may hold it while it checks a new job's
        // backends over the network, and the lease must not wait for that.
        let snapshots = move |job: &str| -> Vec<pb::BackendStats> {
            let Ok(by_job) = cache.by_job.try_lock() else {
                return Vec::new();
            };
            let mut out: Vec<pb::BackendStats> = by_job
                .get(job)
                .map(|m| {
                    m.values()
                        .map(|b| pb::BackendStats::from(b.snapshot()))
                        .collect()
                })
                .unwrap_or_default();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        };
        // Per-minute budgets are the fleet's: pace to this worker's share of them.
        let share_cache = self.backends.clone();
        let apply_share = move |job: &str, workers: u32| match share_cache.by_job.try_lock() {
            Ok(by_job) => {
                for b in by_job.get(job).into_iter().flat_map(|m| m.values()) {
                    tracing::debug!(
                        backend = b.name(),
                        workers,
                        "fleet share of per-minute budgets"
                    );
                    b.set_fleet_share(workers);
                }
            }
            Err(_) => tracing::debug!("backend cache busy; fleet share applied next beat"),
        };
        let span = tracing::Span::current();
        let beat = async move {
            // The first beat comes early so that even short tasks report their backends.
            let mut wait = every.min(Duration::from_millis(500));
            loop {
                tokio::time::sleep(wait).await;
                wait = every;
                let mut r = req.clone();
                r.progress = Some(pb::TaskProgress {
                    rows_done: rows_done.load(Ordering::Relaxed),
                    ..Default::default()
                });
                r.backends = snapshots(&req.job_id);
                match client.heartbeat(r).await {
                    Ok(resp) if !resp.keep_going => {
                        tracing::warn!(job = %req.job_id, task_id = req.task_id, attempt = req.attempt, "lease lost; stopping task");
                        lease_lost.cancel();
                        return;
                    }
                    Ok(resp) => {
                        if resp.fleet_workers > 0 {
                            apply_share(&req.job_id, resp.fleet_workers);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
            }
        };
        tokio::spawn(tracing::Instrument::instrument(beat, span))
    }

    async fn execute(
        &self,
        lease: &pb::TaskLease,
        lease_lost: &CancellationToken,
        hand_back: &CancellationToken,
        rows_done: &AtomicU64,
    ) -> Result<TaskEnd, TaskError> {
        let spec = Arc::new(JobSpec::from_yaml(&lease.job_spec_yaml, &lease.job_id)?);
        if let Some(work) = &lease.dedup {
            let work = synthforge_core::dedup_phase::DedupWork::try_from(work)?;
            return self
                .execute_dedup(lease, &spec, work, lease_lost, hand_back)
                .await;
        }
        let slice = TaskSlice::try_from(required(lease.input.as_ref(), "TaskLease.input")?)?;
        let backends = self.backends.get(&lease.job_id, &spec).await?;
        if lease.fleet_workers > 0 {
            // Per-minute budgets are the fleet's: this worker's share from its first request.
            for b in backends.values() {
                b.set_fleet_share(lease.fleet_workers);
            }
        }
        let ctx = StageContext {
            job_id: lease.job_id.clone(),
            job_name: spec.name.clone(),
            job_seed: spec.seed,
            task_id: lease.task_id,
            backends,
        };
        let mut stage_list = Vec::new();
        for (i, s) in spec.pipeline.iter().enumerate() {
            stage_list.push(stages::build_stage(s, i, &ctx)?);
        }
        let mut extra: Vec<String> = stage_list.iter().flat_map(|s| s.extra_columns()).collect();
        extra.sort();
        extra.dedup();
        let root = storage::open(&spec.output.path)?;
        let mut sink = TaskSink::new(
            &root,
            lease.task_id,
            lease.attempt,
            extra,
            &spec.output.compression,
            spec.output.batch_rows,
        )?;

        let stop = Stop {
            lease_lost,
            hand_back,
        };
        let ran = run_rows(&spec, &slice, &ctx, stage_list, &mut sink, rows_done, &stop).await;
        let stats = match ran {
            Ok(RowsEnd::Done(stats)) => *stats,
            Ok(RowsEnd::LeaseLost) => {
                sink.abort().await;
                return Ok(TaskEnd::LeaseLost);
            }
            Ok(RowsEnd::HandedBack) => {
                sink.abort().await;
                return Ok(TaskEnd::Aborted);
            }
            Ok(RowsEnd::Unaccounted(why)) => {
                // A row lost inside the worker: never hand in a silently shorter result.
                tracing::error!(job = %lease.job_id, task_id = lease.task_id, attempt = lease.attempt, %why, "row accounting failed; failing the attempt");
                sink.abort().await;
                return Ok(TaskEnd::Failed(why));
            }
            Err(e) => {
                sink.abort().await;
                return Err(e);
            }
        };
        let files = sink.finish().await?;
        let resp = self
            .client
            .complete(pb::CompleteRequest {
                worker_id: self.worker_id.clone(),
                job_id: lease.job_id.clone(),
                task_id: lease.task_id,
                attempt: lease.attempt,
                files: files.iter().map(pb::OutputFile::from).collect(),
                stats: Some(pb::TaskStats::from(&stats)),
            })
            .await?;
        if !resp.accepted {
            // Fenced off: our files must never be mistaken for part of the dataset.
            tracing::warn!(job = %lease.job_id, task_id = lease.task_id, attempt = lease.attempt, reason = %resp.reason, "completion rejected; deleting our output");
            for f in &files {
                let loc = root.child(&f.path);
                let _ = object_store::ObjectStoreExt::delete(loc.store.as_ref(), &loc.path).await;
            }
            return Ok(TaskEnd::Rejected(resp.reason));
        }
        Ok(TaskEnd::Completed {
            rows_out: stats.rows_out,
            rows_failed: stats.rows_failed,
        })
    }
}

/// The report of a failed attempt; a permanent error asks the coordinator not to retry.
fn fail_request(worker_id: &str, lease: &pb::TaskLease, e: &TaskError) -> pb::FailRequest {
    pb::FailRequest {
        worker_id: worker_id.to_string(),
        job_id: lease.job_id.clone(),
        task_id: lease.task_id,
        attempt: lease.attempt,
        error: e.to_string(),
        permanent: e.permanent(),
        unreachable_backend: e.unreachable_backend().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use synthforge_core::stages::StageError;
    use synthforge_core::storage::StorageError;

    use super::*;

    fn lease() -> pb::TaskLease {
        pb::TaskLease {
            job_id: "j".into(),
            task_id: 3,
            attempt: 2,
            ..Default::default()
        }
    }

    #[test]
    fn a_permanent_error_is_reported_as_permanent() {
        let e = TaskError::from(StageError::Config(
            "pipeline[0] (generate): template: syntax error".into(),
        ));
        let req = fail_request("w1", &lease(), &e);
        assert!(req.permanent);
        assert_eq!((req.task_id, req.attempt), (3, 2));
        assert!(
            req.error.contains("template: syntax error"),
            "{}",
            req.error
        );
    }

    #[test]
    fn an_unreachable_backend_is_named_in_the_report() {
        let e = TaskError::from(synthforge_core::backend::BackendError::Transport {
            backend: "gen".into(),
            endpoint: "http://127.0.0.1:1/v1".into(),
            message: "connection refused".into(),
        });
        let req = fail_request("w1", &lease(), &e);
        assert_eq!(req.unreachable_backend, "gen");
        assert!(!req.permanent);
        let other = TaskError::from(StorageError::NothingMatches("s3://b/x/*.jsonl".into()));
        assert_eq!(fail_request("w1", &lease(), &other).unreachable_backend, "");
    }

    #[test]
    fn a_transient_error_is_reported_for_retry() {
        let e = TaskError::from(StorageError::NothingMatches("s3://b/x/*.jsonl".into()));
        assert!(!fail_request("w1", &lease(), &e).permanent);
    }

    #[test]
    fn a_lease_without_input_is_a_permanent_wire_error() {
        let err = required(lease().input.as_ref(), "TaskLease.input")
            .map_err(TaskError::from)
            .unwrap_err();
        assert!(err.permanent());
        assert!(err.to_string().contains("TaskLease.input"), "{err}");
    }
}
