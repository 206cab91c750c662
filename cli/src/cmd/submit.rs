//! `synthforge submit`: send a job to a coordinator, optionally wait for it.

use std::path::PathBuf;
use std::time::Duration;

use synthforge_core::spec::JobSpec;
use synthforge_proto as pb;

#[derive(clap::Args)]
pub struct SubmitArgs {
    pub job: PathBuf,
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
    /// Write even where the output holds another job's dataset or a README.md not written by us.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub tls: super::tls_args::TlsArgs,
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
    println!("tasks: {}  rows: {}", resp.tasks, resp.rows);
    if !a.wait {
        return Ok(());
    }
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
        match st.state.as_str() {
            "succeeded" => {
                println!("state: succeeded");
                println!("output: {}", st.output);
                return Ok(());
            }
            "failed" | "cancelled" => {
                anyhow::bail!("job {} {}: {}", st.job_id, st.state, st.error)
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}
