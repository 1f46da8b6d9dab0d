//! Hooks, ctx members, ordering and patches, through the real isolate pool.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::json;
use std::sync::Arc;
use weir_plugin_runtime::{AfterResponse, BeforeRequest, BufferedBody, ResponseInfo, Upstream};

#[test]
fn a_trivial_hook_sets_an_upstream_header() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![bundle(
            "shop/tag",
            r#"export default { beforeRequest(ctx) { ctx.upstream.headers.set("X-Weir", "1"); } };"#,
        )],
    )
    .await;
        assert!(loaded.failures.is_empty(), "{:?}", loaded.failures);
        let chain = chain(&loaded, &[("shop/tag", json!({}))]);
        let (outcome, _) = runtime.before_request(&chain, request("/")).await;
        let patch = expect_continue(outcome);
        assert_eq!(patch.headers.set["x-weir"], ["1"]);
    });
}

#[test]
fn a_plugin_of_several_files_imports_them_once_each() {
    on_shard(async {
        let runtime = runtime();
        let files = [
            // Imported by the entry and by `format`: one instance, one counter.
            (
                "counter.ts",
                "let n = 0;\nexport const next = (): number => ++n;",
            ),
            (
                "format.ts",
                "import { next } from \"./counter\";\nexport const tag = (p: string) => `${p}-${next()}`;",
            ),
        ];
        let loaded = load(
            &runtime,
            vec![bundle_with_files(
                "shop/split",
                r#"import { next } from "./counter.ts";
                import { tag } from "./format";
                export default {
                    beforeRequest(ctx) {
                        ctx.upstream.headers.set("x-tag", tag("a") + "," + next());
                    },
                };"#,
                &files,
            )],
        )
        .await;
        assert!(loaded.failures.is_empty(), "{:?}", loaded.failures);
        let chain = chain(&loaded, &[("shop/split", json!({}))]);
        let (outcome, _) = runtime.before_request(&chain, request("/")).await;
        assert_eq!(expect_continue(outcome).headers.set["x-tag"], ["a-1,2"]);
        let (outcome, _) = runtime.before_request(&chain, request("/")).await;
        assert_eq!(expect_continue(outcome).headers.set["x-tag"], ["a-3,4"]);
    });
}

#[test]
fn a_dynamic_import_of_something_else_fails_the_hook() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/dynamic",
                r#"export default {
                    async beforeRequest(ctx) {
                        try { await import("node:fs"); ctx.upstream.headers.set("x-loaded", "yes"); }
                        catch (e) { ctx.upstream.headers.set("x-error", String(e)); }
                    },
                };"#,
            )],
        )
        .await;
        assert!(loaded.failures.is_empty(), "{:?}", loaded.failures);
        let chain = chain(&loaded, &[("shop/dynamic", json!({}))]);
        let (outcome, _) = runtime.before_request(&chain, request("/")).await;
        let patch = expect_continue(outcome);
        assert!(!patch.headers.set.contains_key("x-loaded"));
        assert!(
            patch.headers.set["x-error"][0].contains("a plugin imports only its own files"),
            "{:?}",
            patch.headers.set
        );
    });
}

#[test]
fn request_maps_have_no_inherited_members() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/names",
                r#"export default {
                    beforeRequest(ctx) {
                        const { headers, query, pathParams } = ctx.request;
                        const seen = [headers.constructor, query.toString, pathParams.__proto__, "hasOwnProperty" in headers];
                        ctx.upstream.headers.set("x-seen", JSON.stringify(seen));
                        ctx.upstream.headers.set("x-tag", headers["x-tag"] ?? "none");
                    },
                };"#,
            )],
        )
        .await;
        let chain = chain(&loaded, &[("shop/names", json!({}))]);
        let mut info = request("/");
        info.headers.push(("x-tag".into(), "blue".into()));
        let (outcome, _) = runtime.before_request(&chain, info).await;
        let patch = expect_continue(outcome);
        assert_eq!(patch.headers.set["x-seen"], ["[null,null,null,false]"]);
        assert_eq!(patch.headers.set["x-tag"], ["blue"]);
    });
}

#[test]
fn header_editors_list_headers_with_the_edits_so_far() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/lister",
                r#"export default {
                    beforeRequest(ctx) {
                        ctx.upstream.headers.delete("x-drop");
                        ctx.upstream.headers.append("x-added", "1");
                        ctx.upstream.headers.set("x-seen", JSON.stringify(ctx.upstream.headers.entries()));
                    },
                    afterResponse(ctx) {
                        ctx.response.headers.append("set-cookie", "b=2");
                        ctx.response.headers.set("x-names", ctx.response.headers.keys().join(","));
                    },
                };"#,
            )],
        )
        .await;
        let chain = chain(&loaded, &[("shop/lister", json!({}))]);
        let mut info = request("/");
        info.headers = vec![
            ("x-drop".into(), "gone".into()),
            ("accept".into(), "*/*".into()),
        ];
        let (outcome, carry) = runtime.before_request(&chain, info).await;
        let patch = expect_continue(outcome);
        assert_eq!(
            patch.headers.set["x-seen"],
            [r#"[["accept","*/*"],["x-added","1"]]"#]
        );
        let response = ResponseInfo {
            status: 200,
            headers: vec![
                ("set-cookie".into(), "a=1".into()),
                ("content-type".into(), "text/plain".into()),
            ],
            body: None,
        };
        let AfterResponse::Continue(patch) = runtime.after_response(&chain, carry, response).await
        else {
            panic!("afterResponse failed");
        };
        assert_eq!(patch.headers.set["x-names"], ["set-cookie,content-type"]);
    });
}

#[test]
fn hooks_run_in_chain_order_and_share_state_and_user() {
    on_shard(async {
        let runtime = runtime();
        let plugin = |name: &str| {
            bundle(
                &format!("shop/{name}"),
                &format!(
                    r#"export default {{
                    beforeRequest(ctx) {{
                        ctx.state.trail = [...(ctx.state.trail ?? []), "{name}:" + ctx.config.tag];
                        ctx.upstream.headers.set("x-last", "{name}");
                        ctx.upstream.headers.append("x-trail", "{name}");
                        if ("{name}" === "auth") ctx.user = {{ sub: "alice" }};
                    }},
                    afterResponse(ctx) {{
                        ctx.state.trail.push("{name}:after:" + (ctx.user?.sub ?? "-"));
                        ctx.response.headers.set("x-trail", ctx.state.trail.join(","));
                    }},
                }};"#
                ),
            )
        };
        let loaded = load(&runtime, vec![plugin("auth"), plugin("log")]).await;
        let chain = chain(
            &loaded,
            &[
                ("shop/auth", json!({"tag": "a"})),
                ("shop/log", json!({"tag": "b"})),
            ],
        );
        let (outcome, carry) = runtime.before_request(&chain, request("/")).await;
        let patch = expect_continue(outcome);
        assert_eq!(patch.headers.set["x-last"], ["log"]);
        assert_eq!(patch.headers.append["x-trail"], ["auth", "log"]);
        assert_eq!(patch.user, Some(json!({"sub": "alice"})));
        let after = runtime
            .after_response(
                &chain,
                carry,
                ResponseInfo {
                    status: 200,
                    ..ResponseInfo::default()
                },
            )
            .await;
        let AfterResponse::Continue(patch) = after else {
            panic!("{after:?}")
        };
        assert_eq!(
            patch.headers.set["x-trail"],
            ["auth:a,log:b,auth:after:alice,log:after:alice"]
        );
    });
}

#[test]
fn the_request_is_frozen_and_complete() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![bundle(
            "shop/inspect",
            r#"export default {
                async beforeRequest(ctx) {
                    const r = ctx.request;
                    let frozen = false;
                    try { r.headers.host = "evil"; } catch { frozen = true; }
                    let configFrozen = false;
                    try { ctx.config.limit = 0; } catch { configFrozen = true; }
                    const body = await r.json();
                    ctx.upstream.headers.set("x-seen", JSON.stringify({
                        method: r.method, url: r.url, path: r.path, query: r.query, rawQuery: r.rawQuery,
                        host: r.headers.host, route: r.route, params: r.pathParams, ip: r.clientIp,
                        id: r.requestId, frozen, configFrozen, limit: ctx.config.limit, body,
                    }));
                    ctx.log.info("inspected", { path: r.path });
                },
            };"#,
        )],
    )
    .await;
        let chain = chain(&loaded, &[("shop/inspect", json!({"limit": 5}))]);
        let mut info = request("/items/42");
        info.method = "POST".into();
        info.query = "a=1&b=two%20words".into();
        info.path_params.insert("id".into(), "42".into());
        info.client_ip = Some("203.0.113.9".parse().unwrap());
        info.body = Some(Arc::new(BufferedBody(Bytes::from_static(br#"{"qty":3}"#))));
        let (outcome, _) = runtime.before_request(&chain, info).await;
        let patch = expect_continue(outcome);
        let seen: serde_json::Value =
            serde_json::from_str(&patch.headers.set["x-seen"][0]).unwrap();
        assert_eq!(
            seen,
            json!({
                "method": "POST", "url": "https://shop.example/items/42", "path": "/items/42",
                "query": {"a": "1", "b": "two words"}, "rawQuery": "a=1&b=two%20words",
                "host": "shop.example", "route": "shop/api", "params": {"id": "42"},
                "ip": "203.0.113.9", "id": "req-1", "frozen": true, "configFrozen": true,
                "limit": 5, "body": {"qty": 3},
            })
        );
    });
}

#[test]
fn bodies_over_the_limit_stay_in_rust_with_a_clear_error() {
    on_shard(async {
        let (runtime, _) = runtime_with(weir_plugin_runtime::RuntimeConfig {
            body_limit_bytes: 4,
            ..Default::default()
        });
        let loaded = load(
        &runtime,
        vec![bundle(
            "shop/body",
            r#"export default { async beforeRequest(ctx) {
                try { await ctx.request.text(); } catch (e) { ctx.upstream.headers.set("x-error", e.message); }
            } };"#,
        )],
    )
    .await;
        let chain = chain(&loaded, &[("shop/body", json!({}))]);
        let mut info = request("/");
        info.body = Some(Arc::new(BufferedBody(Bytes::from_static(b"0123456789"))));
        let patch = expect_continue(runtime.before_request(&chain, info).await.0);
        assert!(
            patch.headers.set["x-error"][0].contains("larger than 4 bytes"),
            "{patch:?}"
        );
    });
}

#[test]
fn reject_answers_and_only_earlier_plugins_see_the_response() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![
            bundle(
                "shop/cors",
                r#"export default {
                    beforeRequest(ctx) { ctx.response.headers.set("x-cors", "yes"); },
                    afterResponse(ctx) { ctx.response.headers.set("x-cors-after", String(ctx.response.status)); },
                };"#,
            ),
            bundle(
                "shop/auth",
                r#"export default {
                    beforeRequest(ctx) { return ctx.reject(401, { error: "unauthorized" }, { "www-authenticate": "Bearer" }); },
                    afterResponse(ctx) { ctx.response.headers.set("x-auth-after", "ran"); },
                };"#,
            ),
            bundle(
                "shop/never",
                r#"export default { beforeRequest(ctx) { throw new Error("must not run"); } };"#,
            ),
        ],
    )
    .await;
        let chain = chain(
            &loaded,
            &[
                ("shop/cors", json!({})),
                ("shop/auth", json!({})),
                ("shop/never", json!({})),
            ],
        );
        let (outcome, carry) = runtime.before_request(&chain, request("/")).await;
        let BeforeRequest::Respond(response) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(response.plugin, "shop/auth");
        assert!(response.rejected);
        assert_eq!(response.status, 401);
        assert_eq!(response.body, r#"{"error":"unauthorized"}"#);
        let headers: std::collections::BTreeMap<_, _> = response.headers.iter().cloned().collect();
        assert_eq!(headers["x-cors"], "yes");
        assert_eq!(headers["www-authenticate"], "Bearer");
        assert_eq!(headers["content-type"], "application/json");

        let after = runtime
            .after_response(
                &chain,
                carry,
                ResponseInfo {
                    status: 401,
                    ..ResponseInfo::default()
                },
            )
            .await;
        let AfterResponse::Continue(patch) = after else {
            panic!("{after:?}")
        };
        assert_eq!(patch.headers.set["x-cors-after"], ["401"]);
        assert!(!patch.headers.set.contains_key("x-auth-after"));
    });
}

#[test]
fn before_request_may_answer_by_setting_the_response() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![bundle(
            "shop/health",
            r#"export default { beforeRequest(ctx) {
                if (ctx.request.path === "/health") { ctx.response.status = 200; ctx.response.setBody("ok"); }
            } };"#,
        )],
    )
    .await;
        let chain = chain(&loaded, &[("shop/health", json!({}))]);
        let BeforeRequest::Respond(response) =
            runtime.before_request(&chain, request("/health")).await.0
        else {
            panic!()
        };
        assert_eq!(
            (response.status, response.body.as_ref(), response.rejected),
            (200, &b"ok"[..], false)
        );
        expect_continue(runtime.before_request(&chain, request("/other")).await.0);
    });
}

#[test]
fn after_response_reads_and_rewrites_the_response() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
            &runtime,
            vec![
                bundle(
                    "shop/redact",
                    r#"export default { async afterResponse(ctx) {
                    const body = await ctx.response.json();
                    body.card = "****";
                    ctx.response.setBody(body);
                    ctx.response.status = 203;
                    ctx.response.headers.delete("server");
                } };"#,
                ),
                bundle(
                    "shop/size",
                    r#"export default { async afterResponse(ctx) {
                    ctx.response.headers.set("x-body", await ctx.response.text());
                    ctx.response.headers.set("x-status", String(ctx.response.status));
                } };"#,
                ),
            ],
        )
        .await;
        let chain = chain(
            &loaded,
            &[("shop/redact", json!({})), ("shop/size", json!({}))],
        );
        let (_, carry) = runtime.before_request(&chain, request("/")).await;
        let response = ResponseInfo {
            status: 200,
            headers: vec![("server".into(), "upstream".into())],
            body: Some(Arc::new(BufferedBody(Bytes::from_static(
                br#"{"card":"4111"}"#,
            )))),
        };
        let AfterResponse::Continue(patch) = runtime.after_response(&chain, carry, response).await
        else {
            panic!()
        };
        assert_eq!(patch.status, Some(203));
        assert_eq!(patch.body.as_deref(), Some(&br#"{"card":"****"}"#[..]));
        assert!(patch.headers.remove.contains("server"));
        assert_eq!(patch.headers.set["x-body"], [r#"{"card":"****"}"#]);
        assert_eq!(patch.headers.set["x-status"], ["203"]);
    });
}

#[test]
fn forward_and_path_rewrites_are_validated() {
    on_shard(async {
        let (runtime, _) = runtime_with(weir_plugin_runtime::RuntimeConfig {
            forward_allow_list: vec!["https://canary.example.com/".into()],
            ..Default::default()
        });
        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/route",
                r#"export default { beforeRequest(ctx) {
                ctx.forward(ctx.config.target);
                ctx.upstream.path = "/v2" + ctx.request.path;
            } };"#,
            )],
        )
        .await;
        for (target, expected) in [
            (
                "service:shop/api-canary:80",
                Some(Upstream::Backend("service:shop/api-canary:80".into())),
            ),
            (
                "https://canary.example.com/x",
                Some(Upstream::Url("https://canary.example.com/x".into())),
            ),
            ("service:kube-system/secrets:443", None),
            ("http://169.254.169.254/latest/meta-data", None),
        ] {
            let chain = chain(&loaded, &[("shop/route", json!({"target": target}))]);
            let patch = expect_continue(runtime.before_request(&chain, request("/items")).await.0);
            assert_eq!(patch.upstream, expected, "{target}");
            assert_eq!(patch.path.as_deref(), Some("/v2/items"));
        }
    });
}

#[test]
fn crypto_and_cache_are_available_to_hooks() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![bundle(
            "shop/tools",
            r#"export default { async beforeRequest(ctx) {
                const c = ctx.crypto;
                const mac = c.hmac("SHA-256", "Jefe", "what do ya want for nothing?", "hex");
                const sha = c.sha256(new Uint8Array([0x61, 0x62, 0x63]), "base64url");
                const same = c.timingSafeEqual(c.decode(mac, "hex"), c.hmac("SHA-256", "Jefe", "what do ya want for nothing?"));
                const hits = await ctx.services.cache.incr("hits", { ttlSeconds: 60 });
                await ctx.services.cache.set("last", { path: ctx.request.path });
                const last = await ctx.services.cache.get("last");
                const random = c.randomBytes(16);
                ctx.upstream.headers.set("x-tools", JSON.stringify({ mac, sha, same, hits, last, random: random.length, uuid: c.randomUUID().length }));
            } };"#,
        )],
    )
    .await;
        let chain = chain(&loaded, &[("shop/tools", json!({}))]);
        for hits in 1..=3 {
            let patch = expect_continue(runtime.before_request(&chain, request("/p")).await.0);
            let tools: serde_json::Value =
                serde_json::from_str(&patch.headers.set["x-tools"][0]).unwrap();
            assert_eq!(
                tools,
                json!({
                    "mac": "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                    "sha": "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0",
                    "same": true, "hits": hits, "last": {"path": "/p"}, "random": 16, "uuid": 36,
                })
            );
        }
    });
}

#[test]
fn signatures_verify_from_javascript() {
    on_shard(async {
        let runtime = runtime();
        let loaded = load(
        &runtime,
        vec![bundle(
            "shop/verify",
            r#"export default { beforeRequest(ctx) {
                const c = ctx.crypto;
                const signature = c.decode(ctx.config.signature, "base64");
                const good = c.verify("RS256", ctx.config.pem, "weir signs this", signature);
                const tampered = c.verify("RS256", ctx.config.pem, "weir signs that", signature);
                let refused = "";
                try { c.verify("HS256", ctx.config.pem, "x", signature); } catch (e) { refused = e.name; }
                ctx.upstream.headers.set("x-verify", JSON.stringify({ good, tampered, refused }));
            } };"#,
        )],
    )
    .await;
        let config = json!({
            "pem": include_str!("../src/services/testdata/rsa-public.pem"),
            "signature": include_str!("../src/services/testdata/rsa-signature.b64").trim(),
        });
        let chain = chain(&loaded, &[("shop/verify", config)]);
        let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
        assert_eq!(
            patch.headers.set["x-verify"],
            [r#"{"good":true,"tampered":false,"refused":"TypeError"}"#]
        );
    });
}

#[test]
fn metrics_are_registered_in_the_proxy_registry() {
    on_shard(async {
        let (runtime, registry) = runtime_with(weir_plugin_runtime::RuntimeConfig {
            ..Default::default()
        });
        let loaded = load(
            &runtime,
            vec![bundle(
                "shop/deny",
                r#"export default { beforeRequest(ctx) { ctx.reject(403); } };"#,
            )],
        )
        .await;
        let chain = chain(&loaded, &[("shop/deny", json!({}))]);
        runtime.before_request(&chain, request("/")).await;
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
        text.contains(
            r#"weir_plugin_hook_duration_seconds_count{plugin="shop/deny",hook="beforeRequest"} 1"#
        ),
        "{text}"
    );
        assert!(
            text.contains(r#"weir_plugin_errors_total{plugin="shop/deny",kind="rejected"} 1"#),
            "{text}"
        );
    });
}
