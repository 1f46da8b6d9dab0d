//! TLS server configs for the traffic listeners (certificates of the current snapshot,
//! chosen by SNI: see [`crate::certs`]) and the admin listener. ALPN offers HTTP/2 and
//! HTTP/1.1.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::certs::{parse_pem, provider};
use crate::loaded::LoadedSnapshot;

/// Chooses certificates from whatever snapshot is current.
#[derive(Debug)]
struct SniResolver {
    current: Arc<ArcSwap<LoadedSnapshot>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.load().certificates.find(hello.server_name())
    }
}

/// The traffic listener's TLS config: certificates from the current snapshot.
pub fn traffic_config(
    current: Arc<ArcSwap<LoadedSnapshot>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { current }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The admin listener's TLS config from PEM files.
pub fn admin_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let (chain, key) = parse_pem(&read(cert)?, &read(key)?)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("admin certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
