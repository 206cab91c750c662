//! TLS for connections to the coordinator (workers and the CLI's job client).
//!
//! A client trusts the coordinator's certificate through `--tls-ca` and, for mutual TLS,
//! presents its own (`--tls-cert`, `--tls-key`). Files are read and checked when the flags are
//! parsed, so a wrong path is a clear error naming the file rather than a handshake failure.
//!
//! A worker takes its TLS settings from [`crate::WorkerConfig::tls`], so workers in one process
//! may talk to different coordinators with different settings.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// Why the TLS material could not be loaded or applied.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pem(#[from] synthforge_core::pem::PemError),
    #[error("--tls-cert and --tls-key go together (got only {0})")]
    HalfIdentity(&'static str),
    #[error("TLS for {url}: {message}")]
    Endpoint { url: String, message: String },
}

/// Where a client's TLS material lives.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsFiles {
    /// PEM CA bundle that signed the coordinator's certificate.
    pub ca: PathBuf,
    /// PEM client certificate and key, for coordinators that require mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ClientTlsFiles {
    /// Reads and checks the files and builds the tonic/rustls client configuration.
    pub fn load(&self) -> Result<ClientTlsConfig, TlsError> {
        let ca = read_pem("TLS CA", &self.ca, "CERTIFICATE")?;
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let cert = read_pem("TLS client certificate", cert, "CERTIFICATE")?;
                let key = read_pem("TLS client key", key, "")?;
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
            (Some(_), None) => return Err(TlsError::HalfIdentity("--tls-cert")),
            (None, Some(_)) => return Err(TlsError::HalfIdentity("--tls-key")),
            (None, None) => {}
        }
        Ok(cfg)
    }
}

/// `http://host:port` → `https://host:port` (tonic uses TLS only for `https` URLs); other
/// URLs are returned unchanged.
pub fn https_url(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url.to_string(),
    }
}

/// An endpoint for `url`, over TLS when `tls` is given (the scheme is switched to `https`).
pub fn endpoint(url: &str, tls: Option<ClientTlsConfig>) -> Result<Endpoint, TlsError> {
    let err = |message: String| TlsError::Endpoint {
        url: url.to_string(),
        message,
    };
    match tls {
        None => Endpoint::from_shared(url.to_string()).map_err(|e| err(e.to_string())),
        Some(cfg) => Endpoint::from_shared(https_url(url))
            .map_err(|e| err(e.to_string()))?
            .tls_config(cfg)
            .map_err(|e| err(e.to_string())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_url_switches_only_http() {
        assert_eq!(https_url("http://127.0.0.1:7070"), "https://127.0.0.1:7070");
        assert_eq!(https_url("https://c:1"), "https://c:1");
    }

    #[test]
    fn half_identity_and_missing_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("sf-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let files = ClientTlsFiles {
            ca: ca.clone(),
            cert: Some(dir.join("c.pem")),
            key: None,
        };
        assert!(matches!(
            files.load(),
            Err(TlsError::HalfIdentity("--tls-cert"))
        ));
        let files = ClientTlsFiles {
            ca: dir.join("nope.pem"),
            ..Default::default()
        };
        let e = files.load().unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("TLS CA"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
