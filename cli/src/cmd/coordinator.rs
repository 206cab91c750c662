//! `synthforge coordinator`: the cluster service.
//!
//! With `--state-dir` (the default) one coordinator keeps its state in the embedded store. With
//! `--etcd` state lives in etcd and any number of replicas may run: one leads (etcd election),
//! the others answer `UNAVAILABLE` and take over when it dies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use synthforge_coordinator::control::ha::{election_client, run_election, HaConfig, Leadership};
use synthforge_coordinator::control::store::embedded::EmbeddedStore;
use synthforge_coordinator::control::store::etcd::EtcdStore;
use synthforge_coordinator::control::store::TaskStore;
use synthforge_coordinator::finalize::manifest::manifest_finalizer;
use synthforge_coordinator::server::{Coordinator, CoordinatorConfig};

#[derive(clap::Args)]
pub struct CoordinatorArgs {
    #[arg(long, default_value = "0.0.0.0:7070")]
    pub grpc_addr: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Directory of the embedded state store (one machine; survives restarts).
    #[arg(long, default_value = ".synthforge/state")]
    pub state_dir: PathBuf,
    /// etcd client URLs (comma-separated): keep state in etcd and run as an HA replica.
    #[arg(long, value_delimiter = ',', conflicts_with = "state_dir")]
    pub etcd: Vec<String>,
    /// Key prefix of this deployment's state and election in etcd.
    #[arg(long, default_value = "/synthforge", requires = "etcd")]
    pub etcd_prefix: String,
    /// gRPC URL other replicas report as the leader's (default: http://<--grpc-addr>, with the
    /// host name when that address is 0.0.0.0).
    #[arg(long, requires = "etcd")]
    pub advertise: Option<String>,
    /// etcd lease TTL of the leader, in seconds: the failover time after a leader dies.
    #[arg(long, default_value_t = 5, requires = "etcd")]
    pub leader_ttl_s: i64,
    /// Bearer token required on the job and worker APIs.
    #[arg(long, env = "SYNTHFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: super::tls_args::TlsArgs,
}

pub async fn run(a: CoordinatorArgs) -> anyhow::Result<()> {
    let config = CoordinatorConfig {
        grpc_addr: a.grpc_addr,
        http_addr: Some(a.http_addr),
        token: a.token.clone(),
        shutdown_when_idle: false,
        tls: a.tls.server()?,
    };
    if !a.etcd.is_empty() {
        return run_ha(a, config).await;
    }
    let store = Arc::new(
        EmbeddedStore::open(&a.state_dir)
            .with_context(|| format!("opening state store in {}", a.state_dir.display()))?,
    );
    let c = Coordinator::start(config, store, manifest_finalizer()).await?;
    tracing::info!(grpc = %c.grpc_addr, http = ?c.http_addr, "coordinator ready");
    super::shutdown_signal().await?;
    tracing::info!("coordinator stopping");
    Ok(())
}

async fn run_ha(a: CoordinatorArgs, config: CoordinatorConfig) -> anyhow::Result<()> {
    let store = Arc::new(
        EtcdStore::connect(&a.etcd, &a.etcd_prefix)
            .await
            .context("state store")?,
    );
    store.set_fence(None);
    // The election gets its own connection without a request timeout.
    let election_client = election_client(&a.etcd)
        .await
        .with_context(|| format!("connecting to etcd {:?} for the election", a.etcd))?;
    let gate = Leadership::new();
    let dyn_store: Arc<dyn TaskStore> = store.clone();
    let c = Coordinator::start_gated(config, dyn_store, manifest_finalizer(), Some(gate.clone()))
        .await?;
    let advertise = a
        .advertise
        .clone()
        .unwrap_or_else(|| default_advertise(c.grpc_addr));
    tracing::info!(grpc = %c.grpc_addr, http = ?c.http_addr, %advertise, "coordinator replica up; campaigning for leadership");
    let resign_client = store.client().clone();
    let election = tokio::spawn(run_election(
        election_client,
        store,
        c.sched.clone(),
        gate.clone(),
        HaConfig {
            election: format!("{}/leader", a.etcd_prefix.trim_end_matches('/')),
            advertise,
            ttl_s: a.leader_ttl_s.max(2),
        },
    ));
    super::shutdown_signal().await?;
    tracing::info!("coordinator stopping");
    // End the campaign, then hand leadership over at once rather than after the TTL.
    election.abort();
    gate.resign(&resign_client).await;
    Ok(())
}

/// `http://<grpc addr>`, with the host name instead of an unspecified address (`0.0.0.0` in a
/// pod): what a standby names as the leader in its `UNAVAILABLE` answers.
fn default_advertise(addr: SocketAddr) -> String {
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
