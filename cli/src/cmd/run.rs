//! `synthforge run`: a whole job on one machine. The coordinator and N workers run in this
//! process ([`synthforge::standalone`]) but talk real gRPC over 127.0.0.1 — the same code
//! paths as a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::progress::{Progress, Snapshot};
use synthforge::standalone::{Standalone, StandaloneConfig};
use synthforge_coordinator::control::scheduler::{job_id_for, JobView};
use synthforge_coordinator::model::JobState;
use synthforge_core::spec::JobSpec;
use synthforge_proto as pb;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The job file (YAML).
    pub job: PathBuf,
    /// Workers in this process (each runs up to 2 tasks at once).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Override the job's output location (path or object-store URL).
    #[arg(long)]
    pub output: Option<String>,
    /// Embedded state store: a stopped run resumes from here.
    #[arg(long, default_value = ".synthforge/state")]
    pub state_dir: PathBuf,
    /// Serve the dashboard and metrics here while the job runs (e.g. 127.0.0.1:8080).
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// Start a new job even if this exact job ran before (default: resume / report it).
    #[arg(long)]
    pub fresh: bool,
    /// Write even where the output already holds another job's dataset or a user's README.md.
    #[arg(long)]
    pub overwrite: bool,
    /// Show no progress (neither the bar on a terminal nor the progress lines otherwise).
    #[arg(long)]
    pub no_progress: bool,
    /// Seconds between progress lines when stderr is not a terminal (CI logs, Kubernetes).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub progress_every: f64,
    /// Log at info level (default: warnings only, with progress).
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub credentials: super::credential_args::CredentialArgs,
}

pub async fn run(a: RunArgs) -> anyhow::Result<()> {
    let text = super::read_job_file(&a.job)?;
    let mut spec = JobSpec::from_yaml(&text, &a.job.display().to_string())?;
    super::prepare_spec(&mut spec, a.output.as_deref());
    spec.output.path = synthforge_core::spec::limits::normalise_output_path(&spec.output.path)
        .map_err(|e| anyhow::anyhow!("output: {e}"))?;
    let credentials = a
        .credentials
        .load(std::env::var("SYNTHFORGE_TOKEN").ok().as_deref())?;
    check_credentials_known(&spec, &credentials)?;
    let cluster = Standalone::open(
        StandaloneConfig {
            workers: a.workers.max(1),
            http_addr: a.http_addr,
            credentials,
            ..StandaloneConfig::default()
        },
        &a.state_dir,
        CancellationToken::new(),
    )
    .await?;
    if let Some(h) = cluster.http_addr() {
        eprintln!("dashboard: http://{h}/");
    }
    let mut job_id = job_id_for(&spec);
    if a.fresh {
        job_id = format!("{job_id}-{}", synthforge_core::now_ms());
    }
    let mut client = super::job_client(&cluster.grpc_url()).await?;
    let submitted = client
        .submit(pb::SubmitRequest {
            job_spec_yaml: spec.to_yaml(),
            job_id: job_id.clone(),
            overwrite: a.overwrite,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let job_id = submitted.job_id;
    // The job is followed in process; an open client connection would only delay the stop.
    drop(client);
    let interrupt = CancellationToken::new();
    let interrupted = {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            let _ = super::shutdown_signal().await;
            interrupt.cancel();
        })
    };
    let progress = Progress::new(!a.no_progress, a.progress_every);
    let view = watch_job(&cluster, &job_id, progress, &interrupt).await;
    for w in cluster.shutdown().await {
        if let Err(e) = w.result {
            tracing::warn!(worker = %w.id, "{e}");
        }
    }
    interrupted.abort();
    let Some(view) = view else {
        anyhow::bail!(
            "interrupted; job {job_id} is saved in {} — run the same command again to resume",
            a.state_dir.display()
        );
    };
    // The manifest is the truth once finalized (whole-job dedup removes rows after tasks end).
    let manifest = match synthforge_core::storage::open(&view.record.output) {
        Ok(root) => synthforge_core::manifest::Manifest::read(&root).await.ok(),
        Err(_) => None,
    };
    print_summary(&view, manifest.as_ref());
    match view.record.state {
        JobState::Succeeded => Ok(()),
        other => anyhow::bail!("job {} {}: {}", job_id, other.as_str(), view.record.error),
    }
}

/// Refuses, before anything starts, a job whose backends name a credential this run was not
/// given: its workers are in this process, so the local configuration is all there is.
fn check_credentials_known(
    spec: &JobSpec,
    credentials: &synthforge_core::backend::Credentials,
) -> anyhow::Result<()> {
    for (name, backend) in &spec.backends {
        if let Some(c) = backend
            .credential
            .as_deref()
            .filter(|c| !credentials.contains(c))
        {
            anyhow::bail!(
                "backends.{name}.credential: `{c}` is not configured; give it with \
                 `--credential {c}=env:VAR` (or file:/path) or in --credentials-file"
            );
        }
    }
    Ok(())
}

/// Follows the job until it ends (Some) or the run is interrupted (None).
async fn watch_job(
    cluster: &Standalone,
    job_id: &str,
    mut progress: Progress,
    stop: &CancellationToken,
) -> Option<JobView> {
    let (sched, telemetry) = (cluster.scheduler(), cluster.telemetry());
    let started = Instant::now();
    loop {
        let view = sched.job(job_id).await?;
        let done = view.stats.rows_in + view.rows_in_flight;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        // Current rates over a short window (running tasks included), not since start.
        synthforge_coordinator::serve::dashboard::sample_once(sched, telemetry).await;
        let rate = telemetry.job_rate(job_id);
        let (rows_s, tok_s) = if rate.t_ms > 0 {
            (rate.rows_per_s, rate.tokens_per_s)
        } else {
            (
                done as f64 / secs,
                view.stats.completion_tokens as f64 / secs,
            )
        };
        let snap = Snapshot {
            done,
            total: view.record.rows_total,
            tasks_done: view.tasks_done,
            tasks_total: view.record.tasks_total,
            failed: view.stats.rows_failed,
            rows_per_s: rows_s,
            tokens_per_s: tok_s,
        };
        if view.record.state.is_terminal() {
            progress.finish(&snap);
            return Some(view);
        }
        // While planning there are no rows to count yet.
        if view.record.state != JobState::Planning {
            progress.update(&snap);
        }
        if stop.is_cancelled() {
            progress.abandon();
            return None;
        }
        sched.wait_change(Duration::from_millis(250)).await;
    }
}

fn print_summary(v: &JobView, manifest: Option<&synthforge_core::manifest::Manifest>) {
    let s = &v.stats;
    println!("job: {} ({})", v.record.id, v.record.state.as_str());
    // Seed rows from the manifest: a JSONL/text input cut by byte ranges is counted as read.
    let (seed_rows, rows, failures, removed) = match manifest.filter(|m| m.job_id == v.record.id) {
        Some(m) => (m.seed_rows, m.rows, m.failures, m.removed.clone()),
        None => (
            v.record.rows_total.max(s.rows_in),
            s.rows_out,
            s.rows_failed,
            s.removed.clone(),
        ),
    };
    println!(
        "seed rows: {}  output rows: {}  failures: {}  removed: {}",
        seed_rows,
        rows,
        failures,
        removed.values().sum::<u64>()
    );
    for (reason, n) in &removed {
        println!("  removed by {reason}: {n}");
    }
    println!(
        "tokens: {} prompt, {} completion",
        s.prompt_tokens, s.completion_tokens
    );
    if !v.record.error.is_empty() {
        println!("error: {}", v.record.error);
    }
    println!("output: {}", v.record.output);
}
