//! What the security tests share: test certificates (a CA and leaves for localhost).

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair};

/// Test certificates written as PEM files under one directory.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// A self-signed CA; writes `<name>.pem`.
    pub fn ca(&self, name: &str) -> (CertifiedIssuer<'static, KeyPair>, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("synthforge test {name}"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let path = self.dir.join(format!("{name}.pem"));
        std::fs::write(&path, ca.pem()).unwrap();
        (ca, path)
    }

    /// A certificate for localhost/127.0.0.1 signed by `ca`, for a server or a client;
    /// writes `<name>.crt` and `<name>.key` and returns their paths.
    pub fn leaf(
        &self,
        ca: &CertifiedIssuer<'static, KeyPair>,
        name: &str,
        server: bool,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &**ca).unwrap();
        let (crt, keyf) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&keyf, key.serialize_pem()).unwrap();
        (crt, keyf)
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
