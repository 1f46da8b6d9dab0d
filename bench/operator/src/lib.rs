//! Generated objects for the operator benchmarks: Routes with rules forwarding to
//! Services and attached Plugins, Plugins with TypeScript sources in ConfigMaps and config
//! schemas, Services with EndpointSlices. `main.rs` builds them in process;
//! `bin/cluster.rs` applies them to a real API server.

use serde_json::{Value, json};

/// Generated objects, as the API server would hold them, by kind.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    /// Plugin sources.
    pub config_maps: Vec<Value>,
    /// Plugins (one global per namespace, the rest attached).
    pub plugins: Vec<Value>,
    /// Backend Services.
    pub services: Vec<Value>,
    /// Their EndpointSlices (three ready endpoints each).
    pub endpoint_slices: Vec<Value>,
    /// Routes.
    pub routes: Vec<Value>,
}

/// The TypeScript source of generated Plugin `i`.
pub fn plugin_source(i: usize) -> String {
    format!(
        r#"// Generated plugin {i}: checks an API key header and tags the request.
interface Config {{ header: string; keys: string[]; tag: string }}

function allowed(config: Config, key: string | undefined): boolean {{
  if (!key) return false;
  for (const k of config.keys) {{
    if (k === key) return true;
  }}
  return false;
}}

export default {{
  onLoad(ctx: any) {{
    ctx.log.info("plugin {i} loaded");
  }},
  beforeRequest(ctx: any) {{
    const config = ctx.config as Config;
    const key = ctx.request.headers[config.header];
    if (!allowed(config, key)) {{
      ctx.reject(401, "missing or unknown key");
      return;
    }}
    ctx.state["tag{i}"] = config.tag;
  }},
  afterResponse(ctx: any) {{
    ctx.response.headers["x-plugin-{i}"] = String(ctx.state["tag{i}"] ?? "");
  }},
}};
"#
    )
}

/// The objects for `routes` Routes and `plugins` Plugins over `namespaces` namespaces,
/// named `{prefix}0`, `{prefix}1`, ...
pub fn generate(prefix: &str, routes: usize, plugins: usize, namespaces: usize) -> Objects {
    let mut objects = Objects::default();
    let plugins_per_ns = plugins.div_ceil(namespaces);
    for p in 0..plugins {
        let ns = format!("{prefix}{}", p % namespaces);
        let name = format!("plugin-{p}");
        objects.config_maps.push(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{name}-src"), "namespace": ns, "resourceVersion": "1"},
            "data": {"index.ts": plugin_source(p)}
        }));
        objects.plugins.push(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Plugin",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {
                "source": {"configMapRef": {"name": format!("{name}-src"), "key": "index.ts"}},
                "config": {"header": "x-api-key", "keys": ["a", "b", "c"], "tag": format!("t{p}")},
                "configSchema": {
                    "type": "object",
                    "required": ["header", "keys"],
                    "properties": {
                        "header": {"type": "string"},
                        "keys": {"type": "array", "items": {"type": "string"}},
                        "tag": {"type": "string"}
                    }
                },
                "scope": if p < namespaces { "Global" } else { "Attached" },
                "order": p as i32
            }
        }));
    }
    let services = routes / 5;
    for s in 0..services {
        let ns = format!("{prefix}{}", s % namespaces);
        let name = format!("svc-{s}");
        objects.services.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
        }));
        objects.endpoint_slices.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-abcde"), "namespace": ns,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": (0..3).map(|e| json!({
                "addresses": [format!("10.{}.{}.{}", s / 250, s % 250, e + 1)],
                "conditions": {"ready": true}
            })).collect::<Vec<_>>()
        }));
    }
    for r in 0..routes {
        let ns_index = r % namespaces;
        let ns = format!("{prefix}{ns_index}");
        // Services and Plugins of the Route's own namespace (index % namespaces).
        let per_ns = (services / namespaces).max(1);
        let service = ((r / namespaces) % per_ns) * namespaces + ns_index;
        let attached: Vec<Value> = (0..2)
            // The first Plugin of each namespace is global; Routes attach two others.
            .map(|k| {
                ((r / namespaces + k) % (plugins_per_ns - 1).max(1) + 1) * namespaces + ns_index
            })
            .filter(|p| *p < plugins)
            .collect::<std::collections::BTreeSet<usize>>()
            .into_iter()
            .map(|p| json!({"name": format!("plugin-{p}"), "config": {"tag": format!("r{r}")}}))
            .collect();
        objects.routes.push(json!({
            "apiVersion": "weir.dev/v1alpha1", "kind": "Route",
            "metadata": {"name": format!("route-{r}"), "namespace": ns, "generation": 1},
            "spec": {
                "hosts": [format!("app-{r}.example.com")],
                "plugins": attached,
                "rules": [
                    {
                        "matches": [{"path": {"type": "Prefix", "value": "/api"}, "methods": ["GET", "POST"]}],
                        "backends": [{"name": format!("svc-{service}"), "port": 80}],
                        "timeouts": {"request": "10s"},
                        "retries": {"attempts": 2, "retryOn": ["ConnectFailure"]}
                    },
                    {
                        "matches": [{"path": {"type": "Template", "value": "/users/{id}"}}],
                        "backends": [{"name": format!("svc-{service}"), "port": 80}]
                    },
                    {
                        "matches": [{"path": {"type": "Exact", "value": "/healthz"}}],
                        "directResponse": {"status": 200, "body": "ok"}
                    }
                ]
            }
        }));
    }
    objects
}
