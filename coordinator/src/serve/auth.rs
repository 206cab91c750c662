//! Who may call what: bearer tokens per role, checked on every gRPC call and HTTP endpoint.
//!
//! Three roles, each with its own token so that a leaked worker or dashboard token cannot be
//! used to submit work (and through a job, to reach a worker's network):
//! - [`Role::Worker`]: the worker API (register, lease, heartbeat, complete, fail);
//! - [`Role::Read`]: list and get jobs, the dashboard's JSON API, workers and backends;
//! - [`Role::Admin`]: submit and cancel, and everything the other two may do. `--token` is
//!   the admin token, so a cluster that used one token for everything keeps working.
//!
//! With no token at all the coordinator is open (it then listens on loopback only, unless told
//! `--insecure`; see [`crate::serve::exposure`]). The bearer scheme is matched case-insensitively
//! (RFC 9110 §11.1), tokens in constant time.

use std::sync::Arc;

use tonic::{Request, Status};

/// What a caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Lease and run tasks.
    Worker,
    /// Read jobs, workers, backends (dashboard, `status`).
    Read,
    /// Submit and cancel jobs.
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// The tokens of a coordinator, one per role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthTokens {
    /// Admin token (`--token`): submit, cancel, and every other call.
    pub admin: Option<String>,
    /// Worker token (`--worker-token`): the worker API only.
    pub worker: Option<String>,
    /// Read token (`--read-token`): list/get jobs and the dashboard only.
    pub read: Option<String>,
}

/// Why tokens cannot be used as given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthConfigError {
    #[error(
        "a {0} token without an admin token (--token) would leave submit and cancel open; \
         set --token too"
    )]
    NoAdmin(&'static str),
    #[error("the {0} and {1} tokens are the same; each role needs its own token")]
    Shared(&'static str, &'static str),
}

impl AuthTokens {
    /// True when at least one token is set (calls are then checked).
    pub fn any(&self) -> bool {
        self.admin.is_some() || self.worker.is_some() || self.read.is_some()
    }

    /// Checks the tokens make sense together: role tokens need an admin token, and no two roles
    /// share one (a shared token would silently grant the union of both roles).
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        let set = |t: &Option<String>| t.as_deref().filter(|t| !t.is_empty()).is_some();
        if self.admin.as_deref().is_none_or(str::is_empty) {
            if set(&self.worker) {
                return Err(AuthConfigError::NoAdmin("worker"));
            }
            if set(&self.read) {
                return Err(AuthConfigError::NoAdmin("read"));
            }
        }
        let pairs = [
            ("admin", &self.admin, "worker", &self.worker),
            ("admin", &self.admin, "read", &self.read),
            ("worker", &self.worker, "read", &self.read),
        ];
        for (an, a, bn, b) in pairs {
            if set(a) && a == b {
                return Err(AuthConfigError::Shared(an, bn));
            }
        }
        Ok(())
    }
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `authorization: Bearer` header (or an empty one).
    Missing,
    /// A token that matches no role.
    Invalid,
    /// A valid token of a role that may not make this call.
    Forbidden { have: Role, need: Role },
}

impl Denied {
    /// The message a client sees: says what is missing, never which tokens exist.
    pub fn message(self) -> String {
        match self {
            Denied::Missing => {
                "missing `authorization: Bearer <token>` (the coordinator requires a token)".into()
            }
            Denied::Invalid => "invalid bearer token".into(),
            Denied::Forbidden { have, need } => format!(
                "a {} token cannot do this; it needs the {} token",
                have.name(),
                need.name()
            ),
        }
    }

    /// `UNAUTHENTICATED` for a missing or unknown token, `PERMISSION_DENIED` for a wrong role.
    pub fn to_status(self) -> Status {
        match self {
            Denied::Forbidden { .. } => Status::permission_denied(self.message()),
            _ => Status::unauthenticated(self.message()),
        }
    }
}

/// Checks bearer tokens against the configured roles. Cheap to clone.
#[derive(Clone, Default)]
pub struct Auth {
    admin: Option<Arc<str>>,
    worker: Option<Arc<str>>,
    read: Option<Arc<str>>,
}

impl Auth {
    /// One token for every role (the admin token); `None` or empty: open.
    pub fn new(token: Option<String>) -> Self {
        Self::with_roles(AuthTokens {
            admin: token,
            ..AuthTokens::default()
        })
    }

    /// Per-role tokens; empty strings count as unset.
    pub fn with_roles(tokens: AuthTokens) -> Self {
        let keep = |t: Option<String>| t.filter(|t| !t.is_empty()).map(Into::into);
        Auth {
            admin: keep(tokens.admin),
            worker: keep(tokens.worker),
            read: keep(tokens.read),
        }
    }

    /// True when calls are checked (some token is configured).
    pub fn required(&self) -> bool {
        self.admin.is_some() || self.worker.is_some() || self.read.is_some()
    }

    /// Checks an `authorization` header value for a call that needs `need`.
    pub fn authorize(&self, header: Option<&str>, need: Role) -> Result<(), Denied> {
        if !self.required() {
            return Ok(());
        }
        let token = header.and_then(bearer).ok_or(Denied::Missing)?;
        let have = self.role_of(token).ok_or(Denied::Invalid)?;
        if have == Role::Admin || have == need {
            Ok(())
        } else {
            Err(Denied::Forbidden { have, need })
        }
    }

    /// [`Auth::authorize`] for a gRPC request.
    pub fn check<T>(&self, req: &Request<T>, need: Role) -> Result<(), Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.authorize(header, need).map_err(Denied::to_status)
    }

    fn role_of(&self, token: &str) -> Option<Role> {
        // Compare against every role (no early exit) so timing does not tell which one matched.
        let mut found = None;
        for (t, role) in [
            (&self.admin, Role::Admin),
            (&self.worker, Role::Worker),
            (&self.read, Role::Read),
        ] {
            if let Some(t) = t {
                if constant_time_eq(token.as_bytes(), t.as_bytes()) {
                    found = Some(role);
                }
            }
        }
        found
    }
}

/// The token of a `Bearer <token>` header value; the scheme is case-insensitive.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Auth {
        Auth::with_roles(AuthTokens {
            admin: Some("adm".into()),
            worker: Some("wrk".into()),
            read: Some("rd".into()),
        })
    }

    #[test]
    fn each_role_reaches_its_own_calls_and_admin_reaches_all() {
        let a = roles();
        assert_eq!(a.authorize(Some("Bearer wrk"), Role::Worker), Ok(()));
        assert_eq!(a.authorize(Some("Bearer rd"), Role::Read), Ok(()));
        for need in [Role::Worker, Role::Read, Role::Admin] {
            assert_eq!(a.authorize(Some("Bearer adm"), need), Ok(()));
        }
        assert_eq!(
            a.authorize(Some("Bearer wrk"), Role::Admin),
            Err(Denied::Forbidden {
                have: Role::Worker,
                need: Role::Admin
            })
        );
        assert!(a.authorize(Some("Bearer rd"), Role::Worker).is_err());
        assert!(a.authorize(Some("Bearer rd"), Role::Admin).is_err());
        assert!(a.authorize(Some("Bearer wrk"), Role::Read).is_err());
        assert_eq!(a.authorize(None, Role::Read), Err(Denied::Missing));
        assert_eq!(
            a.authorize(Some("Bearer nope"), Role::Read),
            Err(Denied::Invalid)
        );
        assert_eq!(
            a.authorize(Some("Basic adm"), Role::Read),
            Err(Denied::Missing)
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let a = roles();
        for h in ["bearer adm", "BEARER adm", "Bearer  adm", " bEaReR adm "] {
            assert_eq!(a.authorize(Some(h), Role::Admin), Ok(()), "{h}");
        }
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn no_token_is_open_and_empty_tokens_are_unset() {
        assert_eq!(Auth::new(None).authorize(None, Role::Admin), Ok(()));
        assert_eq!(
            Auth::new(Some(String::new())).authorize(None, Role::Admin),
            Ok(())
        );
        assert!(!Auth::new(Some(String::new())).required());
    }

    #[test]
    fn role_tokens_need_an_admin_token_and_differ() {
        let only_worker = AuthTokens {
            worker: Some("w".into()),
            ..AuthTokens::default()
        };
        assert_eq!(
            only_worker.validate(),
            Err(AuthConfigError::NoAdmin("worker"))
        );
        let shared = AuthTokens {
            admin: Some("x".into()),
            read: Some("x".into()),
            ..AuthTokens::default()
        };
        assert_eq!(
            shared.validate(),
            Err(AuthConfigError::Shared("admin", "read"))
        );
        assert_eq!(roles_tokens().validate(), Ok(()));
    }

    fn roles_tokens() -> AuthTokens {
        AuthTokens {
            admin: Some("adm".into()),
            worker: Some("wrk".into()),
            read: Some("rd".into()),
        }
    }
}
