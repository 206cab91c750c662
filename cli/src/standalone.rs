//! A standalone cluster: a coordinator and N workers in one process, talking real gRPC over
//! 127.0.0.1 on ports bound at 0 — the same code paths as a cluster. `synthforge run` is one;
//! the in-process test tier starts them to exercise leases, fencing and shutdown in
//! milliseconds rather than spawning binaries.
//!
//! Readiness is by API: [`Standalone::start`] returns once the coordinator is recovered and
//! its ports are bound; workers register on their own and lease as soon as there is work.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use synthforge_coordinator::control::scheduler::{Finalizer, Scheduler};
use synthforge_coordinator::control::store::embedded::EmbeddedStore;
use synthforge_coordinator::control::store::TaskStore;
use synthforge_coordinator::control::task_machine::Backoff;
use synthforge_coordinator::entry::RunError;
use synthforge_coordinator::finalize::manifest::manifest_finalizer;
use synthforge_coordinator::server::ServeError;
use synthforge_coordinator::telemetry::Telemetry;
use synthforge_coordinator::{Coordinator, CoordinatorConfig};
use synthforge_worker::client::ClientError;
use synthforge_worker::{WorkerConfig, WorkerSummary};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The shape of a standalone cluster.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    /// Workers started with the cluster (ids `local-0`, `local-1`, ...).
    pub workers: usize,
    /// Tasks each worker runs at once.
    pub parallel_tasks: usize,
    /// After shutdown, how long running tasks may take before they are handed back.
    pub grace: Duration,
    /// Serve the dashboard and metrics here; `None`: no HTTP.
    pub http_addr: Option<SocketAddr>,
    /// The operator's named API keys, given to every worker.
    pub credentials: std::sync::Arc<synthforge_core::backend::Credentials>,
    /// How long a failed or expired task waits before its next lease (the coordinator's).
    pub retry_backoff: Backoff,
}

impl Default for StandaloneConfig {
    /// What `synthforge run` uses unless told otherwise: 2 workers of 2 tasks, 10 s grace.
    fn default() -> Self {
        StandaloneConfig {
            workers: 2,
            parallel_tasks: 2,
            grace: Duration::from_secs(10),
            http_addr: None,
            credentials: Default::default(),
            retry_backoff: Backoff::DEFAULT,
        }
    }
}

/// A worker running inside the cluster's process.
struct LocalWorker {
    id: String,
    stop: CancellationToken,
    run: JoinHandle<Result<WorkerSummary, ClientError>>,
}

/// How a worker of the cluster ended.
#[derive(Debug)]
pub struct WorkerOutcome {
    pub id: String,
    /// The worker's summary, or why it ended with an error (or panicked).
    pub result: Result<WorkerSummary, String>,
}

/// A running standalone cluster. Dropping it stops the coordinator at once and tells the
/// workers to stop; [`Standalone::shutdown`] stops it in order and reports each worker.
pub struct Standalone {
    coordinator: Coordinator,
    config: StandaloneConfig,
    workers: Vec<LocalWorker>,
    /// Parent of every worker's token (a child of the cluster's token).
    workers_stop: CancellationToken,
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.workers_stop.cancel();
    }
}

impl Standalone {
    /// Starts a cluster whose state lives in the embedded store under `state_dir` (a stopped
    /// run resumes from there) and whose jobs get a manifest and dataset card when they end.
    pub async fn open(
        config: StandaloneConfig,
        state_dir: &Path,
        stop: CancellationToken,
    ) -> Result<Standalone, RunError> {
        let store = EmbeddedStore::open(state_dir).map_err(|source| RunError::OpenState {
            dir: state_dir.to_path_buf(),
            source,
        })?;
        Ok(Self::start(config, Arc::new(store), manifest_finalizer(), stop).await?)
    }

    /// Starts the coordinator over `store` and the configured workers. Cancelling `stop` shuts
    /// the workers down (no new leases, running tasks finish within the grace or are handed
    /// back) while the coordinator keeps serving them; [`Standalone::shutdown`] then waits for
    /// the workers and stops the coordinator.
    pub async fn start(
        config: StandaloneConfig,
        store: Arc<dyn TaskStore>,
        finalizer: Finalizer,
        stop: CancellationToken,
    ) -> Result<Standalone, ServeError> {
        let coordinator = Coordinator::start(
            CoordinatorConfig {
                grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                http_addr: config.http_addr,
                token: None,
                shutdown_when_idle: false,
                tls: None,
                security: Default::default(),
                retry_backoff: config.retry_backoff,
                worker_grace: CoordinatorConfig::DEFAULT_WORKER_GRACE,
                compaction_interval: CoordinatorConfig::DEFAULT_COMPACTION_INTERVAL,
            },
            store,
            finalizer,
            // Its own token: it must outlive the workers' shutdown to take their hand-backs.
            CancellationToken::new(),
        )
        .await?;
        let mut cluster = Standalone {
            coordinator,
            workers: Vec::new(),
            workers_stop: stop.child_token(),
            config,
        };
        for i in 0..cluster.config.workers {
            cluster.add_worker(format!("local-{i}"));
        }
        Ok(cluster)
    }

    /// Starts one more worker with this cluster's settings (tests add a worker mid-job).
    pub fn add_worker(&mut self, id: impl Into<String>) {
        let id = id.into();
        let stop = self.workers_stop.child_token();
        let cfg = WorkerConfig {
            id: id.clone(),
            coordinators: vec![self.coordinator.grpc_url()],
            token: None,
            parallel_tasks: self.config.parallel_tasks,
            exit_when_idle: false,
            grace: self.config.grace,
            tls: None,
            credentials: self.config.credentials.clone(),
        };
        let run = tokio::spawn(synthforge_worker::run(cfg, stop.clone()));
        self.workers.push(LocalWorker { id, stop, run });
    }

    /// Tells one worker to shut down (stop leasing, finish within the grace, hand back the
    /// rest) and waits until it has. `None` when no worker has this id.
    pub async fn stop_worker(&mut self, id: &str) -> Option<WorkerOutcome> {
        let at = self.workers.iter().position(|w| w.id == id)?;
        let w = self.workers.remove(at);
        w.stop.cancel();
        Some(outcome(w).await)
    }

    /// The coordinator's scheduler (jobs, tasks, workers).
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.coordinator.sched
    }

    /// The coordinator's live telemetry (rates, backend snapshots, samples).
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.coordinator.telemetry
    }

    /// `http://127.0.0.1:<port>`: the gRPC address of the job and worker APIs.
    pub fn grpc_url(&self) -> String {
        self.coordinator.grpc_url()
    }

    /// Where the dashboard and metrics are served, if they are.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.coordinator.http_addr
    }

    /// Stops the workers (each finishes or hands back its tasks within the grace), then the
    /// coordinator. Returns how each worker ended.
    pub async fn shutdown(mut self) -> Vec<WorkerOutcome> {
        self.workers_stop.cancel();
        let mut outcomes = Vec::new();
        for w in std::mem::take(&mut self.workers) {
            outcomes.push(outcome(w).await);
        }
        self.coordinator.stop_now().await;
        outcomes
    }
}

async fn outcome(w: LocalWorker) -> WorkerOutcome {
    let result = match w.run.await {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(e)) => Err(format!("worker ended with an error: {e}")),
        Err(e) => Err(format!("worker task failed: {e}")),
    };
    WorkerOutcome { id: w.id, result }
}
