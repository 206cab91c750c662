//! Up-front validation of the quality and method stages' parameters (distill, evolve, revise,
//! judge, filter, pii, decontaminate), called by `JobSpec::validate` so that a typo fails at
//! `synthforge validate`/submit time with the field named, not on a worker mid-job.
//! Files named by parameters (a benchmark) are not opened here: the coordinator may not see
//! the workers' files; the stage reports a missing file when it is built.

use std::collections::BTreeMap;

use super::{evolve_ops, filter, judge, llm, pii_detect};
use crate::spec::{BackendSpec, StageSpec};
use crate::template::PromptTemplate;

/// Stage names this module validates.
pub const STAGES: &[&str] = &[
    "distill",
    "evolve",
    "revise",
    "judge",
    "filter",
    "pii",
    "decontaminate",
];

/// Parameters each stage understands (besides the typed `StageSpec` fields). A misspelt key
/// (`threshhold`) would otherwise silently switch a check off.
fn known_params(kind: &str) -> &'static [&'static str] {
    match kind {
        "distill" => &["instruction_column", "response_format"],
        "evolve" => &[
            "instruction_column",
            "rounds",
            "operators",
            "min_words",
            "on_eliminated",
            "answer",
            "answer_backend",
            "response_format",
        ],
        "revise" => &[
            "critic_backend",
            "reviser_backend",
            "critique_template",
            "revise_template",
            "rounds",
            "response_format",
        ],
        "judge" => &["rubric", "scale", "threshold", "response_format"],
        "filter" => &[
            "min_words",
            "max_words",
            "max_dup_ngram_ratio",
            "dup_ngram",
            "refusal",
            "phrases",
            "json",
            "field",
        ],
        "pii" => &["types", "columns", "target"],
        "decontaminate" => &["benchmark", "benchmark_field", "ngram", "fields"],
        _ => &[],
    }
}

/// `Err((field, message))` for the first problem of `stage`; `Ok` for stages it does not know.
pub fn validate(
    stage: &StageSpec,
    backends: &BTreeMap<String, BackendSpec>,
) -> Result<(), (String, String)> {
    let kind = stage.stage.as_str();
    if !STAGES.contains(&kind) {
        return Ok(());
    }
    let param = |m: String| {
        let field = m
            .split('`')
            .nth(1)
            .filter(|f| stage.params.contains_key(*f))
            .unwrap_or("stage")
            .to_string();
        (field, m)
    };
    let known = known_params(kind);
    if let Some(bad) = stage.params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err((
            bad.clone(),
            format!(
                "unknown parameter for `{kind}` (known: {})",
                known.join(", ")
            ),
        ));
    }
    let needs_backend = matches!(kind, "distill" | "evolve" | "revise" | "judge");
    if needs_backend && stage.backend.is_none() {
        return Err(("backend".into(), format!("required for `{kind}`")));
    }
    for key in ["critic_backend", "reviser_backend", "answer_backend"] {
        if let Some(name) = llm::str_param(stage, key).map_err(param)? {
            if !backends.contains_key(name) {
                return Err((
                    key.into(),
                    format!("no backend named `{name}` in `backends`"),
                ));
            }
        }
    }
    for key in ["critique_template", "revise_template"] {
        if let Some(t) = llm::str_param(stage, key).map_err(param)? {
            PromptTemplate::new(t).map_err(|e| (key.to_string(), e.to_string()))?;
        }
    }
    if let Some(t) = &stage.template {
        PromptTemplate::new(t).map_err(|e| ("template".to_string(), e.to_string()))?;
    }
    match kind {
        "distill" => {
            llm::str_param(stage, "instruction_column").map_err(param)?;
        }
        "evolve" => {
            llm::str_param(stage, "instruction_column").map_err(param)?;
            llm::u64_param(stage, "rounds").map_err(param)?;
            llm::u64_param(stage, "min_words").map_err(param)?;
            llm::bool_param(stage, "answer").map_err(param)?;
            if let Some(ops) = llm::strings_param(stage, "operators").map_err(param)? {
                if let Some(bad) = ops
                    .iter()
                    .find(|o| !evolve_ops::OPERATORS.contains(&o.as_str()))
                {
                    return Err((
                        "operators".into(),
                        format!(
                            "unknown operator `{bad}` (known: {})",
                            evolve_ops::OPERATORS.join(", ")
                        ),
                    ));
                }
            }
            if let Some(o) = llm::str_param(stage, "on_eliminated").map_err(param)? {
                if o != "keep_last" && o != "remove" {
                    return Err((
                        "on_eliminated".into(),
                        format!("must be keep_last or remove, got `{o}`"),
                    ));
                }
            }
        }
        "revise" if llm::u64_param(stage, "rounds").map_err(param)? == Some(0) => {
            return Err(("rounds".into(), "must be at least 1".into()));
        }
        "judge" => {
            if let Some(s) = llm::str_param(stage, "scale").map_err(param)? {
                judge::parse_scale(s).map_err(|m| ("scale".to_string(), m))?;
            }
            llm::f64_param(stage, "threshold").map_err(param)?;
            llm::str_param(stage, "rubric").map_err(param)?;
        }
        "filter" => {
            filter::Checks::from_spec(stage).map_err(param)?;
        }
        "pii" => {
            if let Some(t) = llm::strings_param(stage, "types").map_err(param)? {
                pii_detect::kinds_named(&t).map_err(|m| ("types".to_string(), m))?;
            }
            llm::strings_param(stage, "columns").map_err(param)?;
            if let Some(t) = llm::str_param(stage, "target").map_err(param)? {
                if !["auto", "input", "output"].contains(&t) {
                    return Err((
                        "target".into(),
                        format!("must be auto, input or output, got `{t}`"),
                    ));
                }
            }
        }
        "decontaminate" => {
            if llm::str_param(stage, "benchmark").map_err(param)?.is_none() {
                return Err((
                    "benchmark".into(),
                    "required for `decontaminate` (a file path)".into(),
                ));
            }
            if llm::u64_param(stage, "ngram").map_err(param)? == Some(0) {
                return Err(("ngram".into(), "must be at least 1".into()));
            }
            llm::strings_param(stage, "fields").map_err(param)?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<(), (String, String)> {
        let s: StageSpec = serde_norway::from_str(yaml).unwrap();
        let mut b = BTreeMap::new();
        b.insert(
            "m".to_string(),
            serde_norway::from_str::<BackendSpec>("{url: 'http://x/v1', model: x}").unwrap(),
        );
        validate(&s, &b)
    }

    #[test]
    fn names_the_bad_field() {
        assert_eq!(check("{stage: judge}").unwrap_err().0, "backend");
        assert_eq!(
            check("{stage: judge, backend: m, scale: '9-1'}")
                .unwrap_err()
                .0,
            "scale"
        );
        assert_eq!(
            check("{stage: revise, backend: m, critic_backend: zz}")
                .unwrap_err()
                .0,
            "critic_backend"
        );
        assert_eq!(
            check("{stage: evolve, backend: m, operators: [warp]}")
                .unwrap_err()
                .0,
            "operators"
        );
        assert_eq!(
            check("{stage: filter, min_words: x}").unwrap_err().0,
            "min_words"
        );
        assert_eq!(check("{stage: filter}").unwrap_err().0, "stage");
        assert_eq!(check("{stage: pii, types: [dna]}").unwrap_err().0, "types");
        assert_eq!(check("{stage: decontaminate}").unwrap_err().0, "benchmark");
        assert!(check("{stage: decontaminate, benchmark: b.jsonl, ngram: 10}").is_ok());
        assert!(check("{stage: evolve, backend: m, rounds: 2, operators: [deepen]}").is_ok());
        assert!(
            check("{stage: generate}").is_ok(),
            "not this module's stage"
        );
    }
}
