//! The admin API (docs/admin-api.md): snapshot pushes and version, health, readiness and
//! metrics, on its own listener. Snapshot endpoints need the bearer token, compared in
//! constant time. The metrics listener serves the same health, readiness and metrics
//! endpoints and nothing else.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use subtle::ConstantTimeEq;
use weir_crds::admin::{AdminError, SNAPSHOT_PATH, ServedVersion, VERSION_PATH};
use weir_crds::snapshot::Snapshot;

use crate::body::{self, ProxyBody};
use crate::error::json_response;
use crate::gateway::{ApplyError, Gateway};
use crate::metrics;

/// Largest snapshot accepted.
pub const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

/// The bearer token snapshots must carry; `None` refuses every push.
#[derive(Clone)]
pub struct AdminToken(Option<Arc<str>>);

impl AdminToken {
    /// The token read from a file (surrounding white space trimmed), or none.
    pub fn from_file(path: Option<&std::path::Path>) -> std::io::Result<Self> {
        let Some(path) = path else {
            return Ok(Self(None));
        };
        let token = std::fs::read_to_string(path)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the admin token file is empty",
            ));
        }
        Ok(Self(Some(token.into())))
    }

    /// A fixed token.
    pub fn new(token: &str) -> Self {
        Self(Some(token.into()))
    }

    fn accepts(&self, headers: &http::HeaderMap) -> bool {
        let Some(expected) = &self.0 else {
            return false;
        };
        let Some(offered) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        bool::from(offered.trim().as_bytes().ct_eq(expected.as_bytes()))
    }
}

/// What a listener of the admin API serves.
#[derive(Clone)]
pub enum AdminEndpoints {
    /// Everything: snapshots (with this token), health, readiness and metrics.
    All(AdminToken),
    /// Health, readiness and metrics only (`--metrics-listen`).
    Probes,
}

/// Serves one admin request.
pub async fn handle(
    gateway: Arc<Gateway>,
    endpoints: AdminEndpoints,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let no_token = AdminToken(None);
    let token = match (&endpoints, path.as_str()) {
        (AdminEndpoints::All(token), _) => token,
        (AdminEndpoints::Probes, "/healthz" | "/readyz" | "/metrics") => &no_token,
        (AdminEndpoints::Probes, _) => {
            return Ok(error(
                StatusCode::NOT_FOUND,
                "not_found",
                "this listener serves /healthz, /readyz and /metrics only",
            ));
        }
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
        (_, SNAPSHOT_PATH | VERSION_PATH) if !token.accepts(request.headers()) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        ),
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
    let snapshot: Snapshot = match serde_json::from_slice(&bytes) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_snapshot",
                &format!("not a snapshot: {e}"),
            );
        }
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
