//! What the proxy tells the runtime about a request and its response, and the trait
//! through which bodies are read only when a plugin asks for them.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;

/// A request as plugins see it (`ctx.request`), without its body.
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The full URL the client asked for (`https://host/path?query`).
    pub url: String,
    /// The normalized path, without the query.
    pub path: String,
    /// The raw query string without `?` (empty when there is none). Plugins see it as
    /// `rawQuery`, and decoded as `query` (first value of each name).
    pub query: String,
    /// Headers in arrival order, names lower case; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    /// `namespace/name` of the matched Route.
    pub route: String,
    /// Values of the route's `{param}` path segments.
    pub path_params: BTreeMap<String, String>,
    /// The client's address (after trusted-proxy handling).
    pub client_ip: Option<IpAddr>,
    /// The request id (also in access logs and `x-request-id`).
    pub request_id: String,
    /// Backend ids of the matched rule: the targets `ctx.forward(id)` may choose.
    pub backends: Vec<String>,
    /// The request body, read only when a plugin asks for it.
    pub body: Option<Arc<dyn BodySource>>,
}

/// The upstream (or locally made) response as `afterResponse` sees it.
#[derive(Clone, Debug, Default)]
pub struct ResponseInfo {
    /// Status code.
    pub status: u16,
    /// Headers in order, names lower case.
    pub headers: Vec<(String, String)>,
    /// The response body, read only when a plugin asks for it.
    pub body: Option<Arc<dyn BodySource>>,
}

/// A body that stays in the proxy until a plugin reads it. The proxy implements this by
/// buffering the body (up to `limit`) so it can still send it on afterwards.
pub trait BodySource: Send + Sync + std::fmt::Debug {
    /// The body's length when known in advance (`content-length`).
    fn size_hint(&self) -> Option<u64>;
    /// The whole body, or [`BodyError::TooLarge`] when it is longer than `limit` bytes.
    fn read(&self, limit: usize) -> BoxFuture<'static, Result<Bytes, BodyError>>;
}

/// Why a body could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The body is longer than the runtime's `bodyLimitBytes`.
    #[error("the body is larger than {limit} bytes; it stays in the proxy")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The client or upstream failed while the body was read.
    #[error("the body could not be read: {0}")]
    Read(String),
}

/// A body already in memory: for locally made responses, tests and tools.
#[derive(Debug, Clone)]
pub struct BufferedBody(pub Bytes);

impl BodySource for BufferedBody {
    fn size_hint(&self) -> Option<u64> {
        Some(self.0.len() as u64)
    }

    fn read(&self, limit: usize) -> BoxFuture<'static, Result<Bytes, BodyError>> {
        let body = self.0.clone();
        Box::pin(async move {
            if body.len() > limit {
                Err(BodyError::TooLarge { limit })
            } else {
                Ok(body)
            }
        })
    }
}

/// A request and the JSON of its maps, made once however many plugins look at them.
#[derive(Debug)]
pub(crate) struct RequestScope {
    pub(crate) info: RequestInfo,
    headers_json: OnceLock<String>,
    query_json: OnceLock<String>,
}

impl RequestScope {
    pub(crate) fn new(info: RequestInfo) -> Self {
        Self {
            info,
            headers_json: OnceLock::new(),
            query_json: OnceLock::new(),
        }
    }

    /// One member of `ctx.request`: text for scalars, JSON for `headers`, `query` and
    /// `pathParams`; `None` for an absent client IP or an unknown name.
    pub(crate) fn field(&self, name: &str) -> Option<String> {
        let info = &self.info;
        Some(match name {
            "method" => info.method.clone(),
            "url" => info.url.clone(),
            "path" => info.path.clone(),
            "rawQuery" => info.query.clone(),
            "route" => info.route.clone(),
            "requestId" => info.request_id.clone(),
            "clientIp" => info.client_ip?.to_string(),
            "headers" => self
                .headers_json
                .get_or_init(|| json_text(&joined_headers(&info.headers)))
                .clone(),
            "query" => self
                .query_json
                .get_or_init(|| {
                    let mut query = BTreeMap::new();
                    for (name, value) in url::form_urlencoded::parse(info.query.as_bytes()) {
                        query.entry(name).or_insert(value);
                    }
                    json_text(&query)
                })
                .clone(),
            "pathParams" => json_text(&info.path_params),
            _ => return None,
        })
    }
}

fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
}

/// The value of one header as plugins see it (repeated values joined).
pub(crate) fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    let separator = if name == "cookie" { "; " } else { ", " };
    let mut values = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = values.next()?.to_owned();
    Some(values.fold(first, |mut joined, value| {
        joined.push_str(separator);
        joined.push_str(value);
        joined
    }))
}

/// Headers merged per name (as [`header_value`] joins them), by name. Repeated names are
/// joined with `, ` (cookies with `; `), as HTTP allows for every header but `set-cookie`.
pub(crate) fn joined_headers(headers: &[(String, String)]) -> BTreeMap<&str, String> {
    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        joined
            .entry(name.as_str())
            .and_modify(|existing| {
                existing.push_str(if name == "cookie" { "; " } else { ", " });
                existing.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_are_joined_and_cookies_use_semicolons() {
        let info = RequestInfo {
            headers: vec![
                ("accept".into(), "a".into()),
                ("cookie".into(), "x=1".into()),
                ("accept".into(), "b".into()),
                ("cookie".into(), "y=2".into()),
            ],
            ..RequestInfo::default()
        };
        let scope = RequestScope::new(info);
        let headers: serde_json::Value =
            serde_json::from_str(&scope.field("headers").unwrap()).unwrap();
        assert_eq!(headers["accept"], "a, b");
        assert_eq!(headers["cookie"], "x=1; y=2");
        assert_eq!(
            header_value(&scope.info.headers, "cookie").as_deref(),
            Some("x=1; y=2")
        );
        assert_eq!(scope.field("clientIp"), None);
    }

    #[tokio::test]
    async fn buffered_bodies_respect_the_limit() {
        let body = BufferedBody(Bytes::from_static(b"hello"));
        assert_eq!(body.read(5).await.unwrap(), "hello");
        assert_eq!(body.read(4).await, Err(BodyError::TooLarge { limit: 4 }));
    }
}
