//! Bearer tokens from a flag, the environment or a file.
//!
//! A token on the command line shows in `ps`; the environment (`SYNTHFORGE_TOKEN`, ...) or a
//! file (`--token-file`, e.g. a mounted Kubernetes Secret) keeps it out of sight. A file's
//! content is trimmed of surrounding whitespace (a trailing newline is the norm).

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The token of one role: `--<name>` (or its env var) or `--<name>-file`, not both.
pub fn resolve(
    flag: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> anyhow::Result<Option<String>> {
    match (flag.as_deref().filter(|t| !t.is_empty()), file) {
        (Some(_), Some(_)) => {
            anyhow::bail!(
                "give the {what} token either directly (or by env) or as a file, not both"
            )
        }
        (Some(t), None) => Ok(Some(t.to_string())),
        (None, Some(path)) => read(path, what).map(Some),
        (None, None) => Ok(None),
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the {what} token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

/// The token flags of a job-API client (submit, status, cancel).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientToken {
    /// Bearer token: the admin token for submit and cancel, the read or admin token for status.
    #[arg(long, env = "SYNTHFORGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token (instead of --token).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl ClientToken {
    /// The token to send, if any.
    pub fn get(&self) -> anyhow::Result<Option<String>> {
        resolve(&self.token, &self.token_file, "client")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_comes_from_the_flag_or_a_trimmed_file_not_both() {
        let dir = std::env::temp_dir().join(format!("sf-token-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t");
        std::fs::write(&f, "s3cret\n").unwrap();
        assert_eq!(
            resolve(&None, &Some(f.clone()), "x").unwrap().as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            resolve(&Some("a".into()), &None, "x").unwrap().as_deref(),
            Some("a")
        );
        assert_eq!(resolve(&None, &None, "x").unwrap(), None);
        assert!(resolve(&Some("a".into()), &Some(f), "x").is_err());
        let empty = dir.join("e");
        std::fs::write(&empty, "\n").unwrap();
        assert!(resolve(&None, &Some(empty), "x")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
