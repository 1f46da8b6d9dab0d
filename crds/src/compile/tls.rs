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

/// The certificate of a Secret for `hosts`, or a diagnostic on `field` (the reference)
/// saying why there is none (the referrer still serves, without TLS for its hosts).
pub(crate) fn certificate(
    secret_name: &str,
    namespace: &str,
    hosts: &[String],
    field: &str,
    index: &Index<'_>,
    report: &mut ObjectReport,
) -> Option<Certificate> {
    let Some(secret) = index.secrets.get(&(namespace, secret_name)) else {
        report.push(
            field,
            ConditionType::ResolvedRefs,
            Reason::SecretNotFound,
            format!("Secret {namespace}/{secret_name} not found"),
        );
        return None;
    };
    if super::secret_refs::is_being_read(secret) {
        report.push(
            field,
            ConditionType::ResolvedRefs,
            Reason::Pending,
            format!("Secret {namespace}/{secret_name} is being read"),
        );
        return None;
    }
    let invalid = |report: &mut ObjectReport, why: String| {
        report.push(
            field,
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
    let leaf = match certificates {
        Ok(certs) if !certs.is_empty() => certs.into_iter().next(),
        Ok(_) => {
            invalid(report, format!("{CERT_KEY} holds no PEM certificate"));
            return None;
        }
        Err(e) => {
            invalid(report, format!("{CERT_KEY} is not valid PEM: {e}"));
            return None;
        }
    };
    let leaf = leaf?;
    let leaf = match webpki::EndEntityCert::try_from(&leaf) {
        Ok(leaf) => leaf,
        Err(e) => {
            invalid(
                report,
                format!("{CERT_KEY}: the first certificate cannot be read: {e}"),
            );
            return None;
        }
    };
    let covered: Vec<String> = hosts
        .iter()
        .filter(|host| {
            let covers = covers(&leaf, host);
            if !covers {
                invalid(
                    report,
                    format!("the certificate does not name host {host} (TLS clients would refuse it): it is not served with it"),
                );
            }
            covers
        })
        .cloned()
        .collect();
    if covered.is_empty() {
        return None;
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
        hosts: covered,
        secret: format!("{namespace}/{secret_name}"),
        routes: Vec::new(),
        chain_pem,
        key_pem: PrivateKeyPem(key_pem),
    })
}

/// `certificate` (checked usable) for those of `hosts` it is valid for; `None` when it is
/// valid for none of them.
pub(crate) fn covering(certificate: &Certificate, hosts: &[String]) -> Option<Certificate> {
    let leaf = CertificateDer::pem_slice_iter(certificate.chain_pem.as_bytes())
        .next()?
        .ok()?;
    let leaf = webpki::EndEntityCert::try_from(&leaf).ok()?;
    let covered: Vec<String> = hosts
        .iter()
        .filter(|host| covers(&leaf, host))
        .cloned()
        .collect();
    (!covered.is_empty()).then(|| Certificate {
        hosts: covered,
        ..certificate.clone()
    })
}

/// Whether the certificate is valid for `host` as TLS clients check it (its SANs): for a
/// wildcard host, for any name under it; every host (`*`) takes any certificate, since
/// a client asks by name.
fn covers(leaf: &webpki::EndEntityCert<'_>, host: &str) -> bool {
    if host == "*" {
        return true;
    }
    let name = match host.strip_prefix("*.") {
        Some(base) => format!("weir-wildcard-check.{base}"),
        None => host.to_owned(),
    };
    rustls_pki_types::ServerName::try_from(name.as_str())
        .is_ok_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_ok())
}

/// A Secret's value from `data`, or from `stringData` as written in a manifest file.
pub(crate) fn secret_value(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(bytes.0.clone());
    }
    secret
        .string_data
        .as_ref()?
        .get(key)
        .map(|s| s.as_bytes().to_vec())
}
