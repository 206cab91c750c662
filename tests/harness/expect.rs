//! Content checks for jobs built with [`crate::JobSpec`]'s defaults over seeds from
//! [`crate::seeds`]: beyond counting rows, each record must carry the prompt rendered from *its*
//! seed row, so rows cannot be silently swapped, truncated or re-encoded.

use crate::job::JobSpec;
use crate::output::Output;
use crate::seeds::seed_text;

/// Asserts every output row is a `generate` record of the default template over the seed row
/// named by its `seed_id`, with a non-empty completion and the manifest's job id.
#[track_caller]
pub fn assert_default_generate_rows(output: &Output) {
    let mut problems = Vec::new();
    for row in &output.rows {
        let Some(index) = row
            .seed_id
            .strip_prefix("seed-")
            .and_then(|i| i.parse::<usize>().ok())
        else {
            problems.push(format!("{}: unexpected seed_id {:?}", row.id, row.seed_id));
            continue;
        };
        let expected = JobSpec::expected_prompt(&seed_text(index));
        if row.prompt.as_deref() != Some(expected.as_str()) {
            problems.push(format!(
                "{}: prompt {:?}, expected {expected:?}",
                row.seed_id, row.prompt
            ));
        }
        if row.completion.as_deref().is_none_or(str::is_empty) {
            problems.push(format!("{}: empty completion", row.seed_id));
        }
        if row.stage.as_deref() != Some("generate") {
            problems.push(format!("{}: stage {:?}", row.seed_id, row.stage));
        }
        if row.job_id.as_deref() != Some(output.manifest.job_id.as_str()) {
            problems.push(format!(
                "{}: job_id {:?}, manifest has {:?}",
                row.seed_id, row.job_id, output.manifest.job_id
            ));
        }
        if problems.len() >= 10 {
            problems.push("...".into());
            break;
        }
    }
    assert!(
        problems.is_empty(),
        "output rows do not match their seed rows:\n  {}",
        problems.join("\n  ")
    );
}
