//! TLS: a Route's Secret turned into a certificate chain and key for its hosts.

use k8s_openapi::api::core::v1::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Index;
use super::report::ObjectReport;
use crate::condition::{ConditionType, Reason};
use crate::snapshot::{Certificate, PrivateKeyPem};

const CERT_KEY: &str = "tls.crt";
const PRIVATE_KEY_KEY: &str = "tls.key";

/// The certificate of a Route's `tls.secretName` for `hosts`, or a diagnostic saying why
/// there is none (the Route still serves, without TLS for its hosts).
pub(crate) fn certificate(
    secret_name: &str,
    namespace: &str,
    hosts: &[String],
    index: &Index<'_>,
    report: &mut ObjectReport,
) -> Option<Certificate> {
    const FIELD: &str = "spec.tls.secretName";
    let Some(secret) = index.secrets.get(&(namespace, secret_name)) else {
        report.push(
            FIELD,
            ConditionType::ResolvedRefs,
            Reason::SecretNotFound,
            format!("Secret {namespace}/{secret_name} not found"),
        );
        return None;
    };
    let invalid = |report: &mut ObjectReport, why: String| {
        report.push(
            FIELD,
            ConditionType::ResolvedRefs,
            Reason::InvalidCertificate,
            format!("Secret {namespace}/{secret_name}: {why}"),
        );
    };
    let (Some(chain), Some(key)) = (
        secret_value(secret, CERT_KEY),
        secret_value(secret, PRIVATE_KEY_KEY),
    ) else {
        invalid(
            report,
            format!("needs keys {CERT_KEY} and {PRIVATE_KEY_KEY}"),
        );
        return None;
    };
    let certificates = CertificateDer::pem_slice_iter(&chain).collect::<Result<Vec<_>, _>>();
    match certificates {
        Ok(certs) if !certs.is_empty() => {}
        Ok(_) => {
            invalid(report, format!("{CERT_KEY} holds no PEM certificate"));
            return None;
        }
        Err(e) => {
            invalid(report, format!("{CERT_KEY} is not valid PEM: {e}"));
            return None;
        }
    }
    if let Err(e) = PrivateKeyDer::from_pem_slice(&key) {
        invalid(
            report,
            format!("{PRIVATE_KEY_KEY} holds no usable private key: {e}"),
        );
        return None;
    }
    let (Ok(chain_pem), Ok(key_pem)) = (String::from_utf8(chain), String::from_utf8(key)) else {
        invalid(report, "PEM data is not UTF-8".into());
        return None;
    };
    Some(Certificate {
        hosts: hosts.to_vec(),
        secret: format!("{namespace}/{secret_name}"),
        routes: Vec::new(),
        chain_pem,
        key_pem: PrivateKeyPem(key_pem),
    })
}

/// A Secret's value from `data`, or from `stringData` as written in a manifest file.
fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(bytes.0.clone());
    }
    secret
        .string_data
        .as_ref()?
        .get(key)
        .map(|s| s.as_bytes().to_vec())
}
