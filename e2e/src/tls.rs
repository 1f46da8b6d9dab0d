//! Certificates for the TLS scenario: a test CA, and server certificates it issues that
//! go into `kubernetes.io/tls` Secrets.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

/// A CA that issues server certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, the trust anchor clients use.
    pub certificate: CertificateDer<'static>,
}

/// A server certificate with its key.
pub struct ServerCertificate {
    /// The certificate, as the server presents it.
    pub der: CertificateDer<'static>,
    /// The certificate in PEM (`tls.crt`).
    pub cert_pem: String,
    /// The private key in PEM (`tls.key`).
    pub key_pem: String,
}

impl Authority {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let certificate = params.self_signed(&key).expect("a CA certificate");
        Self {
            certificate: certificate.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `hosts`, with a fresh key.
    pub fn issue(&self, hosts: &[&str]) -> ServerCertificate {
        let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let params = CertificateParams::new(names).expect("server certificate parameters");
        let key = KeyPair::generate().expect("a server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        ServerCertificate {
            der: certificate.der().clone(),
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A `kubernetes.io/tls` Secret `name` holding `certificate`.
pub fn secret(name: &str, certificate: &ServerCertificate) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name},
        "stringData": {"tls.crt": certificate.cert_pem, "tls.key": certificate.key_pem}
    })
}
