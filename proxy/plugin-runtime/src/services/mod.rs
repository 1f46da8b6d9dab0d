//! Host services plugins await (`ctx.services.cache`, `ctx.services.http`, request and
//! response bodies), run on the shard of the hook that awaits them, plus `ctx.crypto`.

pub(crate) mod cache;
pub(crate) mod crypto;
pub(crate) mod fetch;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use serde_json::{Value, json};

use crate::engine::{CallScope, HostOps};
use crate::request::BodySource;
use cache::Cache;
use fetch::{FetchRequest, HttpClient};

/// The response `afterResponse` sees, as changed by the plugins before it.
#[derive(Debug, Clone)]
pub(crate) struct ResponseView {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: ResponseBody,
}

/// Where the response body is.
#[derive(Debug, Clone)]
pub(crate) enum ResponseBody {
    /// Still in the proxy.
    Source(Option<Arc<dyn BodySource>>),
    /// Replaced by an earlier plugin.
    Replaced(Bytes),
}

/// The services of one runtime.
pub(crate) struct Services {
    cache: Arc<Cache>,
    http: Arc<dyn HttpClient>,
    body_limit: usize,
}

impl Services {
    /// Services over `cache`, fetching with `http`, reading bodies up to `body_limit`.
    pub(crate) fn new(cache: Arc<Cache>, http: Arc<dyn HttpClient>, body_limit: usize) -> Self {
        Self {
            cache,
            http,
            body_limit,
        }
    }
}

impl HostOps for Services {
    fn call(&self, op: String, args: String, scope: CallScope) -> LocalBoxFuture<'static, String> {
        let cache = self.cache.clone();
        let http = self.http.clone();
        let body_limit = self.body_limit;
        Box::pin(async move {
            match run(&op, &args, &scope, &cache, http.as_ref(), body_limit).await {
                Ok(Reply::Value(value)) => json!({"ok": true, "value": value}).to_string(),
                Ok(Reply::Stored(text)) => format!(r#"{{"ok":true,"value":{text}}}"#),
                Err(error) => json!({"ok": false, "error": error}).to_string(),
            }
        })
    }
}

/// What a service call answers.
enum Reply {
    /// A value, serialized into the answer.
    Value(Value),
    /// JSON text put into the answer as it is: a cache entry as it was stored (never
    /// re-serialized, so its key order and numbers are what `compareAndSet` compares).
    Stored(String),
}

/// A `ttlSeconds` argument: absent or null for none, else a positive number of seconds.
pub(crate) fn ttl_seconds(value: Option<&Value>, call: &str) -> Result<Option<Duration>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| format!("{call}: ttlSeconds must be a positive number")),
    }
}

/// The cache key of a plugin's `key`: each plugin has its own key space.
pub(crate) fn plugin_key(plugin: &str, key: &str) -> String {
    format!("{plugin}:{key}")
}

async fn run(
    op: &str,
    args: &str,
    scope: &CallScope,
    cache: &Cache,
    http: &dyn HttpClient,
    body_limit: usize,
) -> Result<Reply, String> {
    let args: Vec<Value> =
        serde_json::from_str(args).map_err(|e| format!("{op}: bad arguments: {e}"))?;
    let text = |i: usize| {
        args.get(i)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let ttl = |i: usize| ttl_seconds(args.get(i), op);
    let key = |i: usize| plugin_key(&scope.plugin, &text(i));
    let value = match op {
        "cache.get" => {
            let stored = cache.get(&key(0)).await.map_err(|e| e.to_string())?;
            // Another writer of a shared Redis may have left something that is not JSON.
            let entry = stored
                .filter(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
                .unwrap_or_else(|| "null".to_owned());
            return Ok(Reply::Stored(entry));
        }
        "cache.set" => {
            cache
                .set(&key(0), text(1), ttl(2)?)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Value::Null)
        }
        "cache.add" => Ok(Value::Bool(
            cache
                .add(&key(0), text(1), ttl(2)?)
                .await
                .map_err(|e| e.to_string())?,
        )),
        "cache.compareAndSet" => {
            // `null`: the entry must be absent; otherwise the JSON text it must hold.
            let expected = args.get(1).and_then(Value::as_str);
            Ok(Value::Bool(
                cache
                    .compare_and_set(&key(0), expected, text(2), ttl(3)?)
                    .await
                    .map_err(|e| e.to_string())?,
            ))
        }
        "cache.delete" => Ok(Value::Bool(
            cache.delete(&key(0)).await.map_err(|e| e.to_string())?,
        )),
        "cache.incr" => {
            let by = args
                .get(1)
                .and_then(Value::as_i64)
                .ok_or_else(|| "cache.incr: `by` must be an integer".to_owned())?;
            Ok(Value::from(
                cache
                    .incr(&key(0), by, ttl(2)?)
                    .await
                    .map_err(|e| e.to_string())?,
            ))
        }
        "http.fetch" => {
            let request: FetchRequest =
                serde_json::from_value(args.into_iter().next().unwrap_or_default())
                    .map_err(|e| format!("fetch: {e}"))?;
            let response = http
                .fetch(request)
                .await
                .map_err(|e| format!("fetch: {e}"))?;
            serde_json::to_value(response).map_err(|e| e.to_string())
        }
        "request.body" => {
            let source = scope.request.as_ref().and_then(|r| r.info.body.clone());
            read_body(source, &text(0), body_limit).await
        }
        "response.body" => match scope.response.as_ref().map(|r| &r.body) {
            Some(ResponseBody::Replaced(bytes)) => Ok(encode_body(bytes, &text(0))),
            Some(ResponseBody::Source(source)) => {
                read_body(source.clone(), &text(0), body_limit).await
            }
            None => Err("there is no response in this hook".into()),
        },
        other => Err(format!("unknown host service {other:?}")),
    }?;
    Ok(Reply::Value(value))
}

async fn read_body(
    source: Option<Arc<dyn BodySource>>,
    encoding: &str,
    limit: usize,
) -> Result<Value, String> {
    let Some(source) = source else {
        return Ok(Value::String(String::new()));
    };
    let bytes = source.read(limit).await.map_err(|e| e.to_string())?;
    Ok(encode_body(&bytes, encoding))
}

fn encode_body(bytes: &[u8], encoding: &str) -> Value {
    let encoding = if encoding == "base64" {
        crypto::Encoding::Base64
    } else {
        crypto::Encoding::Utf8
    };
    Value::String(crypto::encode(bytes, encoding))
}
