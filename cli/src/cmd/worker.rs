//! `synthforge worker`: lease and run tasks until told to stop (SIGTERM: graceful).

use std::time::Duration;

use synthforge_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Coordinator gRPC URL(s), e.g. http://coordinator:7070 (comma-separated for several).
    #[arg(long, required = true)]
    pub coordinator: Vec<String>,
    /// This worker's name on the dashboard and in leases (default: worker-<random>).
    #[arg(long)]
    pub id: Option<String>,
    /// Worker (or admin) bearer token, when the coordinator requires one.
    #[arg(long, env = "SYNTHFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tasks run at once (2 keeps backends busy across task boundaries).
    #[arg(long, default_value_t = 2)]
    pub parallel_tasks: usize,
    /// Seconds to finish running tasks after SIGTERM before handing them back.
    #[arg(long, default_value_t = 30.0)]
    pub grace_s: f64,
    #[command(flatten)]
    pub tls: super::tls_args::ClientTlsArgs,
    #[command(flatten)]
    pub credentials: super::credential_args::CredentialArgs,
}

pub async fn run(a: WorkerArgs) -> anyhow::Result<()> {
    let id = a
        .id
        .unwrap_or_else(|| format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let tls = a.tls.client()?;
    let credentials = a.credentials.load(a.token.as_deref())?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        if super::shutdown_signal().await.is_ok() {
            tracing::info!("shutdown signal: no new leases; finishing running tasks");
            on_signal.cancel();
        }
    });
    let summary = synthforge_worker::run(
        WorkerConfig {
            id: id.clone(),
            coordinators: a.coordinator,
            token: a.token,
            parallel_tasks: a.parallel_tasks,
            exit_when_idle: false,
            grace: Duration::from_secs_f64(a.grace_s.max(0.0)),
            tls,
            credentials,
        },
        shutdown,
    )
    .await?;
    tracing::info!(worker = %id, ?summary, "worker stopped");
    Ok(())
}
