//! The rules of each PII detector in [`super::pii_detect`]: its patterns and the check that
//! confirms a candidate (checksums, shapes, the words around it). A check gets the text (masked
//! where earlier detectors found something) and the candidate's byte range, and returns the
//! range to redact or `None`.

use std::sync::OnceLock;

use regex::Regex;

use super::pii_checks as checks;
use super::pii_context::{mentions, words_after, words_before};
use super::pii_names as names;

/// `\b` as ASCII word boundaries: Unicode `\b` makes the regex engine leave its fast DFA on
/// any non-ASCII text (10 MB/s instead of 70 for the card pattern). The patterns it is applied
/// to start and end on ASCII digits, letters or punctuation, where both agree; the name
/// patterns, which start on any capital (`Élodie`), keep Unicode boundaries.
pub(super) fn ascii_word_boundaries(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

// ---- e-mail -------------------------------------------------------------------------------

/// Local parts may hold letters of any script and apostrophes (`sean.o'brien`, `zoë`).
pub(super) const EMAIL_RE: &str =
    r"[\p{L}\p{N}._%+'’-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.\p{L}{2,}";

/// `john at example dot com`, `john (at) example (dot) com`, `john[at]example.co.uk`,
/// `claire dot moreau at example dot fr`.
pub(super) const SPOKEN_EMAIL_RE: &str = concat!(
    r"(?i)\b(?P<local>[\p{L}\p{N}._%+-]+(?:\s+dot\s+[\p{L}\p{N}._%+-]+)*)",
    r"\s*(?P<at>\(at\)|\[at\]|\{at\}|<at>|\sat\s|@)\s*",
    r"(?P<domain>[\p{L}\p{N}-]+)",
    r"(?:\s*(?:\(dot\)|\[dot\]|\{dot\}|<dot>|\sdot\s|\.)\s*[\p{L}\p{N}-]+)*",
    r"\s*(?:\(dot\)|\[dot\]|\{dot\}|<dot>|\sdot\s|\.)\s*",
    r"(?:com|org|net|edu|gov|mil|int|io|co|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|ie|pl|pt|",
    r"eu|us|ca|au|nz|in|jp|cn|br|mx|ru|info|biz|me|dev|app|ai|tech)\b"
);

/// Words that, before a spoken "at", are prose rather than a mailbox (`look at the dot com
/// bubble`, `sign up at example.com`).
const NOT_LOCAL: &[&str] = &[
    "me",
    "us",
    "you",
    "him",
    "her",
    "them",
    "it",
    "up",
    "in",
    "out",
    "back",
    "here",
    "there",
    "look",
    "looked",
    "looking",
    "stare",
    "stared",
    "staring",
    "is",
    "was",
    "were",
    "are",
    "be",
    "been",
    "arrive",
    "arrived",
    "work",
    "works",
    "worked",
    "working",
    "live",
    "lives",
    "lived",
    "shop",
    "shopping",
    "buy",
    "bought",
    "sign",
    "signed",
    "log",
    "logged",
    "login",
    "visit",
    "visited",
    "found",
    "find",
    "available",
    "online",
    "only",
    "sold",
    "sell",
    "listed",
    "hosted",
    "published",
    "posted",
    "launched",
    "started",
    "jobs",
    "job",
    "internship",
];

/// Words that, after a spoken "at", are prose rather than a domain.
const NOT_DOMAIN: &[&str] = &[
    "the", "a", "an", "this", "that", "these", "those", "my", "your", "our", "their", "his", "her",
    "its", "some", "any", "every", "each", "least", "most", "all", "first", "last", "once", "home",
    "night", "noon", "work", "school", "one", "two", "three",
];

pub(super) fn email(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let m = &t[s..e];
    let trimmed = m.trim_start_matches(['.', '\'', '’', '-', '_', '%', '+']);
    let s = s + (m.len() - trimmed.len());
    (!trimmed.starts_with('@')).then_some((s, e))
}

pub(super) fn spoken_email(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(&ascii_word_boundaries(SPOKEN_EMAIL_RE)).expect("valid PII regex")
    });
    let m = &t[s..e];
    let c = re.captures(m)?;
    let at = c["at"].trim().to_lowercase();
    let spoken_dot = {
        let l = m.to_lowercase();
        ["(dot)", "[dot]", "{dot}", "<dot>", " dot "]
            .iter()
            .any(|d| l.contains(d))
    };
    // A plain " at " with real dots is a sentence about a website, and `a@b.c` was the
    // plain detector's: something must be spelled out.
    let obfuscated = (at != "at" && at != "@") || spoken_dot;
    let local = c["local"].to_lowercase();
    let domain = c["domain"].to_lowercase();
    (obfuscated && !NOT_LOCAL.contains(&local.as_str()) && !NOT_DOMAIN.contains(&domain.as_str()))
        .then_some((s, e))
}

// ---- numbers with checksums ---------------------------------------------------------------

pub(super) fn iban(t: &str, s: usize, _e: usize) -> Option<(usize, usize)> {
    let n = checks::iban_prefix_len(&t[s..])?;
    let continues = t[s + n..].chars().next().is_some_and(char::is_alphanumeric);
    (!continues).then_some((s, s + n))
}

pub(super) fn card(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let isbn_context = mentions(&words_before(t, s, 2), &["isbn", "isbn13", "isbn-13"]);
    (checks::card_number(&t[s..e]) && !isbn_context).then_some((s, e))
}

/// Words that make a bare or space-separated nine-digit number an SSN.
const SSN_WORDS: &[&str] = &[
    "ssn",
    "ssns",
    "ss#",
    "social security",
    "soc sec",
    "ssa",
    "taxpayer",
    "itin",
];

pub(super) fn nino(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    checks::nino_prefix(&t[s..e]).then_some((s, e))
}

pub(super) fn ssn(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let m = &t[s..e];
    if !checks::ssn(m) {
        return None;
    }
    let dashed = m.contains('-');
    let context =
        mentions(&words_before(t, s, 6), SSN_WORDS) || mentions(&words_after(t, e, 4), SSN_WORDS);
    (dashed || context).then_some((s, e))
}

// ---- network addresses --------------------------------------------------------------------

/// A candidate is an IPv6 address if it (minus trailing `.`/`:` punctuation) parses as one and
/// looks like an address rather than prose (`a::b`): some group of 3+ hex digits or 5+ groups.
pub(super) fn ipv6(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let looks_like = |c: &str| {
        c.parse::<std::net::Ipv6Addr>().is_ok()
            && (c.split(':').any(|g| g.len() >= 3) || c.split(':').count() >= 5)
    };
    let mut end = e;
    loop {
        let c = &t[s..end];
        if looks_like(c) {
            return Some((s, end));
        }
        if c.ends_with(['.', ':']) {
            end -= 1;
        } else {
            return None;
        }
    }
}

pub(super) const IPV4_RE: &str =
    r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b";

/// Words before a dotted quad that make it a section, version or identifier number.
const NUMBERING_WORDS: &[&str] = &[
    "section",
    "sections",
    "sec",
    "§",
    "chapter",
    "ch",
    "clause",
    "clauses",
    "version",
    "versions",
    "ver",
    "v",
    "release",
    "rel",
    "rule",
    "article",
    "art",
    "figure",
    "fig",
    "table",
    "step",
    "paragraph",
    "para",
    "item",
    "appendix",
    "annex",
    "part",
    "oid",
    "rfc",
    "build",
    "revision",
    "rev",
    "patch",
    "firmware",
    "sdk",
    "api",
    "standard",
    "iso",
    "requirement",
    "req",
    "subsection",
    "heading",
    "see",
];

pub(super) fn ipv4(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let before = &t[..s];
    let after = &t[e..];
    // One part of a longer dotted number: `1.2.3.4.5`, `10.1.2.3.4`.
    let longer = (before.ends_with('.')
        && before[..before.len() - 1]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_digit()))
        || (after.starts_with('.') && after[1..].starts_with(|c: char| c.is_ascii_digit()));
    let numbering = mentions(&words_before(t, s, 1), NUMBERING_WORDS);
    (!longer && !numbering).then_some((s, e))
}

// ---- phones -------------------------------------------------------------------------------

/// `+44 20 7946 0958`, `+1 (415) 555-0123`, `+33 1 23 45 67 89`.
pub(super) const INTL_PHONE_RE: &str =
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}\b";
/// `(415) 555-0123`, `415-555-0123`, `415.555.0123`, `1-800-555-0199`.
pub(super) const NANP_PHONE_RE: &str =
    r"(?:\b1[-.\s])?(?:\(\d{3}\)\s?|\b\d{3}[-.\s])\d{3}[-.\s]\d{4}\b";
/// National numbers with a trunk `0`: `020 7946 0958`, `07700 900123`, `01 23 45 67 89`.
pub(super) const TRUNK_PHONE_RE: &str =
    r"\b0[1-9]\d{1,3}[\s-]\d{3,4}[\s-]?\d{3,4}\b|\b0[1-9](?:[\s.]\d{2}){4}\b";
/// Unseparated: NANP ten digits (`4155550123`) or a trunk-`0` national number; only next to
/// a word such as "call" or "phone".
pub(super) const BARE_PHONE_RE: &str = r"\b[2-9]\d{2}[2-9]\d{6}\b|\b0[1-9]\d{8,9}\b";

/// Words that say a number nearby is a phone number.
const PHONE_WORDS: &[&str] = &[
    "call",
    "calls",
    "calling",
    "called",
    "phone",
    "phones",
    "tel",
    "telephone",
    "mobile",
    "cell",
    "cellphone",
    "ring",
    "fax",
    "text",
    "sms",
    "whatsapp",
    "contact",
    "reach",
    "dial",
    "number",
    "hotline",
    "helpline",
    "landline",
    "mob",
    "ph",
];

/// Words that say a number nearby is an identifier, not a phone number.
const NOT_PHONE_WORDS: &[&str] = &[
    "sku",
    "order",
    "invoice",
    "inv",
    "part",
    "serial",
    "ref",
    "reference",
    "id",
    "account",
    "acct",
    "tracking",
    "isbn",
    "model",
    "ticket",
    "case",
    "po",
    "item",
    "product",
    "batch",
    "lot",
    "code",
    "confirmation",
    "transaction",
    "txn",
    "booking",
    "policy",
    "claim",
    "patent",
    "upc",
    "ean",
    "barcode",
    "routing",
    "iban",
    "card",
    "version",
    "build",
    "issn",
    "doi",
    "pnr",
    "member",
    "customer",
    "employee",
    "shipment",
    "parcel",
    "docket",
];

/// A phone candidate with `min_digits` digits or more (at most 15) that is not one group of
/// a longer number (`0123 4567 8901 2345`) and has no identifier's word ("SKU", "order",
/// "tracking") among the three before it; with `need_word`, a phone's word ("call",
/// "mobile") must be among the five before it or the two after.
pub(super) fn phone(
    t: &str,
    s: usize,
    e: usize,
    min_digits: usize,
    need_word: bool,
) -> Option<(usize, usize)> {
    let digits = t[s..e].chars().filter(char::is_ascii_digit).count();
    if !(min_digits..=15).contains(&digits) || continues_number(t, s, e) {
        return None;
    }
    if mentions(&words_before(t, s, 3), NOT_PHONE_WORDS) {
        return None;
    }
    let named = || {
        mentions(&words_before(t, s, 5), PHONE_WORDS)
            || mentions(&words_after(t, e, 2), PHONE_WORDS)
    };
    (!need_word || named()).then_some((s, e))
}

/// Whether `t[s..e]` is followed or preceded by another digit group (`1234 5678` going on
/// past the match, `-12` before it).
fn continues_number(t: &str, s: usize, e: usize) -> bool {
    let after = &t.as_bytes()[e..];
    let before = &t.as_bytes()[..s];
    let sep = |b: u8| matches!(b, b' ' | b'-' | b'.');
    (after.len() >= 2 && sep(after[0]) && after[1].is_ascii_digit())
        || (before.len() >= 2
            && sep(before[before.len() - 1])
            && before[before.len() - 2].is_ascii_digit())
}

/// NANP numbers: an area code starting 2–9 (after an optional country code 1).
pub(super) fn nanp_phone(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let digits: String = t[s..e].chars().filter(char::is_ascii_digit).collect();
    let national = if digits.len() == 11 {
        &digits[1..]
    } else {
        &digits[..]
    };
    if !national.starts_with(|c: char| ('2'..='9').contains(&c)) {
        return None;
    }
    phone(t, s, e, 10, false)
}

// ---- street addresses ---------------------------------------------------------------------

/// A house number, one to three capitalised (or ordinal) name words, a street type, then an
/// optional unit and an optional `City, ST 12345` / UK postcode.
pub(super) const STREET_RE: &str = concat!(
    r"\b\d{1,5}[A-Za-z]?(?:-\d{1,4})?\s+",
    r"(?:(?:North|South|East|West|N|S|E|W)\.?\s+)?",
    r"(?:(?:\p{Lu}[\p{L}'’]+|\d{1,3}(?:st|nd|rd|th))\s+){1,3}",
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|",
    r"Terrace|Ter|Way|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Crescent|Cres|Close|",
    r"Gardens|Row|Mews|Trail|Grove|Walk|Rise)\b\.?",
    r"(?:\s(?:NW|NE|SW|SE)\b)?",
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl)\.?\s*#?[A-Za-z0-9-]+|,?\s+#\d+)?",
    r"(?:,\s*\p{Lu}\p{L}+(?:\s\p{Lu}\p{L}+){0,2},?\s*",
    r"(?:[A-Z]{2}\s+\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}))?"
);

const YEAR_PREPOSITIONS: &[&str] = &[
    "in", "since", "by", "until", "till", "from", "of", "during", "after", "before", "around",
    "circa",
];

/// Words before a number that make it a count rather than a house number.
const COUNT_WORDS: &[&str] = &[
    "top", "over", "about", "nearly", "some", "than", "all", "only", "first", "last", "best",
];

pub(super) fn street(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let m = &t[s..e];
    let number: String = m.chars().take_while(char::is_ascii_digit).collect();
    // "In 1969 Abbey Road ...": a year, not a house number; "top 10 Wall Street banks": a
    // count.
    let year = number.len() == 4 && (number.starts_with("19") || number.starts_with("20"));
    let before = words_before(t, s, 1);
    if (year && mentions(&before, YEAR_PREPOSITIONS)) || mentions(&before, COUNT_WORDS) {
        return None;
    }
    // A trailing abbreviation dot is left to the sentence.
    let e = if m.ends_with('.') { e - 1 } else { e };
    Some((s, e))
}

// ---- person names -------------------------------------------------------------------------

const NAME_WORD: &str = r"\p{Lu}[\p{L}'’-]*\p{L}";

pub(super) const TITLED_NAME_RE: &str = concat!(
    r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sir|Dame|Madam|Madame|Mme|Mlle|Herr|Frau)",
    r"\.?\s+(?P<name>\p{Lu}[\p{L}'’-]*\p{L}(?:\s+\p{Lu}[\p{L}'’-]*\p{L})?)\b"
);

pub(super) const GIVEN_NAME_RE: &str = concat!(
    r"\b\p{Lu}[\p{L}'’-]*\p{L}\s+(?:\p{Lu}\.\s+)?",
    r"(?:(?:van|von|de|da|di|del|le|la|ter|bin|al)\s+)?",
    r"\p{Lu}[\p{L}'’-]*\p{L}\b"
);

/// The name words of `span` (from byte `s` of `t`) that pass as a surname, trimmed of a
/// possessive `'s`: the end of the last accepted word.
fn name_end(t: &str, words_from: usize, e: usize) -> Option<usize> {
    static WORD: OnceLock<Regex> = OnceLock::new();
    let word = WORD.get_or_init(|| Regex::new(NAME_WORD).expect("valid PII regex"));
    let mut end = None;
    for w in word.find_iter(&t[words_from..e]) {
        let text = w
            .as_str()
            .trim_end_matches("'s")
            .trim_end_matches("’s")
            .trim_end_matches(['\'', '’']);
        if !names::surname(text) {
            break;
        }
        end = Some(words_from + w.start() + text.len());
    }
    end
}

pub(super) fn titled_name(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(TITLED_NAME_RE).expect("valid PII regex"));
    let name = re.captures(&t[s..e])?.name("name")?;
    let start = s + name.start();
    name_end(t, start, e).map(|end| (start, end))
}

pub(super) fn given_name(t: &str, s: usize, e: usize) -> Option<(usize, usize)> {
    let m = &t[s..e];
    let first = m.split_whitespace().next()?;
    if !names::given_name(first) {
        return None;
    }
    // `Henry Ford Museum`: the word after the name makes it a place or an organisation.
    let next = t[e..].split_whitespace().next().unwrap_or("");
    if names::organisation_word(next.trim_end_matches(|c: char| !c.is_alphanumeric())) {
        return None;
    }
    let last = m.split_whitespace().last()?;
    let last_at = e - last.len();
    let end = name_end(t, last_at, e)?;
    Some((s, end))
}
