//! `synthforge status` and `synthforge cancel`.

use synthforge_proto as pb;

#[derive(clap::Args)]
pub struct StatusArgs {
    pub job_id: Option<String>,
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub coordinator: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct CancelArgs {
    pub job_id: String,
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub coordinator: String,
    #[arg(long, env = "SYNTHFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

fn to_json(s: &pb::JobStatus) -> serde_json::Value {
    let st = s.stats.clone().unwrap_or_default();
    serde_json::json!({
        "job_id": s.job_id, "name": s.name, "state": s.state,
        "tasks": {"total": s.tasks_total, "pending": s.tasks_pending, "leased": s.tasks_leased,
                  "done": s.tasks_done, "failed": s.tasks_failed},
        "rows_total": s.rows_total, "rows_in": st.rows_in, "rows_out": st.rows_out,
        "rows_failed": st.rows_failed, "removed": st.removed,
        "prompt_tokens": st.prompt_tokens, "completion_tokens": st.completion_tokens,
        "output": s.output, "error": s.error,
    })
}

pub async fn run(a: StatusArgs) -> anyhow::Result<()> {
    let mut client = super::job_client(&a.coordinator).await?;
    let jobs = match &a.job_id {
        Some(id) => vec![client
            .get(pb::GetJobRequest { job_id: id.clone() })
            .await?
            .into_inner()],
        None => client.list(pb::ListJobsRequest {}).await?.into_inner().jobs,
    };
    if a.json {
        let v: Vec<_> = jobs.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<32} {:<10} {:>13} {:>10} {:>9} {:>9} {:>12}",
        "JOB", "STATE", "TASKS", "ROWS OUT", "FAILED", "REMOVED", "TOKENS OUT"
    );
    for j in &jobs {
        let st = j.stats.clone().unwrap_or_default();
        println!(
            "{:<32} {:<10} {:>13} {:>10} {:>9} {:>9} {:>12}",
            j.job_id,
            j.state,
            format!("{}/{}", j.tasks_done, j.tasks_total),
            st.rows_out,
            st.rows_failed,
            st.removed.values().sum::<u64>(),
            st.completion_tokens
        );
        if !j.error.is_empty() {
            println!("  error: {}", j.error);
        }
    }
    Ok(())
}

pub async fn cancel(a: CancelArgs) -> anyhow::Result<()> {
    let mut client = super::job_client(&a.coordinator).await?;
    let r = client
        .cancel(super::authed(
            pb::CancelRequest {
                job_id: a.job_id.clone(),
            },
            &a.token,
        ))
        .await?
        .into_inner();
    println!(
        "{}: {}",
        a.job_id,
        if r.cancelled {
            "cancelled"
        } else {
            "already ended"
        }
    );
    Ok(())
}
