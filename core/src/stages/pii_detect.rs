//! Finding and redacting personal data in text: e-mail addresses (also written out, `john at
//! example dot com`), IBANs, payment card numbers, US social security numbers, UK national
//! insurance numbers, IPv4/IPv6 addresses, phone numbers, street addresses and (on request)
//! person names.
//!
//! Detectors run in a fixed order over the text; what one finds is masked before the next
//! looks, so a card number is not half-eaten by the phone detector. Patterns favour precision:
//! a false positive loses a number from training text, a false negative leaks it, so broad
//! candidates are narrowed by validators ([`super::pii_checks`]: issuer and length rules, Luhn,
//! ISBN, SSA rules, mod-97) and by the words around them ([`super::pii_context`]: "SSN" near a
//! bare nine-digit number, "Section" before `4.2.1.3`, "SKU" before a dashed number). A
//! candidate that fails is not dropped whole: the search resumes inside it, so `Met Sarah
//! Connor` still yields `Sarah Connor`.
//!
//! Recall and precision per kind are measured on the corpus in `tests/fixtures/pii/` by
//! `cargo run -p synthforge-core --example pii_bench` (table in `stages/README.md`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

use super::pii_rules::{
    ascii_word_boundaries, card, email, given_name, iban, ipv4, ipv6, nanp_phone, nino, phone,
    spoken_email, ssn, street, titled_name, BARE_PHONE_RE, EMAIL_RE, GIVEN_NAME_RE, INTL_PHONE_RE,
    IPV4_RE, NANP_PHONE_RE, SPOKEN_EMAIL_RE, STREET_RE, TITLED_NAME_RE, TRUNK_PHONE_RE,
};

/// A kind of personal data: its counter name (`pii:<name>`) and placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kind {
    pub name: &'static str,
    pub placeholder: &'static str,
}

pub const EMAIL: Kind = Kind {
    name: "email",
    placeholder: "[EMAIL]",
};
pub const IBAN: Kind = Kind {
    name: "iban",
    placeholder: "[IBAN]",
};
pub const CREDIT_CARD: Kind = Kind {
    name: "credit_card",
    placeholder: "[CREDIT_CARD]",
};
pub const US_SSN: Kind = Kind {
    name: "us_ssn",
    placeholder: "[US_SSN]",
};
pub const UK_NINO: Kind = Kind {
    name: "uk_nino",
    placeholder: "[UK_NINO]",
};
pub const IPV6: Kind = Kind {
    name: "ipv6",
    placeholder: "[IP_ADDRESS]",
};
pub const IPV4: Kind = Kind {
    name: "ipv4",
    placeholder: "[IP_ADDRESS]",
};
pub const PHONE: Kind = Kind {
    name: "phone",
    placeholder: "[PHONE]",
};
pub const STREET_ADDRESS: Kind = Kind {
    name: "street_address",
    placeholder: "[ADDRESS]",
};
pub const PERSON_NAME: Kind = Kind {
    name: "person_name",
    placeholder: "[NAME]",
};

/// All kinds, in the order they are applied.
pub const KINDS: &[Kind] = &[
    EMAIL,
    IBAN,
    CREDIT_CARD,
    US_SSN,
    UK_NINO,
    IPV6,
    IPV4,
    PHONE,
    STREET_ADDRESS,
    PERSON_NAME,
];

/// The kinds a `pii` stage redacts when it names none: all but person names, whose gazetteer
/// is the least precise detector and would also blank public figures and fictional
/// characters from generated text (ask for `person_name` explicitly).
pub const DEFAULT_KINDS: &[Kind] = &[
    EMAIL,
    IBAN,
    CREDIT_CARD,
    US_SSN,
    UK_NINO,
    IPV6,
    IPV4,
    PHONE,
    STREET_ADDRESS,
];

/// One piece of personal data found in a text: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// Confirms a candidate `text[start..end]` (text masked where earlier detectors found
/// something) and returns the byte range to redact, or `None` to leave it.
type Check = fn(text: &str, start: usize, end: usize) -> Option<(usize, usize)>;

struct Detector {
    kind: Kind,
    re: Regex,
    check: Check,
}

/// What found spans are overwritten with before the next detector runs: one byte per byte,
/// so positions stay those of the original text, and neither a word nor a digit character.
const MASK: u8 = 0x1f;

fn detectors() -> &'static [Detector] {
    static D: OnceLock<Vec<Detector>> = OnceLock::new();
    D.get_or_init(|| {
        let d = |kind, pattern: &str, check| Detector {
            kind,
            re: compile(&ascii_word_boundaries(pattern)),
            check,
        };
        let unicode = |kind, pattern: &str, check| Detector {
            kind,
            re: compile(pattern),
            check,
        };
        vec![
            d(EMAIL, EMAIL_RE, email),
            d(EMAIL, SPOKEN_EMAIL_RE, spoken_email),
            d(IBAN, r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", iban),
            d(CREDIT_CARD, r"\b\d(?:[ -]?\d){11,18}\b", card),
            d(
                US_SSN,
                r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b|\b\d{9}\b",
                ssn,
            ),
            d(
                UK_NINO,
                r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
                nino,
            ),
            d(IPV6, r"(?i)[0-9a-f:][0-9a-f:.]*:[0-9a-f:.]*", ipv6),
            d(IPV4, IPV4_RE, ipv4),
            d(PHONE, INTL_PHONE_RE, |t, s, e| phone(t, s, e, 8, false)),
            d(PHONE, NANP_PHONE_RE, nanp_phone),
            d(PHONE, TRUNK_PHONE_RE, |t, s, e| phone(t, s, e, 10, false)),
            d(PHONE, BARE_PHONE_RE, |t, s, e| phone(t, s, e, 10, true)),
            d(STREET_ADDRESS, STREET_RE, street),
            unicode(PERSON_NAME, TITLED_NAME_RE, titled_name),
            unicode(PERSON_NAME, GIVEN_NAME_RE, given_name),
        ]
    })
}

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid PII regex")
}

/// Finds the `enabled` kinds in `text`, ordered by position; spans never overlap.
pub fn detect(text: &str, enabled: &[Kind]) -> Vec<Finding> {
    let mut work = text.to_string();
    let mut found = Vec::new();
    for d in detectors().iter().filter(|d| enabled.contains(&d.kind)) {
        let spans = candidates(d, &work);
        if spans.is_empty() {
            continue;
        }
        // Spans lie on char boundaries, so overwriting their bytes keeps the text UTF-8.
        let mut bytes = std::mem::take(&mut work).into_bytes();
        for &(s, e) in &spans {
            bytes[s..e].fill(MASK);
            found.push(Finding {
                kind: d.kind,
                start: s,
                end: e,
            });
        }
        work = String::from_utf8(bytes).expect("masking whole chars keeps UTF-8");
    }
    found.sort_by_key(|f| f.start);
    found
}

/// Redacts the `enabled` kinds in `text`, adding a count per kind name into `counts`.
pub fn redact(text: &str, enabled: &[Kind], counts: &mut BTreeMap<String, u64>) -> String {
    let found = detect(text, enabled);
    if found.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in found {
        out.push_str(&text[at..f.start]);
        out.push_str(f.kind.placeholder);
        at = f.end;
        *counts.entry(f.kind.name.to_string()).or_default() += 1;
    }
    out.push_str(&text[at..]);
    out
}

/// The kinds named in `names` (counter names), or an error naming the unknown one.
pub fn kinds_named(names: &[String]) -> Result<Vec<Kind>, String> {
    names
        .iter()
        .map(|n| {
            KINDS.iter().copied().find(|k| k.name == n).ok_or_else(|| {
                let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
                format!("unknown PII type `{n}` (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// The confirmed spans of one detector over `work`. After a rejected candidate the search
/// resumes at the end of the candidate's first word (so `Met Sarah` rejected still finds
/// `Sarah Connor`); the slice then starts on a non-word character, where every pattern's
/// leading `\b` + word character means what it means in the whole text.
fn candidates(d: &Detector, work: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut pos = 0;
    'search: while pos < work.len() {
        for m in d.re.find_iter(&work[pos..]) {
            let (ms, me) = (pos + m.start(), pos + m.end());
            match (d.check)(work, ms, me) {
                Some((s, e)) if s < e => spans.push((s, e)),
                _ => {
                    pos = first_word_end(work, ms);
                    continue 'search;
                }
            }
        }
        break;
    }
    spans
}

/// The end of the word starting at byte `i` (at least one character past `i`).
fn first_word_end(s: &str, i: usize) -> usize {
    let mut chars = s[i..].char_indices();
    let first = chars.next().map_or(1, |(_, c)| c.len_utf8());
    chars
        .find(|&(_, c)| !c.is_alphanumeric() && c != '_')
        .map_or(s.len(), |(j, _)| i + j.max(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> (String, BTreeMap<String, u64>) {
        let mut c = BTreeMap::new();
        (redact(text, KINDS, &mut c), c)
    }

    fn redacted(text: &str) -> String {
        all(text).0
    }

    #[test]
    fn redacts_each_kind_and_counts() {
        let (t, c) = all(
            "Mail jane.doe@example.co.uk or call +44 20 7946 0958 / (555) 123-4567. \
             Card 4111-1111-1111-1111, SSN 123-45-6789, NINO AB 12 34 56 C, \
             hosts 192.168.1.20 and 2001:db8::8a2e:370:7334, IBAN DE89 3704 0044 0532 0130 00, \
             ship to 221B Baker Street, London NW1 6XE for Dr. Watson.",
        );
        assert_eq!(
            t,
            "Mail [EMAIL] or call [PHONE] / [PHONE]. Card [CREDIT_CARD], SSN [US_SSN], \
             NINO [UK_NINO], hosts [IP_ADDRESS] and [IP_ADDRESS], IBAN [IBAN], \
             ship to [ADDRESS] for Dr. [NAME]."
        );
        for k in [
            "email",
            "credit_card",
            "us_ssn",
            "uk_nino",
            "ipv4",
            "ipv6",
            "iban",
            "street_address",
            "person_name",
        ] {
            assert_eq!(c.get(k), Some(&1), "{k}: {c:?}");
        }
        assert_eq!(c["phone"], 2);
    }

    #[test]
    fn leaves_ordinary_numbers() {
        let text = "In 2024-01-15 we sold 1,250 units at 10:30:00; order 4111 1111 1111 1112; \
                    version 3.2 and SSN-like 000-12-3456; a::b; between 1990 and 2000.";
        let (t, c) = all(text);
        assert_eq!(t, text, "{c:?}");
        assert!(c.is_empty());
    }

    #[test]
    fn the_held_out_misses_are_caught() {
        for (text, want) in [
            (
                "Write to john at example dot com today",
                "Write to [EMAIL] today",
            ),
            ("info [at] example.co.uk.", "[EMAIL]."),
            ("claire dot moreau at example dot fr", "[EMAIL]"),
            (
                "mail j.doe (at) mail (dot) example (dot) org",
                "mail [EMAIL]",
            ),
            ("sean.o'brien@example.ie replied", "[EMAIL] replied"),
            ("from zoë.müller@beispiel.de.", "from [EMAIL]."),
            ("'bob@example.com'", "'[EMAIL]'"),
            ("SSN 412 55 7890 on file", "SSN [US_SSN] on file"),
            (
                "Her social security number is 536228190.",
                "Her social security number is [US_SSN].",
            ),
            (
                "call me at 4155550123 tonight",
                "call me at [PHONE] tonight",
            ),
        ] {
            assert_eq!(redacted(text), want, "{text}");
        }
    }

    #[test]
    fn the_held_out_false_positives_are_left() {
        for text in [
            "ISBN 978-0-306-40615-7 and 9780306406157 are the same book",
            "See Section 4.2.1.3 for the rules",
            "Dotted 1.2.3.4.5 is no address",
            "Firmware 10.4.2.1 ships today",
            "SKU 0042-1234-5678 is out of stock",
            "Order 0142-1234-5678 shipped",
            "Ticket 5551234567 was closed",
            "the 123456789 rows were read",
            "IBAN-like DE89 3704 0044 0532 0130 01 fails mod-97",
            "We looked at the dot com bubble; sign up at example.com.",
            "In 1969 Abbey Road topped the charts.",
            "Top 10 Wall Street banks cut bonuses.",
            "They met at Charles River and Kevin Street.",
        ] {
            let (t, c) = all(text);
            assert_eq!(t, text, "{c:?}");
        }
    }

    #[test]
    fn a_rejected_candidate_does_not_hide_one_inside_it() {
        assert_eq!(
            redacted("Met Sarah Connor's dog"),
            "Met [NAME]'s dog",
            "\"Met Sarah\" is rejected, \"Sarah Connor\" found"
        );
    }

    #[test]
    fn subsets_and_names() {
        let mut c = BTreeMap::new();
        let t = redact(
            "a@b.io 10.0.0.1",
            &kinds_named(&["email".into()]).unwrap(),
            &mut c,
        );
        assert_eq!(t, "[EMAIL] 10.0.0.1");
        assert!(kinds_named(&["passport".into()])
            .unwrap_err()
            .contains("passport"));
        assert!(!DEFAULT_KINDS.contains(&PERSON_NAME));
    }

    #[test]
    fn findings_carry_original_byte_ranges() {
        let text = "é é mail a@b.io, tel +1 415 555 0123";
        let f = detect(text, DEFAULT_KINDS);
        let spans: Vec<_> = f
            .iter()
            .map(|f| (f.kind.name, &text[f.start..f.end]))
            .collect();
        assert_eq!(spans, [("email", "a@b.io"), ("phone", "+1 415 555 0123")]);
    }
}
