//! `synthforge submit`: send a job to a coordinator, optionally wait for it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::progress::{Progress, Snapshot};

use synthforge_core::spec::JobSpec;
use synthforge_proto as pb;

#[derive(clap::Args)]
pub struct SubmitArgs {
    /// The job file (YAML).
    pub job: PathBuf,
    /// Coordinator gRPC URL(s) (comma-separated for several replicas).
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub coordinator: String,
    /// The admin token, when the coordinator requires one.
    #[command(flatten)]
    pub auth: super::token_args::ClientToken,
    /// Override the job's output location.
    #[arg(long)]
    pub output: Option<String>,
    /// Wait until the job ends; exit non-zero unless it succeeded.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: seconds between progress lines (rows done, rows/s, ETA, failed).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub progress_every: f64,
    /// Write even where the output holds another job's dataset or a README.md not written by us.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub tls: super::tls_args::ClientTlsArgs,
}

pub async fn run(a: SubmitArgs) -> anyhow::Result<()> {
    let text = super::read_job_file(&a.job)?;
    let mut spec = JobSpec::from_yaml(&text, &a.job.display().to_string())?;
    super::prepare_spec(&mut spec, a.output.as_deref());
    let token = a.auth.get()?;
    let mut client = super::job_client_tls(&a.coordinator, &a.tls).await?;
    let resp = client
        .submit(super::authed(
            pb::SubmitRequest {
                job_spec_yaml: spec.to_yaml(),
                job_id: String::new(),
                overwrite: a.overwrite,
            },
            &token,
        ))
        .await?
        .into_inner();
    println!("job_id: {}", resp.job_id);
    if resp.state == "planning" {
        println!("state: planning (the input is cut into tasks in the background)");
    } else {
        println!("tasks: {}  rows: {}", resp.tasks, resp.rows);
    }
    if !a.wait {
        return Ok(());
    }
    let mut progress = Progress::new(true, a.progress_every);
    let started = Instant::now();
    let mut first_done = None;
    let mut planning_said: Option<Instant> = None;
    loop {
        let st = client
            .get(super::authed(
                pb::GetJobRequest {
                    job_id: resp.job_id.clone(),
                },
                &token,
            ))
            .await?
            .into_inner();
        let stats = st.stats.clone().unwrap_or_default();
        // Rates since waiting began (a resubmitted job may start with rows already done).
        let first = *first_done.get_or_insert((stats.rows_in, stats.completion_tokens));
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let snap = Snapshot {
            done: stats.rows_in,
            total: st.rows_total,
            tasks_done: st.tasks_done,
            tasks_total: st.tasks_total,
            failed: stats.rows_failed,
            rows_per_s: stats.rows_in.saturating_sub(first.0) as f64 / secs,
            tokens_per_s: stats.completion_tokens.saturating_sub(first.1) as f64 / secs,
        };
        match st.state.as_str() {
            "succeeded" => {
                progress.finish(&snap);
                println!("state: succeeded");
                println!("output: {}", st.output);
                return Ok(());
            }
            "failed" | "cancelled" => {
                progress.finish(&snap);
                anyhow::bail!("job {} {}: {}", st.job_id, st.state, st.error)
            }
            "planning" => {
                let due =
                    planning_said.is_none_or(|t| t.elapsed().as_secs_f64() >= a.progress_every);
                if due {
                    eprintln!("{}", planning_line(st.planning.as_ref()));
                    planning_said = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(300)).await
            }
            _ => {
                if planning_said.take().is_some() {
                    println!("tasks: {}  rows: {}", st.tasks_total, st.rows_total);
                }
                progress.update(&snap);
                tokio::time::sleep(Duration::from_millis(300)).await
            }
        }
    }
}

/// `planning: 120/2000 input objects, 1800 tasks, 1800000 rows so far`.
pub fn planning_line(p: Option<&pb::PlanningProgress>) -> String {
    let p = p.cloned().unwrap_or_default();
    format!(
        "planning: {}/{} input objects, {} tasks, {} rows so far",
        p.objects_planned, p.objects_total, p.tasks_written, p.rows_planned
    )
}
