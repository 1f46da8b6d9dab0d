//! What the scenarios share: manifests and status checks.

use std::net::SocketAddr;

use kube::api::DynamicObject;
use serde_json::{Value, json};
use weir_e2e::objects::{condition, has_condition, message};

/// A Route `name` for `host` with `rules`.
pub fn route(name: &str, host: &str, rules: Value) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": name},
        "spec": {"hosts": [host], "rules": rules}
    })
}

/// Rules sending everything to port 80 of Service `service`.
pub fn to_service(service: &str) -> Value {
    json!([{"backends": [{"name": service, "port": 80}]}])
}

/// Whether `object`'s status describes its current generation: `status.observedGeneration`
/// and every condition's `observedGeneration`.
pub fn current(object: &DynamicObject) -> Result<(), String> {
    let generation = object.metadata.generation;
    let status = &object.data["status"];
    if status["observedGeneration"].as_i64() != generation {
        return Err(format!(
            "status.observedGeneration {} is not generation {generation:?}",
            status["observedGeneration"]
        ));
    }
    let stale: Vec<&Value> = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["observedGeneration"].as_i64() != generation)
        .collect();
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!("conditions of an older generation: {stale:?}"))
    }
}

/// Checks that condition `type_` is `status` with `reason` at the current generation.
pub fn expect(
    object: &DynamicObject,
    type_: &str,
    status: &str,
    reason: &str,
) -> Result<(), String> {
    if has_condition(object, type_, status, reason) {
        Ok(())
    } else {
        Err(format!(
            "{type_} is not {status}/{reason} at generation {:?}: {:?}",
            object.metadata.generation,
            condition(object, type_)
        ))
    }
}

/// Accepted, ResolvedRefs and Programmed true at the current generation, programmed on
/// all `proxies`.
pub fn programmed(proxies: usize) -> impl Fn(&DynamicObject) -> Result<(), String> {
    move |object| {
        current(object)?;
        expect(object, "Accepted", "True", "Accepted")?;
        expect(object, "ResolvedRefs", "True", "ResolvedRefs")?;
        expect(object, "Programmed", "True", "Programmed")?;
        let prefix = format!("applied on {proxies}/{proxies} proxies");
        let said = message(object, "Programmed");
        if said.starts_with(&prefix) {
            Ok(())
        } else {
            Err(format!("Programmed says {said:?}, not {prefix:?}…"))
        }
    }
}

/// A plugin module whose `afterResponse` sets response header `header` to `value`.
pub fn header_plugin(header: &str, value: &str) -> String {
    format!(
        "export default {{\n  afterResponse(ctx) {{\n    ctx.response.headers.set(\"{header}\", \"{value}\");\n  }},\n}};\n"
    )
}

/// ConfigMap `name` holding plugin sources by key.
pub fn sources(name: &str, files: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = files
        .iter()
        .map(|(key, source)| ((*key).to_owned(), Value::from(*source)))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// A Plugin `name` whose source is `key` of ConfigMap `config_map`.
pub fn plugin(name: &str, config_map: &str, key: &str) -> Value {
    json!({
        "apiVersion": "weir.dev/v1alpha1", "kind": "Plugin",
        "metadata": {"name": name},
        "spec": {"source": {"configMapRef": {"name": config_map, "key": key}}}
    })
}

/// A Plugin that compiled, at its current generation, applied on all `proxies`
/// (`version` is `""`, or `"the last good version "` when its new source failed).
pub fn plugin_programmed(
    proxies: usize,
    version: &'static str,
) -> impl Fn(&DynamicObject) -> Result<(), String> {
    move |object| {
        current(object)?;
        expect(object, "Accepted", "True", "Accepted")?;
        expect(object, "Programmed", "True", "Programmed")?;
        let prefix = format!("{version}applied on {proxies}/{proxies} proxies");
        let said = message(object, "Programmed");
        if said.starts_with(&prefix) {
            Ok(())
        } else {
            Err(format!("Programmed says {said:?}, not {prefix:?}…"))
        }
    }
}

/// Whether one request for `host` to `proxy` gets `200` with body `body`.
pub async fn answers(proxy: SocketAddr, host: &str, body: &str) -> Result<(), String> {
    let response = weir_e2e::http::get(proxy, host, "/")
        .await
        .map_err(|e| format!("{host} via {proxy}: {e}"))?;
    if response.status == 200 && response.body == body {
        Ok(())
    } else {
        Err(format!(
            "{host} via {proxy}: {} {:?}, not 200 {body:?}",
            response.status, response.body
        ))
    }
}

/// Whether `host` via `proxy` answers `200` on path `inside` and `404` on `outside`: it
/// is served on the paths it matches, and only there. Returns the answer on `inside`.
pub async fn served_only_on(
    proxy: SocketAddr,
    host: &str,
    inside: &str,
    outside: &str,
) -> Result<weir_e2e::http::Response, String> {
    let served = weir_e2e::http::get(proxy, host, inside)
        .await
        .map_err(|e| e.to_string())?;
    let other = weir_e2e::http::get(proxy, host, outside)
        .await
        .map_err(|e| e.to_string())?;
    match (served.status.as_u16(), other.status.as_u16()) {
        (200, 404) => Ok(served),
        answered => Err(format!("{inside} and {outside} answered {answered:?}")),
    }
}
