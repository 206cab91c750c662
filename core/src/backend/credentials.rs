//! Named credentials: API keys the operator configures on a worker (or on `synthforge run`).
//!
//! A job names a credential (`credential: openai`), never an environment variable or a file:
//! a job file comes from whoever may submit, and letting it name `SYNTHFORGE_TOKEN` or
//! `/etc/shadow` with a backend URL it controls would hand that secret to its author. The
//! operator decides which keys exist, where each is read from, and (optionally) which hosts it
//! may be sent to. Values are read once, at start, and never printed; only names leave the
//! process (workers report them at register so a job naming an unknown one is refused early).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// The environment variable that holds the cluster token; never usable as a backend key.
pub const CLUSTER_TOKEN_ENV: &str = "SYNTHFORGE_TOKEN";

/// Where the operator keeps one credential's value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialSource {
    /// An environment variable of the worker process.
    Env(String),
    /// A file (Kubernetes secrets mount as files); surrounding whitespace is trimmed.
    File(PathBuf),
}

/// One credential as configured: `NAME=env:VAR`, `NAME=file:/path`, optionally `@host1,host2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialDef {
    pub name: String,
    pub source: CredentialSource,
    /// Hosts (`host` or `host:port`) the key may be sent to; empty: any backend host.
    pub hosts: Vec<String>,
}

/// One entry of a credentials file (YAML): `openai: {env: OPENAI_API_KEY, hosts: [api.openai.com]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "credential `{0}`: expected NAME=env:VAR or NAME=file:/path (optionally @host1,host2)"
    )]
    Syntax(String),
    #[error("credential `{name}`: {message}")]
    Invalid { name: String, message: String },
    #[error("credentials file `{path}`: {message}")]
    File { path: String, message: String },
}

impl std::str::FromStr for CredentialDef {
    type Err = CredentialError;

    /// Parses the `--credential` flag: `NAME=env:VAR[@host,...]` or `NAME=file:/path[@host,...]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CredentialError::Syntax(s.to_string());
        let (name, rest) = s.split_once('=').ok_or_else(syntax)?;
        let (source, hosts) = match rest.rsplit_once('@') {
            Some((source, hosts)) => (source, split_hosts(hosts)),
            None => (rest, Vec::new()),
        };
        let source = match source.split_once(':') {
            Some(("env", var)) if !var.is_empty() => CredentialSource::Env(var.to_string()),
            Some(("file", path)) if !path.is_empty() => CredentialSource::File(path.into()),
            _ => return Err(syntax()),
        };
        let def = CredentialDef {
            name: name.trim().to_string(),
            source,
            hosts,
        };
        def.check_name()?;
        Ok(def)
    }
}

fn split_hosts(list: &str) -> Vec<String> {
    list.split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

impl CredentialDef {
    fn check_name(&self) -> Result<(), CredentialError> {
        let ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if ok {
            Ok(())
        } else {
            Err(CredentialError::Invalid {
                name: self.name.clone(),
                message: "a name is letters, digits, `_` and `-`".into(),
            })
        }
    }

    /// Reads a credentials file: a YAML map of name to `{env: VAR}` or `{file: /path}`, each
    /// with optional `hosts: [...]`.
    pub fn read_file(path: &std::path::Path) -> Result<Vec<CredentialDef>, CredentialError> {
        let err = |message: String| CredentialError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let entries: BTreeMap<String, FileEntry> =
            serde_norway::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut defs = Vec::new();
        for (name, entry) in entries {
            let source = match (entry.env, entry.file) {
                (Some(var), None) => CredentialSource::Env(var),
                (None, Some(file)) => CredentialSource::File(file),
                _ => {
                    return Err(err(format!(
                        "`{name}`: give exactly one of `env` or `file`"
                    )))
                }
            };
            let def = CredentialDef {
                name,
                source,
                hosts: entry.hosts.iter().flat_map(|h| split_hosts(h)).collect(),
            };
            def.check_name()?;
            defs.push(def);
        }
        Ok(defs)
    }
}

/// A loaded credential: its value and where it may go.
#[derive(Debug, Clone)]
struct Credential {
    key: Secret,
    hosts: Vec<String>,
}

/// The credentials of one worker process (or one `synthforge run`), read at start.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_name: BTreeMap<String, Credential>,
}

impl Credentials {
    /// Reads every credential's value now, so a missing variable or file fails the worker at
    /// start rather than every task. Refuses the cluster token as a backend key: by its
    /// variable name, and by value (`cluster_token` is the token this process holds).
    pub fn load(
        defs: &[CredentialDef],
        cluster_token: Option<&str>,
    ) -> Result<Credentials, CredentialError> {
        let mut by_name = BTreeMap::new();
        for def in defs {
            let invalid = |message: String| CredentialError::Invalid {
                name: def.name.clone(),
                message,
            };
            let value = match &def.source {
                CredentialSource::Env(var) if var == CLUSTER_TOKEN_ENV => {
                    return Err(invalid(format!(
                        "`{CLUSTER_TOKEN_ENV}` is the cluster token and cannot be a backend key"
                    )))
                }
                CredentialSource::Env(var) => std::env::var(var)
                    .map_err(|_| invalid(format!("environment variable `{var}` is not set")))?,
                CredentialSource::File(path) => std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("cannot read `{}`: {e}", path.display())))?,
            };
            let value = value.trim().to_string();
            if value.is_empty() {
                return Err(invalid("the value is empty".into()));
            }
            if cluster_token.is_some_and(|t| !t.is_empty() && t.trim() == value) {
                return Err(invalid(
                    "its value is the cluster token, which cannot be a backend key".into(),
                ));
            }
            if by_name.contains_key(&def.name) {
                return Err(invalid("configured twice".into()));
            }
            by_name.insert(
                def.name.clone(),
                Credential {
                    key: Secret(value),
                    hosts: def.hosts.clone(),
                },
            );
        }
        Ok(Credentials { by_name })
    }

    /// The configured names (never values), sorted.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The key of credential `name` for a backend whose endpoints are `urls`; refused unless
    /// every endpoint's host is one the credential may be sent to.
    pub(crate) fn key_for(&self, name: &str, urls: &[String]) -> Result<Secret, String> {
        let Some(cred) = self.by_name.get(name) else {
            let known = self.names();
            return Err(format!(
                "credential `{name}` is not configured on this worker (configured: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        if !cred.hosts.is_empty() {
            for u in urls {
                let allowed = url::Url::parse(u).ok().is_some_and(|parsed| {
                    let host = parsed.host_str().unwrap_or("").to_ascii_lowercase();
                    let with_port = parsed
                        .port_or_known_default()
                        .map(|p| format!("{host}:{p}"))
                        .unwrap_or_else(|| host.clone());
                    cred.hosts.iter().any(|h| *h == host || *h == with_port)
                });
                if !allowed {
                    return Err(format!(
                        "credential `{name}` may only be sent to {}; endpoint {u} is not one of them",
                        cred.hosts.join(", ")
                    ));
                }
            }
        }
        Ok(cred.key.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(s: &str) -> CredentialDef {
        s.parse().unwrap()
    }

    #[test]
    fn flag_forms_parse() {
        assert_eq!(
            def("openai=env:OPENAI_KEY@api.openai.com, other:8443"),
            CredentialDef {
                name: "openai".into(),
                source: CredentialSource::Env("OPENAI_KEY".into()),
                hosts: vec!["api.openai.com".into(), "other:8443".into()],
            }
        );
        assert_eq!(
            def("local=file:/run/secrets/key").source,
            CredentialSource::File("/run/secrets/key".into())
        );
        for bad in [
            "openai",
            "openai=OPENAI_KEY",
            "=env:X",
            "a b=env:X",
            "x=vault:y",
        ] {
            assert!(bad.parse::<CredentialDef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cluster_token_is_never_a_backend_key() {
        let e = Credentials::load(&[def("t=env:SYNTHFORGE_TOKEN")], None).unwrap_err();
        assert!(e.to_string().contains("cluster token"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, "s3cret\n").unwrap();
        let file_def = def(&format!("t=file:{}", file.display()));
        let e = Credentials::load(std::slice::from_ref(&file_def), Some("s3cret")).unwrap_err();
        assert!(e.to_string().contains("cluster token"), "{e}");
        let ok = Credentials::load(&[file_def], Some("other")).unwrap();
        assert_eq!(ok.names(), ["t"]);
    }

    #[test]
    fn a_key_restricted_to_hosts_goes_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, "k1").unwrap();
        let creds = Credentials::load(
            &[def(&format!("o=file:{}@api.openai.com", file.display()))],
            None,
        )
        .unwrap();
        assert_eq!(
            creds
                .key_for("o", &["https://api.openai.com/v1".into()])
                .unwrap()
                .0,
            "k1"
        );
        assert_eq!(
            creds
                .key_for("o", &["https://API.openai.com:443/v1".into()])
                .unwrap()
                .0,
            "k1"
        );
        let e = creds
            .key_for(
                "o",
                &[
                    "https://api.openai.com/v1".into(),
                    "http://127.0.0.1:9/v1".into(),
                ],
            )
            .unwrap_err();
        assert!(e.contains("127.0.0.1:9"), "{e}");
        let e = creds.key_for("nope", &[]).unwrap_err();
        assert!(
            e.contains("`nope` is not configured") && e.contains("o"),
            "{e}"
        );
    }

    #[test]
    fn missing_sources_fail_at_load() {
        let e = Credentials::load(&[def("x=env:SYNTHFORGE_TEST_SURELY_UNSET")], None).unwrap_err();
        assert!(e.to_string().contains("not set"), "{e}");
        let e = Credentials::load(&[def("x=file:/nonexistent/key")], None).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn credentials_file_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.yaml");
        std::fs::write(
            &path,
            "openai: {env: OPENAI_KEY, hosts: [api.openai.com]}\nlocal: {file: /k}\n",
        )
        .unwrap();
        let defs = CredentialDef::read_file(&path).unwrap();
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[1].hosts, ["api.openai.com"]);
        std::fs::write(&path, "x: {env: A, file: /b}\n").unwrap();
        assert!(CredentialDef::read_file(&path).is_err());
    }
}
