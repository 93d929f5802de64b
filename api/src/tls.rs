//! HTTPS for `refundry serve` (`[server.tls]`): the certificate chain and key read from PEM
//! files at start-up into a rustls server configuration, on the aws-lc-rs provider that the
//! outbound client (reqwest) already uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use refundry_service::config::TlsFiles;

/// Why `[server.tls]` cannot be served. Each names the key and the file, never what is in it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("server.tls.{key}: cannot read {path}: {source}")]
    Read {
        /// `cert` or `key`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not PEM, or holds nothing of the kind wanted (no `CERTIFICATE` section in the
    /// certificate file, no private key in the key file).
    #[error("server.tls.{key}: {path} holds no PEM {wanted} ({reason})")]
    Pem {
        /// `cert` or `key`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was looked for.
        wanted: &'static str,
        /// What the PEM reader said.
        reason: String,
    },
    /// rustls refused the pair: the key does not belong to the certificate, or is of a kind it
    /// cannot sign with.
    #[error(
        "server.tls: the key in {key_path} cannot serve the certificate in {cert_path}: {reason}"
    )]
    Rejected {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

/// The HTTP versions offered in the handshake: the server speaks HTTP/1.1 only.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Reads both files and makes the acceptor the listener hands each new connection to.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let rejected = |e: rustls::Error| TlsError::Rejected {
        cert_path: files.cert.clone(),
        key_path: files.key.clone(),
        reason: e.to_string(),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(rejected)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read("cert", path)?;
    let bad = |reason: String| TlsError::Pem {
        key: "cert",
        path: path.to_owned(),
        wanted: "certificate",
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE section".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        key: "key",
        path: path.to_owned(),
        wanted: "private key",
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "refundry-tls-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn self_signed() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_key_make_an_acceptor() {
        let dir = temp_dir("tls-ok");
        let (cert, key) = self_signed();
        let files = TlsFiles {
            cert: write(&dir, "cert.pem", &cert),
            key: write(&dir, "key.pem", &key),
        };
        assert!(acceptor(&files).is_ok());
    }

    #[test]
    fn bad_files_are_errors_naming_them() {
        let dir = temp_dir("tls-bad");
        let (cert, key) = self_signed();
        let (_, other_key) = self_signed();
        let cert = write(&dir, "cert.pem", &cert);
        let key = write(&dir, "key.pem", &key);
        let other_key = write(&dir, "other-key.pem", &other_key);
        let junk = write(&dir, "junk.pem", "not PEM at all");
        let missing = dir.join("missing.pem");
        let files = |cert: &PathBuf, key: &PathBuf| TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        };

        let e = acceptor(&files(&missing, &key)).err().unwrap();
        assert!(matches!(&e, TlsError::Read { key: "cert", path, .. } if *path == missing));
        let e = acceptor(&files(&cert, &missing)).err().unwrap();
        assert!(matches!(&e, TlsError::Read { key: "key", .. }), "{e}");
        let e = acceptor(&files(&junk, &key)).err().unwrap();
        assert!(matches!(&e, TlsError::Pem { key: "cert", .. }), "{e}");
        // A certificate where the key should be: PEM, but no private key in it.
        let e = acceptor(&files(&cert, &cert)).err().unwrap();
        assert!(matches!(&e, TlsError::Pem { key: "key", .. }), "{e}");
        let e = acceptor(&files(&cert, &other_key)).err().unwrap();
        assert!(matches!(&e, TlsError::Rejected { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("other-key.pem") && text.contains("cert.pem"),
            "{text}"
        );
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for e in [
            acceptor(&files(&missing, &key)).err().unwrap(),
            acceptor(&files(&junk, &key)).err().unwrap(),
        ] {
            let text = e.to_string();
            assert!(text.starts_with("server.tls.cert: "), "{text}");
            assert!(text.contains(".pem"), "{text}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
