//! `synthforge validate`: check a job file against its input and show the first prompts, so a
//! user sees exactly what will be sent before paying for a single token.
//!
//! Everything that can be checked is checked and every problem is reported at once: the input
//! files (`inputs`), the columns the stages name against the input's schema, the prompts of every
//! model stage (`preview`), and with `--check-backends` the models each backend serves
//! (`backends`). The last line is the verdict, and the exit code agrees with it: `valid` (0) or
//! the number of problems (1); warnings do not fail.

mod backends;
mod inputs;
mod preview;

use std::path::PathBuf;

use anyhow::Context;
use synthforge_core::spec::{InputFormat, JobSpec};
use synthforge_core::storage;

use super::credential_args::CredentialArgs;

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
    /// How many rendered prompts to print per model stage.
    #[arg(long, default_value_t = 3)]
    pub show: usize,
    /// Do not refuse an output that already holds another job's dataset or a user's README.md.
    #[arg(long)]
    pub overwrite: bool,
    /// Ask every backend endpoint for its models (GET /v1/models), list them, and warn when
    /// the job's model is not served; an unreachable endpoint is a problem.
    #[arg(long)]
    pub check_backends: bool,
    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// What validation found: problems (the job would not run as written) and warnings.
#[derive(Default)]
pub struct Findings {
    file: String,
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Findings {
    /// A problem with the job file's `field`.
    fn problem(&mut self, field: &str, message: String) {
        self.problems
            .push(format!("{}: field `{field}`: {message}", self.file));
    }

    /// A problem already naming the file and field.
    fn problem_said(&mut self, message: String) {
        self.problems.push(message);
    }

    fn warning(&mut self, message: String) {
        self.warnings.push(message);
    }
}

pub async fn run(a: ValidateArgs) -> anyhow::Result<()> {
    let file = a.job.display().to_string();
    let text = super::read_job_file(&a.job)?;
    // A job file that does not parse cannot be checked further.
    let spec = JobSpec::from_yaml(&text, &file)?;
    let mut findings = Findings {
        file: file.clone(),
        ..Findings::default()
    };
    if !a.overwrite {
        if let Err(e) = check_output(&file, &spec).await {
            findings.problem_said(format!("{e:#}"));
        }
    }
    let show = a.show.max(1);
    let input = inputs::check(&spec.input, show, &mut findings).await;
    if let Some(columns) = &input.seed_columns {
        if !matches!(spec.input.format, InputFormat::Text | InputFormat::Taxonomy)
            && !columns.contains(&spec.input.text_column)
        {
            findings.problem(
                "input.text_column",
                format!(
                    "no column `{}` in the input; {} (columns: {})",
                    spec.input.text_column,
                    synthforge_core::suggest::hint(
                        &spec.input.text_column,
                        &columns.iter().collect::<Vec<_>>()
                    ),
                    columns.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        for e in spec.column_problems(Some(columns), &file) {
            findings.problem_said(e.to_string());
        }
    }
    if findings.problems.is_empty() {
        preview::show_prompts(&spec, &input.rows, show, &mut findings).await;
    }
    if a.check_backends {
        let credentials = a.credentials.load(None)?;
        backends::check(&spec, &credentials, &mut findings).await;
    }
    for w in &findings.warnings {
        eprintln!("warning: {w}");
    }
    for p in &findings.problems {
        eprintln!("error: {p}");
    }
    match findings.problems.len() {
        0 => {
            println!("{file}: valid; {}", input.summary);
            Ok(())
        }
        n => anyhow::bail!(
            "{file}: not valid: {n} problem{} (listed above); {}",
            if n == 1 { "" } else { "s" },
            input.summary
        ),
    }
}
