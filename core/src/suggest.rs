//! "Did you mean …?" for every name a user types: YAML keys, stage kinds, columns, taxonomy
//! keys. One edit distance and one closeness rule, so every message suggests the same way.

/// Edit distance on characters counting an insertion, a deletion, a substitution or a swap of
/// two neighbours as one edit (optimal string alignment), so `jugde` is one edit from `judge`.
/// Names are short: the quadratic cost is nothing.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A name as a user may have meant it: case, spaces and dashes aside (`Seed examples` and
/// `seed-examples` both mean `seed_examples`).
fn normalise(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '-'], "_")
}

/// The candidate closest to `name`, when it is close enough to be a misspelling of it: one
/// edit, or a quarter of the candidate's length for longer names. Ties go to the first.
pub fn closest<'a, S: AsRef<str>>(name: &str, candidates: &'a [S]) -> Option<&'a str> {
    let norm = normalise(name);
    candidates
        .iter()
        .map(|c| c.as_ref())
        .filter(|c| *c != name)
        .map(|c| (distance(&norm, &normalise(c)), c))
        .filter(|(d, c)| *d <= 1.max(c.chars().count() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` when a candidate is close, else the whole list (`known: a, b`), so a
/// message always tells the user what would have worked.
pub fn hint<S: AsRef<str>>(name: &str, candidates: &[S]) -> String {
    match closest(name, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None if candidates.is_empty() => "none are known".to_string(),
        None => format!(
            "known: {}",
            candidates
                .iter()
                .map(|c| format!("`{}`", c.as_ref()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Adds a suggestion to a serde message about an unknown name (`unknown field `threshhold`,
/// expected one of `backend`, `threshold`` → `…; did you mean `threshold`?`). The parser's
/// message lists the candidates itself, so only the suggestion is appended; any other message
/// is returned as it is.
pub fn annotate_unknown(message: &str) -> String {
    for marker in ["unknown field `", "unknown variant `"] {
        let Some(start) = message.find(marker) else {
            continue;
        };
        let rest = &message[start + marker.len()..];
        let Some(end) = rest.find('`') else {
            continue;
        };
        let name = &rest[..end];
        let after = &rest[end + 1..];
        let Some(expected) = after.find("expected") else {
            continue;
        };
        let listed = &after[expected..];
        // The list ends where the parser's position (` at line …`) begins.
        let listed = listed.split(" at line ").next().unwrap_or(listed);
        let candidates: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
        if let Some(c) = closest(name, &candidates) {
            return format!("{message} (did you mean `{c}`?)");
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("txt", "text"), 1);
        assert_eq!(distance("threshhold", "threshold"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("jugde", "judge"), 1);
        assert_eq!(distance("completoin", "completion"), 1);
    }

    #[test]
    fn closest_takes_misspellings_not_strangers() {
        let cols = ["id", "text", "topic"];
        assert_eq!(closest("txt", &cols), Some("text"));
        assert_eq!(closest("Text", &cols), Some("text"));
        assert_eq!(closest("zzzzzz", &cols), None);
        assert_eq!(closest("zz", &cols), None);
        assert_eq!(closest("jugde", &["generate", "judge"]), Some("judge"));
        let keys = ["seed_examples", "task_description", "version"];
        assert_eq!(closest("seed examples", &keys), Some("seed_examples"));
        assert_eq!(closest("Task-Description", &keys), Some("task_description"));
        assert_eq!(closest("created", &keys), None);
        assert_eq!(hint("zz", &cols), "known: `id`, `text`, `topic`");
        assert_eq!(hint("txt", &cols), "did you mean `text`?");
    }

    #[test]
    fn serde_messages_get_a_suggestion() {
        let m = "pipeline[0]: unknown field `threshhold`, expected one of `backend`, \
                 `threshold`, `rubric` at line 9 column 5";
        assert!(annotate_unknown(m).ends_with("(did you mean `threshold`?)"));
        let m = "input.format: unknown variant `jsonll`, expected one of `parquet`, `jsonl`";
        assert!(annotate_unknown(m).ends_with("(did you mean `jsonl`?)"));
        let m = "unknown field `zzzzzzzz`, expected `a` or `b`";
        assert_eq!(annotate_unknown(m), m);
        assert_eq!(
            annotate_unknown("missing field `name`"),
            "missing field `name`"
        );
    }
}
