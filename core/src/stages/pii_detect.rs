//! Finding and redacting personal data in text: e-mail addresses, phone numbers, IPv4/IPv6
//! addresses, credit-card numbers (Luhn-checked, so order numbers are left alone), US social
//! security numbers and UK national insurance numbers.
//!
//! Detectors run in a fixed order, each on the previous one's output, so that a card number is
//! not half-eaten by the phone detector. Patterns favour precision: a false positive loses a
//! number from training text; a false negative leaks it, so validators (Luhn, SSN area rules,
//! NINO prefixes, `Ipv6Addr` parsing) narrow broad candidates instead of loosening patterns.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::{Captures, Regex};

/// A kind of personal data: its counter name (`pii:<name>`) and placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    pub placeholder: &'static str,
}

pub const EMAIL: Kind = Kind {
    name: "email",
    placeholder: "[EMAIL]",
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

/// All kinds, in the order they are applied.
pub const KINDS: &[Kind] = &[EMAIL, CREDIT_CARD, US_SSN, UK_NINO, IPV6, IPV4, PHONE];

struct Detector {
    kind: Kind,
    re: Regex,
    /// Confirms a candidate; returns the part of the match to keep after the placeholder
    /// (trailing punctuation a greedy pattern swallowed), or `None` to leave it unchanged.
    check: fn(&str) -> Option<usize>,
}

fn detectors() -> &'static [Detector] {
    static D: OnceLock<Vec<Detector>> = OnceLock::new();
    D.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("valid PII regex");
        vec![
            Detector {
                kind: EMAIL,
                re: re(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
                check: |_| Some(0),
            },
            Detector {
                kind: CREDIT_CARD,
                re: re(r"\b\d(?:[ -]?\d){12,18}\b"),
                check: |m| luhn_card(m).then_some(0),
            },
            Detector {
                kind: US_SSN,
                re: re(r"\b\d{3}-\d{2}-\d{4}\b"),
                check: |m| valid_ssn(m).then_some(0),
            },
            Detector {
                kind: UK_NINO,
                re: re(r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
                check: |m| valid_nino_prefix(m).then_some(0),
            },
            Detector {
                kind: IPV6,
                re: re(r"(?i)[0-9a-f:][0-9a-f:.]*:[0-9a-f:.]*"),
                check: ipv6_len,
            },
            Detector {
                kind: IPV4,
                re: re(r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b"),
                check: |_| Some(0),
            },
            Detector {
                kind: PHONE,
                re: re(concat!(
                    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}\b",
                    r"|(?:\(\d{3}\)\s?|\b\d{3}[-.\s])\d{3}[-.\s]\d{4}\b",
                    r"|\b0\d{2,4}[\s-]\d{3,4}[\s-]?\d{3,4}\b"
                )),
                check: |m| {
                    let d = m.chars().filter(char::is_ascii_digit).count();
                    (7..=15).contains(&d).then_some(0)
                },
            },
        ]
    })
}

/// The Luhn checksum over the digits of `s` (separators ignored), for 13–19 digit numbers.
pub fn luhn_card(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    let check = sum % 10;
    check == 0
}

/// SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000.
fn valid_ssn(s: &str) -> bool {
    let p: Vec<&str> = s.split('-').collect();
    p.len() == 3
        && p[0] != "000"
        && p[0] != "666"
        && !p[0].starts_with('9')
        && p[1] != "00"
        && p[2] != "0000"
}

/// HMRC never issues these prefixes.
fn valid_nino_prefix(s: &str) -> bool {
    !["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"].contains(&&s[..2])
}

/// A candidate is an IPv6 address if it (minus trailing `.`/`:` punctuation) parses as one and
/// looks like an address rather than prose (`a::b`): some group of 3+ hex digits or 5+ groups.
/// Returns how many trailing bytes of the match to keep after the placeholder.
fn ipv6_len(m: &str) -> Option<usize> {
    let looks_like = |s: &str| {
        s.parse::<std::net::Ipv6Addr>().is_ok()
            && (s.split(':').any(|g| g.len() >= 3) || s.split(':').count() >= 5)
    };
    let mut end = m.len();
    loop {
        let s = &m[..end];
        if looks_like(s) {
            return Some(m.len() - end);
        }
        if s.ends_with(['.', ':']) {
            end -= 1;
        } else {
            return None;
        }
    }
}

/// Redacts the `enabled` kinds in `text`, adding a count per kind name into `counts`.
pub fn redact(text: &str, enabled: &[Kind], counts: &mut BTreeMap<String, u64>) -> String {
    let mut out = text.to_string();
    for d in detectors().iter().filter(|d| enabled.contains(&d.kind)) {
        if !d.re.is_match(&out) {
            continue;
        }
        let mut n = 0u64;
        let replaced = d.re.replace_all(&out, |c: &Captures| {
            let m = &c[0];
            match (d.check)(m) {
                Some(keep) => {
                    n += 1;
                    format!("{}{}", d.kind.placeholder, &m[m.len() - keep..])
                }
                None => m.to_string(),
            }
        });
        if n > 0 {
            out = replaced.into_owned();
            *counts.entry(d.kind.name.to_string()).or_default() += n;
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> (String, BTreeMap<String, u64>) {
        let mut c = BTreeMap::new();
        (redact(text, KINDS, &mut c), c)
    }

    #[test]
    fn luhn() {
        assert!(luhn_card("4111 1111 1111 1111"));
        assert!(luhn_card("5500-0000-0000-0004"));
        assert!(luhn_card("378282246310005"));
        assert!(!luhn_card("4111 1111 1111 1112"));
        assert!(
            !luhn_card("0000 0000 0000 0000"),
            "all-same digits are not a card"
        );
        assert!(!luhn_card("12345"));
    }

    #[test]
    fn redacts_each_kind_and_counts() {
        let (t, c) = all(
            "Mail jane.doe@example.co.uk or call +44 20 7946 0958 / (555) 123-4567. \
             Card 4111-1111-1111-1111, SSN 123-45-6789, NINO AB 12 34 56 C, \
             hosts 192.168.1.20 and 2001:db8::8a2e:370:7334.",
        );
        assert_eq!(
            t,
            "Mail [EMAIL] or call [PHONE] / [PHONE]. Card [CREDIT_CARD], SSN [US_SSN], \
             NINO [UK_NINO], hosts [IP_ADDRESS] and [IP_ADDRESS]."
        );
        for k in ["email", "credit_card", "us_ssn", "uk_nino", "ipv4", "ipv6"] {
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
    }
}
