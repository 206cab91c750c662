//! The job spec: one YAML file that says what to read, how to generate, where to write.
//!
//! The spec travels from the user to the coordinator to every worker, so it holds no secrets:
//! a backend names a credential the operator configured on the workers, never a key, an
//! environment variable or a file.
//!
//! Layering: the sections `input`, `backends`, `output` are plain data in this folder's
//! submodules (the readers and clients depend on them alone); each pipeline entry is the
//! configuration of a stage ([`StageSpec`], registered in `stages`). This module composes them
//! and checks what crosses sections (a stage naming a backend, the pipeline's columns).

pub mod backend;
pub mod input;
pub mod limits;
pub mod output;

pub use crate::stages::StageSpec;
pub use backend::{AutoKeyword, BackendApi, BackendSpec, Concurrency};
pub use input::{InputFormat, InputSpec};
pub use output::{OutputSpec, SchedulingSpec};

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::stages::columns::pipeline_column_problems;
use crate::stages::config::CheckScope;

/// Parses a job file strictly; failing that, as a spec stored by an earlier build, whose
/// `to_yaml` wrote every stage's unset shared fields as `null` (`backend: null` on a `filter`),
/// which the stage configurations now refuse as unknown keys. Jobs in a state store and leases
/// from an older coordinator keep parsing; a null value means "not set" either way. The error is
/// always the strict parse's, which names the field and the line.
fn parse_strict_or_stored(text: &str) -> Result<JobSpec, serde_norway::Error> {
    let strict = match serde_norway::from_str::<JobSpec>(text) {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    let Ok(mut value) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return Err(strict);
    };
    let Some(pipeline) = value
        .get_mut("pipeline")
        .and_then(serde_norway::Value::as_sequence_mut)
    else {
        return Err(strict);
    };
    for stage in pipeline
        .iter_mut()
        .filter_map(serde_norway::Value::as_mapping_mut)
    {
        stage.retain(|_, v| !v.is_null());
    }
    serde_norway::from_value(value).map_err(|_| strict)
}

/// A whole job, as written by the user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    /// Seed for every random choice (variations, shuffles): same job, same prompts.
    #[serde(default)]
    pub seed: u64,
    pub input: InputSpec,
    pub pipeline: Vec<StageSpec>,
    pub backends: BTreeMap<String, BackendSpec>,
    pub output: OutputSpec,
    #[serde(default)]
    pub scheduling: SchedulingSpec,
}

/// A spec problem, naming the field (and the line, where the YAML parser knows it).
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: field `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
}

impl JobSpec {
    /// Parse and validate; `file` is only used to name the source in errors.
    pub fn from_yaml(text: &str, file: &str) -> Result<JobSpec, SpecError> {
        limits::check_yaml_shape(text).map_err(|message| SpecError::Parse {
            file: file.to_string(),
            message,
        })?;
        let mut spec = parse_strict_or_stored(text).map_err(|e| SpecError::Parse {
            file: file.to_string(),
            message: crate::suggest::annotate_unknown(&e.to_string()),
        })?;
        spec.validate(file)?;
        spec.output.path = limits::normalise_output_path(&spec.output.path)
            .expect("validate checked the output path");
        Ok(spec)
    }

    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("a JobSpec always serializes")
    }

    /// Checks that need more than types: references, template syntax, numeric ranges, and the
    /// pipeline's columns as far as the seed columns are known from the spec alone.
    pub fn validate(&self, file: &str) -> Result<(), SpecError> {
        let invalid = |field: String, message: String| SpecError::Invalid {
            file: file.to_string(),
            field,
            message,
        };
        if self.name.trim().is_empty() {
            return Err(invalid("name".into(), "must not be empty".into()));
        }
        if self.input.rows_per_task == 0 {
            return Err(invalid(
                "input.rows_per_task".into(),
                "must be at least 1".into(),
            ));
        }
        if self.pipeline.is_empty() {
            return Err(invalid(
                "pipeline".into(),
                "needs at least one stage".into(),
            ));
        }
        if self.pipeline.len() > limits::MAX_STAGES {
            return Err(invalid(
                "pipeline".into(),
                format!(
                    "has {} stages; at most {} are accepted",
                    self.pipeline.len(),
                    limits::MAX_STAGES
                ),
            ));
        }
        limits::normalise_output_path(&self.output.path)
            .map_err(|message| invalid("output.path".into(), message))?;
        for (name, backend) in &self.backends {
            let field = format!("backends.{name}");
            if backend.endpoints().is_empty() {
                return Err(invalid(field, "needs `url` or `urls`".into()));
            }
            for u in backend.endpoints() {
                if url::Url::parse(&u).is_err() {
                    return Err(invalid(format!("{field}.url"), format!("not a URL: {u}")));
                }
            }
            if let Concurrency::Fixed(0) = backend.max_concurrency {
                return Err(invalid(
                    format!("{field}.max_concurrency"),
                    "must be at least 1 or `auto`".into(),
                ));
            }
            for (key, value) in [
                ("api_key_env", &backend.api_key_env),
                ("api_key_file", &backend.api_key_file),
            ] {
                if value.is_some() {
                    return Err(invalid(
                        format!("{field}.{key}"),
                        "a job cannot name environment variables or files on the workers; \
                         use `credential: NAME`, a credential the operator configured with \
                         `--credential NAME=env:VAR` on the workers (or `synthforge run`)"
                            .into(),
                    ));
                }
            }
            if backend.max_prompt_tokens == Some(0) {
                return Err(invalid(
                    format!("{field}.max_prompt_tokens"),
                    "must be at least 1".into(),
                ));
            }
            if backend.max_attempts == 0 {
                return Err(invalid(
                    format!("{field}.max_attempts"),
                    "must be at least 1".into(),
                ));
            }
        }
        let backends: Vec<&str> = self.backends.keys().map(String::as_str).collect();
        let scope = CheckScope {
            backends: &backends,
        };
        for (i, stage) in self.pipeline.iter().enumerate() {
            let config = stage.config();
            config
                .check(&scope)
                .map_err(|e| invalid(format!("pipeline[{i}].{}", e.field), e.message))?;
            if config.last_only() && i + 1 != self.pipeline.len() {
                return Err(invalid(
                    format!("pipeline[{i}].stage"),
                    format!("`{}` must be the last stage", stage.kind()),
                ));
            }
        }
        self.check_columns(self.known_seed_columns().as_ref(), file)
    }

    /// Checks that every column a stage reads exists when it runs: among `seed_columns` (when
    /// known), the columns earlier stages add, or the record's own fields; and that
    /// `input.id_column` is a seed column. Returns the first problem; `synthforge validate`
    /// reports them all with [`JobSpec::column_problems`].
    pub fn check_columns(
        &self,
        seed_columns: Option<&BTreeSet<String>>,
        file: &str,
    ) -> Result<(), SpecError> {
        match self.column_problems(seed_columns, file).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every column problem of the job against `seed_columns` (the input's schema, when known),
    /// each naming its field and suggesting the closest available column.
    pub fn column_problems(
        &self,
        seed_columns: Option<&BTreeSet<String>>,
        file: &str,
    ) -> Vec<SpecError> {
        let mut problems = Vec::new();
        if let (Some(seed), Some(id)) = (seed_columns, &self.input.id_column) {
            if self.input.format != InputFormat::Text && !seed.contains(id) {
                let guess = crate::suggest::closest(id, &seed.iter().collect::<Vec<_>>())
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                problems.push(SpecError::Invalid {
                    file: file.to_string(),
                    field: "input.id_column".into(),
                    message: format!(
                        "no column `{id}` in the input{guess} (columns: {})",
                        seed.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
        problems.extend(
            pipeline_column_problems(&self.pipeline, seed_columns)
                .into_iter()
                .map(|e| SpecError::Invalid {
                    file: file.to_string(),
                    field: format!("pipeline[{}].{}", e.index, e.field),
                    message: e.message,
                }),
        );
        problems
    }

    /// The seed columns when the spec alone tells them: a `text` input has its one column, a
    /// taxonomy's leaves always have the same columns.
    fn known_seed_columns(&self) -> Option<BTreeSet<String>> {
        match self.input.format {
            InputFormat::Text => Some(BTreeSet::from([self.input.text_column.clone()])),
            InputFormat::Taxonomy => Some(
                crate::input::taxonomy::SEED_COLUMNS
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            ),
            InputFormat::Parquet | InputFormat::Jsonl => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name: t
seed: 3
input: {path: /tmp/x.jsonl, format: jsonl}
pipeline:
  - stage: generate
    backend: m
    template: "Hi {{ text }}"
    variations: {audience: [kids, adults]}
backends:
  m: {url: "http://127.0.0.1:1/v1", model: x, max_concurrency: auto}
output: {path: /tmp/out}
"#;

    #[test]
    fn parses_good_spec_and_keeps_stage_params() {
        let s = JobSpec::from_yaml(GOOD, "job.yaml").unwrap();
        let StageSpec::Generate(g) = &s.pipeline[0] else {
            panic!("{:?}", s.pipeline[0])
        };
        assert_eq!(g.variations["audience"][1], "adults");
        assert_eq!(
            s.backends["m"].max_concurrency,
            Concurrency::Auto(AutoKeyword::Auto)
        );
        let again = JobSpec::from_yaml(&s.to_yaml(), "again").unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn unknown_field_names_line() {
        let bad = GOOD.replace("seed: 3", "seed: 3\nbogus: 1");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("job.yaml") && e.contains("bogus"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn template_error_names_field() {
        let bad = GOOD.replace("Hi {{ text }}", "Hi {{ text ");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pipeline[0].template"), "{e}");
    }

    #[test]
    fn unknown_backend_named() {
        let bad = GOOD.replace("backend: m", "backend: nope");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipeline[0].backend") && e.contains("nope"),
            "{e}"
        );
    }

    /// A one-stage job around `stage` (YAML flow map), with a backend `m`.
    fn one_stage(stage: &str) -> String {
        format!(
            "name: t\ninput: {{path: /tmp/x.jsonl, format: jsonl}}\npipeline:\n  - {stage}\n\
             backends:\n  m: {{url: \"http://x/v1\", model: x}}\noutput: {{path: /tmp/out}}\n"
        )
    }

    /// The error for a one-stage job; panics when it parses.
    fn stage_error(stage: &str) -> String {
        JobSpec::from_yaml(&one_stage(stage), "job.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn stage_errors_name_the_bad_field() {
        for (stage, field) in [
            ("{stage: judge}", "backend"),
            (
                "{stage: judge, backend: m, scale: '9-1'}",
                "pipeline[0].scale",
            ),
            (
                "{stage: revise, backend: m, critic_backend: zz}",
                "pipeline[0].critic_backend",
            ),
            (
                "{stage: evolve, backend: m, operators: [warp]}",
                "pipeline[0].operators",
            ),
            ("{stage: filter, min_words: x}", "pipeline[0].min_words"),
            ("{stage: filter}", "pipeline[0].stage"),
            ("{stage: pii, types: [dna]}", "pipeline[0].types"),
            ("{stage: pii, target: everywhere}", "pipeline[0].target"),
            ("{stage: decontaminate}", "benchmark"),
            (
                "{stage: decontaminate, benchmark: b, ngram: 0}",
                "pipeline[0].ngram",
            ),
            ("{stage: judge, backend: m, threshhold: 5}", "threshhold"),
            ("{stage: dedup, bands: 0}", "pipeline[0].bands"),
            ("{stage: generate, backend: m}", "template"),
            ("{stage: warp}", "pipeline[0].stage"),
            ("{threshold: x, stage: judge, backend: m}", "threshold"),
            ("{threshhold: 1, stage: judge, backend: m}", "threshhold"),
            ("{backend: m}", "`stage`"),
        ] {
            let e = stage_error(stage);
            assert!(e.contains(field), "{stage}: {e}");
        }
        assert!(stage_error("{stage: warp}").contains("known: generate"));
    }

    #[test]
    fn good_stages_parse() {
        for stage in [
            "{stage: decontaminate, benchmark: b.jsonl, ngram: 10}",
            "{stage: evolve, backend: m, rounds: 2, operators: [deepen]}",
            "{stage: generate, backend: m, template: hi}",
            "{backend: m, stage: judge, threshold: 5}",
        ] {
            JobSpec::from_yaml(&one_stage(stage), "job.yaml").unwrap();
        }
    }

    #[test]
    fn stage_errors_name_the_line() {
        let bad = GOOD.replace("    variations:", "    threshhold: 3\n    variations:");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipeline[0]") && e.contains("threshhold") && e.contains("line 9"),
            "{e}"
        );
        let bad = GOOD.replace("template: \"Hi {{ text }}\"", "template: [1]");
        let e = JobSpec::from_yaml(&bad, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipeline[0].template") && e.contains("line 8"),
            "{e}"
        );
    }

    #[test]
    fn dedup_must_be_last() {
        let yaml = GOOD.replace("pipeline:\n", "pipeline:\n  - stage: dedup\n");
        let e = JobSpec::from_yaml(&yaml, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pipeline[0].stage") && e.contains("last"), "{e}");
    }

    /// `GOOD` with `stages` (YAML list entries) appended to its pipeline.
    fn with_stages(stages: &str) -> String {
        GOOD.replace("backends:", &format!("{stages}backends:"))
    }

    #[test]
    fn misspelt_columns_are_named_when_seed_columns_are_known() {
        let seed: BTreeSet<String> = ["text".to_string(), "id".to_string()].into();
        for (stages, field) in [
            (
                "  - {stage: dedup, columns: [txt]}\n",
                "pipeline[1].columns",
            ),
            (
                "  - {stage: decontaminate, benchmark: b, fields: [completion, txt]}\n",
                "pipeline[1].fields",
            ),
            ("  - {stage: pii, columns: [txt]}\n", "pipeline[1].columns"),
            (
                "  - {stage: filter, json: true, field: txt}\n",
                "pipeline[1].field",
            ),
            (
                "  - {stage: judge, backend: m, template: '{{ completion }} {{ txt }}'}\n",
                "pipeline[1].template",
            ),
            (
                "  - {stage: distill, backend: m, instruction_column: question}\n",
                "pipeline[1].instruction_column",
            ),
        ] {
            let spec = JobSpec::from_yaml(&with_stages(stages), "job.yaml").unwrap();
            let e = spec
                .check_columns(Some(&seed), "job.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{stages}: {e}");
            assert!(
                e.contains("(available: id, text, completion, prompt"),
                "{stages}: {e}"
            );
            assert!(
                spec.check_columns(None, "job.yaml").is_ok(),
                "seed columns unknown"
            );
        }
    }

    #[test]
    fn every_column_problem_is_listed_with_a_suggestion() {
        let seed: BTreeSet<String> = ["text".to_string(), "id".to_string()].into();
        let yaml = with_stages(
            "  - {stage: pii, columns: [txt]}\n  - {stage: dedup, columns: [completoin, text]}\n",
        )
        .replace("format: jsonl}", "format: jsonl, id_column: ID}");
        let spec = JobSpec::from_yaml(&yaml, "job.yaml").unwrap();
        let problems: Vec<String> = spec
            .column_problems(Some(&seed), "job.yaml")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(
            problems[0].contains("input.id_column") && problems[0].contains("did you mean `id`?"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].contains("pipeline[1].columns")
                && problems[1].contains("did you mean `text`?"),
            "{}",
            problems[1]
        );
        assert!(
            problems[2].contains("pipeline[2].columns")
                && problems[2].contains("did you mean `completion`?"),
            "{}",
            problems[2]
        );
    }

    #[test]
    fn unknown_keys_and_stage_kinds_get_a_suggestion() {
        for (from, to, meant) in [
            ("seed: 3", "sede: 3", "did you mean `seed`?"),
            ("format: jsonl", "format: jsonll", "did you mean `jsonl`?"),
            (
                "max_concurrency: auto",
                "max_concurency: auto",
                "did you mean `max_concurrency`?",
            ),
            (
                "    variations:",
                "    templte: x\n    variations:",
                "did you mean `template`?",
            ),
            (
                "stage: generate",
                "stage: generte",
                "did you mean `generate`?",
            ),
        ] {
            let e = JobSpec::from_yaml(&GOOD.replace(from, to), "job.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(meant), "{to}: {e}");
        }
    }

    #[test]
    fn taxonomy_input_knows_its_columns() {
        let yaml = with_stages("  - {stage: dedup, columns: [task_descripton]}\n")
            .replace("format: jsonl", "format: taxonomy")
            .replace("Hi {{ text }}", "Hi {{ task_description }}");
        let e = JobSpec::from_yaml(&yaml, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipeline[1].columns") && e.contains("did you mean `task_description`?"),
            "{e}"
        );
        JobSpec::from_yaml(
            &yaml.replace("task_descripton", "task_description"),
            "job.yaml",
        )
        .unwrap();
    }

    #[test]
    fn columns_added_by_earlier_stages_and_variations_are_found() {
        let seed: BTreeSet<String> = ["text".to_string()].into();
        let spec = JobSpec::from_yaml(
            &with_stages(
                "  - {stage: judge, backend: m, template: '{{ audience }} {{ prompt }} {{ rubric }}'}\n\
                 \x20 - {stage: pii, columns: [text, judge_rationale]}\n\
                 \x20 - {stage: decontaminate, benchmark: b, fields: [completion, text, score]}\n\
                 \x20 - {stage: dedup, columns: [prompt, completion, judge_rationale, audience]}\n",
            ),
            "job.yaml",
        )
        .unwrap();
        spec.check_columns(Some(&seed), "job.yaml").unwrap();
        let early = with_stages("  - {stage: judge, backend: m}\n").replace(
            "  - stage: generate",
            "  - {stage: filter, json: true, field: judge_rationale}\n  - stage: generate",
        );
        let e = JobSpec::from_yaml(&early, "job.yaml")
            .unwrap()
            .check_columns(Some(&seed), "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pipeline[0].field") && e.contains("judge_rationale"),
            "{e}"
        );
    }

    #[test]
    fn text_input_knows_its_one_column() {
        let text = GOOD.replace("format: jsonl", "format: text");
        let e = JobSpec::from_yaml(
            &with_stages("  - {stage: dedup, columns: [txt]}\n")
                .replace("format: jsonl", "format: text"),
            "job.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("pipeline[1].columns") && e.contains("`txt`"),
            "{e}"
        );
        JobSpec::from_yaml(&text, "job.yaml").unwrap();
    }

    #[test]
    fn every_stage_round_trips() {
        let yaml = with_stages(
            "  - {stage: judge, backend: m, rubric: r, scale: '0-5', threshold: 3, response_format: {type: json_object}}\n\
             \x20 - {stage: filter, min_words: 2, refusal: true, phrases: [a]}\n\
             \x20 - {stage: pii, types: [email], target: output}\n\
             \x20 - {stage: evolve, backend: m, on_eliminated: remove, answer: false}\n\
             \x20 - {stage: revise, backend: m, rounds: 2, critic_backend: m}\n\
             \x20 - {stage: distill, backend: m, samples: 2, stop: [x]}\n\
             \x20 - {stage: taxonomy_qa, backend: m, pairs: 2, document_dir: /tmp/d}\n\
             \x20 - {stage: decontaminate, benchmark: b, ngram: 8}\n\
             \x20 - {stage: dedup, columns: completion, near: false}\n",
        );
        let s = JobSpec::from_yaml(&yaml, "job.yaml").unwrap();
        assert_eq!(s.pipeline.len(), 10);
        let again = JobSpec::from_yaml(&s.to_yaml(), "again").unwrap();
        assert_eq!(again, s);
        assert_eq!(
            s.pipeline.iter().map(StageSpec::kind).collect::<Vec<_>>(),
            [
                "generate",
                "judge",
                "filter",
                "pii",
                "evolve",
                "revise",
                "distill",
                "taxonomy_qa",
                "decontaminate",
                "dedup"
            ]
        );
    }

    #[test]
    fn specs_stored_by_the_previous_build_still_parse() {
        // `to_yaml` of the untyped stage entries wrote every shared field, set or not.
        let nulls = "    backend: null\n    template: null\n    system_prompt: null\n    \
                     max_tokens: null\n    temperature: null\n    top_p: null\n    \
                     samples: null\n    stop: null\n";
        let stored = with_stages(&format!(
            "  - stage: filter\n{nulls}    min_words: 3\n  - stage: dedup\n{nulls}    near: false\n"
        ));
        let s = JobSpec::from_yaml(&stored, "stored").unwrap();
        assert_eq!(s.pipeline[1].kind(), "filter");
        assert_eq!(JobSpec::from_yaml(&s.to_yaml(), "again").unwrap(), s);
        // A set value under a key the stage does not know is still refused, with its line.
        let bad = stored.replacen(
            "    backend: null\n    template: null",
            "    backend: m\n    template: null",
            1,
        );
        let e = JobSpec::from_yaml(&bad, "stored").unwrap_err().to_string();
        assert!(
            e.contains("unknown field `backend`") && e.contains("line"),
            "{e}"
        );
    }

    #[test]
    fn work_is_bounded_with_errors_naming_the_field() {
        let many = with_stages(&"  - {stage: filter, min_words: 1}\n".repeat(40));
        let e = JobSpec::from_yaml(&many, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("field `pipeline`") && e.contains("at most 32"),
            "{e}"
        );
        for stage in [
            "{stage: evolve, backend: m, rounds: 11}",
            "{stage: revise, backend: m, rounds: 1000}",
        ] {
            let e = stage_error(stage);
            assert!(
                e.contains("pipeline[0].rounds") && e.contains("at most 10"),
                "{e}"
            );
        }
        let climbing = GOOD.replace("path: /tmp/out", "path: /tmp/out/../../etc");
        let e = JobSpec::from_yaml(&climbing, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("output.path") && e.contains(".."), "{e}");
        let tidy = GOOD.replace("path: /tmp/out", "path: /tmp//out/./");
        assert_eq!(
            JobSpec::from_yaml(&tidy, "job.yaml").unwrap().output.path,
            "/tmp/out"
        );
        let deep = format!("{GOOD}extra: {}", "[".repeat(100_000));
        let e = JobSpec::from_yaml(&deep, "job.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("job.yaml") && e.contains("nests"), "{e}");
    }

    #[test]
    fn backends_name_credentials_not_variables_or_files() {
        for key in ["api_key_env: SYNTHFORGE_TOKEN", "api_key_file: /etc/passwd"] {
            let bad = GOOD.replace("model: x,", &format!("model: x, {key},"));
            let e = JobSpec::from_yaml(&bad, "job.yaml")
                .unwrap_err()
                .to_string();
            let field = key.split(':').next().unwrap();
            assert!(
                e.contains(&format!("backends.m.{field}")) && e.contains("credential: NAME"),
                "{e}"
            );
        }
        let good = GOOD.replace("model: x,", "model: x, credential: openai,");
        let s = JobSpec::from_yaml(&good, "job.yaml").unwrap();
        assert_eq!(s.backends["m"].credential.as_deref(), Some("openai"));
        assert!(!s.to_yaml().contains("api_key"));
    }
}
