//! `synthforge status` and `synthforge cancel`.
//!
//! `status` reads the job API over gRPC; with `--http` it reads the dashboard's JSON API
//! instead and prints the same numbers the dashboard shows (rates, ETA, workers, backends).

use anyhow::Context;
use serde_json::Value;
use synthforge_proto as pb;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Show only this job (default: every job).
    pub job_id: Option<String>,
    /// Coordinator gRPC URL(s) (comma-separated for several replicas).
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub coordinator: String,
    /// The coordinator's HTTP address (its `--http-addr`, e.g. http://127.0.0.1:8080): adds
    /// rows/s, tokens/s, ETA, workers and backends, as on the dashboard.
    #[arg(long)]
    pub http: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The read (or admin) token, when the coordinator requires one.
    #[command(flatten)]
    pub auth: super::token_args::ClientToken,
    #[command(flatten)]
    pub tls: super::tls_args::ClientTlsArgs,
}

#[derive(clap::Args)]
pub struct CancelArgs {
    /// The job to cancel.
    pub job_id: String,
    /// Coordinator gRPC URL(s) (comma-separated for several replicas).
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    pub coordinator: String,
    /// The admin token, when the coordinator requires one.
    #[command(flatten)]
    pub auth: super::token_args::ClientToken,
    #[command(flatten)]
    pub tls: super::tls_args::ClientTlsArgs,
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
        "output": s.output, "error": s.error, "waiting": s.waiting,
        "planning": s.planning.as_ref().map(|p| serde_json::json!({
            "objects_total": p.objects_total, "objects_planned": p.objects_planned,
            "tasks_written": p.tasks_written, "rows_planned": p.rows_planned,
        })),
    })
}

pub async fn run(a: StatusArgs) -> anyhow::Result<()> {
    if let Some(http) = &a.http {
        return run_http(&a, http).await;
    }
    let token = a.auth.get()?;
    let mut client = super::job_client_tls(&a.coordinator, &a.tls).await?;
    let jobs = match &a.job_id {
        Some(id) => vec![client
            .get(super::authed(
                pb::GetJobRequest { job_id: id.clone() },
                &token,
            ))
            .await?
            .into_inner()],
        None => {
            client
                .list(super::authed(pb::ListJobsRequest {}, &token))
                .await?
                .into_inner()
                .jobs
        }
    };
    if a.json {
        let v: Vec<_> = jobs.iter().map(to_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let w = id_width(jobs.iter().map(|j| j.job_id.as_str()));
    println!(
        "{:<w$} {:<10} {:>7} {:>13} {:>10} {:>9} {:>9} {:>12}",
        "JOB", "STATE", "DONE", "TASKS", "ROWS OUT", "FAILED", "REMOVED", "TOKENS OUT"
    );
    for j in &jobs {
        let st = j.stats.clone().unwrap_or_default();
        let pct = if j.rows_total == 0 && j.tasks_total > 0 {
            // Byte-range line inputs have no planned row count: progress by tasks.
            100.0 * (j.tasks_done + j.tasks_failed) as f64 / j.tasks_total as f64
        } else if j.rows_total == 0 {
            100.0
        } else {
            100.0 * st.rows_in as f64 / j.rows_total as f64
        };
        println!(
            "{:<w$} {:<10} {:>6.1}% {:>13} {:>10} {:>9} {:>9} {:>12}",
            j.job_id,
            j.state,
            pct,
            format!("{}/{}", j.tasks_done, j.tasks_total),
            st.rows_out,
            st.rows_failed,
            st.removed.values().sum::<u64>(),
            st.completion_tokens
        );
        for (reason, n) in &st.removed {
            println!("  removed by {reason}: {n}");
        }
        if !j.error.is_empty() {
            println!("  error: {}", j.error);
        }
        if !j.waiting.is_empty() {
            println!("  {}", j.waiting);
        }
        if j.state == "planning" {
            println!("  {}", super::submit::planning_line(j.planning.as_ref()));
        }
    }
    Ok(())
}

/// Reads the coordinator's JSON API (`--http`): HTTP, or HTTPS trusting `--tls-ca` when the
/// coordinator serves its certificate there; with the read (or admin) token when given.
struct HttpApi {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl HttpApi {
    /// How long one API call may take before `status` gives up.
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

    fn new(
        base: &str,
        token: Option<String>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            base.starts_with("http://") || base.starts_with("https://"),
            "--http must be an http:// or https:// URL, got `{base}`"
        );
        // The coordinator is addressed directly: a machine's HTTP_PROXY must not capture it.
        let mut builder = reqwest::Client::builder().no_proxy().timeout(Self::TIMEOUT);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read --tls-ca {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("--tls-ca {} is not a PEM certificate", ca.display()))?;
            builder = builder.tls_certs_only([cert]);
        }
        let client = builder.build().context("building the HTTP client")?;
        Ok(HttpApi {
            base: base.trim_end_matches('/').to_string(),
            client,
            token,
        })
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .client
            .get(&url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| {
            format!("cannot reach the coordinator's HTTP port at {}", self.base)
        })?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("GET {url}: reading the body"))?;
        anyhow::ensure!(
            status == reqwest::StatusCode::OK,
            "GET {url}: HTTP {}: {body}",
            status.as_u16()
        );
        serde_json::from_str(&body).with_context(|| format!("GET {url}: invalid JSON"))
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// An integer field (serde_json's `Value` ignores width and alignment when displayed).
fn int(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn eta(v: &Value) -> String {
    v.as_f64()
        .map(super::progress::duration)
        .unwrap_or_else(|| "-".into())
}

/// The JOB column fits the longest id (at least 32 wide), so long ids keep the table aligned.
fn id_width<'a>(ids: impl Iterator<Item = &'a str>) -> usize {
    ids.map(|id| id.chars().count()).max().unwrap_or(0).max(32)
}

async fn run_http(a: &StatusArgs, base: &str) -> anyhow::Result<()> {
    let api = HttpApi::new(base, a.auth.get()?, a.tls.tls_ca.as_deref())?;
    let jobs = match &a.job_id {
        Some(id) => vec![api.get_json(&format!("/api/jobs/{id}")).await?],
        None => match api.get_json("/api/jobs").await? {
            Value::Array(v) => v,
            _ => Vec::new(),
        },
    };
    let workers = api.get_json("/api/workers").await?;
    let backends = api.get_json("/api/backends").await?;
    if a.json {
        let v = serde_json::json!({"jobs": jobs, "workers": workers, "backends": backends});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let w = id_width(
        jobs.iter()
            .map(|j| j["record"]["id"].as_str().unwrap_or("")),
    );
    println!(
        "{:<w$} {:<10} {:>7} {:>15} {:>9} {:>10} {:>8} {:>8} {:>9}",
        "JOB", "STATE", "DONE", "ROWS", "TASKS", "ROWS OUT", "ROWS/S", "TOK/S", "ETA"
    );
    for j in &jobs {
        let r = &j["record"];
        let st = &j["stats"];
        println!(
            "{:<w$} {:<10} {:>6.1}% {:>15} {:>9} {:>10} {:>8.1} {:>8.1} {:>9}",
            r["id"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            num(&j["progress"]) * 100.0,
            format!("{}/{}", int(&j["rows_done"]), int(&r["rows_total"])),
            format!("{}/{}", int(&j["tasks_done"]), int(&r["tasks_total"])),
            int(&st["rows_out"]),
            num(&j["rows_per_s"]),
            num(&j["tokens_per_s"]),
            eta(&j["eta_s"]),
        );
        println!(
            "  tokens: {} prompt, {} completion; failed rows: {}",
            st["prompt_tokens"], st["completion_tokens"], st["rows_failed"]
        );
        if let Some(m) = st["removed"].as_object() {
            for (reason, n) in m {
                println!("  removed by {reason}: {n}");
            }
        }
        if let Some(f) = j["failed_tasks"].as_array() {
            for t in f {
                println!("  failed task {}: {}", t[0], t[1].as_str().unwrap_or(""));
            }
        }
        if let Some(e) = r["error"].as_str().filter(|e| !e.is_empty()) {
            println!("  error: {e}");
        }
        if r["state"] == "planning" {
            let p = &r["planning"];
            let progress = pb::PlanningProgress {
                objects_total: int(&p["objects_total"]),
                objects_planned: int(&p["objects_planned"]),
                tasks_written: int(&p["tasks_written"]),
                rows_planned: int(&p["rows_planned"]),
            };
            println!("  {}", super::submit::planning_line(Some(&progress)));
        }
    }
    let now = synthforge_core::now_ms();
    println!();
    println!(
        "{:<24} {:<22} {:<40} {:>10} {:>8}",
        "WORKER", "ADDRESS", "CURRENT TASK", "HEARTBEAT", "ROWS/S"
    );
    for w in workers.as_array().into_iter().flatten() {
        let ago = now.saturating_sub(w["last_seen_ms"].as_u64().unwrap_or(0)) as f64 / 1000.0;
        let task = w["current_task"]
            .as_str()
            .filter(|t| !t.is_empty())
            .unwrap_or("idle");
        println!(
            "{:<24} {:<22} {:<40} {:>9.1}s {:>8.1}",
            w["id"].as_str().unwrap_or(""),
            w["address"].as_str().unwrap_or(""),
            task,
            ago,
            num(&w["rows_per_s"]),
        );
    }
    println!();
    println!(
        "{:<12} {:<40} {:>6} {:>9} {:>9} {:>8} {:>8}  ERRORS",
        "BACKEND", "ENDPOINT", "LIMIT", "IN FLIGHT", "OK", "P50 MS", "P95 MS"
    );
    for b in backends.as_array().into_iter().flatten() {
        let errs: Vec<String> = b["errors_by_code"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(c, n)| format!("{c}:{n}"))
            .collect();
        println!(
            "{:<12} {:<40} {:>6} {:>9} {:>9} {:>8.1} {:>8.1}  {}",
            b["backend"].as_str().unwrap_or(""),
            b["url"].as_str().unwrap_or(""),
            int(&b["limit"]),
            int(&b["in_flight"]),
            int(&b["requests_ok"]),
            num(&b["latency_p50_ms"]),
            num(&b["latency_p95_ms"]),
            if errs.is_empty() {
                "none".to_string()
            } else {
                errs.join(" ")
            },
        );
    }
    Ok(())
}

pub async fn cancel(a: CancelArgs) -> anyhow::Result<()> {
    let mut client = super::job_client_tls(&a.coordinator, &a.tls).await?;
    let r = client
        .cancel(super::authed(
            pb::CancelRequest {
                job_id: a.job_id.clone(),
            },
            &a.auth.get()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_column_fits_the_longest_id() {
        assert_eq!(id_width(["a", "b"].into_iter()), 32);
        let long = "quickstart-0123456789abcdef-1764590000000";
        assert_eq!(id_width(["a", long].into_iter()), long.len());
        assert_eq!(eta(&serde_json::json!(95.0)), "1m35s");
        assert_eq!(eta(&Value::Null), "-");
    }
}
