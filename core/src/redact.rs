//! Masks credentials wherever a spec, a backend or an error is shown (coordinator APIs, metrics,
//! the dataset card, and the workers' logs of backend endpoints).
//!
//! A backend URL may carry a key (`http://user:key@host/v1`); the job's YAML, the backends the
//! workers report, `/metrics` labels and error texts all repeat it. Every surface the
//! coordinator serves passes through [`mask_text`] (or [`mask_json`] for JSON) so a key is
//! never shown to a reader: the user name stays, the password becomes `***`; a lone user part
//! (often a token itself, `http://key@host`) is masked too.

/// What replaces a credential.
pub const MASK: &str = "***";

/// Masks the user-info part of every `scheme://user:pass@host` in `text`.
pub fn mask_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first of these; user info is what comes before an `@`
        // inside it.
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace() || is_quote(c))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) if !user.is_empty() => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(MASK);
                    }
                    _ => out.push_str(MASK),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn is_quote(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '`' | '<' | '>' | ',' | ';' | '}' | ']' | ')' | '\\'
    )
}

/// [`mask_text`] applied to every string (and key) of a JSON value.
pub fn mask_json(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains("://") => *s = mask_text(s),
        Value::Array(a) => a.iter_mut().for_each(mask_json),
        Value::Object(o) => {
            if o.keys().any(|k| k.contains("://")) {
                let entries = std::mem::take(o);
                for (k, mut val) in entries {
                    mask_json(&mut val);
                    o.insert(mask_text(&k), val);
                }
            } else {
                o.values_mut().for_each(mask_json);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_lone_keys_in_urls_are_masked() {
        assert_eq!(
            mask_text("url: http://user:CANARY@127.0.0.1:9/v1 and https://KEY@h.example/x"),
            "url: http://user:***@127.0.0.1:9/v1 and https://***@h.example/x"
        );
        assert_eq!(
            mask_text("{\"u\":\"http://a:b@h\"}, 'http://c:d@h'"),
            "{\"u\":\"http://a:***@h\"}, 'http://c:***@h'"
        );
        // Nothing to mask: unchanged, including an `@` after the path.
        for s in [
            "http://h:80/v1?x=a@b",
            "plain text",
            "mailto:x@y",
            "s3://bucket/a@b",
        ] {
            assert_eq!(mask_text(s), s);
        }
    }

    #[test]
    fn json_strings_and_keys_are_masked() {
        let mut v = serde_json::json!({
            "spec_yaml": "url: http://u:SECRET@h/v1\n",
            "list": [{"http://u:SECRET@h": 1}],
        });
        mask_json(&mut v);
        let s = v.to_string();
        assert!(!s.contains("SECRET"), "{s}");
        assert!(s.contains("http://u:***@h"), "{s}");
    }
}
