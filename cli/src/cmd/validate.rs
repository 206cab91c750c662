//! `synthforge validate`: check a job file against its input and show the first prompts, so a
//! user sees exactly what will be sent before paying for a single token.

use std::path::PathBuf;

use anyhow::Context;
use synthforge_core::input::{preview_slice, read_task_rows, SeedItem};
use synthforge_core::spec::{InputFormat, JobSpec, StageSpec};
use synthforge_core::stages::variations;
use synthforge_core::storage;
use synthforge_core::template::PromptTemplate;

/// Refuses an output prefix holding another job's dataset (as `run` and `submit` will).
async fn check_output(file: &str, spec: &JobSpec) -> anyhow::Result<()> {
    let job_id = synthforge_coordinator::control::scheduler::job_id_for(spec);
    let root = storage::open(&super::absolutize(&spec.output.path))
        .with_context(|| format!("{file}: field `output.path`"))?;
    synthforge_core::output_guard::check_output_free(&root, &job_id)
        .await
        .with_context(|| format!("{file}: field `output.path`"))
}

#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The job file (YAML).
    pub job: PathBuf,
    /// How many rendered prompts to print.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// Do not refuse an output that already holds another job's dataset or a user's README.md.
    #[arg(long)]
    pub overwrite: bool,
}

pub async fn run(a: ValidateArgs) -> anyhow::Result<()> {
    let file = a.job.display().to_string();
    let text = super::read_job_file(&a.job)?;
    let spec = JobSpec::from_yaml(&text, &file)?;
    if !a.overwrite {
        check_output(&file, &spec).await?;
    }
    if spec.input.format == InputFormat::Taxonomy {
        return validate_taxonomy(&file, &spec, a.show.max(1)).await;
    }
    let objects = storage::list_objects(&spec.input.path)
        .await
        .with_context(|| format!("{file}: field `input.path`"))?;
    let (first, meta) = &objects[0];
    let show = a.show.max(1) as u64;
    let Some(slice) = preview_slice(spec.input.format, &first.url, meta.size, show) else {
        anyhow::bail!("{file}: `validate` does not preview taxonomy input yet")
    };
    let rows = read_task_rows(&spec.input, &slice).await?;
    // The configured columns must exist in the input (checked on the first readable row).
    if let Some(SeedItem::Row(row)) = rows.iter().find(|r| matches!(r, SeedItem::Row(_))) {
        let mut cols: Vec<&str> = row.columns.keys().map(|c| c.as_str()).collect();
        cols.sort();
        let mut wanted = vec![("input.text_column", spec.input.text_column.as_str())];
        if let Some(id) = &spec.input.id_column {
            wanted.push(("input.id_column", id.as_str()));
        }
        for (field, col) in wanted {
            if spec.input.format != InputFormat::Text && !row.columns.contains_key(col) {
                anyhow::bail!(
                    "{file}: field `{field}`: column `{col}` is not in {} ({}; columns: {})",
                    first.url,
                    row.source,
                    cols.join(", ")
                );
            }
        }
    }
    // Every column a stage reads must exist when it runs (seed columns as read here).
    let seed_columns: std::collections::BTreeSet<String> = rows
        .iter()
        .filter_map(|r| match r {
            SeedItem::Row(row) => Some(row.columns.keys().cloned()),
            SeedItem::Bad(_) => None,
        })
        .flatten()
        .collect();
    if !seed_columns.is_empty() {
        spec.check_columns(Some(&seed_columns), &file)?;
    }
    println!(
        "{file}: valid; input {} object(s), first {}",
        objects.len(),
        first.url
    );
    for (i, stage) in spec.pipeline.iter().enumerate() {
        let Some(src) = stage.config().template() else {
            continue;
        };
        let t = PromptTemplate::new(src)?;
        let vars = match stage {
            StageSpec::Generate(g) => g.variations.clone(),
            _ => variations::Variations::new(),
        };
        for item in &rows {
            let row = match item {
                SeedItem::Row(r) => r,
                SeedItem::Bad(b) => {
                    println!("warning: {}", b.error);
                    continue;
                }
            };
            let mut ctx = row.columns.clone();
            let chosen = variations::choose(&vars, spec.seed, row.index, 0);
            ctx.insert("variation".into(), serde_json::to_value(&chosen)?);
            for (k, v) in &chosen {
                ctx.entry(k.clone())
                    .or_insert(serde_json::Value::String(v.clone()));
            }
            if i == 0 {
                let missing: Vec<String> = t
                    .variables()
                    .into_iter()
                    .filter(|v| !ctx.contains_key(v))
                    .collect();
                if !missing.is_empty() {
                    let mut cols: Vec<&String> = row.columns.keys().collect();
                    cols.sort();
                    anyhow::bail!(
                        "{file}: field `pipeline[{i}].template` uses column(s) {} not present in {} ({}; columns: {})",
                        missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                        first.url,
                        row.source,
                        cols.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
                    );
                }
                let prompt = t.render(&serde_json::Value::Object(ctx)).map_err(|e| {
                    anyhow::anyhow!(
                        "{file}: field `pipeline[{i}].template`: {}: {e}",
                        row.source
                    )
                })?;
                println!(
                    "--- prompt for {} (seed id {}) ---\n{prompt}",
                    row.source, row.id
                );
            }
        }
    }
    Ok(())
}

/// Taxonomy input: parse the `qna.yaml` files of the first task and show the grounded prompts.
async fn validate_taxonomy(file: &str, spec: &JobSpec, show: usize) -> anyhow::Result<()> {
    use synthforge_core::input::taxonomy::{plan_tasks, read_rows, TaxonomyEntry};
    use synthforge_core::stages::taxonomy_qa::preview_prompts;
    let (tasks, leaves) = plan_tasks(&spec.input)
        .await
        .with_context(|| format!("{file}: field `input.path`"))?;
    let Some(first) = tasks.first() else {
        anyhow::bail!(
            "{file}: field `input.path`: no qna.yaml files under {}",
            spec.input.path
        );
    };
    println!("{file}: valid; taxonomy with {leaves} qna.yaml file(s)");
    let mut shown = 0;
    for item in read_rows(first).await? {
        let row = match item {
            SeedItem::Row(r) => r,
            SeedItem::Bad(b) => anyhow::bail!("{}", b.error),
        };
        let entry = TaxonomyEntry::from_columns(&row.columns)
            .map_err(|e| anyhow::anyhow!("{}: {e}", row.source))?;
        let stages = spec.pipeline.iter().filter_map(|s| match s {
            StageSpec::TaxonomyQa(t) => Some(t),
            _ => None,
        });
        for stage in stages {
            for prompt in preview_prompts(stage, &entry) {
                if shown >= show {
                    return Ok(());
                }
                shown += 1;
                println!("--- prompt for {} ---\n{prompt}", row.source);
            }
        }
    }
    Ok(())
}
