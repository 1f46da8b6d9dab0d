//! A snapshot's TLS certificates, parsed and chosen by SNI: the exact host, then the
//! longest wildcard, then a Route without hosts.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use weir_crds::admin::LoadFailure;
use weir_crds::snapshot::Certificate;

/// The crypto provider everywhere: ring (aws-lc-rs would need cmake and clang to build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A snapshot's certificates by host pattern.
#[derive(Default)]
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    any: Option<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Parses the certificates; one that cannot be used is left out and reported on the
    /// Routes that named its Secret.
    pub fn load(certificates: &[Certificate]) -> (Self, Vec<LoadFailure>) {
        let mut store = Self::default();
        let mut failures = Vec::new();
        for certificate in certificates {
            match certified_key(
                certificate.chain_pem.as_bytes(),
                certificate.key_pem.0.as_bytes(),
            ) {
                Ok(key) => {
                    let key = Arc::new(key);
                    for host in &certificate.hosts {
                        if host == "*" {
                            store.any = Some(key.clone());
                        } else if let Some(suffix) = host.strip_prefix("*.") {
                            store.wildcard.insert(suffix.to_owned(), key.clone());
                        } else {
                            store.exact.insert(host.clone(), key.clone());
                        }
                    }
                }
                Err(message) => failures.extend(certificate.routes.iter().map(|route| {
                    LoadFailure::route(
                        route,
                        format!("certificate from Secret {}: {message}", certificate.secret),
                    )
                })),
            }
        }
        (store, failures)
    }

    /// The certificate for an SNI name.
    pub fn find(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return self.any.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return Some(key.clone());
        }
        name.char_indices()
            .filter(|(_, c)| *c == '.')
            .find_map(|(i, _)| self.wildcard.get(&name[i + 1..]))
            .or(self.any.as_ref())
            .cloned()
    }
}

/// Parses a PEM chain (leaf first) and private key.
pub(crate) fn parse_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in the chain".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("private key is not valid PEM: {e}"))?;
    Ok((chain, key))
}

/// Parses a PEM chain and key into a signing key, checking that they belong together.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let (chain, key) = parse_pem(chain_pem, key_pem)?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => "the key does not match the certificate".to_owned(),
        other => format!("unusable key: {other}"),
    })?;
    key.keys_match()
        .map_err(|e| format!("the key does not match the certificate: {e}"))?;
    Ok(key)
}
