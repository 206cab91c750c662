//! Parsing a judge's reply into a score, robustly: judges answer in JSON when asked, but also
//! with "Score: 7/10", "**Rating:** 4", "I would rate this 8 out of 10", or a bare number.

use std::sync::OnceLock;

use regex::Regex;

use super::textutil::strip_code_fence;

/// A parsed verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub score: f64,
    /// The JSON `rationale` (or `reason`/`explanation`), else the whole reply.
    pub rationale: String,
}

/// A score as written: the number and, for "7/10" or "8 out of 10", the denominator.
type Raw = (f64, Option<f64>);

/// The first JSON object in `text` that has a numeric `score` (or `rating`), with its rationale.
fn from_json(text: &str) -> Option<(Raw, String)> {
    let body = strip_code_fence(text);
    let v: serde_json::Value = body.match_indices('{').find_map(|(i, _)| {
        let mut de =
            serde_json::Deserializer::from_str(&body[i..]).into_iter::<serde_json::Value>();
        match de.next() {
            Some(Ok(v @ serde_json::Value::Object(_))) => Some(v),
            _ => None,
        }
    })?;
    let raw = ["score", "rating", "grade"]
        .iter()
        .find_map(|k| v.get(*k))?;
    let score = match raw {
        serde_json::Value::Number(n) => (n.as_f64()?, None),
        serde_json::Value::String(s) => from_text(s)?,
        _ => return None,
    };
    let rationale = ["rationale", "reason", "explanation", "justification"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
        .unwrap_or(text.trim())
        .to_string();
    Some((score, rationale))
}

fn labelled() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(
            r"(?i)\b(?:score|rating|grade|rate)\b[*_\s]*(?:is|of|=|:|-)?[*_\s]*(?:is|of|=|:)?[*_\s]*(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+(?:\.\d+)?))?",
        )
        .expect("valid regex")
    })
}

fn fraction() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"(?i)(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)").expect("valid regex")
    })
}

/// A number from free text: a labelled score ("Score: 7", "rating of 4/5") first, then a
/// fraction ("8 out of 10"), then a reply that is only a number ("7", "7.").
fn from_text(text: &str) -> Option<Raw> {
    let caps = labelled()
        .captures(text)
        .or_else(|| fraction().captures(text));
    if let Some(c) = caps {
        let n = c[1].parse().ok()?;
        return Some((n, c.get(2).and_then(|d| d.as_str().parse().ok())));
    }
    let t = text.trim().trim_end_matches(['.', '!']).trim_matches('*');
    t.parse::<f64>().ok().map(|n| (n, None))
}

/// Parses a reply on the scale `[min, max]`. A fraction whose denominator differs from `max`
/// is rescaled to the scale ("4/5" on 1–10 → 8). Errors name what was wrong; the caller adds
/// the reply itself to the failure so that a human can see it.
pub fn parse(reply: &str, min: f64, max: f64) -> Result<Verdict, String> {
    let ((n, denom), rationale) = match from_json(reply) {
        Some(v) => v,
        None => {
            let raw = from_text(reply).ok_or(
                "no score found (expected JSON {\"score\": n, \"rationale\": ...} or e.g. \"Score: 7\")",
            )?;
            (raw, reply.trim().to_string())
        }
    };
    let score = match denom {
        Some(d) if d > 0.0 && (d - max).abs() > f64::EPSILON => n / d * max,
        _ => n,
    };
    if !score.is_finite() || score < min || score > max {
        return Err(format!("score {score} outside the scale {min}–{max}"));
    }
    Ok(Verdict { score, rationale })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(reply: &str) -> Result<f64, String> {
        parse(reply, 1.0, 10.0).map(|v| v.score)
    }

    #[test]
    fn json_forms() {
        let v = parse(
            r#"{"score": 8, "rationale": "clear and correct"}"#,
            1.0,
            10.0,
        )
        .unwrap();
        assert_eq!(
            v,
            Verdict {
                score: 8.0,
                rationale: "clear and correct".into()
            }
        );
        assert_eq!(
            s("```json\n{\"score\": \"7\", \"reason\": \"ok\"}\n```"),
            Ok(7.0)
        );
        assert_eq!(s("Here is my verdict: {\"rating\": 6.5} thanks"), Ok(6.5));
    }

    #[test]
    fn text_forms() {
        assert_eq!(s("Score: 7/10"), Ok(7.0));
        assert_eq!(s("**Rating:** 4\nGood enough."), Ok(4.0));
        assert_eq!(s("I would rate this 8 out of 10."), Ok(8.0));
        assert_eq!(s("The score is 9"), Ok(9.0));
        assert_eq!(s("7"), Ok(7.0));
        assert_eq!(s("Overall: 4/5"), Ok(8.0), "rescaled to the 1-10 scale");
        assert_eq!(parse("Score: 3/5", 0.0, 5.0).unwrap().score, 3.0);
    }

    #[test]
    fn failures_say_why() {
        assert!(s("The answer is fine.").unwrap_err().contains("no score"));
        assert!(s("Score: 12").unwrap_err().contains("outside"));
        assert!(s("{\"verdict\": \"good\"}").is_err());
    }
}
