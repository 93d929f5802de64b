//! Certificates for the HTTPS tests, made at test time: a throw-away certificate authority and a
//! server certificate it signed for `127.0.0.1` and `localhost`.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A server certificate, its key and the authority a client trusts it through, all PEM.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The server's certificate.
    pub cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub key_pem: String,
    /// The authority that signed it: what a client adds to its roots.
    pub ca_pem: String,
}

impl TestCert {
    /// A fresh authority and a server certificate for `127.0.0.1` and `localhost`.
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "refundry test CA");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: ca.pem(),
        }
    }

    /// A client that trusts only this certificate's authority.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("CA PEM");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("HTTPS client")
    }
}

impl Default for TestCert {
    fn default() -> Self {
        Self::new()
    }
}
