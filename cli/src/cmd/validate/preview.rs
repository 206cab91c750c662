//! The first prompts of every model stage, rendered by the stages themselves.
//!
//! The pipeline runs over the first seed rows against a stand-in for every backend: the mock
//! backend, in process on 127.0.0.1 with a port picked by the system, recording each request.
//! So what is printed is exactly what the run will send (templates, variations, system prompts,
//! `distill` instructions, `evolve` rewrites, judge and critic prompts), without contacting a
//! real backend or paying for a token. The stand-in's replies are placeholder text, so a later
//! stage's prompt (a judge of a generated answer) shows its shape, not real content. Whole-job
//! stages (`dedup`) do not run here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use synthforge_core::backend::Backend;
use synthforge_core::input::SeedRow;
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::{build_stage, seed_item, Item, Outcome, StageContext};
use synthforge_mock_backend::MockArgs;

use super::Findings;

/// How long one stage may take over the preview rows (the stand-in answers at once).
const STAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The recording stand-in for the job's backends.
struct StandIn {
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl StandIn {
    async fn start() -> anyhow::Result<StandIn> {
        let args = MockArgs {
            addr: "127.0.0.1:0".parse()?,
            models: vec!["*".into()],
            record: true,
            ..MockArgs::default()
        };
        let (addr, server) = synthforge_mock_backend::spawn(args).await?;
        Ok(StandIn {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            server,
        })
    }

    /// The requests received since the last call, in arrival order.
    async fn take_requests(&self) -> anyhow::Result<Vec<Value>> {
        let url = format!("{}/requests", self.base);
        let got: Vec<Value> = self.http.get(&url).send().await?.json().await?;
        self.http.delete(&url).send().await?;
        Ok(got)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A request body as the user reads it: the chat messages (role-labelled when there are
/// several) or the completion prompt.
fn render_request(body: &Value) -> String {
    if let Some(messages) = body["messages"].as_array() {
        let text = |m: &Value| m["content"].as_str().unwrap_or_default().to_string();
        if let [only] = messages.as_slice() {
            return text(only);
        }
        return messages
            .iter()
            .map(|m| format!("[{}]\n{}", m["role"].as_str().unwrap_or("?"), text(m)))
            .collect::<Vec<_>>()
            .join("\n");
    }
    body["prompt"].as_str().unwrap_or_default().to_string()
}

/// Runs the pipeline over `rows` against the stand-in and prints up to `show` prompts per
/// model stage. A stage that cannot be built is a problem (it would fail every task).
pub async fn show_prompts(spec: &JobSpec, rows: &[SeedRow], show: usize, findings: &mut Findings) {
    if rows.is_empty() {
        findings.warning("no readable seed row to render prompts with".into());
        return;
    }
    if let Err(e) = run(spec, rows, show, findings).await {
        findings.warning(format!("prompts not rendered: {e:#}"));
    }
}

async fn run(
    spec: &JobSpec,
    rows: &[SeedRow],
    show: usize,
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let stand_in = StandIn::start().await?;
    let mut backends = HashMap::new();
    for (name, b) in &spec.backends {
        let mut local = b.clone();
        local.url = Some(format!("{}/v1", stand_in.base));
        local.urls = Vec::new();
        local.credential = None;
        local.max_attempts = 1;
        local.requests_per_minute = None;
        local.tokens_per_minute = None;
        backends.insert(name.clone(), Arc::new(Backend::new(name, &local)?));
    }
    let ctx = StageContext {
        job_id: "validate".into(),
        job_name: spec.name.clone(),
        job_seed: spec.seed,
        task_id: 0,
        backends,
    };
    let mut items: Vec<Item> = rows.iter().map(|r| seed_item(&ctx, r.clone())).collect();
    // Whether rows now carry the stand-in's placeholder text: until then a failure comes from
    // the job and the seed alone (a template that cannot render, a missing field), so it is a
    // problem, not a note.
    let mut placeholder_upstream = false;
    for (i, stage_spec) in spec.pipeline.iter().enumerate() {
        let kind = stage_spec.kind();
        if stage_spec.config().last_only() {
            continue;
        }
        let stage = match build_stage(stage_spec, i, &ctx) {
            Ok(s) => s,
            Err(e) => {
                findings.problem(&format!("pipeline[{i}]"), format!("`{kind}`: {e}"));
                return Ok(());
            }
        };
        let mut next = Vec::new();
        let mut shown = 0;
        let mut asked_model = false;
        for item in items {
            let source = item.seed.source.clone();
            let outcomes = tokio::time::timeout(STAGE_TIMEOUT, stage.process(item))
                .await
                .map_err(|_| {
                    anyhow::anyhow!("pipeline[{i}] `{kind}` took over {STAGE_TIMEOUT:?}")
                })?;
            for body in stand_in.take_requests().await? {
                asked_model = true;
                if shown < show {
                    shown += 1;
                    println!(
                        "--- pipeline[{i}] {kind}: prompt for {source} ---\n{}",
                        render_request(&body)
                    );
                }
            }
            for outcome in outcomes {
                match outcome {
                    Outcome::Keep(it) => next.push(it),
                    Outcome::Removed { reason, .. } => {
                        println!("--- pipeline[{i}] {kind}: {source} removed ({reason}) ---");
                    }
                    Outcome::Failed(f) if !placeholder_upstream => {
                        findings
                            .problem(&format!("pipeline[{i}]"), format!("`{kind}`: {}", f.error));
                    }
                    Outcome::Failed(f) => {
                        println!(
                            "--- pipeline[{i}] {kind}: {source} fails here (with the stand-in's \
                             placeholder replies): {} ---",
                            f.error
                        );
                    }
                }
            }
        }
        placeholder_upstream |= asked_model;
        items = next;
        if items.is_empty() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_render_as_the_user_reads_them() {
        let one = serde_json::json!({"messages": [{"role": "user", "content": "Hi"}]});
        assert_eq!(render_request(&one), "Hi");
        let two = serde_json::json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"}
        ]});
        assert_eq!(render_request(&two), "[system]\nBe brief.\n[user]\nHi");
        let completion = serde_json::json!({"prompt": "Once"});
        assert_eq!(render_request(&completion), "Once");
    }
}
