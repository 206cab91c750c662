//! `synthforge coordinator`: the cluster service.
//!
//! With `--state-dir` (the default) one coordinator keeps its state in the embedded store. With
//! `--etcd` state lives in etcd and any number of replicas may run: one leads (etcd election),
//! the others answer `UNAVAILABLE` and take over when it dies. The service itself is
//! [`synthforge_coordinator::run`]; this command parses flags and turns SIGTERM into its token.
//!
//! Safe by default: it listens on 127.0.0.1, and refuses a wider address without a token unless
//! `--insecure`. Tokens per role (admin `--token`, `--worker-token`, `--read-token`) come from
//! flags, the environment or files; see SECURITY.md.

use std::net::SocketAddr;
use std::path::PathBuf;

use synthforge_coordinator::control::task_machine::Backoff;
use synthforge_coordinator::entry::ReplicaConfig;
use synthforge_coordinator::{CoordinatorConfig, SecurityConfig, ServiceConfig, StateConfig};

use super::token_args::resolve;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct CoordinatorArgs {
    /// gRPC address (workers, submit, status). Loopback by default; a wider address needs a
    /// token (or --insecure).
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub grpc_addr: SocketAddr,
    /// HTTP address (dashboard, JSON API, metrics, probes); HTTPS with --tls-cert/--tls-key.
    #[arg(long, default_value = "127.0.0.1:8080")]
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
    /// Admin bearer token: submit and cancel, and every other call (workers and reads too,
    /// so one token keeps working for everything).
    #[arg(long, env = "SYNTHFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the admin token (instead of --token).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Token of the worker API only: cannot submit, cancel or read jobs.
    #[arg(long, env = "SYNTHFORGE_WORKER_TOKEN", hide_env_values = true)]
    pub worker_token: Option<String>,
    /// File holding the worker token.
    #[arg(long, value_name = "PATH")]
    pub worker_token_file: Option<PathBuf>,
    /// Read-only token (dashboard, status, metrics): cannot lease, submit or cancel.
    #[arg(long, env = "SYNTHFORGE_READ_TOKEN", hide_env_values = true)]
    pub read_token: Option<String>,
    /// File holding the read token.
    #[arg(long, value_name = "PATH")]
    pub read_token_file: Option<PathBuf>,
    /// Serve /metrics without a token (for scrapers inside the cluster).
    #[arg(long)]
    pub metrics_public: bool,
    /// Allow listening beyond loopback without any token (warns in the log and on the dashboard).
    #[arg(long)]
    pub insecure: bool,
    /// Seconds without a heartbeat or lease request after which a worker counts as gone: it
    /// leaves the dashboard, `/api/workers` and the worker metrics.
    #[arg(long, default_value_t = 30.0, value_parser = positive_seconds)]
    pub worker_grace_s: f64,
    /// Seconds between compactions of the state store's history (etcd revisions), keeping
    /// about one interval of it; 0 turns it off (then etcd's own --auto-compaction-* must
    /// compact). See docs/sizing.md.
    #[arg(long, default_value_t = 60.0, value_parser = non_negative_seconds)]
    pub compaction_interval_s: f64,
    #[command(flatten)]
    pub tls: super::tls_args::TlsArgs,
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (0 or more)")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

pub async fn run(a: CoordinatorArgs) -> anyhow::Result<()> {
    let serve = CoordinatorConfig {
        grpc_addr: a.grpc_addr,
        http_addr: Some(a.http_addr),
        token: resolve(&a.token, &a.token_file, "admin")?,
        shutdown_when_idle: false,
        tls: a.tls.server()?,
        security: SecurityConfig {
            worker_token: resolve(&a.worker_token, &a.worker_token_file, "worker")?,
            read_token: resolve(&a.read_token, &a.read_token_file, "read")?,
            metrics_public: a.metrics_public,
            insecure: a.insecure,
            http_tls: a.tls.http_server()?,
        },
        retry_backoff: Backoff::DEFAULT,
        worker_grace: std::time::Duration::from_secs_f64(a.worker_grace_s),
        compaction_interval: std::time::Duration::from_secs_f64(a.compaction_interval_s),
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
