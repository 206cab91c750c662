//! One HA coordinator replica as a library call: connect to etcd, serve (gated) and campaign
//! for leadership until a token is cancelled, then hand leadership over at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::control::ha::{election_client, run_election, HaConfig, Leadership};
use crate::control::scheduler::Finalizer;
use crate::control::store::etcd::EtcdStore;
use crate::control::store::{StoreError, TaskStore};
use crate::server::{Coordinator, CoordinatorConfig, ServeError};

/// Where a replica keeps its state and how it campaigns.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// Key prefix of this deployment's state and election in etcd.
    pub etcd_prefix: String,
    /// gRPC URL other replicas report as the leader's (default: [`default_advertise`]).
    pub advertise: Option<String>,
    /// etcd lease TTL of the leader, in seconds (at least 2): the failover time.
    pub leader_ttl_s: i64,
}

/// Why a replica could not start. The messages match what `synthforge coordinator` printed
/// before it became a library call.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("state store")]
    Store(#[source] StoreError),
    #[error("connecting to etcd {endpoints:?} for the election")]
    Election {
        endpoints: Vec<String>,
        #[source]
        source: etcd_client::Error,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// A running replica: the (gated) coordinator and its election campaign.
pub struct Replica {
    pub coordinator: Coordinator,
    gate: Arc<Leadership>,
    store: Arc<EtcdStore>,
    election: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.election.abort();
    }
}

impl Replica {
    /// Connects to etcd, starts serving as a standby and campaigns until `stop` is cancelled.
    /// Returns once the ports are bound; [`Replica::leading`] waits for the election.
    pub async fn start(
        serve: CoordinatorConfig,
        cfg: ReplicaConfig,
        finalizer: Finalizer,
        stop: CancellationToken,
    ) -> Result<Replica, ReplicaError> {
        let store = Arc::new(
            EtcdStore::connect(&cfg.etcd, &cfg.etcd_prefix)
                .await
                .map_err(ReplicaError::Store)?,
        );
        store.set_fence(None);
        // The election gets its own connection without a request timeout.
        let client = election_client(&cfg.etcd)
            .await
            .map_err(|source| ReplicaError::Election {
                endpoints: cfg.etcd.clone(),
                source,
            })?;
        let gate = Leadership::new();
        let dyn_store: Arc<dyn TaskStore> = store.clone();
        let coordinator = Coordinator::start_gated(
            serve,
            dyn_store,
            finalizer,
            Some(gate.clone()),
            stop.clone(),
        )
        .await?;
        let advertise = cfg
            .advertise
            .clone()
            .unwrap_or_else(|| default_advertise(coordinator.grpc_addr));
        tracing::info!(grpc = %coordinator.grpc_addr, http = ?coordinator.http_addr, %advertise, "coordinator replica up; campaigning for leadership");
        let election = tokio::spawn(run_election(
            client,
            store.clone(),
            coordinator.sched.clone(),
            gate.clone(),
            HaConfig {
                election: format!("{}/leader", cfg.etcd_prefix.trim_end_matches('/')),
                advertise,
                ttl_s: cfg.leader_ttl_s.max(2),
            },
        ));
        Ok(Replica {
            coordinator,
            gate,
            store,
            election,
            stop,
        })
    }

    /// Whether this replica leads now (serves the worker and job APIs).
    pub fn is_leader(&self) -> bool {
        self.gate.is_leader()
    }

    /// Waits until this replica leads (it may never: another replica may keep the role).
    pub async fn leading(&self) {
        while !self.gate.is_leader() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the stop token, then ends the campaign and resigns, so a standby takes over
    /// at once rather than after the TTL, and closes the servers.
    pub async fn stopped(mut self) {
        self.stop.cancelled().await;
        tracing::info!("coordinator stopping");
        self.election.abort();
        self.gate.resign(self.store.client()).await;
        self.coordinator.stop_now().await;
    }
}

/// Runs one replica until `stop` is cancelled (`synthforge coordinator --etcd ...`).
pub async fn run(
    serve: CoordinatorConfig,
    cfg: ReplicaConfig,
    finalizer: Finalizer,
    stop: CancellationToken,
) -> Result<(), ReplicaError> {
    Replica::start(serve, cfg, finalizer, stop)
        .await?
        .stopped()
        .await;
    Ok(())
}

/// `http://<grpc addr>`, with the host name instead of an unspecified address (`0.0.0.0` in a
/// pod): what a standby names as the leader in its `UNAVAILABLE` answers.
pub fn default_advertise(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            let host = host.trim();
            if !host.is_empty() {
                return format!("http://{host}:{}", addr.port());
            }
        }
    }
    format!("http://{addr}")
}
