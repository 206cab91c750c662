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

/// The six places a column is named, each misspelt as `txt` (the seed column is `text`).
const MISSPELT: [(&str, &str); 6] = [
    (
        "  - stage: dedup\n    columns: [txt]\n",
        "pipeline[1].columns",
    ),
    (
        "  - stage: decontaminate\n    benchmark: b.jsonl\n    fields: [completion, txt]\n",
        "pipeline[1].fields",
    ),
    (
        "  - stage: pii\n    columns: [txt]\n",
        "pipeline[1].columns",
    ),
    (
        "  - stage: filter\n    json: true\n    field: txt\n",
        "pipeline[1].field",
    ),
    (
        "  - stage: judge\n    backend: mock\n    template: '{{ completion }} {{ txt }}'\n",
        "pipeline[1].template",
    ),
    (
        "  - stage: revise\n    backend: mock\n    template: 'Improve {{ txt }}'\n",
        "pipeline[1].template",
    ),
];

#[test]
fn validate_names_a_misspelt_stage_column_and_suggests_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let job = seeded_job(dir.path());
    for (stages, field) in MISSPELT {
        let done = validate_with_stages(dir.path(), &job, stages);
        done.assert_failure();
        let text = done.combined();
        assert!(
            text.contains(field) && text.contains("`txt`") && text.contains("did you mean `text`?"),
            "the error must name {field}, the column `txt` and suggest `text`\n{}",
            done.describe()
        );
        assert!(
            !done.stdout.contains(": valid;"),
            "a refused job is never called valid\n{}",
            done.describe()
        );
    }
    // The generating stage's own template, misspelt.
    let mut bad = seeded_job(dir.path());
    bad.template = "Write about {{ txt }}".into();
    let done = validate(dir.path(), &bad);
    done.assert_failure();
    assert!(
        done.combined().contains("pipeline[0].template")
            && done.combined().contains("did you mean `text`?"),
        "{}",
        done.describe()
    );
    let good =
        "  - stage: pii\n    columns: [text]\n  - stage: dedup\n    columns: [completion, text]\n";
    validate_with_stages(dir.path(), &job, good).assert_success();
}

#[test]
fn submit_refuses_a_misspelt_column_against_the_input_schema() {
    // `run` submits to its in-process coordinator, which checks the stages' columns against
    // the JSONL keys of a sample (here `id`, `text`) before planning any task.
    for format in [SeedFormat::Jsonl, SeedFormat::Parquet] {
        let dir = tempfile::tempdir().unwrap();
        let seeds = match format {
            SeedFormat::Jsonl => {
                let p = dir.path().join("seeds.jsonl");
                write_jsonl_seed(&p, 20);
                p
            }
            _ => {
                let p = dir.path().join("seeds.parquet");
                write_parquet_seed(&p, 20, 10);
                p
            }
        };
        let job = JobSpec::new(&seeds, format, UNUSED_BACKEND, dir.path().join("out"));
        let yaml = job.to_yaml().replace(
            "backends:\n",
            "  - stage: dedup\n    columns: [txt]\nbackends:\n",
        );
        let job_file = dir.path().join("job.yaml");
        std::fs::write(&job_file, yaml).unwrap();
        let done = synthforge(["run"])
            .arg(&job_file)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--no-progress")
            .run_to_end(RUN_TIMEOUT);
        done.assert_failure();
        let text = done.combined();
        assert!(
            text.contains("pipeline[1].columns") && text.contains("did you mean `text`?"),
            "{}",
            done.describe()
        );
        assert!(
            !dir.path().join("out").join("_manifest.json").exists(),
            "a refused job writes no dataset"
        );
    }
}

/// `job` with its pipeline replaced by `pipeline` (YAML list entries).
fn with_pipeline(job: &JobSpec, pipeline: &str) -> String {
    let yaml = job.to_yaml();
    let start = yaml.find("pipeline:\n").unwrap() + "pipeline:\n".len();
    let end = yaml.find("backends:\n").unwrap();
    format!("{}{pipeline}{}", &yaml[..start], &yaml[end..])
}

fn validate_yaml(dir: &Path, yaml: &str, extra: &[&str]) -> Finished {
    let job_file = dir.join("job.yaml");
    std::fs::write(&job_file, yaml).unwrap();
    synthforge(["validate"])
        .arg(job_file)
        .args(extra)
        .run_to_end(QUICK_TIMEOUT)
}

#[test]
fn validate_renders_the_prompts_of_every_model_stage() {
    let dir = tempfile::tempdir().unwrap();
    let job = seeded_job(dir.path());
    let first = seed_text(0);
    for (pipeline, heading, marker) in [
        (
            "  - stage: distill\n    backend: mock\n    instruction_column: text\n    system_prompt: Be brief.\n",
            "pipeline[0] distill: prompt for",
            "[system]\nBe brief.",
        ),
        (
            "  - stage: evolve\n    backend: mock\n    instruction_column: text\n    rounds: 1\n",
            "pipeline[0] evolve: prompt for",
            "Prompt#",
        ),
        (
            "  - stage: generate\n    backend: mock\n    template: 'Teach {{ text }}'\n  - stage: judge\n    backend: mock\n",
            "pipeline[1] judge: prompt for",
            "Teach ",
        ),
    ] {
        let done = validate_yaml(dir.path(), &with_pipeline(&job, pipeline), &[]);
        done.assert_success();
        assert!(
            done.stdout.contains(heading) && done.stdout.contains(&first) && done.stdout.contains(marker),
            "expected {heading:?} with the first seed text and {marker:?}\n{}",
            done.describe()
        );
        let last = done.stdout.trim_end().lines().last().unwrap_or_default();
        assert!(last.contains(": valid;"), "the last line is the verdict\n{}", done.describe());
    }
}

#[test]
fn validate_reports_every_input_problem_at_once_and_ends_with_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    write_jsonl_seed(&input.join("a.jsonl"), 5);
    // A bad line in the second file, on line 3 of 4.
    std::fs::write(
        input.join("b.jsonl"),
        "{\"id\": \"b1\", \"text\": \"one\"}\n{\"id\": \"b2\", \"text\": \"two\"}\n{not json}\n{\"id\": \"b4\", \"text\": \"four\"}\n",
    )
    .unwrap();
    // A Parquet file among the JSONL ones.
    write_parquet_seed(&input.join("c.jsonl"), 5, 5);
    let glob = input.join("*.jsonl");
    let job = JobSpec::new(
        &glob,
        SeedFormat::Jsonl,
        UNUSED_BACKEND,
        dir.path().join("out"),
    );
    let yaml = job.to_yaml().replace(
        "backends:\n",
        "  - stage: pii\n    columns: [txt]\nbackends:\n",
    );
    let done = validate_yaml(dir.path(), &yaml, &[]);
    done.assert_failure();
    let text = done.combined();
    for expected in [
        "b.jsonl:3",
        "c.jsonl",
        "looks like a Parquet file",
        "set `input.format: parquet`",
        "pipeline[1].columns",
        "did you mean `text`?",
        "not valid: 3 problems",
    ] {
        assert!(
            text.contains(expected),
            "missing {expected:?}\n{}",
            done.describe()
        );
    }
    assert!(!done.stdout.contains(": valid;"), "{}", done.describe());
    let last = done.stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("not valid"),
        "the last line is the verdict\n{}",
        done.describe()
    );
}

#[test]
fn validate_check_backends_lists_models_and_warns_on_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let mock = MockBackend::start(&["--models", "mock-model,other-model"]);
    let mut job = seeded_job(dir.path());
    job.backend_url = mock.url();
    job.model = "mock-modle".into();
    let done = validate_yaml(dir.path(), &job.to_yaml(), &["--check-backends"]);
    done.assert_success();
    assert!(
        done.stdout.contains("serves mock-model, other-model"),
        "the served models are listed\n{}",
        done.describe()
    );
    assert!(
        done.stderr
            .contains("warning: backends.mock.model: `mock-modle` is not served")
            && done.stderr.contains("did you mean `mock-model`?"),
        "{}",
        done.describe()
    );
    let last = done.stdout.trim_end().lines().last().unwrap_or_default();
    assert!(last.contains(": valid;"), "{}", done.describe());

    // Nothing listens on the job's backend: a problem, and the verdict says so.
    let down = seeded_job(dir.path());
    let done = validate_yaml(dir.path(), &down.to_yaml(), &["--check-backends"]);
    done.assert_failure();
    assert!(
        done.combined().contains("backends.mock") && done.combined().contains("unreachable"),
        "{}",
        done.describe()
    );
    // Without the flag the backend is never contacted, and the job is valid.
    validate_yaml(dir.path(), &down.to_yaml(), &[]).assert_success();
}

#[test]
fn validate_suggests_the_key_meant_for_an_unknown_yaml_key() {
    let dir = tempfile::tempdir().unwrap();
    let job = seeded_job(dir.path());
    let yaml = with_pipeline(
        &job,
        "  - stage: judge\n    backend: mock\n    threshhold: 3\n",
    );
    let done = validate_yaml(dir.path(), &yaml, &[]);
    done.assert_failure();
    assert!(
        done.combined().contains("threshhold")
            && done.combined().contains("did you mean `threshold`?"),
        "{}",
        done.describe()
    );
    let yaml = with_pipeline(&job, "  - stage: jugde\n    backend: mock\n");
    let done = validate_yaml(dir.path(), &yaml, &[]);
    done.assert_failure();
    assert!(
        done.combined().contains("did you mean `judge`?"),
        "{}",
        done.describe()
    );
    let yaml = job.to_yaml().replace("rows_per_task:", "rows_per_tsk:");
    let done = validate_yaml(dir.path(), &yaml, &[]);
    done.assert_failure();
    assert!(
        done.combined().contains("did you mean `rows_per_task`?"),
        "{}",
        done.describe()
    );
}
