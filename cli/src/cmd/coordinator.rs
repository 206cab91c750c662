//! `synthforge coordinator`: the cluster service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use synthforge_coordinator::finalize::manifest_finalizer;
use synthforge_coordinator::server::{Coordinator, CoordinatorConfig};
use synthforge_coordinator::store::embedded::EmbeddedStore;

#[derive(clap::Args)]
pub struct CoordinatorArgs {
    #[arg(long, default_value = "0.0.0.0:7070")]
    pub grpc_addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Directory of the embedded state store (one machine; survives restarts).
    #[arg(long, default_value = ".synthforge/state")]
    pub state_dir: PathBuf,
    /// Bearer token required on the job and worker APIs.
    #[arg(long, env = "SYNTHFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub async fn run(a: CoordinatorArgs) -> anyhow::Result<()> {
    let store = Arc::new(
        EmbeddedStore::open(&a.state_dir)
            .with_context(|| format!("opening state store in {}", a.state_dir.display()))?,
    );
    let c = Coordinator::start(
        CoordinatorConfig {
            grpc_addr: a.grpc_addr,
            http_addr: Some(a.http_addr),
            token: a.token,
            shutdown_when_idle: false,
        },
        store,
        manifest_finalizer(),
    )
    .await?;
    tracing::info!(grpc = %c.grpc_addr, http = ?c.http_addr, "coordinator ready");
    super::shutdown_signal().await?;
    tracing::info!("coordinator stopping");
    Ok(())
}
