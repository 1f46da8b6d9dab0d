//! Pushing snapshots to the proxies' admin API (docs/admin-api.md): one HTTP(S) client,
//! the bearer token, a timeout per attempt and retries with exponential backoff; and the
//! [`Fleet`], what every proxy endpoint acknowledged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use thiserror::Error;
use weir_crds::Snapshot;
use weir_crds::admin::{
    AdminError, Applied, LoadFailure, ProxyAck, SNAPSHOT_ENCODING, SNAPSHOT_PATH, ServedVersion,
    VERSION_PATH, encode_snapshot,
};

use crate::config::{ProxyConfig, read_token};

/// Largest admin answer read; answers are small JSON documents.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// First pause between attempts; it doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// A snapshot as it is pushed: JSON, gzip-compressed (`Content-Encoding: gzip`). A tenth
/// of the JSON's size, so it is kept between pushes and shared by all of them.
#[derive(Clone, Debug)]
pub struct PushBody(Bytes);

impl PushBody {
    /// The push body of `snapshot`.
    pub fn new(snapshot: &Snapshot) -> Self {
        Self(Bytes::from(encode_snapshot(snapshot)))
    }
}

/// Why the push client could not be made.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The CA file holds no usable certificate.
    #[error("CA file: {0}")]
    Ca(String),
}

/// Why one attempt failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PushError {
    /// The proxy has a newer (or conflicting) snapshot.
    #[error("stale snapshot: the proxy serves version {current}")]
    Stale {
        /// The proxy's version.
        current: u64,
    },
    /// The proxy refused the request (not worth retrying).
    #[error("refused with {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The proxy's message.
        message: String,
    },
    /// No answer, a broken answer, or a server error (worth retrying).
    #[error("{0}")]
    Transport(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl PushError {
    fn retryable(&self) -> bool {
        matches!(self, Self::Transport(_) | Self::Timeout(_))
    }
}

/// The client speaking to the proxies' admin API.
#[derive(Clone)]
pub struct Pusher {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    scheme: &'static str,
    /// The token sent, replaced when a proxy refuses it and its file holds another.
    token: Arc<Mutex<String>>,
    token_file: Option<PathBuf>,
    timeout: Duration,
    attempts: u32,
}

impl Pusher {
    /// A client for `config`: HTTPS checked against its CA bundle (or the public roots)
    /// and for its server name (or each proxy's address), or plain HTTP.
    pub fn new(config: &ProxyConfig) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_pem {
            Some(pem) => {
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| ClientError::Ca(e.to_string()))?;
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Ca(e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(ClientError::Ca("no certificate found".into()));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let builder = match &config.server_name {
            Some(name) => builder.with_server_name_resolver(
                hyper_rustls::FixedServerNameResolver::new(name.clone()),
            ),
            None => builder,
        };
        let connector = builder.enable_http1().build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            scheme: config.scheme,
            token: Arc::new(Mutex::new(config.token.clone())),
            token_file: config.token_file.clone(),
            timeout: config.push_timeout,
            attempts: config.push_attempts,
        })
    }

    async fn request(
        &self,
        method: Method,
        endpoint: &str,
        path: &str,
        snapshot: Option<&PushBody>,
    ) -> Result<(StatusCode, Bytes), PushError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{}://{endpoint}{path}", self.scheme))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.current_token()),
            );
        let request = match snapshot {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_ENCODING, SNAPSHOT_ENCODING)
                .body(Full::new(body.0.clone())),
            None => request.body(Full::new(Bytes::new())),
        }
        .map_err(|e| PushError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| PushError::Transport(transport_message(&e)))?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| PushError::Transport(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PushError::Timeout(self.timeout))?
    }

    fn current_token(&self) -> String {
        self.token
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the token file again after a proxy refused the token: whether it now holds
    /// another usable token (the Secret was rotated), which replaces the old one.
    fn token_rotated(&self) -> bool {
        let Some(path) = &self.token_file else {
            return false;
        };
        match read_token(path) {
            Ok(token) => {
                let mut current = self.token.lock().unwrap_or_else(|p| p.into_inner());
                if *current == token {
                    return false;
                }
                tracing::info!(path = %path.display(), "admin token file changed: using its new token");
                *current = token;
                true
            }
            Err(e) => {
                tracing::warn!("a proxy refused the token, and its file cannot be read again: {e}");
                false
            }
        }
    }

    /// Retries `attempt` with exponential backoff while it fails in a retryable way, and
    /// once more at once when a proxy refused the token and the token file has a new one.
    async fn with_retries<T, F, Fut>(&self, mut attempt: F) -> Result<T, PushError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, PushError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(PushError::Refused { status: 401, .. }) if self.token_rotated() => {}
                Err(e) if e.retryable() && tries < self.attempts => {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Pushes a snapshot to one proxy.
    pub async fn push(&self, endpoint: &str, snapshot: &PushBody) -> Result<Applied, PushError> {
        self.with_retries(|| async {
            let (status, body) = self
                .request(Method::PUT, endpoint, SNAPSHOT_PATH, Some(snapshot))
                .await?;
            answer(status, &body)
        })
        .await
    }

    /// The version a proxy serves.
    pub async fn version(&self, endpoint: &str) -> Result<ServedVersion, PushError> {
        self.with_retries(|| async {
            let (status, body) = self
                .request(Method::GET, endpoint, VERSION_PATH, None)
                .await?;
            answer(status, &body)
        })
        .await
    }
}

fn transport_message(error: &hyper_util::client::legacy::Error) -> String {
    // The interesting part (connection refused, certificate unknown) is in the sources.
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}

fn answer<T: serde::de::DeserializeOwned>(status: StatusCode, body: &[u8]) -> Result<T, PushError> {
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|e| PushError::Transport(format!("unreadable answer: {e}")));
    }
    let error: Option<AdminError> = serde_json::from_slice(body).ok();
    if status == StatusCode::CONFLICT
        && let Some(current) = error.as_ref().and_then(|e| e.current_version)
    {
        return Err(PushError::Stale { current });
    }
    let message = error.map_or_else(
        || String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        |e| format!("{}: {}", e.error, e.message),
    );
    if status.is_server_error() {
        Err(PushError::Transport(format!("{status}: {message}")))
    } else {
        Err(PushError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

/// What one proxy endpoint has acknowledged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyState {
    /// Version acknowledged last.
    pub version: Option<u64>,
    /// Its hash.
    pub hash: Option<String>,
    /// What it failed to load of that version.
    pub failures: Vec<LoadFailure>,
    /// Why the last push failed.
    pub error: Option<String>,
}

/// Every proxy endpoint and what it acknowledged.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    proxies: BTreeMap<String, ProxyState>,
}

impl Fleet {
    /// Replaces the endpoint list: gone endpoints are forgotten, new ones start with
    /// nothing acknowledged. Returns whether the list changed.
    pub fn set_endpoints(&mut self, endpoints: &[String]) -> bool {
        let before = self.proxies.len();
        self.proxies.retain(|e, _| endpoints.contains(e));
        let kept = self.proxies.len();
        for endpoint in endpoints {
            self.proxies.entry(endpoint.clone()).or_default();
        }
        kept != before || self.proxies.len() != kept
    }

    /// Endpoints not at `version` with `hash`.
    pub fn lagging(&self, version: u64, hash: &str) -> Vec<String> {
        self.proxies
            .iter()
            .filter(|(_, s)| s.version != Some(version) || s.hash.as_deref() != Some(hash))
            .map(|(e, _)| e.clone())
            .collect()
    }

    /// Every endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.proxies.keys().cloned().collect()
    }

    /// The state of one endpoint.
    pub fn get(&self, endpoint: &str) -> Option<&ProxyState> {
        self.proxies.get(endpoint)
    }

    /// Records the outcome of a push.
    pub fn record(&mut self, endpoint: &str, outcome: &Result<Applied, PushError>) {
        let Some(state) = self.proxies.get_mut(endpoint) else {
            return;
        };
        match outcome {
            Ok(applied) => {
                state.version = Some(applied.version);
                state.hash = Some(applied.hash.clone());
                state.failures = applied.failures.clone();
                state.error = None;
            }
            Err(e) => state.error = Some(e.to_string()),
        }
    }

    /// What each proxy acknowledged, for the `Programmed` conditions.
    pub fn acks(&self) -> Vec<ProxyAck> {
        self.proxies
            .iter()
            .map(|(endpoint, state)| ProxyAck {
                proxy: endpoint.clone(),
                version: state.version,
                failures: state.failures.clone(),
                error: state.error.clone(),
            })
            .collect()
    }

    /// How many proxies serve `version` with `hash`.
    pub fn in_sync(&self, version: u64, hash: &str) -> usize {
        self.proxies.len() - self.lagging(version, hash).len()
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }
}

/// The result of pushing to several proxies at once.
pub struct Round {
    /// Outcome per endpoint.
    pub outcomes: Vec<(String, Result<Applied, PushError>)>,
}

impl Round {
    /// The highest version a proxy said it already serves, when any refused as stale.
    pub fn stale_above(&self) -> Option<u64> {
        self.outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Err(PushError::Stale { current }) => Some(*current),
                _ => None,
            })
            .max()
    }
}

/// Pushes `snapshot` to every endpoint concurrently, timing each push.
pub async fn push_all(
    pusher: &Pusher,
    endpoints: &[String],
    snapshot: &PushBody,
    mut observe: impl FnMut(Duration, bool),
) -> Round {
    let pushes = endpoints.iter().map(|endpoint| async move {
        let started = Instant::now();
        let outcome = pusher.push(endpoint, snapshot).await;
        (endpoint.clone(), outcome, started.elapsed())
    });
    let results = futures::future::join_all(pushes).await;
    let mut outcomes = Vec::with_capacity(results.len());
    for (endpoint, outcome, elapsed) in results {
        observe(elapsed, outcome.is_ok());
        match &outcome {
            Ok(applied) => {
                tracing::info!(proxy = %endpoint, version = applied.version, failures = applied.failures.len(), "snapshot applied")
            }
            Err(e) => tracing::warn!(proxy = %endpoint, error = %e, "push failed"),
        }
        outcomes.push((endpoint, outcome));
    }
    Round { outcomes }
}

/// The highest version any endpoint serves (0 when none answers).
pub async fn highest_version(pusher: &Pusher, endpoints: &[String]) -> u64 {
    let reads = endpoints.iter().map(|e| pusher.version(e));
    futures::future::join_all(reads)
        .await
        .into_iter()
        .zip(endpoints)
        .filter_map(|(r, e)| match r {
            Ok(v) => Some(v.version),
            Err(error) => {
                tracing::warn!(proxy = %e, %error, "reading the proxy's version failed");
                None
            }
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let applied: Applied =
            answer(StatusCode::OK, br#"{"version":3,"hash":"h","failures":[]}"#).unwrap();
        assert_eq!(applied.version, 3);
        let stale = answer::<Applied>(
            StatusCode::CONFLICT,
            br#"{"error":"stale_version","message":"old","currentVersion":9}"#,
        );
        assert_eq!(stale, Err(PushError::Stale { current: 9 }));
        let refused = answer::<Applied>(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"unauthorized","message":"a valid bearer token is required"}"#,
        )
        .unwrap_err();
        assert!(!refused.retryable());
        assert_eq!(
            refused.to_string(),
            "refused with 401: unauthorized: a valid bearer token is required"
        );
        assert!(
            answer::<Applied>(StatusCode::BAD_GATEWAY, b"oops")
                .unwrap_err()
                .retryable()
        );
    }

    #[test]
    fn fleet_follows_endpoints_and_acks() {
        let mut fleet = Fleet::default();
        assert!(fleet.set_endpoints(&["a:1".into(), "b:1".into()]));
        assert!(!fleet.set_endpoints(&["a:1".into(), "b:1".into()]));
        fleet.record(
            "a:1",
            &Ok(Applied {
                version: 4,
                hash: "h".into(),
                failures: Vec::new(),
            }),
        );
        fleet.record("b:1", &Err(PushError::Timeout(Duration::from_secs(1))));
        assert_eq!(fleet.lagging(4, "h"), ["b:1"]);
        assert_eq!(fleet.in_sync(4, "h"), 1);
        assert!(fleet.set_endpoints(&["a:1".into(), "c:1".into()]));
        assert_eq!(fleet.lagging(4, "h"), ["c:1"]);
        assert_eq!(fleet.acks()[0].version, Some(4));
    }
}
