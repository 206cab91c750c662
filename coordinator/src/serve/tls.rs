//! TLS for the coordinator's gRPC port (rustls through tonic) and its HTTP port (rustls
//! directly, same certificate; see [`crate::serve::https`]).
//!
//! The coordinator presents a certificate (`--tls-cert`, `--tls-key`); with `--tls-client-ca`
//! it also *requires* every client (worker, CLI) to present a certificate signed by that CA
//! (mutual TLS), so a stolen bearer token alone is not enough to talk to the cluster.
//! Files are read and checked here, at start, so that a wrong path or a non-PEM file is a clear
//! error naming the file instead of a failed handshake later.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Why the TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] synthforge_core::pem::PemError),
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// The HTTP port's TLS configuration (rustls), as built by [`ServerTlsFiles::load_http`].
pub type HttpTlsConfig = std::sync::Arc<rustls::ServerConfig>;

/// Where the coordinator's TLS material lives.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    /// PEM certificate chain presented to clients.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// Reads and checks the files and builds the tonic/rustls server configuration.
    pub fn load(&self) -> Result<ServerTlsConfig, TlsError> {
        let cert = read_pem("TLS certificate", &self.cert, "CERTIFICATE")?;
        let key = read_pem("TLS private key", &self.key, "")?;
        let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            let ca = read_pem("TLS client CA", ca, "CERTIFICATE")?;
            cfg = cfg.client_ca_root(Certificate::from_pem(ca));
        }
        // Build it once now so a key that does not match or parse fails at start, not on the
        // first connection.
        tonic::transport::Server::builder()
            .tls_config(cfg.clone())
            .map_err(|e| TlsError::Config(error_chain(&e)))?;
        Ok(cfg)
    }
}

impl ServerTlsFiles {
    /// The rustls configuration of the HTTP port: the same certificate and key, no client
    /// certificates (browsers and probes connect there; calls need tokens instead).
    pub fn load_http(&self) -> Result<HttpTlsConfig, TlsError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let cert = read_pem("TLS certificate", &self.cert, "CERTIFICATE")?;
        let key = read_pem("TLS private key", &self.key, "")?;
        let chain = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert.display())))?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.key.display())))?;
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(error_chain(&e)))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(std::sync::Arc::new(cfg))
    }
}

/// Reads a PEM file (see [`synthforge_core::pem::read_pem`]).
pub fn read_pem(
    what: &'static str,
    path: &Path,
    expected: &'static str,
) -> Result<Vec<u8>, TlsError> {
    Ok(synthforge_core::pem::read_pem(what, path, expected)?)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("cert.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let files = ServerTlsFiles {
            cert: not_pem.clone(),
            key: dir.path().join("missing.key"),
            client_ca: None,
        };
        let e = files.load().unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("not PEM"), "{e}");

        std::fs::write(&not_pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let e = files.load().unwrap_err().to_string();
        assert!(
            e.contains("missing.key") && e.contains("cannot read"),
            "{e}"
        );
    }
}
