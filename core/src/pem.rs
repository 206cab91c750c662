//! Reading PEM files named by an operator's flags (TLS certificates, keys, CAs), shared by the
//! coordinator and the worker so that a wrong path or a non-PEM file reads the same everywhere.

use std::path::{Path, PathBuf};

/// A PEM file that cannot be used, naming what it was for and where it is.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// (The I/O error is a plain field, not a `source`, so it is printed once.)
    #[error("cannot read {what} {path}: {error}")]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{what} {path} is not PEM (expected a `-----BEGIN {expected}` block)")]
    NotPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
}

/// Reads a PEM file, checking it holds a `-----BEGIN <expected>` block (any block when empty).
pub fn read_pem(
    what: &'static str,
    path: &Path,
    expected: &'static str,
) -> Result<Vec<u8>, PemError> {
    let bytes = std::fs::read(path).map_err(|error| PemError::Read {
        what,
        path: path.to_path_buf(),
        error,
    })?;
    let marker = format!("-----BEGIN {expected}");
    if !String::from_utf8_lossy(&bytes).contains(&marker) {
        return Err(PemError::NotPem {
            what,
            path: path.to_path_buf(),
            expected: if expected.is_empty() { "..." } else { expected },
        });
    }
    Ok(bytes)
}
