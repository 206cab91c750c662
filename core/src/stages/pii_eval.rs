//! Scores the PII detectors against a labelled corpus (JSONL, one text per line with the
//! personal data planted in it and the look-alikes that must be left alone), so recall and
//! precision per kind are measured rather than guessed. Used by the `pii_bench` example and by
//! the floor test over `tests/fixtures/pii/corpus.jsonl`.
//!
//! A planted item counts as caught only when one finding of its kind covers all of it (a
//! half-redacted `sean.o'[EMAIL]` still leaks). A finding is correct when it overlaps a planted
//! item of its own kind; every other finding is a false positive.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::pii_detect::{detect, Finding, KINDS};

/// One line of the corpus.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    pub text: String,
    /// Personal data planted in `text`, in order of appearance.
    #[serde(default)]
    pub pii: Vec<Planted>,
    /// Look-alikes in `text` that are not personal data (ISBNs, section numbers, SKUs).
    #[serde(default)]
    pub decoys: Vec<Decoy>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Planted {
    /// A kind's counter name (`email`, `phone`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Decoy {
    /// What the look-alike is (`isbn13`, `section_number`, `sku`, …).
    pub kind: String,
    pub value: String,
}

/// The counts behind one kind's recall and precision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindScore {
    pub planted: u64,
    pub caught: u64,
    pub findings: u64,
    pub correct: u64,
}

impl KindScore {
    /// Caught / planted (1 when nothing was planted).
    pub fn recall(&self) -> f64 {
        ratio(self.caught, self.planted)
    }

    /// Correct / findings (1 when nothing was found).
    pub fn precision(&self) -> f64 {
        ratio(self.correct, self.findings)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Scores per kind, decoys left alone per decoy kind, and what went wrong, quoted.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub kinds: BTreeMap<&'static str, KindScore>,
    /// Decoy kind → (decoys, decoys a finding touched).
    pub decoys: BTreeMap<String, (u64, u64)>,
    /// `kind: value` of planted items not (fully) caught.
    pub misses: Vec<String>,
    /// `kind: text` of findings that match nothing planted of their kind.
    pub false_positives: Vec<String>,
}

/// A corpus line that cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("corpus line {line}: {source}")]
    Json {
        line: usize,
        source: serde_json::Error,
    },
    #[error("corpus line {line}: `{value}` is not in the text")]
    NotInText { line: usize, value: String },
    #[error("corpus line {line}: unknown PII type `{kind}`")]
    UnknownKind { line: usize, kind: String },
}

/// Scores every kind (person names included) over the JSONL `corpus`.
pub fn score(corpus: &str) -> Result<Report, CorpusError> {
    let mut report = Report::default();
    for k in KINDS {
        report.kinds.insert(k.name, KindScore::default());
    }
    for (i, line) in corpus.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let sample: Sample = serde_json::from_str(line).map_err(|source| CorpusError::Json {
            line: line_no,
            source,
        })?;
        score_sample(&sample, line_no, &mut report)?;
    }
    Ok(report)
}

fn score_sample(s: &Sample, line: usize, report: &mut Report) -> Result<(), CorpusError> {
    let findings = detect(&s.text, KINDS);
    let planted = locate(&s.text, s.pii.iter().map(|p| (&p.kind, &p.value)), line)?;
    for (kind, (start, end)) in &planted {
        let score =
            report
                .kinds
                .get_mut(kind.as_str())
                .ok_or_else(|| CorpusError::UnknownKind {
                    line,
                    kind: kind.clone(),
                })?;
        score.planted += 1;
        if findings
            .iter()
            .any(|f| f.kind.name == kind && f.start <= *start && f.end >= *end)
        {
            score.caught += 1;
        } else {
            report
                .misses
                .push(format!("{kind}: {}", &s.text[*start..*end]));
        }
    }
    for f in &findings {
        let score = report.kinds.entry(f.kind.name).or_default();
        score.findings += 1;
        if planted
            .iter()
            .any(|(k, span)| k == f.kind.name && overlaps(f, *span))
        {
            score.correct += 1;
        } else {
            report
                .false_positives
                .push(format!("{}: {}", f.kind.name, &s.text[f.start..f.end]));
        }
    }
    let decoys = locate(&s.text, s.decoys.iter().map(|d| (&d.kind, &d.value)), line)?;
    for (kind, span) in decoys {
        let entry = report.decoys.entry(kind).or_default();
        entry.0 += 1;
        if findings.iter().any(|f| overlaps(f, span)) {
            entry.1 += 1;
        }
    }
    Ok(())
}

fn overlaps(f: &Finding, (start, end): (usize, usize)) -> bool {
    f.start < end && start < f.end
}

/// A labelled value and its byte range in the text.
type Located = (String, (usize, usize));

/// Byte spans of `values` in `text`, each searched after the previous occurrence of the same
/// value so repeated values map to successive places.
fn locate<'a>(
    text: &str,
    values: impl Iterator<Item = (&'a String, &'a String)>,
    line: usize,
) -> Result<Vec<Located>, CorpusError> {
    let mut next: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (kind, value) in values {
        let from = next.get(value.as_str()).copied().unwrap_or(0);
        let at = text[from..]
            .find(value.as_str())
            .map(|i| from + i)
            .ok_or_else(|| CorpusError::NotInText {
                line,
                value: value.clone(),
            })?;
        next.insert(value, at + value.len());
        out.push((kind.clone(), (at, at + value.len())));
    }
    Ok(out)
}

impl Report {
    /// A Markdown table: kind, planted, caught, recall, findings, precision.
    pub fn table(&self) -> String {
        let mut t = String::from(
            "| type | planted | caught | recall | found | correct | precision |\n\
             |---|---:|---:|---:|---:|---:|---:|\n",
        );
        for (kind, s) in &self.kinds {
            t.push_str(&format!(
                "| `{kind}` | {} | {} | {:.3} | {} | {} | {:.3} |\n",
                s.planted,
                s.caught,
                s.recall(),
                s.findings,
                s.correct,
                s.precision()
            ));
        }
        t
    }

    /// A Markdown table of decoys per kind and how many a finding touched.
    pub fn decoy_table(&self) -> String {
        let mut t = String::from("| decoy | count | touched |\n|---|---:|---:|\n");
        for (kind, (n, hit)) in &self.decoys {
            t.push_str(&format!("| {kind} | {n} | {hit} |\n"));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_means_covered_and_findings_outside_plants_are_false_positives() {
        let corpus = concat!(
            r#"{"text": "mail a@b.io or a@b.io, ISBN 978-0-306-40615-7", "pii": [{"type": "email", "value": "a@b.io"}, {"type": "email", "value": "a@b.io"}], "decoys": [{"kind": "isbn13", "value": "978-0-306-40615-7"}]}"#,
            "\n\n",
            r#"{"text": "call 555-123-4567 (ref 4111 1111 1111 1111)", "pii": [{"type": "phone", "value": "555-123-4567"}, {"type": "us_ssn", "value": "ref"}]}"#,
            "\n"
        );
        let r = score(corpus).unwrap();
        let email = r.kinds["email"];
        assert_eq!(
            (email.planted, email.caught, email.findings, email.correct),
            (2, 2, 2, 2)
        );
        assert_eq!(r.kinds["phone"].recall(), 1.0);
        assert_eq!(r.kinds["us_ssn"].recall(), 0.0);
        assert_eq!(
            r.kinds["credit_card"].precision(),
            0.0,
            "the card was not planted"
        );
        assert_eq!(r.false_positives, ["credit_card: 4111 1111 1111 1111"]);
        assert_eq!(r.misses, ["us_ssn: ref"]);
        assert_eq!(r.decoys["isbn13"], (1, 0));
        assert!(r
            .table()
            .contains("| `email` | 2 | 2 | 1.000 | 2 | 2 | 1.000 |"));
    }

    #[test]
    fn corpus_mistakes_are_errors() {
        let e = score(r#"{"text": "x", "pii": [{"type": "email", "value": "y"}]}"#).unwrap_err();
        assert!(e.to_string().contains("`y` is not in the text"), "{e}");
        let e = score(r#"{"text": "y", "pii": [{"type": "dna", "value": "y"}]}"#).unwrap_err();
        assert!(e.to_string().contains("unknown PII type `dna`"), "{e}");
        assert!(score("{").is_err());
    }
}
