//! The proxy admin API as the operator sees it (docs/admin-api.md): the JSON a proxy
//! answers to a snapshot push, the push token's rules and the admin endpoints a Service
//! lists. What the acknowledgements mean for each object is [`crate::programmed`].

use std::collections::BTreeSet;
use std::io::{BufWriter, Read as _};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::{Deserialize, Serialize};

use crate::compile::endpoint_is_ready;
use crate::compile::report::{ObjectKind, ObjectRef};
use crate::snapshot::Snapshot;

/// Path of the snapshot push (`PUT`).
pub const SNAPSHOT_PATH: &str = "/v1/snapshot";

/// Path of the version a proxy serves (`GET`).
pub const VERSION_PATH: &str = "/v1/snapshot/version";

/// The content coding of snapshot pushes (`Content-Encoding`). A snapshot's JSON is
/// repetitive (thousands of rules alike): gzip makes 21 MiB for 10,000 Routes about a
/// tenth of it, which is what the operator holds and sends to each proxy.
pub const SNAPSHOT_ENCODING: &str = "gzip";

/// A snapshot as a push body: its JSON, gzip-compressed as it is serialized, so the
/// uncompressed JSON is never held whole.
pub fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    // Fast compression: the JSON is repetitive enough that higher levels gain little
    // and cost several times the time of a build.
    let encoder = GzEncoder::new(Vec::new(), Compression::fast());
    // The serializer writes token by token; the compressor wants blocks (unbuffered, it
    // took ten times as long).
    let mut buffered = BufWriter::with_capacity(64 * 1024, encoder);
    // Writing plain data into memory cannot fail.
    let _ = serde_json::to_writer(&mut buffered, snapshot);
    buffered
        .into_inner()
        .ok()
        .and_then(|encoder| encoder.finish().ok())
        .unwrap_or_default()
}

/// Why a push body is not a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotBodyError {
    /// A `Content-Encoding` other than none, `identity` or [`SNAPSHOT_ENCODING`].
    #[error("unsupported content encoding {0:?}: send JSON, gzip-compressed or not")]
    UnsupportedEncoding(String),
    /// Decompressed, it is larger than the limit.
    #[error("the snapshot is larger than {0} bytes decompressed")]
    TooLarge(usize),
    /// The gzip stream is broken.
    #[error("not valid gzip: {0}")]
    Gzip(std::io::Error),
    /// Not a snapshot's JSON.
    #[error("not a snapshot: {0}")]
    Json(serde_json::Error),
}

/// The snapshot in a push body sent with `encoding` (its `Content-Encoding`), at most
/// `limit` bytes of JSON once decompressed.
pub fn decode_snapshot(
    body: &[u8],
    encoding: Option<&str>,
    limit: usize,
) -> Result<Snapshot, SnapshotBodyError> {
    match encoding.map(str::trim) {
        None | Some("" | "identity") => {
            serde_json::from_slice(body).map_err(SnapshotBodyError::Json)
        }
        Some(coding) if coding.eq_ignore_ascii_case(SNAPSHOT_ENCODING) => {
            let mut json = Vec::new();
            // One byte over the limit tells a body that is too large.
            GzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut json)
                .map_err(SnapshotBodyError::Gzip)?;
            if json.len() > limit {
                return Err(SnapshotBodyError::TooLarge(limit));
            }
            serde_json::from_slice(&json).map_err(SnapshotBodyError::Json)
        }
        Some(other) => Err(SnapshotBodyError::UnsupportedEncoding(other.to_owned())),
    }
}

/// Fewest characters the push token may have: it guards snapshots, which carry TLS
/// private keys (`openssl rand -hex 32` makes 64). Proxies and the operator refuse
/// shorter ones at start.
pub const MIN_TOKEN_CHARS: usize = 32;

/// The push token in the text of a token file, white space around it trimmed; `Err`
/// carries how many characters it has when that is fewer than [`MIN_TOKEN_CHARS`]. The
/// one rule proxies and the operator both hold a token to.
pub fn token_in(text: &str) -> Result<&str, usize> {
    let token = text.trim();
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        Err(chars)
    } else {
        Ok(token)
    }
}

/// One object a proxy could not load and left out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// `Route` or `Plugin`.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// What failed.
    pub message: String,
}

impl LoadFailure {
    /// A failure on an object of `kind`.
    pub fn new(kind: ObjectKind, namespace: &str, name: &str, message: String) -> Self {
        Self {
            kind: kind.to_string(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            message,
        }
    }

    /// A failure on the Route whose snapshot id is `route` (`namespace/name`).
    pub fn route(route: &str, message: String) -> Self {
        let object = ObjectRef::namespaced(ObjectKind::Route, route);
        Self::new(ObjectKind::Route, &object.namespace, &object.name, message)
    }

    /// Whether the failure is about `object`.
    pub fn is_about(&self, object: &ObjectRef) -> bool {
        self.kind == object.kind.to_string()
            && self.namespace == object.namespace
            && self.name == object.name
    }
}

/// The answer to an applied push: the version served, its hash, and what failed to load.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Version now served.
    pub version: u64,
    /// Its hash.
    pub hash: String,
    /// Objects left out.
    #[serde(default)]
    pub failures: Vec<LoadFailure>,
}

/// The answer to `GET /v1/snapshot/version`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServedVersion {
    /// Version served (`0` before the first push).
    pub version: u64,
    /// Its hash.
    pub hash: String,
}

/// An error answer: `{"error": code, "message": …}`, with `currentVersion` on a
/// `stale_version` conflict.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AdminError {
    /// Snake-case error code, e.g. `stale_version`.
    pub error: String,
    /// For humans.
    #[serde(default)]
    pub message: String,
    /// The proxy's version, on `stale_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

/// Where one proxy stands with respect to the snapshot being rolled out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyAck {
    /// How the proxy is named in messages (its admin address).
    pub proxy: String,
    /// The version it acknowledged last, if any.
    pub version: Option<u64>,
    /// What it failed to load of that version.
    pub failures: Vec<LoadFailure>,
    /// Why the last push to it failed, if it did.
    pub error: Option<String>,
}

/// The ready admin endpoints (`host:port`) listed by a Service's EndpointSlices, sorted
/// and without duplicates. The port is the one named `port_name`, or the slice's first.
/// Endpoints whose `ready` condition is false are left out (unset counts as ready), and so
/// are terminating ones: the admin Service publishes not-ready addresses (a proxy becomes
/// ready only once it has a snapshot), which keeps a terminating pod `ready` too.
pub fn admin_endpoints(slices: &[&EndpointSlice], port_name: Option<&str>) -> Vec<String> {
    let mut endpoints = BTreeSet::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = match port_name {
            Some(name) => ports.iter().find(|p| p.name.as_deref() == Some(name)),
            None => ports.first(),
        };
        let Some(port) = port.and_then(|p| p.port) else {
            continue;
        };
        let ipv6 = slice.address_type == "IPv6";
        for endpoint in &slice.endpoints {
            let terminating = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false);
            if !endpoint_is_ready(endpoint) || terminating {
                continue;
            }
            for address in &endpoint.addresses {
                endpoints.insert(if ipv6 {
                    format!("[{address}]:{port}")
                } else {
                    format!("{address}:{port}")
                });
            }
        }
    }
    endpoints.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_endpoints_of_the_named_port() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "admin-abc", "namespace": "weir"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9901}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true, "terminating": true}}
            ]
        }))
        .unwrap();
        assert_eq!(
            admin_endpoints(&[&slice, &slice], Some("admin")),
            ["10.0.0.1:9901", "10.0.0.2:9901"]
        );
        assert_eq!(
            admin_endpoints(&[&slice], None),
            ["10.0.0.1:8080", "10.0.0.2:8080"]
        );
        assert!(admin_endpoints(&[&slice], Some("metrics")).is_empty());
        let mut v6 = slice.clone();
        v6.address_type = "IPv6".into();
        v6.endpoints.truncate(1);
        v6.endpoints[0].addresses = vec!["fd00::1".into()];
        assert_eq!(admin_endpoints(&[&v6], Some("admin")), ["[fd00::1]:9901"]);
    }

    #[test]
    fn snapshots_travel_gzip_compressed_and_plain() {
        let mut snapshot = Snapshot::empty();
        snapshot.version = 7;
        let body = encode_snapshot(&snapshot);
        assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");
        let json = serde_json::to_vec(&snapshot).unwrap();
        for (body, encoding) in [
            (&body, Some("gzip")),
            (&body, Some(" GZIP ")),
            (&json, None),
            (&json, Some("identity")),
        ] {
            assert_eq!(decode_snapshot(body, encoding, 1 << 20).unwrap(), snapshot);
        }
        assert!(matches!(
            decode_snapshot(&body, Some("br"), 1 << 20),
            Err(SnapshotBodyError::UnsupportedEncoding(e)) if e == "br"
        ));
        assert!(matches!(
            decode_snapshot(&json, Some("gzip"), 1 << 20),
            Err(SnapshotBodyError::Gzip(_))
        ));
        assert!(matches!(
            decode_snapshot(&body, None, 1 << 20),
            Err(SnapshotBodyError::Json(_))
        ));
        // The limit is on the decompressed JSON: a small body cannot expand past it.
        assert!(matches!(
            decode_snapshot(&body, Some("gzip"), json.len() - 1),
            Err(SnapshotBodyError::TooLarge(_))
        ));
        assert!(decode_snapshot(&body, Some("gzip"), json.len()).is_ok());
    }

    #[test]
    fn wire_format_matches_the_admin_api() {
        let applied: Applied = serde_json::from_str(
            r#"{"version":42,"hash":"sha256:a","failures":[{"kind":"Route","namespace":"shop","name":"api","message":"bad"}]}"#,
        )
        .unwrap();
        assert_eq!(applied.version, 42);
        assert_eq!(applied.failures[0].name, "api");
        let error: AdminError = serde_json::from_str(
            r#"{"error":"stale_version","message":"old","currentVersion":57}"#,
        )
        .unwrap();
        assert_eq!(error.current_version, Some(57));
    }
}
