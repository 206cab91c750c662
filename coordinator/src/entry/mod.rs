//! Library entry points: a whole coordinator service from its configuration, stopped by a
//! [`CancellationToken`]. `synthforge coordinator` is this plus flag parsing and signals;
//! tests and the standalone cluster call it (or [`Coordinator::start`]) in process.

pub mod replica;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::control::store::embedded::EmbeddedStore;
use crate::control::store::StoreError;
use crate::finalize::manifest::manifest_finalizer;
use crate::server::{Coordinator, CoordinatorConfig, ServeError};
pub use replica::{default_advertise, run as run_replica, Replica, ReplicaConfig, ReplicaError};

/// Where the coordinator keeps its state, which also decides how it runs.
#[derive(Debug, Clone)]
pub enum StateConfig {
    /// The embedded store in this directory: one coordinator on one machine.
    Embedded(PathBuf),
    /// etcd: an HA replica (one of any number; one leads).
    Etcd(ReplicaConfig),
}

/// Everything `synthforge coordinator` is configured with.
#[derive(Clone)]
pub struct ServiceConfig {
    pub serve: CoordinatorConfig,
    pub state: StateConfig,
}

/// Why the coordinator service could not start. The messages match what the command printed
/// before it became a library call.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("opening state store in {}", dir.display())]
    OpenState {
        dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// Runs the coordinator service until `stop` is cancelled: with the embedded store a single
/// coordinator, with etcd an HA replica that campaigns for leadership and resigns on stop.
/// Writes each job's manifest (and dataset card) when its tasks have all ended.
pub async fn run(config: ServiceConfig, stop: CancellationToken) -> Result<(), RunError> {
    match config.state {
        StateConfig::Embedded(dir) => {
            let store =
                EmbeddedStore::open(&dir).map_err(|source| RunError::OpenState { dir, source })?;
            let c = Coordinator::start(config.serve, Arc::new(store), manifest_finalizer(), stop)
                .await?;
            tracing::info!(grpc = %c.grpc_addr, http = ?c.http_addr, "coordinator ready");
            let stop = c.stop_token();
            stop.cancelled().await;
            tracing::info!("coordinator stopping");
            c.stopped().await;
            Ok(())
        }
        StateConfig::Etcd(replica) => {
            Ok(replica::run(config.serve, replica, manifest_finalizer(), stop).await?)
        }
    }
}
