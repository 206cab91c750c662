//! Reading generated Q&A pairs out of a model reply, tolerant of the shapes models produce:
//! a JSON list (bare, fenced, inside prose, or wrapped in an object by structured output),
//! `Q:`/`A:` lines, or InstructLab's `[QUESTION]`/`[ANSWER]`/`[END]` blocks.

use serde_json::Value;

/// A generated pair; `context` only when the reply gave one (grounded skills).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPair {
    pub question: String,
    pub answer: String,
    pub context: Option<String>,
}

/// Parses generated pairs from a reply: a JSON list (possibly fenced or inside prose), or
/// `Q:`/`A:` (also `Question:`/`Answer:`) or `[QUESTION]`/`[ANSWER]` blocks. Errors say why.
pub fn parse_pairs(reply: &str) -> Result<Vec<ParsedPair>, String> {
    if let Some(p) = parse_json_pairs(reply) {
        if !p.is_empty() {
            return Ok(p);
        }
    }
    let p = parse_tagged_pairs(reply);
    if p.is_empty() {
        Err(
            "no question/answer pairs found in the reply (expected a JSON list or Q:/A: blocks)"
                .into(),
        )
    } else {
        Ok(p)
    }
}

fn parse_json_pairs(reply: &str) -> Option<Vec<ParsedPair>> {
    // A whole-reply JSON value first (structured output may wrap the list in an object such
    // as `{"pairs": [...]}`), else the outermost `[...]` inside prose or a code fence.
    let whole = serde_json::from_str::<Value>(reply.trim())
        .ok()
        .and_then(|v| match v {
            Value::Array(_) => Some(v),
            Value::Object(o) => o.into_iter().map(|(_, v)| v).find(Value::is_array),
            _ => None,
        });
    let v = match whole {
        Some(v) => v,
        None => {
            let start = reply.find('[')?;
            let end = reply.rfind(']')?;
            if end <= start {
                return None;
            }
            serde_json::from_str(&reply[start..=end]).ok()?
        }
    };
    let field = |o: &serde_json::Map<String, Value>, keys: &[&str]| {
        o.iter()
            .find(|(k, _)| keys.contains(&k.to_ascii_lowercase().as_str()))
            .and_then(|(_, v)| v.as_str())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    Some(
        v.as_array()?
            .iter()
            .filter_map(Value::as_object)
            .filter_map(|o| {
                Some(ParsedPair {
                    question: field(o, &["question", "q"])?,
                    answer: field(o, &["answer", "a"])?,
                    context: field(o, &["context"]),
                })
            })
            .collect(),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Tag {
    Q,
    A,
    C,
    End,
}

/// Splits a line into a leading tag and the rest (`1. Q: ...`, `**Question:** ...`, `[ANSWER]`).
fn line_tag(line: &str) -> Option<(Tag, &str)> {
    let t = line.trim_start_matches(|c: char| {
        c.is_ascii_digit()
            || c == '.'
            || c == ')'
            || c == '-'
            || c == '*'
            || c == '#'
            || c.is_whitespace()
    });
    let lower = t.to_ascii_lowercase();
    const TAGS: [(&str, Tag); 10] = [
        ("[question]", Tag::Q),
        ("[answer]", Tag::A),
        ("[context]", Tag::C),
        ("[end]", Tag::End),
        ("question:", Tag::Q),
        ("answer:", Tag::A),
        ("context:", Tag::C),
        ("q:", Tag::Q),
        ("a:", Tag::A),
        ("c:", Tag::C),
    ];
    TAGS.iter()
        .find(|(p, _)| lower.starts_with(p))
        .map(|(p, tag)| {
            let rest = t[p.len()..].trim_start_matches('*').trim();
            (*tag, rest)
        })
}

fn parse_tagged_pairs(reply: &str) -> Vec<ParsedPair> {
    let mut pairs = Vec::new();
    let (mut q, mut a, mut c): (Option<String>, Option<String>, Option<String>) =
        (None, None, None);
    let mut cur: Option<Tag> = None;
    let mut flush = |q: &mut Option<String>, a: &mut Option<String>, c: &mut Option<String>| {
        if let (Some(qq), Some(aa)) = (q.take(), a.take()) {
            let (qq, aa) = (qq.trim().to_string(), aa.trim().to_string());
            if !qq.is_empty() && !aa.is_empty() {
                let cc = c
                    .take()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty());
                pairs.push(ParsedPair {
                    question: qq,
                    answer: aa,
                    context: cc,
                });
            }
        }
    };
    for line in reply.lines() {
        match line_tag(line) {
            Some((tag, rest)) => {
                if matches!(tag, Tag::Q | Tag::C | Tag::End) && a.is_some() {
                    flush(&mut q, &mut a, &mut c);
                    if tag != Tag::C {
                        c = None;
                    }
                }
                let slot = match tag {
                    Tag::Q => &mut q,
                    Tag::A => &mut a,
                    Tag::C => &mut c,
                    Tag::End => {
                        cur = None;
                        continue;
                    }
                };
                *slot = Some(rest.to_string());
                cur = Some(tag);
            }
            None => {
                let slot = match cur {
                    Some(Tag::Q) => &mut q,
                    Some(Tag::A) => &mut a,
                    Some(Tag::C) => &mut c,
                    _ => continue,
                };
                if let Some(s) = slot.as_mut() {
                    s.push('\n');
                    s.push_str(line);
                }
            }
        }
    }
    flush(&mut q, &mut a, &mut c);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_fenced_and_in_prose() {
        let r = "Sure!\n```json\n[{\"question\": \"Why?\", \"answer\": \"Because.\"}, {\"Q\": \"x\", \"A\": \"y\"}]\n```";
        let p = parse_pairs(r).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].question, "Why?");
        assert_eq!(p[1].answer, "y");
    }

    #[test]
    fn parses_structured_output_object() {
        let r = r#"{"pairs": [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]}"#;
        let p = parse_pairs(r).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].question, "q2");
    }

    #[test]
    fn parses_tagged_blocks() {
        let r = "1. Q: What is it?\nA: A bird.\nIt sings.\n\n2. Q: Where?\nA: Forests.";
        let p = parse_pairs(r).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].answer, "A bird.\nIt sings.");
        let r = "[QUESTION]\nWhat?\n[ANSWER]\nThat.\n[END]\n[CONTEXT]\nsome text\n[QUESTION]\nWho?\n[ANSWER]\nMe.\n[END]";
        let p = parse_pairs(r).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].context, None);
        assert_eq!(p[1].context.as_deref(), Some("some text"));
        assert_eq!(p[1].question, "Who?");
    }

    #[test]
    fn unparsable_reply_is_an_error() {
        assert!(parse_pairs("I cannot help with that.").is_err());
        assert!(parse_pairs("[1, 2, 3]").is_err());
    }
}
