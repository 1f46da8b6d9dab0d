//! The `host` object handed to the prelude: the only doors from a plugin's JavaScript into
//! Rust (hook reports, request and response data, logs, asynchronous services, crypto).

use std::rc::Weak;
use std::sync::Arc;

use rquickjs::{Ctx, Exception, Function, Object, Persistent, Promise, TypedArray, Value};

use super::QuickJsIsolate;
use crate::engine::HookReport;
use crate::patch::HeaderEdits;
use crate::request::header_value;
use crate::services::crypto::{self, CryptoError, Encoding};

/// `target` of `host.edit` and `host.header` (the prelude's `UPSTREAM`; `RESPONSE` is 1).
const UPSTREAM: u8 = 0;
/// `op` of `host.edit` (the prelude's `SET`, `APPEND`; anything else is `DELETE`).
const SET: u8 = 0;
const APPEND: u8 = 1;

type Js<'js, T> = rquickjs::Result<T>;

/// `console.*`'s way out (`globals.js`): `log(level, message)` as a log line of `plugin`.
/// Not tied to a request: a console call may run in any hook's continuation, so the
/// request id is left out rather than guessed (`ctx.log` has it).
pub(super) fn console_log<'js>(ctx: &Ctx<'js>, plugin: Arc<str>) -> Js<'js, Function<'js>> {
    Function::new(ctx.clone(), move |level: String, message: String| {
        let plugin = plugin.as_ref();
        match level.as_str() {
            "debug" => tracing::debug!(plugin, source = "console", "{message}"),
            "warn" => tracing::warn!(plugin, source = "console", "{message}"),
            "error" => tracing::error!(plugin, source = "console", "{message}"),
            _ => tracing::info!(plugin, source = "console", "{message}"),
        }
    })
}

pub(super) fn host_object<'js>(
    ctx: &Ctx<'js>,
    isolate: Weak<QuickJsIsolate>,
) -> rquickjs::Result<Object<'js>> {
    let host = Object::new(ctx.clone())?;

    let weak = isolate.clone();
    host.set(
        "settle",
        Function::new(ctx.clone(), move |invocation: f64, report: String| {
            if let Some(isolate) = weak.upgrade() {
                isolate.finish(invocation as u64, Ok(report));
            }
        })?,
    )?;

    let weak = isolate.clone();
    host.set(
        "config",
        Function::new(ctx.clone(), move |invocation: f64| {
            weak.upgrade()
                .and_then(|isolate| isolate.config_of(invocation as u64))
                .map(|config| config.to_string())
        })?,
    )?;

    let weak = isolate.clone();
    host.set(
        "request",
        Function::new(ctx.clone(), move |invocation: f64, field: String| {
            weak.upgrade()
                .and_then(|isolate| isolate.scope_of(invocation as u64))
                .and_then(|scope| scope.request?.field(&field))
        })?,
    )?;

    let weak = isolate.clone();
    host.set(
        "edit",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  invocation: f64,
                  target: u8,
                  op: u8,
                  name: String,
                  value: String| {
                let name = name.to_ascii_lowercase();
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(Exception::throw_type(
                        &ctx,
                        &format!("invalid header name {name:?}"),
                    ));
                }
                let Some(isolate) = weak.upgrade() else {
                    return Ok(());
                };
                isolate.record(invocation as u64, |report, _| {
                    let edits = if target == UPSTREAM {
                        report.upstream.get_or_insert_with(Box::default)
                    } else {
                        let response = report.response.get_or_insert_with(Box::default);
                        response.headers.get_or_insert_with(HeaderEdits::default)
                    };
                    match op {
                        SET => edits.set_value(name, value),
                        APPEND => edits.append_value(name, value),
                        _ => edits.remove_name(name),
                    }
                });
                Ok(())
            },
        )?,
    )?;

    let weak = isolate.clone();
    host.set(
        "header",
        Function::new(
            ctx.clone(),
            move |invocation: f64, target: u8, name: String| {
                let isolate = weak.upgrade()?;
                isolate
                    .record(invocation as u64, |report, scope| {
                        let (edits, before) = if target == UPSTREAM {
                            let before = scope
                                .request
                                .as_ref()
                                .and_then(|r| header_value(&r.info.headers, &name));
                            (report.upstream.as_deref(), before)
                        } else {
                            let before = scope
                                .response
                                .as_ref()
                                .and_then(|r| header_value(&r.headers, &name));
                            (
                                report.response.as_ref().and_then(|r| r.headers.as_ref()),
                                before,
                            )
                        };
                        match edits {
                            Some(edits) => edits.current(&name, before),
                            None => before,
                        }
                    })
                    .flatten()
            },
        )?,
    )?;

    let weak = isolate.clone();
    host.set(
        "headerList",
        Function::new(ctx.clone(), move |invocation: f64, target: u8| {
            let isolate = weak.upgrade()?;
            isolate
                .record(invocation as u64, |report, scope| {
                    let (mut headers, edits) = if target == UPSTREAM {
                        let headers = scope.request.as_ref().map(|r| r.info.headers.clone());
                        (headers, report.upstream.as_deref())
                    } else {
                        let headers = scope.response.as_ref().map(|r| r.headers.clone());
                        let edits = report.response.as_ref().and_then(|r| r.headers.as_ref());
                        (headers, edits)
                    };
                    let headers = headers.get_or_insert_with(Vec::new);
                    if let Some(edits) = edits {
                        edits.apply(headers);
                    }
                    serde_json::to_string(headers).ok()
                })
                .flatten()
        })?,
    )?;

    let weak = isolate.clone();
    host.set(
        "record",
        Function::new(
            ctx.clone(),
            move |invocation: f64, key: String, value: String| {
                let Some(isolate) = weak.upgrade() else {
                    return;
                };
                isolate.record(invocation as u64, |report, _| match key.as_str() {
                    "path" => report.steering.get_or_insert_with(Box::default).path = Some(value),
                    "query" => report.steering.get_or_insert_with(Box::default).query = Some(value),
                    "upstreamBody" | "upstreamBodyBase64" => {
                        let steering = report.steering.get_or_insert_with(Box::default);
                        steering.body_base64 = key == "upstreamBodyBase64";
                        steering.body = Some(value);
                    }
                    "forward" => {
                        report.steering.get_or_insert_with(Box::default).forward = Some(value)
                    }
                    "status" => report.response_mut().status = value.parse().ok(),
                    "body" | "bodyBase64" => {
                        let response = report.response_mut();
                        response.body_base64 = key == "bodyBase64";
                        response.body = Some(value);
                    }
                    _ => {
                        report.response_mut();
                        report.rejected = true;
                    }
                });
            },
        )?,
    )?;

    let weak = isolate.clone();
    host.set(
        "status",
        Function::new(ctx.clone(), move |invocation: f64| -> u16 {
            weak.upgrade()
                .and_then(|isolate| isolate.scope_of(invocation as u64))
                .and_then(|scope| scope.response.map(|response| response.status))
                .unwrap_or(0)
        })?,
    )?;

    let weak = isolate.clone();
    host.set(
        "finish",
        Function::new(
            ctx.clone(),
            move |invocation: f64, state: Option<String>, user: Option<String>| {
                if let Some(isolate) = weak.upgrade() {
                    isolate.record(invocation as u64, |report, _| {
                        report.state = state;
                        report.user = user;
                    });
                }
            },
        )?,
    )?;

    let weak = isolate.clone();
    host.set(
        "discard",
        Function::new(ctx.clone(), move |invocation: f64| {
            if let Some(isolate) = weak.upgrade() {
                isolate.record(invocation as u64, |report, _| {
                    *report = HookReport::default()
                });
            }
        })?,
    )?;

    let weak = isolate.clone();
    host.set(
        "log",
        Function::new(
            ctx.clone(),
            move |invocation: f64, level: String, message: String, fields: Option<String>| {
                let Some(isolate) = weak.upgrade() else {
                    return;
                };
                let scope = isolate.scope_of(invocation as u64).unwrap_or_default();
                let plugin = isolate.plugin.as_ref();
                let request_id = scope.request_id();
                let fields = fields.unwrap_or_default();
                match level.as_str() {
                    "debug" => tracing::debug!(plugin, request_id, fields, "{message}"),
                    "warn" => tracing::warn!(plugin, request_id, fields, "{message}"),
                    "error" => tracing::error!(plugin, request_id, fields, "{message}"),
                    _ => tracing::info!(plugin, request_id, fields, "{message}"),
                }
            },
        )?,
    )?;

    let weak = isolate.clone();
    host.set(
        "callNow",
        Function::new(ctx.clone(), move |op: String, args: String| {
            weak.upgrade()
                .map(|isolate| isolate.host.call_now(&op, &args))
                .unwrap_or_default()
        })?,
    )?;

    let weak = isolate;
    host.set(
        "call",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  invocation: f64,
                  op: String,
                  args: String|
                  -> Js<'js, Promise<'js>> {
                let (promise, resolve, _reject) = ctx.promise()?;
                if let Some(isolate) = weak.upgrade() {
                    let resolve = Persistent::save(&ctx, resolve);
                    isolate.start_host_call(invocation as u64, resolve, op, args);
                }
                Ok(promise)
            },
        )?,
    )?;

    host.set("crypto", crypto_object(ctx)?)?;
    Ok(host)
}

fn crypto_object<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Object<'js>> {
    let object = Object::new(ctx.clone())?;
    object.set(
        "sha256",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, binary: bool, data: String, encoding: Option<String>| {
                output(&ctx, crypto::sha256(&bytes(binary, &data)), encoding)
            },
        )?,
    )?;
    object.set(
        "hmac",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             algorithm: String,
             key_binary: bool,
             key: String,
             data_binary: bool,
             data: String,
             encoding: Option<String>| {
                let mac = crypto::hmac(
                    &algorithm,
                    &bytes(key_binary, &key),
                    &bytes(data_binary, &data),
                )
                .map_err(|e| type_error(&ctx, &e))?;
                output(&ctx, mac, encoding)
            },
        )?,
    )?;
    object.set(
        "equal",
        Function::new(
            ctx.clone(),
            |a_binary: bool, a: String, b_binary: bool, b: String| {
                crypto::timing_safe_equal(&bytes(a_binary, &a), &bytes(b_binary, &b))
            },
        )?,
    )?;
    object.set(
        "verify",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             algorithm: String,
             key: String,
             data_binary: bool,
             data: String,
             signature_binary: bool,
             signature: String| {
                crypto::verify(
                    &algorithm,
                    &key,
                    &bytes(data_binary, &data),
                    &bytes(signature_binary, &signature),
                )
                .map_err(|e| type_error(&ctx, &e))
            },
        )?,
    )?;
    object.set(
        "random",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, length: f64, encoding: Option<String>| {
                if !(0.0..=crypto::MAX_RANDOM_BYTES as f64).contains(&length)
                    || length.fract() != 0.0
                {
                    return Err(type_error(
                        &ctx,
                        &CryptoError::Random(format!(
                            "randomBytes takes a whole number from 0 to {}",
                            crypto::MAX_RANDOM_BYTES
                        )),
                    ));
                }
                let random =
                    crypto::random_bytes(length as usize).map_err(|e| type_error(&ctx, &e))?;
                output(&ctx, random, encoding)
            },
        )?,
    )?;
    object.set(
        "uuid",
        Function::new(ctx.clone(), |ctx: Ctx<'js>| {
            crypto::random_uuid().map_err(|e| type_error(&ctx, &e))
        })?,
    )?;
    object.set(
        "encode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, binary: bool, data: String, encoding: String| {
                let encoding = Encoding::parse(&encoding).map_err(|e| type_error(&ctx, &e))?;
                Ok::<_, rquickjs::Error>(crypto::encode(&bytes(binary, &data), encoding))
            },
        )?,
    )?;
    object.set(
        "decode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, text: String, encoding: String| -> Js<'js, TypedArray<'js, u8>> {
                let encoding = Encoding::parse(&encoding).map_err(|e| type_error(&ctx, &e))?;
                let decoded = crypto::decode(&text, encoding).map_err(|e| type_error(&ctx, &e))?;
                TypedArray::new(ctx, decoded)
            },
        )?,
    )?;
    Ok(object)
}

/// Bytes from the prelude's `[isBinary, string]` form (binary strings carry one byte per
/// character).
pub(super) fn bytes(binary: bool, text: &str) -> Vec<u8> {
    if binary {
        text.chars().map(|c| c as u32 as u8).collect()
    } else {
        text.as_bytes().to_vec()
    }
}

/// Bytes as a `Uint8Array`, or as text in `encoding`.
fn output<'js>(ctx: &Ctx<'js>, bytes: Vec<u8>, encoding: Option<String>) -> Js<'js, Value<'js>> {
    match encoding {
        None => Ok(TypedArray::new(ctx.clone(), bytes)?.into_value()),
        Some(name) => {
            let encoding = Encoding::parse(&name).map_err(|e| type_error(ctx, &e))?;
            let text = crypto::encode(&bytes, encoding);
            Ok(rquickjs::String::from_str(ctx.clone(), &text)?.into_value())
        }
    }
}

fn type_error(ctx: &Ctx<'_>, error: &CryptoError) -> rquickjs::Error {
    Exception::throw_type(ctx, &error.to_string())
}
