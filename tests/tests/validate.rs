//! `synthforge validate`: renders the first prompts of a good job, and rejects bad jobs before
//! anything runs with a message naming what is wrong.

use std::path::Path;

use synthforge_tests::*;

/// Nothing listens here: validate must not call the backend.
const UNUSED_BACKEND: &str = "http://127.0.0.1:9/v1";

fn seeded_job(dir: &Path) -> JobSpec {
    let seeds = dir.join("seeds.parquet");
    write_parquet_seed(&seeds, 10, 5);
    JobSpec::new(&seeds, SeedFormat::Parquet, UNUSED_BACKEND, dir.join("out"))
}

fn validate(dir: &Path, job: &JobSpec) -> Finished {
    let job_file = job.write_to(dir);
    synthforge(["validate"])
        .arg(job_file)
        .run_to_end(QUICK_TIMEOUT)
}

#[test]
fn validate_renders_first_prompts() {
    let dir = tempfile::tempdir().unwrap();
    let job = seeded_job(dir.path());
    let done = validate(dir.path(), &job);
    done.assert_success();
    let first = JobSpec::expected_prompt(&seed_text(0));
    assert!(
        done.stdout.contains(&first),
        "expected the first rendered prompt {first:?}\n{}",
        done.describe()
    );
    assert!(
        !dir.path().join("out").join("_manifest.json").exists(),
        "validate must not run the job"
    );
}

#[test]
fn validate_rejects_template_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = seeded_job(dir.path());
    job.template = "Write a short lesson about: {{ text ".into();
    let done = validate(dir.path(), &job);
    done.assert_failure();
    assert!(
        done.combined().contains("pipeline[0].template"),
        "the error must name the field pipeline[0].template\n{}",
        done.describe()
    );
}

#[test]
fn validate_rejects_template_referencing_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = seeded_job(dir.path());
    job.template = "Write a short lesson about {{ topic }} for {{ text }}".into();
    let done = validate(dir.path(), &job);
    done.assert_failure();
    assert!(
        done.combined().contains("topic"),
        "the error must name the missing column `topic`\n{}",
        done.describe()
    );
}

#[test]
fn validate_rejects_missing_text_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut job = seeded_job(dir.path());
    job.text_column = "body".into();
    let done = validate(dir.path(), &job);
    done.assert_failure();
    assert!(
        done.combined().contains("body"),
        "the error must name the missing column `body`\n{}",
        done.describe()
    );
}

/// `job` with `stages` (YAML list entries) appended to its pipeline, validated.
fn validate_with_stages(dir: &Path, job: &JobSpec, stages: &str) -> Finished {
    let yaml = job
        .to_yaml()
        .replace("backends:\n", &format!("{stages}backends:\n"));
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, yaml).unwrap();
    synthforge(["validate"])
        .arg(job_file)
        .run_to_end(QUICK_TIMEOUT)
}

#[test]
fn validate_names_a_misspelt_stage_column() {
    let dir = tempfile::tempdir().unwrap();
    let job = seeded_job(dir.path());
    for (stages, field) in [
        (
            "  - stage: pii\n    columns: [txt]\n",
            "pipeline[1].columns",
        ),
        (
            "  - stage: decontaminate\n    benchmark: b.jsonl\n    fields: [completion, txt]\n",
            "pipeline[1].fields",
        ),
        (
            "  - stage: dedup\n    columns: [txt]\n",
            "pipeline[1].columns",
        ),
    ] {
        let done = validate_with_stages(dir.path(), &job, stages);
        done.assert_failure();
        let text = done.combined();
        assert!(
            text.contains(field) && text.contains("`txt`"),
            "the error must name {field} and the column `txt`\n{}",
            done.describe()
        );
    }
    let good =
        "  - stage: pii\n    columns: [text]\n  - stage: dedup\n    columns: [completion, text]\n";
    validate_with_stages(dir.path(), &job, good).assert_success();
}
