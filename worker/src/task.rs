//! Running one leased task: read seed rows, run the pipeline, stream records to Parquet,
//! heartbeat meanwhile, and commit (complete) — or clean up if the lease is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use synthforge_core::backend::{Backend, Credentials};
use synthforge_core::input::{self, SeedItem, TaskSlice};
use synthforge_core::record::FailureRecord;
use synthforge_core::sink::TaskSink;
use synthforge_core::spec::{InputFormat, JobSpec};
use synthforge_core::stages::{self, Outcome, StageContext};
use synthforge_core::storage;
use synthforge_proto as pb;
use tokio_util::sync::CancellationToken;

use crate::client::CoordinatorClient;

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
    ) -> Result<HashMap<String, Arc<Backend>>, String> {
        let mut m = self.by_job.lock().await;
        if let Some(b) = m.get(job_id) {
            return Ok(b.clone());
        }
        let mut out = HashMap::new();
        for (name, bspec) in &spec.backends {
            let b = Backend::with_credentials(name, bspec, &self.credentials)
                .map_err(|e| e.to_string())?;
            out.insert(name.clone(), Arc::new(b));
        }
        // Fail fast with a clear message on a model the server does not serve.
        for b in out.values() {
            b.check_model().await.map_err(|e| e.to_string())?;
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
                let permanent = false;
                let _ = self
                    .client
                    .fail(pb::FailRequest {
                        worker_id: self.worker_id.clone(),
                        job_id: lease.job_id.clone(),
                        task_id: lease.task_id,
                        attempt: lease.attempt,
                        error: e.clone(),
                        permanent,
                    })
                    .await;
                TaskEnd::Failed(e)
            }
            Ok(end) => end,
        };
        if end == TaskEnd::Aborted {
            let _ = self
                .client
                .fail(pb::FailRequest {
                    worker_id: self.worker_id.clone(),
                    job_id: lease.job_id.clone(),
                    task_id: lease.task_id,
                    attempt: lease.attempt,
                    error: format!("worker {} shut down before finishing", self.worker_id),
                    permanent: false,
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
                .map(|m| m.values().map(|b| backend_to_pb(b.snapshot())).collect())
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
    ) -> Result<TaskEnd, String> {
        let spec = Arc::new(
            JobSpec::from_yaml(&lease.job_spec_yaml, &lease.job_id).map_err(|e| e.to_string())?,
        );
        let slice = slice_from_pb(lease.input.as_ref().ok_or("lease without input")?)?;
        let backends = self.backends.get(&lease.job_id, &spec).await?;
        let ctx = StageContext {
            job_id: lease.job_id.clone(),
            job_name: spec.name.clone(),
            job_seed: spec.seed,
            task_id: lease.task_id,
            backends,
        };
        let mut stage_list = Vec::new();
        for (i, s) in spec.pipeline.iter().enumerate() {
            stage_list.push(stages::build_stage(s, i, &ctx).map_err(|e| e.to_string())?);
        }
        let mut extra: Vec<String> = stage_list.iter().flat_map(|s| s.extra_columns()).collect();
        extra.sort();
        extra.dedup();
        let root = storage::open(&spec.output.path).map_err(|e| e.to_string())?;
        let mut sink = TaskSink::new(
            &root,
            lease.task_id,
            lease.attempt,
            extra,
            &spec.output.compression,
            spec.output.batch_rows,
        )
        .map_err(|e| e.to_string())?;

        let seeds = input::read_task_rows(&spec.input, &slice)
            .await
            .map_err(|e| e.to_string())?;
        let rows_in = seeds.len() as u64;
        let mut items = Vec::with_capacity(seeds.len());
        let mut failed_rows = 0u64;
        for s in seeds {
            match s {
                SeedItem::Row(r) => items.push(stages::seed_item(&ctx, r)),
                SeedItem::Bad(b) => {
                    failed_rows += 1;
                    rows_done.fetch_add(1, Ordering::Relaxed);
                    sink.push_failure(FailureRecord {
                        seed_id: b.id.clone().unwrap_or_else(|| format!("row-{}", b.index)),
                        row_index: b.index,
                        source: b.source,
                        stage: "read".into(),
                        error: b.error,
                        input: b.raw,
                        job_id: lease.job_id.clone(),
                        task_id: lease.task_id,
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        let mut stream = crate::pipeline::run_stages(items, stage_list);
        let mut rows_out = 0u64;
        let mut removed: BTreeMap<String, u64> = BTreeMap::new();
        let mut pii: BTreeMap<String, u64> = BTreeMap::new();
        let mut count_pii = |counters: &BTreeMap<String, u64>| {
            for (k, v) in counters {
                if let Some(kind) = k.strip_prefix("pii:") {
                    *pii.entry(kind.to_string()).or_default() += v;
                }
            }
        };
        let mut ptok: BTreeMap<String, u64> = BTreeMap::new();
        let mut ctok: BTreeMap<String, u64> = BTreeMap::new();
        let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
        loop {
            // A lost lease or the end of the shutdown grace stops the task at once, even while
            // no row finishes (a slow or hung backend request).
            let next = tokio::select! {
                biased;
                () = lease_lost.cancelled() => Err(TaskEnd::LeaseLost),
                () = hand_back.cancelled() => Err(TaskEnd::Aborted),
                next = stream.next() => Ok(next),
            };
            let o = match next {
                Ok(Some(o)) => o,
                Ok(None) => break,
                Err(end) => {
                    drop(stream);
                    sink.abort().await;
                    return Ok(end);
                }
            };
            match o {
                Outcome::Keep(item) => {
                    count_pii(&item.counters);
                    let r = item.record;
                    if r.sample_index == 0 {
                        rows_done.fetch_add(1, Ordering::Relaxed);
                    }
                    prompt_tokens += r.prompt_tokens;
                    completion_tokens += r.completion_tokens;
                    *ptok.entry(r.model.clone()).or_default() += r.prompt_tokens;
                    *ctok.entry(r.model.clone()).or_default() += r.completion_tokens;
                    rows_out += 1;
                    sink.push(r).await.map_err(|e| e.to_string())?;
                }
                Outcome::Removed { item, reason } => {
                    count_pii(&item.counters);
                    // Tokens spent on a row that was then removed are still spent.
                    let r = &item.record;
                    prompt_tokens += r.prompt_tokens;
                    completion_tokens += r.completion_tokens;
                    if !r.model.is_empty() {
                        *ptok.entry(r.model.clone()).or_default() += r.prompt_tokens;
                        *ctok.entry(r.model.clone()).or_default() += r.completion_tokens;
                    }
                    if item.record.sample_index == 0 {
                        rows_done.fetch_add(1, Ordering::Relaxed);
                    }
                    *removed.entry(reason).or_default() += 1;
                }
                Outcome::Failed(f) => {
                    rows_done.fetch_add(1, Ordering::Relaxed);
                    failed_rows += 1;
                    sink.push_failure(f).await.map_err(|e| e.to_string())?;
                }
            }
        }
        drop(stream);
        if lease_lost.is_cancelled() {
            sink.abort().await;
            return Ok(TaskEnd::LeaseLost);
        }
        let files = sink.finish().await.map_err(|e| e.to_string())?;
        let stats = pb::TaskStats {
            rows_in,
            rows_out,
            rows_failed: failed_rows,
            prompt_tokens,
            completion_tokens,
            removed: removed.into_iter().collect(),
            prompt_tokens_by_model: ptok.into_iter().collect(),
            completion_tokens_by_model: ctok.into_iter().collect(),
            pii_redactions: pii.into_iter().collect(),
        };
        let resp = self
            .client
            .complete(pb::CompleteRequest {
                worker_id: self.worker_id.clone(),
                job_id: lease.job_id.clone(),
                task_id: lease.task_id,
                attempt: lease.attempt,
                files: files
                    .iter()
                    .map(|f| pb::OutputFile {
                        path: f.path.clone(),
                        rows: f.rows,
                        bytes: f.bytes,
                        kind: f.kind.clone(),
                    })
                    .collect(),
                stats: Some(stats),
            })
            .await
            .map_err(|e| e.to_string())?;
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
            rows_out,
            rows_failed: failed_rows,
        })
    }
}

/// Core backend snapshot → heartbeat wire form.
fn backend_to_pb(b: synthforge_core::backend::BackendSnapshot) -> pb::BackendStats {
    pb::BackendStats {
        name: b.name,
        model: b.model,
        limit: b.limit,
        in_flight: b.in_flight,
        prompt_tokens: b.prompt_tokens,
        completion_tokens: b.completion_tokens,
        retries: b.retries,
        endpoints: b
            .endpoints
            .into_iter()
            .map(|e| pb::EndpointStats {
                url: e.url,
                limit: e.limit,
                in_flight: e.in_flight,
                requests_ok: e.requests_ok,
                errors_by_code: e
                    .errors_by_code
                    .into_iter()
                    .map(|(k, v)| (u32::from(k), v))
                    .collect(),
                latency_p50_ms: e.latency_p50_ms,
                latency_p95_ms: e.latency_p95_ms,
                ejected: e.ejected,
            })
            .collect(),
    }
}
