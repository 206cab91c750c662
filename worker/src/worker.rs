//! The worker loop: register, lease, run tasks (a few at once so a backend never idles at a
//! task boundary), and shut down gracefully: when its token is cancelled stop leasing, let
//! running tasks finish within the grace period, then hand back what is left.

use std::sync::Arc;
use std::time::Duration;

use synthforge_proto as pb;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use synthforge_core::backend::Credentials;

use crate::client::{ClientError, CoordinatorClient};
use crate::task::{BackendCache, TaskEnd, TaskRunner};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub id: String,
    /// Coordinator gRPC URLs; the worker follows whichever answers (leader failover).
    pub coordinators: Vec<String>,
    pub token: Option<String>,
    /// Tasks run at once by this worker.
    pub parallel_tasks: usize,
    /// Exit when the coordinator has nothing to lease (and says so).
    pub exit_when_idle: bool,
    /// After shutdown, how long running tasks may take to finish before they are handed back.
    pub grace: Duration,
    /// TLS towards the coordinators (`https`); `None`: plaintext.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// The operator's named API keys; a job's backends name them (`credential: NAME`).
    pub credentials: Arc<Credentials>,
}

#[derive(Debug, Default, Clone)]
pub struct WorkerSummary {
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub tasks_rejected: u64,
    pub rows_out: u64,
}

/// Runs until the coordinator says shut down, or `shutdown` is cancelled: then no new leases;
/// running tasks get [`WorkerConfig::grace`] to finish, and what is left is handed back.
pub async fn run(
    cfg: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<WorkerSummary, ClientError> {
    let client = Arc::new(CoordinatorClient::new(
        &cfg.coordinators,
        cfg.token.clone(),
        cfg.tls.clone(),
    )?);
    let register = client.register(pb::RegisterRequest {
        worker_id: cfg.id.clone(),
        address: hostname(),
        slots: cfg.parallel_tasks as u32,
        credentials: cfg.credentials.names(),
    });
    // Registering holds nothing, so a shutdown meanwhile (coordinator unreachable) ends at once.
    let reg = tokio::select! {
        reg = register => reg?,
        () = shutdown.cancelled() => return Ok(WorkerSummary::default()),
    };
    let runner = Arc::new(TaskRunner {
        worker_id: cfg.id.clone(),
        client: client.clone(),
        backends: Arc::new(BackendCache::new(cfg.credentials.clone())),
        heartbeat_every: Duration::from_millis(reg.heartbeat_interval_ms.clamp(100, 30_000)),
    });
    tracing::info!(worker = %cfg.id, "worker registered");
    // Cancelled when the grace after a shutdown is over; each task holds a child token of it
    // and hands its lease back when it fires.
    let hand_back = CancellationToken::new();
    let mut running: JoinSet<TaskEnd> = JoinSet::new();
    let mut summary = WorkerSummary::default();
    let parallel = cfg.parallel_tasks.max(1);
    loop {
        while let Some(done) = running.try_join_next() {
            tally(&mut summary, done);
        }
        if shutdown.is_cancelled() {
            break;
        }
        if running.len() >= parallel {
            tokio::select! {
                Some(done) = running.join_next() => tally(&mut summary, done),
                () = shutdown.cancelled() => {}
            }
            continue;
        }
        let resp = match client
            .lease(pb::LeaseRequest {
                worker_id: cfg.id.clone(),
            })
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "lease failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        match resp.lease {
            Some(lease) => {
                let r = runner.clone();
                let task_token = hand_back.child_token();
                running.spawn(async move { r.run(lease, task_token).await });
            }
            None => {
                if resp.shutdown && running.is_empty() {
                    tracing::info!(worker = %cfg.id, "coordinator reports no work left; exiting");
                    break;
                }
                let wait = Duration::from_millis(resp.retry_after_ms.clamp(50, 5_000));
                tokio::select! {
                    Some(done) = running.join_next(), if !running.is_empty() => tally(&mut summary, done),
                    _ = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }
    if !running.is_empty() {
        tracing::info!(worker = %cfg.id, tasks = running.len(), grace_s = cfg.grace.as_secs_f64(), "shutting down: finishing running tasks");
        let deadline = tokio::time::sleep(cfg.grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = running.join_next() => match next {
                    Some(done) => tally(&mut summary, done),
                    None => break,
                },
                _ = &mut deadline => {
                    tracing::warn!(worker = %cfg.id, "grace period over: handing back unfinished tasks");
                    hand_back.cancel();
                    while let Some(done) = running.join_next().await {
                        tally(&mut summary, done);
                    }
                    break;
                }
            }
        }
    }
    Ok(summary)
}

fn tally(s: &mut WorkerSummary, r: Result<TaskEnd, tokio::task::JoinError>) {
    match r {
        Ok(TaskEnd::Completed { rows_out, .. }) => {
            s.tasks_completed += 1;
            s.rows_out += rows_out;
        }
        Ok(TaskEnd::Rejected(_)) | Ok(TaskEnd::LeaseLost) => s.tasks_rejected += 1,
        Ok(TaskEnd::Failed(e)) => {
            tracing::warn!(error = %e, "task failed");
            s.tasks_failed += 1;
        }
        Ok(TaskEnd::Aborted) => s.tasks_failed += 1,
        Err(e) => {
            tracing::error!(error = %e, "task panicked");
            s.tasks_failed += 1;
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .or_else(|_| std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_while_registering_ends_at_once() {
        let stop = CancellationToken::new();
        let cfg = WorkerConfig {
            id: "w".into(),
            // Nothing listens here: registration keeps retrying.
            coordinators: vec!["http://127.0.0.1:9".into()],
            token: None,
            parallel_tasks: 1,
            exit_when_idle: false,
            grace: Duration::ZERO,
            tls: None,
            credentials: Default::default(),
        };
        let worker = tokio::spawn(run(cfg, stop.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !worker.is_finished(),
            "registration should still be retrying"
        );
        stop.cancel();
        let summary = tokio::time::timeout(Duration::from_secs(2), worker)
            .await
            .expect("the worker stops at once")
            .expect("no panic")
            .expect("a shutdown is not an error");
        assert_eq!(summary.tasks_completed + summary.tasks_failed, 0);
    }
}
