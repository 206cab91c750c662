//! Safe by default: an open coordinator (no token) may only listen on loopback.
//!
//! Anyone who reaches an open coordinator can submit a job, and a job makes workers send
//! requests to the URLs it names. So a coordinator without a token refuses to bind a
//! non-loopback address unless the operator says `--insecure`; then it warns in the log and
//! the dashboard shows a banner.

use std::net::SocketAddr;

/// Why the coordinator refuses to start with these addresses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "refusing to listen on {addr} without a token: anyone who reaches it could submit jobs. \
     Set --token (and --worker-token/--read-token), listen on 127.0.0.1, or pass --insecure \
     to accept the risk"
)]
pub struct ExposedWithoutToken {
    pub addr: SocketAddr,
}

/// How the coordinator is exposed, as decided at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Tokens are required, or every port is on loopback.
    Guarded,
    /// Open on a non-loopback address because of `--insecure`.
    Insecure,
}

/// Decides whether an open coordinator may listen on `addrs`.
pub fn check(
    addrs: &[SocketAddr],
    has_token: bool,
    insecure: bool,
) -> Result<Exposure, ExposedWithoutToken> {
    if has_token {
        return Ok(Exposure::Guarded);
    }
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        None => Ok(Exposure::Guarded),
        Some(_) if insecure => Ok(Exposure::Insecure),
        Some(&addr) => Err(ExposedWithoutToken { addr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn open_coordinator_stays_on_loopback_unless_insecure() {
        let lo = [a("127.0.0.1:7070"), a("[::1]:8080")];
        assert_eq!(check(&lo, false, false), Ok(Exposure::Guarded));
        let wide = [a("127.0.0.1:7070"), a("0.0.0.0:8080")];
        assert_eq!(
            check(&wide, false, false),
            Err(ExposedWithoutToken {
                addr: a("0.0.0.0:8080")
            })
        );
        assert_eq!(check(&wide, false, true), Ok(Exposure::Insecure));
        assert_eq!(check(&wide, true, false), Ok(Exposure::Guarded));
    }
}
