//! `synthforge coordinator`: the cluster service.
//!
//! With `--state-dir` (the default) one coordinator keeps its state in the embedded store. With
//! `--etcd` state lives in etcd and any number of replicas may run: one leads (etcd election),
//! the others answer `UNAVAILABLE` and take over when it dies. The service itself is
//! [`synthforge_coordinator::run`]; this command parses flags and turns SIGTERM into its token.

use std::net::SocketAddr;
use std::path::PathBuf;

use synthforge_coordinator::entry::ReplicaConfig;
use synthforge_coordinator::{CoordinatorConfig, ServiceConfig, StateConfig};
use tokio_util::sync::CancellationToken;

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
    let serve = CoordinatorConfig {
        grpc_addr: a.grpc_addr,
        http_addr: Some(a.http_addr),
        token: a.token.clone(),
        shutdown_when_idle: false,
        tls: a.tls.server()?,
    };
    let state = if a.etcd.is_empty() {
        StateConfig::Embedded(a.state_dir)
    } else {
        StateConfig::Etcd(ReplicaConfig {
            etcd: a.etcd,
            etcd_prefix: a.etcd_prefix,
            advertise: a.advertise,
            leader_ttl_s: a.leader_ttl_s,
        })
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    // A failure to install the handler ends the service at once, as before (with its error).
    let signal = tokio::spawn(async move {
        let r = super::shutdown_signal().await;
        on_signal.cancel();
        r
    });
    synthforge_coordinator::run(ServiceConfig { serve, state }, stop).await?;
    if signal.is_finished() {
        signal.await??;
    } else {
        signal.abort();
    }
    Ok(())
}
