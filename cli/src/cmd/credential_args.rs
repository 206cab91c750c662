//! `--credential` and `--credentials-file`: the operator's named API keys, shared by
//! `synthforge worker` and `synthforge run`.

use std::path::PathBuf;
use std::sync::Arc;

use synthforge_core::backend::{CredentialDef, Credentials};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct CredentialArgs {
    /// A named API key a job may use as `credential: NAME`: NAME=env:VAR or NAME=file:/path,
    /// optionally @host1,host2 to send it only to those backend hosts. Repeatable.
    #[arg(long = "credential", value_name = "NAME=SOURCE[@HOSTS]")]
    pub credential: Vec<CredentialDef>,
    /// A YAML file of credentials: `NAME: {env: VAR, hosts: [api.openai.com]}` or
    /// `NAME: {file: /path}`.
    #[arg(long, value_name = "PATH")]
    pub credentials_file: Option<PathBuf>,
}

impl CredentialArgs {
    /// Reads every configured key now (a missing one fails at start, not per task). The
    /// cluster token (`token`) is refused as a key's value.
    pub fn load(&self, token: Option<&str>) -> anyhow::Result<Arc<Credentials>> {
        let mut defs = self.credential.clone();
        if let Some(path) = &self.credentials_file {
            defs.extend(CredentialDef::read_file(path)?);
        }
        let credentials = Credentials::load(&defs, token)?;
        if !defs.is_empty() {
            tracing::info!(names = ?credentials.names(), "credentials configured");
        }
        Ok(Arc::new(credentials))
    }
}
