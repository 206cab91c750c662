//! One module per subcommand, plus what they share.

pub mod coordinator;
pub mod credential_args;
pub mod inspect;
pub mod mock;
pub mod progress;
pub mod run;
pub mod status;
pub mod submit;
pub mod tls_args;
pub mod token_args;
pub mod validate;
pub mod worker;

use anyhow::Context;
use synthforge_proto::job_service_client::JobServiceClient;
use tonic::transport::Channel;

/// Waits for SIGTERM or Ctrl-C (Kubernetes stops pods with SIGTERM).
pub async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// The job API client, with the bearer token attached to each request by [`authed`].
pub async fn job_client(url: &str) -> anyhow::Result<JobServiceClient<Channel>> {
    job_client_tls(url, &tls_args::ClientTlsArgs::default()).await
}

/// [`job_client`] over TLS when `tls` has client TLS flags (`--tls-ca`, ...). `url` may list
/// several coordinators (comma-separated): the leader is found by asking each in turn, and a
/// standby (or a replica that has not yet won its election) is skipped, for up to 15 s.
/// With one address a standby's answer naming the leader is returned at once; while no leader
/// is known yet the client waits, as for several addresses.
pub async fn job_client_tls(
    url: &str,
    tls: &tls_args::ClientTlsArgs,
) -> anyhow::Result<JobServiceClient<Channel>> {
    let urls: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let mut last_err = None;
        for u in &urls {
            match connect_one(u, tls).await {
                Ok(mut c) => match c.list(synthforge_proto::ListJobsRequest {}).await {
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        last_err = Some(anyhow::anyhow!("{u}: {}", s.message()));
                    }
                    _ => return Ok(c),
                },
                Err(e) => last_err = Some(e),
            }
        }
        let err = last_err.unwrap_or_else(|| anyhow::anyhow!("no coordinator URL given"));
        // One address: report what it said (a standby names its leader), unless no leader is
        // known yet (a coordinator that just started, an election under way): then wait for
        // it like for several addresses, which keep looking for the leader.
        let electing = format!("{err:#}").contains("election in progress");
        if std::time::Instant::now() >= deadline || (urls.len() <= 1 && !electing) {
            return Err(err);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

async fn connect_one(
    url: &str,
    tls: &tls_args::ClientTlsArgs,
) -> anyhow::Result<JobServiceClient<Channel>> {
    let tls_config = tls.client()?;
    let with_tls = tls_config.is_some();
    let ch = synthforge_worker::tls::endpoint(url, tls_config)
        .with_context(|| format!("bad coordinator URL `{url}`"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach coordinator at {url}"))?;
    let mut client = JobServiceClient::new(ch).max_decoding_message_size(64 << 20);
    if with_tls {
        // With TLS 1.3 a coordinator that requires a client certificate refuses a client only
        // after the handshake; one cheap call turns "connection closed" into a clear error.
        let probe = synthforge_proto::GetJobRequest {
            job_id: String::new(),
        };
        if let Err(s) = client.get(probe).await {
            if matches!(
                s.code(),
                tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown
            ) {
                let hint = if tls.tls_cert.is_some() {
                    "the coordinator did not accept this client certificate"
                } else {
                    "a coordinator started with --tls-client-ca requires a client certificate \
                     (--tls-cert and --tls-key)"
                };
                anyhow::bail!(
                    "TLS connection to the coordinator at {url} was closed ({}); {hint}",
                    s.message()
                );
            }
        }
    }
    Ok(client)
}

pub fn authed<T>(msg: T, token: &Option<String>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token.as_deref().filter(|t| !t.is_empty()) {
        if let Ok(v) = format!("Bearer {t}").parse() {
            r.metadata_mut().insert("authorization", v);
        }
    }
    r
}

/// Reads a job file, naming it in errors.
pub fn read_job_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job file {}", path.display()))
}

/// Makes local relative paths absolute so that every process (and the manifest) agrees on them.
pub fn absolutize(path: &str) -> String {
    let is_url = url_scheme(path).is_some();
    if is_url || std::path::Path::new(path).is_absolute() {
        return path.to_string();
    }
    match std::env::current_dir() {
        Ok(cwd) => cwd.join(path).to_string_lossy().into_owned(),
        Err(_) => path.to_string(),
    }
}

fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    (scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric())).then_some(scheme)
}

/// Applies `--output` and makes the job's local paths absolute.
pub fn prepare_spec(spec: &mut synthforge_core::spec::JobSpec, output: Option<&str>) {
    if let Some(o) = output {
        spec.output.path = o.to_string();
    }
    spec.output.path = absolutize(&spec.output.path);
    spec.input.path = absolutize(&spec.input.path);
}
