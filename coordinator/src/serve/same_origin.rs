//! Refuses cross-site requests to the mutating HTTP calls (cancel).
//!
//! A web page on another origin can make a browser POST a "simple" request (form content types,
//! no custom headers) without a CORS preflight, carrying whatever the browser attaches. So a
//! mutating call must (1) come from this origin when the browser says where it comes from
//! (`Origin` equal to `Host`, `Sec-Fetch-Site` not `cross-site`), and (2) be a request no page
//! can make without a preflight: `Content-Type: application/json` or the custom header
//! [`CLIENT_HEADER`]. The coordinator answers no preflight, so a cross-origin page cannot send
//! either.

use axum::http::{header, HeaderMap};

/// Custom header a non-browser client may send instead of a JSON body.
pub const CLIENT_HEADER: &str = "x-synthforge-client";

/// Why a mutating request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    #[error("cross-origin request refused (Origin {origin} is not this host)")]
    OtherOrigin { origin: String },
    #[error("cross-site request refused (Sec-Fetch-Site: cross-site)")]
    CrossSiteFetch,
    #[error("mutating calls need `Content-Type: application/json` or an `{CLIENT_HEADER}` header")]
    SimpleRequest,
}

/// Checks a mutating request's headers; see the module docs.
pub fn check(headers: &HeaderMap) -> Result<(), CrossSite> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if get("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return Err(CrossSite::CrossSiteFetch);
    }
    if let Some(origin) = get(header::ORIGIN.as_str()) {
        let host = get(header::HOST.as_str()).unwrap_or("");
        if !origin_matches_host(origin, host) {
            return Err(CrossSite::OtherOrigin {
                origin: origin.to_string(),
            });
        }
    }
    let json = get(header::CONTENT_TYPE.as_str()).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if json || headers.contains_key(CLIENT_HEADER) {
        Ok(())
    } else {
        Err(CrossSite::SimpleRequest)
    }
}

/// `Origin: <scheme>://<host>[:port]` names the same authority as `Host`.
fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null` (sandboxed frames, file://) and anything odd
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let with_port = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        // A port follows the last `:` unless that `:` is inside an IPv6 literal.
        if a.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']')) {
            a
        } else {
            format!("{a}{default_port}")
        }
    };
    !host.is_empty() && with_port(authority) == with_port(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn same_origin_json_is_accepted() {
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("content-type", "application/json; charset=utf-8"),
        ]);
        assert_eq!(check(&h), Ok(()));
        // curl: no Origin, custom header.
        let h = headers(&[("host", "h:8080"), (CLIENT_HEADER, "cli")]);
        assert_eq!(check(&h), Ok(()));
        // default ports
        let h = headers(&[
            ("host", "dash.example"),
            ("origin", "https://dash.example:443"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(check(&h), Ok(()));
    }

    #[test]
    fn cross_origin_and_simple_requests_are_refused() {
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ]);
        assert!(matches!(check(&h), Err(CrossSite::OtherOrigin { .. })));
        let h = headers(&[("host", "127.0.0.1:8080"), ("content-type", "text/plain")]);
        assert_eq!(check(&h), Err(CrossSite::SimpleRequest));
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(check(&h), Err(CrossSite::CrossSiteFetch));
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
            ("content-type", "application/json"),
        ]);
        assert!(check(&h).is_err());
    }
}
