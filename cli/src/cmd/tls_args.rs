//! TLS flags shared by the coordinator and its clients (worker, submit, status, cancel).
//!
//! One struct, flattened into each subcommand, so the flags read the same everywhere:
//! - coordinator: `--tls-cert --tls-key [--tls-client-ca]` (the last one requires client
//!   certificates: mutual TLS);
//! - clients: `--tls-ca [--tls-cert --tls-key]` (the pair is the client's own certificate, for a
//!   coordinator that requires one). With TLS, an `http://` coordinator URL is used as `https://`.
//!
//! A flag given to the wrong side is an error rather than silently ignored.

use std::path::PathBuf;

use anyhow::Context;
use synthforge_coordinator::serve::tls::{HttpTlsConfig, ServerTlsFiles};
use synthforge_worker::tls::ClientTlsFiles;

/// The coordinator's TLS flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate of the coordinator (gRPC and HTTPS).
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// A client flag, refused here with an explanation.
    #[arg(long, value_name = "PEM", hide = true)]
    pub tls_ca: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, value_name = "PEM")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The coordinator's TLS configuration; `None` when no TLS flag is given.
    pub fn server(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        if self.tls_ca.is_some() {
            anyhow::bail!(
                "--tls-ca is a client flag; the coordinator takes --tls-cert, --tls-key and \
                 optionally --tls-client-ca"
            );
        }
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (None, None) if self.tls_client_ca.is_none() => return Ok(None),
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => anyhow::bail!("TLS on the coordinator needs both --tls-cert and --tls-key"),
        };
        let files = ServerTlsFiles {
            cert,
            key,
            client_ca: self.tls_client_ca.clone(),
        };
        Ok(Some(files.load().context("coordinator TLS")?))
    }

    /// The HTTP port's TLS configuration (same certificate as gRPC, no client certificates);
    /// `None` when no TLS flag is given. Call after [`TlsArgs::server`], which checks the flags.
    pub fn http_server(&self) -> anyhow::Result<Option<HttpTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let files = ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        };
        Ok(Some(files.load_http().context("coordinator HTTPS")?))
    }
}

/// The TLS flags of a coordinator's clients (worker, submit, status, cancel).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientTlsArgs {
    /// CA that signed the coordinator's certificate (turns TLS on).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// This client's PEM certificate, for a coordinator that requires one (mutual TLS).
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// A client's TLS configuration; `None` when no TLS flag is given.
    pub fn client(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        let Some(ca) = &self.tls_ca else {
            if self.tls_cert.is_some() || self.tls_key.is_some() {
                anyhow::bail!(
                    "--tls-cert/--tls-key on a client need --tls-ca (the CA that signed the \
                     coordinator's certificate)"
                );
            }
            return Ok(None);
        };
        let files = ClientTlsFiles {
            ca: ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        };
        Ok(Some(files.load().context("client TLS")?))
    }
}
