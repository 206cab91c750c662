//! The dataset card: `README.md` in the output root.
//!
//! Its YAML front matter carries the Hugging Face `configs:` block, so
//! `datasets.load_dataset(<output>)` finds the data files without extra arguments; the body
//! accounts for every seed row (generated, removed per reason, failed), tokens per model, PII
//! redactions per type, the output columns and the job spec. The spec holds no secrets (only
//! names of environment variables and files); URL credentials are masked anyway.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use synthforge_core::input::ObjectReader;
use synthforge_core::manifest::Manifest;
use synthforge_core::spec::JobSpec;
use synthforge_core::storage::{Location, StorageError};

use crate::model::{JobRecord, TaskStats};

pub const CARD_NAME: &str = "README.md";

/// What a removal reason means, for the card (unknown reasons are shown as they are).
fn reason_label(reason: &str) -> String {
    match reason {
        "dedup_exact" => "exact duplicate (normalized text hash)".into(),
        "dedup_near" => "near duplicate (MinHash LSH)".into(),
        "judge" => "judge score below threshold".into(),
        r if r.starts_with("decontam") => "benchmark contamination (shared n-gram)".into(),
        r if r.starts_with("filter") => format!("filter `{}`", r.trim_start_matches("filter:")),
        r => r.to_string(),
    }
}

/// The spec as YAML with any `user:password@` in backend URLs masked.
fn public_spec(spec: &JobSpec) -> String {
    let mut s = spec.clone();
    let mask = |u: &mut String| {
        if let Ok(mut parsed) = url::Url::parse(u) {
            if parsed.password().is_some() || !parsed.username().is_empty() {
                let _ = parsed.set_username("***");
                let _ = parsed.set_password(None);
                *u = parsed.to_string();
            }
        }
    };
    for b in s.backends.values_mut() {
        if let Some(u) = b.url.as_mut() {
            mask(u);
        }
        b.urls.iter_mut().for_each(mask);
    }
    synthforge_core::redact::mask_text(&s.to_yaml())
}

/// Column names and Arrow types of the dataset (from the first data file's footer).
pub async fn output_columns(root: &Location, manifest: &Manifest) -> Vec<(String, String)> {
    let Some(f) = manifest.files.iter().find(|f| f.kind == "data") else {
        return Vec::new();
    };
    let loc = root.child(&f.path);
    let reader = ObjectReader::new(loc.store.clone(), loc.path.clone());
    match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(b) => b
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect(),
        Err(e) => {
            tracing::warn!(file = %f.path, error = %e, "dataset card: cannot read the schema");
            Vec::new()
        }
    }
}

fn table(out: &mut String, head: &str, rows: &BTreeMap<String, u64>, empty: &str) {
    if rows.is_empty() {
        let _ = writeln!(out, "{empty}\n");
        return;
    }
    let _ = writeln!(out, "{head}");
    for (k, v) in rows {
        let _ = writeln!(out, "| `{k}` | {v} |");
    }
    out.push('\n');
}

/// The accounting identity per seed row with its terms (removed and failed rows by reason),
/// and a warning when it does not balance.
fn identity(o: &mut String, manifest: &Manifest) {
    let a = &manifest.accounting;
    let _ = writeln!(
        o,
        "Identity, per seed row: seed rows = output + removed + failed + rows of failed tasks: {} = {} + {} + {} + {}.",
        a.seed_rows, a.output_rows, a.removed_rows, a.failed_rows, a.failed_task_rows
    );
    let by = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("`{k}` {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !a.removed_by_reason.is_empty() {
        let _ = writeln!(
            o,
            "Removed seed rows by reason: {}.",
            by(&a.removed_by_reason)
        );
    }
    if !a.failed_by_stage.is_empty() {
        let _ = writeln!(o, "Failed seed rows by stage: {}.", by(&a.failed_by_stage));
    }
    if a.balances() {
        o.push_str("Every seed row is accounted for.\n\n");
    } else {
        let _ = writeln!(
            o,
            "\n> **Warning: the identity does not balance (difference {}).** {}\n",
            a.difference,
            if a.difference > 0 {
                "Seed rows are missing from the output without a recorded reason."
            } else {
                "More seed rows are accounted for than were planned: some were counted twice."
            }
        );
    }
}

/// The rows missing from the dataset and why: failed tasks and the top failure reasons.
fn failed_tasks(o: &mut String, manifest: &Manifest) {
    if !manifest.failed_tasks.is_empty() {
        o.push_str("### Failed tasks (their seed rows are missing)\n\n| task | input | rows | error |\n|---|---|---|---|\n");
        for t in &manifest.failed_tasks {
            let _ = writeln!(
                o,
                "| {} | `{}` | {} rows from row {} | {} |",
                t.task_id,
                t.object,
                t.rows,
                t.first_row,
                cell(&t.error)
            );
        }
        o.push('\n');
    }
    if !manifest.failure_reasons.is_empty() {
        o.push_str("### Failures by reason\n\n| reason | rows |\n|---|---|\n");
        let mut reasons: Vec<_> = manifest.failure_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, rows) in reasons {
            let _ = writeln!(o, "| {} | {rows} |", cell(reason));
        }
        o.push('\n');
    }
}

/// Text for a table cell: one line, pipes escaped.
fn cell(s: &str) -> String {
    s.lines().next().unwrap_or_default().replace('|', "\\|")
}

/// Renders the card. `stats` is the sum of all task stats; `manifest` is final (after dedup).
pub fn render(
    job: &JobRecord,
    spec: &JobSpec,
    manifest: &Manifest,
    stats: &TaskStats,
    columns: &[(String, String)],
) -> String {
    let mut o = String::new();
    o.push_str("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.parquet\ntags:\n- synthetic\n- synthforge\n---\n\n");
    let _ = writeln!(o, "# {}\n", spec.name);
    let _ = writeln!(
        o,
        "Synthetic data generated by synthforge, job `{}`. Stages: {}.\n",
        job.id,
        spec.pipeline
            .iter()
            .map(|s| format!("`{}`", s.kind()))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    let removed_total: u64 = manifest.removed.values().sum();
    let worker_removed: u64 = stats.removed.values().sum();
    // Everything the stages produced: what workers kept plus what they removed in-task.
    let generated = stats.rows_out + worker_removed;
    o.push_str("## Accounting\n\n| | rows |\n|---|---|\n");
    let _ = writeln!(o, "| seed rows | {} |", manifest.seed_rows);
    let _ = writeln!(o, "| rows generated | {generated} |");
    let _ = writeln!(o, "| rows removed | {removed_total} |");
    let _ = writeln!(o, "| rows in the dataset | {} |", manifest.rows);
    let _ = writeln!(o, "| failures | {} |", manifest.failures);
    let _ = writeln!(
        o,
        "| rows of failed tasks | {} |\n",
        manifest.accounting.failed_task_rows
    );
    identity(&mut o, manifest);
    failed_tasks(&mut o, manifest);
    o.push_str("### Rows removed by reason\n\n");
    if manifest.removed.is_empty() {
        o.push_str("No rows were removed.\n\n");
    } else {
        o.push_str("| reason | meaning | rows |\n|---|---|---|\n");
        for (k, v) in &manifest.removed {
            let _ = writeln!(o, "| `{k}` | {} | {v} |", reason_label(k));
        }
        o.push('\n');
    }
    o.push_str("## Tokens\n\n");
    let mut models: Vec<&String> = stats
        .prompt_tokens_by_model
        .keys()
        .chain(stats.completion_tokens_by_model.keys())
        .collect();
    models.sort();
    models.dedup();
    if models.is_empty() {
        let _ = writeln!(
            o,
            "Prompt tokens: {}, completion tokens: {}.\n",
            manifest.prompt_tokens, manifest.completion_tokens
        );
    } else {
        o.push_str("| model | tokens in (prompt) | tokens out (completion) |\n|---|---|---|\n");
        for m in models {
            let _ = writeln!(
                o,
                "| `{m}` | {} | {} |",
                stats.prompt_tokens_by_model.get(m).copied().unwrap_or(0),
                stats
                    .completion_tokens_by_model
                    .get(m)
                    .copied()
                    .unwrap_or(0)
            );
        }
        let _ = writeln!(
            o,
            "| **total** | {} | {} |\n",
            manifest.prompt_tokens, manifest.completion_tokens
        );
    }
    o.push_str("## PII redactions\n\n");
    table(
        &mut o,
        "| type | redactions |\n|---|---|",
        &stats.pii_redactions,
        "No PII redactions.",
    );
    o.push_str("## Columns\n\n");
    if columns.is_empty() {
        o.push_str("The dataset has no data files.\n\n");
    } else {
        o.push_str("| column | type |\n|---|---|\n");
        for (n, t) in columns {
            let _ = writeln!(o, "| `{n}` | {t} |");
        }
        o.push('\n');
    }
    o.push_str("## Files\n\n");
    let _ = writeln!(
        o,
        "`_manifest.json` lists the {} files of this dataset (data and failures); failed seed rows are in `failures/` with their reason.\n",
        manifest.files.len()
    );
    o.push_str("## Job spec\n\n```yaml\n");
    o.push_str(&public_spec(spec));
    o.push_str("```\n");
    o
}

/// Renders and writes `README.md` into the output root.
pub async fn write(
    root: &Location,
    job: &JobRecord,
    spec: &JobSpec,
    manifest: &Manifest,
    stats: &TaskStats,
) -> Result<(), StorageError> {
    let columns = output_columns(root, manifest).await;
    let body = render(job, spec, manifest, stats, &columns);
    let loc = root.child(CARD_NAME);
    loc.store
        .put(&loc.path, PutPayload::from(body.into_bytes()))
        .await
        .map_err(|e| loc.store_error(e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobState;

    #[test]
    fn card_has_configs_counts_and_masks_url_credentials() {
        let spec = JobSpec::from_yaml(
            r#"
name: card
input: {path: /tmp/x.jsonl, format: jsonl}
pipeline:
  - {stage: generate, backend: m, template: "{{ text }}"}
  - {stage: dedup}
backends:
  m: {url: "http://user:hunter2@127.0.0.1:1/v1", model: x, credential: my_key}
output: {path: /tmp/out}
"#,
            "t",
        )
        .unwrap();
        let job = JobRecord {
            id: "card-1".into(),
            name: "card".into(),
            spec_yaml: String::new(),
            state: JobState::Finalizing,
            output: "/tmp/out".into(),
            tasks_total: 1,
            rows_total: 10,
            created_ms: 0,
            finished_ms: 0,
            error: String::new(),
            input_fingerprint: Default::default(),
            finalize_removed: Default::default(),
            planning: None,
        };
        let mut stats = TaskStats {
            rows_out: 9,
            ..Default::default()
        };
        stats.removed.insert("judge".into(), 2);
        stats.prompt_tokens_by_model.insert("x".into(), 100);
        stats.completion_tokens_by_model.insert("x".into(), 50);
        stats.pii_redactions.insert("email".into(), 3);
        let mut m = Manifest::new("card-1", "card", vec![]);
        m.seed_rows = 10;
        m.rows = 7;
        m.failures = 1;
        m.removed = stats.removed.clone();
        m.removed.insert("dedup_exact".into(), 2);
        let card = render(&job, &spec, &m, &stats, &[("id".into(), "Utf8".into())]);
        assert!(card.starts_with("---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/*.parquet\n"));
        assert!(card.contains("| seed rows | 10 |"), "{card}");
        assert!(card.contains("| rows generated | 11 |"), "{card}");
        assert!(card.contains("| rows in the dataset | 7 |"), "{card}");
        assert!(card.contains("| `dedup_exact` | exact duplicate"), "{card}");
        assert!(card.contains("| `x` | 100 | 50 |"), "{card}");
        assert!(card.contains("| `email` | 3 |"), "{card}");
        assert!(
            card.contains("credential: my_key") && !card.contains("hunter2"),
            "{card}"
        );
    }

    #[test]
    fn card_names_failed_tasks_and_flags_an_unbalanced_identity() {
        let spec = JobSpec::from_yaml(
            "name: f\ninput: {path: /tmp/x.jsonl, format: jsonl}\npipeline:\n  - {stage: generate, backend: m, template: \"{{ text }}\"}\nbackends:\n  m: {url: \"http://127.0.0.1:1/v1\", model: x}\noutput: {path: /tmp/out}\n",
            "t",
        )
        .unwrap();
        let job = JobRecord {
            id: "f-1".into(),
            name: "f".into(),
            spec_yaml: String::new(),
            state: JobState::Finalizing,
            output: "/tmp/out".into(),
            tasks_total: 2,
            rows_total: 10,
            created_ms: 0,
            finished_ms: 0,
            error: String::new(),
            input_fingerprint: Default::default(),
            finalize_removed: Default::default(),
            planning: None,
        };
        let mut m = Manifest::new("f-1", "f", vec![]);
        m.seed_rows = 10;
        m.rows = 4;
        m.failures = 1;
        m.failed_tasks = vec![synthforge_core::manifest::FailedTask {
            task_id: 1,
            object: "/tmp/x.jsonl".into(),
            first_row: 5,
            rows: 5,
            error: "backend down | 500".into(),
        }];
        m.failure_reasons
            .insert("task failed: backend down".into(), 5);
        m.failure_reasons
            .insert("generate: empty choices".into(), 1);
        m.accounting = synthforge_core::manifest::Accounting::new(10, 4, 0, 1, 5);
        m.accounting.failed_by_stage.insert("generate".into(), 1);
        let card = render(&job, &spec, &m, &TaskStats::default(), &[]);
        assert!(card.contains("| rows of failed tasks | 5 |"), "{card}");
        assert!(card.contains("10 = 4 + 0 + 1 + 5"), "{card}");
        assert!(
            card.contains("Failed seed rows by stage: `generate` 1."),
            "{card}"
        );
        assert!(card.contains("Every seed row is accounted for."), "{card}");
        assert!(
            card.contains("| 1 | `/tmp/x.jsonl` | 5 rows from row 5 | backend down \\| 500 |"),
            "{card}"
        );
        assert!(card.contains("| task failed: backend down | 5 |"), "{card}");
        m.accounting = synthforge_core::manifest::Accounting::new(10, 3, 0, 1, 5);
        let card = render(&job, &spec, &m, &TaskStats::default(), &[]);
        assert!(
            card.contains("does not balance (difference 1)") && card.contains("missing"),
            "{card}"
        );
        m.accounting = synthforge_core::manifest::Accounting::new(10, 5, 0, 1, 5);
        let card = render(&job, &spec, &m, &TaskStats::default(), &[]);
        assert!(
            card.contains("difference -1") && card.contains("counted twice"),
            "{card}"
        );
    }
}
