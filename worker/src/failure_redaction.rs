//! Failure rows of a job with a `pii` stage: their `input` is the seed row as read (a torn
//! line, or the seed columns before any redaction) and their `error` may quote a model's reply,
//! so both pass through the same detectors as the `pii` stage before they are stored.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use synthforge_core::record::FailureRecord;
use synthforge_core::spec::JobSpec;
use synthforge_core::stages::pii_detect::{self, Kind};
use synthforge_core::stages::StageSpec;

/// The detectors of the job's `pii` stage (the first, if several); `None` without one.
pub fn pii_kinds(spec: &JobSpec) -> Option<Vec<Kind>> {
    spec.pipeline.iter().find_map(|s| match s {
        StageSpec::Pii(c) => Some(match &c.types {
            // The job was validated: the names are known; all kinds if not (never fewer).
            Some(names) => {
                pii_detect::kinds_named(names).unwrap_or_else(|_| pii_detect::KINDS.to_vec())
            }
            None => pii_detect::KINDS.to_vec(),
        }),
        _ => None,
    })
}

/// `f` with its input and error redacted by `kinds`.
pub fn redact_failure(mut f: FailureRecord, kinds: &[Kind]) -> FailureRecord {
    f.input = redact_raw_row(&f.input, kinds);
    f.error = pii_detect::redact(&f.error, kinds, &mut BTreeMap::new());
    f
}

/// A raw seed row about to be stored where no `pii` stage will see it: a row that parses as
/// JSON with every string redacted; anything else (a torn line, where a detector could miss
/// half an address) only as its SHA-256 and length, so the row can still be found in the input.
pub fn redact_raw_row(raw: &str, kinds: &[Kind]) -> String {
    fn strings(v: &mut serde_json::Value, kinds: &[Kind], counts: &mut BTreeMap<String, u64>) {
        match v {
            serde_json::Value::String(s) => *s = pii_detect::redact(s, kinds, counts),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| strings(x, kinds, counts)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| strings(x, kinds, counts)),
            _ => {}
        }
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(mut v) => {
            strings(&mut v, kinds, &mut BTreeMap::new());
            v.to_string()
        }
        Err(_) => format!(
            "[unparsable row withheld (pii stage): sha256 {}, {} bytes]",
            hex::encode(Sha256::digest(raw.as_bytes())),
            raw.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_rows_are_redacted_or_withheld() {
        let kinds = pii_detect::KINDS;
        let parsed = redact_raw_row(r#"{"a": ["mail jane.roe@example.com"], "n": 3}"#, kinds);
        assert_eq!(parsed, r#"{"a":["mail [EMAIL]"],"n":3}"#);
        let torn = "{\"text\": \"call (555) 123-4567";
        let withheld = redact_raw_row(torn, kinds);
        assert!(!withheld.contains("123-4567"), "{withheld}");
        let digest = hex::encode(Sha256::digest(torn.as_bytes()));
        assert_eq!(
            withheld,
            format!(
                "[unparsable row withheld (pii stage): sha256 {digest}, {} bytes]",
                torn.len()
            )
        );
    }

    #[test]
    fn a_failure_loses_its_pii_in_input_and_error() {
        let f = FailureRecord {
            seed_id: "r1".into(),
            row_index: 1,
            source: "seeds.jsonl:2".into(),
            stage: "judge".into(),
            error: "unparsable judge reply: \"write to jane.roe@example.com\"".into(),
            input: r#"{"text":"SSN 123-45-6789, jane.roe@example.com"}"#.into(),
            job_id: "j".into(),
            task_id: 0,
        };
        let r = redact_failure(f, pii_detect::KINDS);
        assert!(
            !r.input.contains("jane.roe") && !r.input.contains("123-45-6789"),
            "{}",
            r.input
        );
        assert!(!r.error.contains("jane.roe"), "{}", r.error);
        assert_eq!(
            (r.seed_id.as_str(), r.row_index),
            ("r1", 1),
            "identity kept"
        );
    }

    #[test]
    fn pii_kinds_come_from_the_jobs_pii_stage() {
        let yaml = |pipeline: &str| {
            format!(
                "name: p\ninput:\n  path: /tmp/x.jsonl\n  format: jsonl\npipeline:\n{pipeline}\n\
                 backends:\n  m:\n    url: http://127.0.0.1:1/v1\n    model: m\noutput:\n  path: /tmp/o\n"
            )
        };
        let gen = "  - stage: generate\n    backend: m\n    template: \"{{ text }}\"\n";
        let none = JobSpec::from_yaml(&yaml(gen), "j").unwrap();
        assert!(pii_kinds(&none).is_none());
        let only_email = JobSpec::from_yaml(
            &yaml(&format!("  - stage: pii\n    types: [email]\n{gen}")),
            "j",
        )
        .unwrap();
        assert_eq!(pii_kinds(&only_email).unwrap(), vec![pii_detect::EMAIL]);
    }
}
