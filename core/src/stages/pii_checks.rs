//! Checksums and issuing rules that turn a broad PII pattern match into a confident finding:
//! card numbers (issuer prefix, length, grouping, Luhn, not an ISBN-13), US social security
//! numbers (SSA area/group/serial rules), UK national insurance prefixes and IBANs (country
//! length and ISO 7064 mod-97).
//!
//! Each check answers "could this really have been issued?", so a number that merely has the
//! right shape (an order number, an ISBN, a SKU) is left in the text.

/// The Luhn checksum over the digits of `s` (separators ignored), for 12–19 digit numbers.
pub fn luhn_card(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(12..=19).contains(&digits.len()) || digits.iter().all(|&d| d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2 == 1, d * 2) {
            (true, x) if x > 9 => x - 9,
            (true, x) => x,
            (false, _) => d,
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `s` (digits with optional spaces or dashes) is a payment card number: a known
/// issuer prefix with a length that issuer uses, groups as printed on cards, a valid Luhn
/// digit, and not an ISBN-13 (which passes Luhn-like checks often enough to matter).
pub fn card_number(s: &str) -> bool {
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    card_grouping(s) && issuer_accepts(&digits) && luhn_card(&digits) && !isbn13(&digits)
}

/// Separators, when present, are all the same character and split the number as cards print
/// it: groups of four (the last may be shorter), or 4-6-5 / 4-6-4 (Amex, Diners).
fn card_grouping(s: &str) -> bool {
    let seps: Vec<char> = s.chars().filter(|c| !c.is_ascii_digit()).collect();
    if seps.is_empty() {
        return true;
    }
    if seps.iter().any(|&c| c != seps[0]) {
        return false;
    }
    let groups: Vec<usize> = s.split(seps[0]).map(str::len).collect();
    let (last, head) = groups
        .split_last()
        .expect("split yields one group at least");
    matches!(groups.as_slice(), [4, 6, 5] | [4, 6, 4])
        || (head.iter().all(|&g| g == 4) && (1..=4).contains(last) && head.len() >= 2)
}

/// Issuer identification number (leading digits) and the lengths that issuer uses.
fn issuer_accepts(d: &str) -> bool {
    let len = d.len();
    let prefix = |n: usize| d[..n].parse::<u32>().unwrap_or(0);
    let in_range = |n: usize, lo: u32, hi: u32| (lo..=hi).contains(&prefix(n));
    match d.as_bytes()[0] {
        // Visa
        b'4' => matches!(len, 13 | 16 | 19),
        // Mastercard 51-55 and 2221-2720; Mir 2200-2204
        b'5' if in_range(2, 51, 55) => len == 16,
        // Maestro 50, 56-58
        b'5' => (12..=19).contains(&len),
        b'2' => (in_range(4, 2221, 2720) && len == 16) || (in_range(4, 2200, 2204) && len >= 16),
        // Amex 34/37; Diners 300-305, 36, 38-39; JCB 3528-3589
        b'3' => {
            (matches!(prefix(2), 34 | 37) && len == 15)
                || ((in_range(3, 300, 305) || matches!(prefix(2), 36 | 38 | 39))
                    && (14..=19).contains(&len))
                || (in_range(4, 3528, 3589) && (16..=19).contains(&len))
        }
        // Discover 6011, 644-649, 65; UnionPay 62; Maestro 6304, 6759, 6761-6763
        b'6' => {
            (prefix(4) == 6011 || in_range(3, 644, 649) || prefix(2) == 65 || prefix(2) == 62)
                && (16..=19).contains(&len)
                || ((matches!(prefix(4), 6304 | 6759) || in_range(4, 6761, 6763))
                    && (12..=19).contains(&len))
        }
        _ => false,
    }
}

/// An ISBN-13: 978/979 prefix and the EAN-13 check digit (weights 1,3,1,3…).
pub fn isbn13(digits: &str) -> bool {
    if digits.len() != 13 || !(digits.starts_with("978") || digits.starts_with("979")) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

/// SSA rules over the nine digits of `s`: area not 000, 666 or 9xx; group not 00; serial not
/// 0000.
pub fn ssn(s: &str) -> bool {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    d.len() == 9
        && &d[..3] != "000"
        && &d[..3] != "666"
        && !d.starts_with('9')
        && &d[3..5] != "00"
        && &d[5..] != "0000"
}

/// HMRC never issues these prefixes.
pub fn nino_prefix(s: &str) -> bool {
    !["BG", "GB", "NK", "KN", "TN", "NT", "ZZ"].contains(&&s[..2])
}

/// IBAN lengths by country (ISO 13616 registry, the countries most often seen).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// The length of the IBAN that starts `s` (letters and digits, spaces allowed between
/// them), counted in bytes of `s`, when the country's length is met and mod-97 holds.
pub fn iban_prefix_len(s: &str) -> Option<usize> {
    let want = IBAN_LENGTHS
        .iter()
        .find(|(cc, _)| s.starts_with(cc))
        .map(|&(_, n)| n)?;
    let mut chars = String::with_capacity(want);
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if c == ' ' {
            continue;
        }
        if !c.is_ascii_alphanumeric() {
            break;
        }
        chars.push(c);
        end = i + 1;
        if chars.len() == want {
            break;
        }
    }
    (chars.len() == want && iban_mod97(&chars)).then_some(end)
}

/// ISO 7064 mod 97-10 over the IBAN with its first four characters moved to the end and
/// letters as 10..35.
fn iban_mod97(iban: &str) -> bool {
    let rotated = iban[4..].bytes().chain(iban[..4].bytes());
    let mut rem: u32 = 0;
    for b in rotated {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn cards_need_an_issuer_a_length_and_a_card_grouping() {
        for ok in [
            "4111 1111 1111 1111",
            "4111111111111111",
            "5500-0000-0000-0004",
            "2221 0000 0000 0009",
            "3782 822463 10005",
            "378282246310005",
            "6011 1111 1111 1117",
            "3530 1113 3330 0000",
            "3056 9309 0259 04",
        ] {
            assert!(card_number(ok), "{ok}");
        }
        for not in [
            // ISBN-13 that passes Luhn; an unknown issuer (8); wrong Amex length; odd grouping
            "9780306406157",
            "8000 0000 0000 0002",
            "3782 8224 6310 0055",
            "41-11111-1111-1111",
            "4111 1111-1111 1111",
        ] {
            assert!(!card_number(not), "{not}");
        }
    }

    #[test]
    fn isbn_check_digit() {
        assert!(isbn13("9780306406157"));
        assert!(isbn13("9791032305690"));
        assert!(!isbn13("9780306406158"));
        assert!(!isbn13("4111111111111"));
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn("123-45-6789"));
        assert!(ssn("412 55 7890"));
        assert!(ssn("536228190"));
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(!ssn(bad), "{bad}");
        }
    }

    #[test]
    fn iban_country_length_and_mod97() {
        assert_eq!(iban_prefix_len("DE89370400440532013000"), Some(22));
        assert_eq!(iban_prefix_len("GB82 WEST 1234 5698 7654 32"), Some(27));
        assert_eq!(
            iban_prefix_len("GB82 WEST 1234 5698 7654 32 ABCD"),
            Some(27),
            "stops at the country's length"
        );
        assert_eq!(iban_prefix_len("DE89370400440532013001"), None, "mod-97");
        assert_eq!(iban_prefix_len("DE8937040044053201300"), None, "too short");
        assert_eq!(
            iban_prefix_len("QQ89370400440532013000"),
            None,
            "no such country"
        );
    }
}
