//! The admin API (docs/admin-api.md): snapshot pushes and version, health, readiness and
//! metrics, on its own listener. Snapshot endpoints need the bearer token (and metrics
//! too with `--metrics-require-token`), compared in constant time. The metrics listener
//! serves the same health, readiness and metrics endpoints and nothing else.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use subtle::ConstantTimeEq;
use weir_crds::admin::{
    AdminError, MIN_TOKEN_CHARS, SNAPSHOT_ENCODING, SNAPSHOT_PATH, ServedVersion,
    SnapshotBodyError, VERSION_PATH, decode_snapshot, token_in,
};

use crate::body::{self, ProxyBody};
use crate::error::json_response;
use crate::gateway::{ApplyError, Gateway};
use crate::metrics;

/// Largest snapshot accepted, as JSON (decompressed, when it came gzip-compressed).
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

/// The bearer token snapshot pushes (and, with `--metrics-require-token`, metrics
/// scrapes) must carry. Read from its file at start, and again when the file changes (a
/// rotated Kubernetes Secret), so a new token takes effect without a restart; a changed
/// file whose token is unusable is logged and the previous token kept. Without a file,
/// every push is refused.
#[derive(Clone)]
pub struct AdminToken(Option<Arc<TokenFile>>);

/// A token file and what was last read from it.
struct TokenFile {
    path: PathBuf,
    read: Mutex<TokenRead>,
}

/// A token and the state of its file when it was read.
struct TokenRead {
    stamp: FileStamp,
    token: Arc<str>,
}

/// What tells that a file changed: its inode (a Secret update swaps a symlink), size and
/// modification time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    size: u64,
    modified: Option<std::time::SystemTime>,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = std::fs::metadata(path)?;
        Ok(Self {
            inode: metadata.ino(),
            size: metadata.len(),
            modified: metadata.modified().ok(),
        })
    }
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Its token is too short to guard snapshots.
    #[error(
        "{path}: the admin token has {chars} characters; at least {MIN_TOKEN_CHARS} are required (e.g. `openssl rand -hex 32`)"
    )]
    TooShort {
        /// The file.
        path: String,
        /// Characters it has (white space around it left out).
        chars: usize,
    },
}

fn read_token(path: &Path) -> Result<TokenRead, TokenError> {
    let failed = |source| TokenError::Read {
        path: path.display().to_string(),
        source,
    };
    let stamp = FileStamp::of(path).map_err(failed)?;
    let text = std::fs::read_to_string(path).map_err(failed)?;
    let token = token_in(&text).map_err(|chars| TokenError::TooShort {
        path: path.display().to_string(),
        chars,
    })?;
    Ok(TokenRead {
        stamp,
        token: token.into(),
    })
}

impl AdminToken {
    /// The token of a file (surrounding white space trimmed), or none without a file.
    pub fn from_file(path: Option<&Path>) -> Result<Self, TokenError> {
        let Some(path) = path else {
            return Ok(Self(None));
        };
        let read = read_token(path)?;
        Ok(Self(Some(Arc::new(TokenFile {
            path: path.to_owned(),
            read: Mutex::new(read),
        }))))
    }

    /// The token now: read again first if its file changed.
    fn current(&self) -> Option<Arc<str>> {
        let file = self.0.as_ref()?;
        let mut read = file.read.lock().unwrap_or_else(|e| e.into_inner());
        let changed = FileStamp::of(&file.path).map_or(true, |stamp| stamp != read.stamp);
        if changed {
            match read_token(&file.path) {
                Ok(new) => {
                    if new.token != read.token {
                        tracing::info!(path = %file.path.display(), "admin token file changed: using its new token");
                    }
                    *read = new;
                }
                Err(e) => tracing::error!(
                    "admin token file changed but cannot be used, keeping the previous token: {e}"
                ),
            }
        }
        Some(read.token.clone())
    }

    fn accepts(&self, headers: &http::HeaderMap) -> bool {
        let Some(offered) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let Some(expected) = self.current() else {
            return false;
        };
        bool::from(offered.trim().as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// What a listener of the admin API serves, and how it checks tokens.
#[derive(Clone)]
pub struct AdminEndpoints {
    /// Whether it serves snapshots (the admin listener) besides health, readiness and
    /// metrics (all that `--metrics-listen` serves).
    pub snapshots: bool,
    /// The token snapshot pushes carry.
    pub token: AdminToken,
    /// Whether `/metrics` needs the token too (`--metrics-require-token`).
    pub metrics_need_token: bool,
}

/// Serves one admin request.
pub async fn handle(
    gateway: Arc<Gateway>,
    endpoints: AdminEndpoints,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = request.uri().path().to_owned();
    if !endpoints.snapshots && !matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this listener serves /healthz, /readyz and /metrics only",
        ));
    }
    let token = &endpoints.token;
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    };
    let response = match (request.method(), path.as_str()) {
        (&Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/readyz") => {
            if gateway.is_ready() {
                json_response(
                    StatusCode::OK,
                    &json!({"status": "ready", "version": gateway.current().version}),
                )
            } else {
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "no snapshot has been applied yet",
                )
            }
        }
        (&Method::GET, "/metrics")
            if endpoints.metrics_need_token && !token.accepts(request.headers()) =>
        {
            unauthorized()
        }
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(body::full(metrics::encode(&gateway.registry)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        (_, SNAPSHOT_PATH | VERSION_PATH) if !token.accepts(request.headers()) => unauthorized(),
        (&Method::GET, VERSION_PATH) => {
            let current = gateway.current();
            let served = ServedVersion {
                version: current.version,
                hash: current.hash.clone(),
            };
            json_response(StatusCode::OK, &served)
        }
        (&Method::PUT, SNAPSHOT_PATH) => put_snapshot(&gateway, request).await,
        (_, "/healthz" | "/readyz" | "/metrics" | SNAPSHOT_PATH | VERSION_PATH) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed here",
        ),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
    };
    Ok(response)
}

async fn put_snapshot(gateway: &Gateway, request: Request<Incoming>) -> Response<ProxyBody> {
    let encoding = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("(not text)").to_owned());
    let bytes = match Limited::new(request.into_body(), MAX_SNAPSHOT_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_snapshot",
                &format!("reading the body: {e}"),
            );
        }
    };
    let snapshot = match decode_snapshot(&bytes, encoding.as_deref(), MAX_SNAPSHOT_BYTES) {
        Ok(snapshot) => snapshot,
        Err(e @ SnapshotBodyError::UnsupportedEncoding(_)) => {
            // RFC 7694: the codings a request body may come in.
            let mut response = error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                &e.to_string(),
            );
            response.headers_mut().insert(
                header::ACCEPT_ENCODING,
                header::HeaderValue::from_static(SNAPSHOT_ENCODING),
            );
            return response;
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_snapshot", &e.to_string()),
    };
    match gateway.apply(&snapshot).await {
        Ok(applied) => json_response(StatusCode::OK, &applied),
        Err(stale @ ApplyError::Stale { current, .. }) => json_response(
            StatusCode::CONFLICT,
            &AdminError {
                error: "stale_version".to_owned(),
                message: stale.to_string(),
                current_version: Some(current),
            },
        ),
        Err(ApplyError::Invalid(message)) => {
            error(StatusCode::BAD_REQUEST, "invalid_snapshot", &message)
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let answer = AdminError {
        error: code.to_owned(),
        message: message.to_owned(),
        current_version: None,
    };
    json_response(status, &answer)
}
