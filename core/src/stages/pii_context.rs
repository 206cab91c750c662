//! The words around a PII candidate, for the detectors whose shape alone is ambiguous: a bare
//! nine-digit number is an SSN only near "SSN" or "social security", a bare ten-digit number a
//! phone only near "call" or "phone", and `4.2.1.3` after "Section" is not an IP address.

/// Up to `n` words (letters, digits, `#`, `§`), lower-cased, that end before byte `pos` of
/// `text`, nearest first. Only the 80 bytes before `pos` are looked at.
pub fn words_before(text: &str, pos: usize, n: usize) -> Vec<String> {
    let window = &text[floor_boundary(text, pos.saturating_sub(80))..pos];
    window
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .rev()
        .take(n)
        .map(str::to_lowercase)
        .collect()
}

/// Up to `n` words that start after byte `pos`, nearest first (80 bytes looked at).
pub fn words_after(text: &str, pos: usize, n: usize) -> Vec<String> {
    let window = &text[pos..ceil_boundary(text, pos + 80)];
    window
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_lowercase)
        .collect()
}

/// Whether any of `words` is one of `keys` (single words) or two adjacent words form one of
/// the two-word `keys` (`"social security"`; `words` are nearest first, as returned above,
/// so pairs are checked in both orders).
pub fn mentions(words: &[String], keys: &[&str]) -> bool {
    words.iter().any(|w| keys.contains(&w.as_str()))
        || words.windows(2).any(|p| {
            let fwd = format!("{} {}", p[0], p[1]);
            let back = format!("{} {}", p[1], p[0]);
            keys.contains(&fwd.as_str()) || keys.contains(&back.as_str())
        })
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '#' || c == '§'
}

/// The largest char boundary `<= i`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary `>= i` (at most the length).
fn ceil_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_words_first_and_pairs_both_ways() {
        let t = "My Social Security number: 536228190, thanks";
        let at = t.find("536").unwrap();
        let before = words_before(t, at, 3);
        assert_eq!(before, ["number", "security", "social"]);
        assert!(mentions(&before, &["social security"]));
        assert!(!mentions(&before, &["ssn"]));
        assert_eq!(words_after(t, at + 9, 2), ["thanks"]);
    }

    #[test]
    fn windows_respect_char_boundaries() {
        let t = "é".repeat(60) + " § 4.2.1.3";
        let at = t.find('4').unwrap();
        assert_eq!(words_before(&t, at, 1), ["§"]);
        assert!(words_after(&t, 0, 1)[0].starts_with('é'));
    }
}
