//! The standard globals plugins get (atob/btoa, TextEncoder/TextDecoder,
//! structuredClone, URL, URLSearchParams), through the real isolate: available to the module's top-level code
//! and to hooks, with the errors the web platform defines.

mod common;

use common::*;
use serde_json::{Value, json};

/// Runs `checks` (a JavaScript object literal of named expressions) in a hook and in the
/// module's top level, and returns what each evaluated to (errors as `"ErrorName"`).
fn evaluate(checks: &str) -> (Value, Value) {
    let source = format!(
        r#"function run() {{
            const out = {{}};
            const checks = {checks};
            for (const [name, check] of Object.entries(checks)) {{
                try {{ out[name] = check(); }} catch (e) {{ out[name] = e.name; }}
            }}
            return out;
        }}
        const atLoad = run();
        export default {{ beforeRequest(ctx) {{
            ctx.upstream.headers.set("x-hook", JSON.stringify(run()));
            ctx.upstream.headers.set("x-load", JSON.stringify(atLoad));
        }} }};"#
    );
    let mut results = (Value::Null, Value::Null);
    on_shard(async {
        let runtime = runtime();
        let loaded = load(&runtime, vec![bundle("shop/globals", &source)]).await;
        assert!(loaded.failures.is_empty(), "{:?}", loaded.failures);
        let chain = chain(&loaded, &[("shop/globals", json!({}))]);
        let patch = expect_continue(runtime.before_request(&chain, request("/")).await.0);
        let read = |name: &str| serde_json::from_str(&patch.headers.set[name][0]).unwrap();
        results = (read("x-hook"), read("x-load"));
    });
    results
}

/// Code points of a string, so results stay ASCII in a header.
const POINTS: &str = "const points = (s) => [...s].map((c) => c.codePointAt(0));";

#[test]
fn base64_globals_follow_the_html_standard() {
    let (hook, load) = evaluate(
        r#"{
            plain: () => btoa("hello"),
            bytes: () => btoa("\u00ff\u00fe\u0000"),
            wide: () => btoa("\u20ac"),
            back: () => atob("aGVs bG8=\n"),
            unpadded: () => atob("aGVsbG8"),
            binary: () => [...atob("//4A")].map((c) => c.charCodeAt(0)),
            short: () => atob("a"),
            alphabet: () => atob("a$=="),
            urlSafe: () => atob("_-8="),
        }"#,
    );
    assert_eq!(hook, load, "the same at load and in hooks");
    assert_eq!(
        hook,
        json!({
            "plain": "aGVsbG8=", "bytes": "//4A", "wide": "InvalidCharacterError",
            "back": "hello", "unpadded": "hello", "binary": [255, 254, 0],
            "short": "InvalidCharacterError", "alphabet": "InvalidCharacterError",
            "urlSafe": "InvalidCharacterError",
        })
    );
}

#[test]
fn text_encoding_is_utf8_with_replacement_fatal_bom_and_streaming() {
    let checks = format!(
        r#"(() => {{ {POINTS} return {{
            encoded: () => [...new TextEncoder().encode("h\u20ac\ud834\udd1e")],
            lone: () => [...new TextEncoder().encode("\ud800x")],
            into: () => new TextEncoder().encodeInto("h\u20ac", new Uint8Array(3)),
            roundTrip: () => points(new TextDecoder().decode(new TextEncoder().encode("h\u20ac\ud834\udd1e"))),
            bom: () => points(new TextDecoder().decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]))),
            keptBom: () => points(new TextDecoder("utf-8", {{ ignoreBOM: true }}).decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]))),
            invalid: () => points(new TextDecoder().decode(new Uint8Array([0x61, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xe2, 0x82]))),
            fatal: () => new TextDecoder("utf8", {{ fatal: true }}).decode(new Uint8Array([0xff])),
            streamed: () => {{
                const decoder = new TextDecoder();
                const first = decoder.decode(new Uint8Array([0x61, 0xe2, 0x82]), {{ stream: true }});
                return points(first + "|" + decoder.decode(new Uint8Array([0xac])));
            }},
            view: () => new TextDecoder().decode(new DataView(new Uint8Array([0x78, 0x61, 0x79]).buffer, 1, 1)),
            latin1: () => new TextDecoder("latin1"),
            label: () => new TextDecoder(" UTF-8 ").encoding,
        }}; }})()"#
    );
    let (hook, load) = evaluate(&checks);
    assert_eq!(hook, load);
    assert_eq!(
        hook,
        json!({
            "encoded": [104, 226, 130, 172, 240, 157, 132, 158],
            "lone": [239, 191, 189, 120],
            "into": {"read": 1, "written": 1},
            "roundTrip": [104, 0x20ac, 0x1d11e],
            "bom": [0x61],
            "keptBom": [0xfeff, 0x61],
            "invalid": [0x61, 0xfffd, 0x28, 0xfffd, 0xfffd, 0xfffd, 0xfffd],
            "fatal": "TypeError",
            "streamed": [0x61, 0x7c, 0x20ac],
            "view": "a",
            "latin1": "RangeError",
            "label": "utf-8",
        })
    );
}

#[test]
fn structured_clone_copies_deeply_and_refuses_functions() {
    let (hook, load) = evaluate(
        r#"{
            deep: () => {
                const inner = { n: 1 };
                const original = { a: [inner, inner], when: new Date(5), bytes: new Uint8Array([1, 2]),
                    map: new Map([["k", inner]]), set: new Set([3]), pattern: /x+/gi };
                original.self = original;
                const copy = structuredClone(original);
                copy.a[0].n = 2;
                return {
                    independent: inner.n === 1,
                    sharedKept: copy.a[0] === copy.a[1] && copy.map.get("k") === copy.a[0],
                    circular: copy.self === copy,
                    date: copy.when instanceof Date && copy.when.getTime() === 5,
                    bytes: [...copy.bytes], newBuffer: copy.bytes.buffer !== original.bytes.buffer,
                    set: [...copy.set], pattern: String(copy.pattern),
                };
            },
            function: () => structuredClone({ f() {} }),
            symbol: () => structuredClone(Symbol("s")),
            primitive: () => structuredClone("text"),
        }"#,
    );
    assert_eq!(hook, load);
    assert_eq!(
        hook,
        json!({
            "deep": {
                "independent": true, "sharedKept": true, "circular": true, "date": true,
                "bytes": [1, 2], "newBuffer": true, "set": [3], "pattern": "/x+/gi",
            },
            "function": "DataCloneError",
            "symbol": "DataCloneError",
            "primitive": "text",
        })
    );
}

#[test]
fn urls_parse_resolve_and_update_as_the_url_standard_says() {
    let (hook, load) = evaluate(
        r#"{
            parts: () => {
                const u = new URL("HTTPS://user:pw@Example.COM:443/a/../b%20c/?q=1#top");
                return [u.href, u.origin, u.protocol, u.username, u.password, u.host, u.hostname,
                    u.port, u.pathname, u.search, u.hash];
            },
            relative: () => new URL("../x?y#z", "http://h.example/a/b/c").href,
            invalid: () => new URL("not a url"),
            invalidBase: () => new URL("/x", "nope"),
            canParse: () => [URL.canParse("http://a"), URL.canParse("x"), URL.parse("x")],
            setters: () => {
                const u = new URL("http://a.example/p");
                u.pathname = "/new path";
                u.port = "8080";
                u.port = "letters";
                u.hash = "frag";
                u.search = "?k=v";
                u.hostname = "b.example";
                return [u.href, u.searchParams.get("k"), String(u), JSON.stringify({ u })];
            },
            linkedParams: () => {
                const u = new URL("http://a.example/?x=1&y=2");
                u.searchParams.append("z", "a b&c");
                u.searchParams.delete("x");
                const after = u.href;
                u.searchParams.delete("y");
                u.searchParams.delete("z");
                return [after, u.href, u.search];
            },
            hrefResets: () => {
                const u = new URL("http://a.example/?x=1");
                u.href = "http://b.example/?n=2";
                return [u.searchParams.get("x"), u.searchParams.get("n"), u.host];
            },
            badHref: () => { new URL("http://a").href = "::"; },
        }"#,
    );
    assert_eq!(hook, load);
    assert_eq!(
        hook,
        json!({
            "parts": ["https://user:pw@example.com/b%20c/?q=1#top", "https://example.com", "https:",
                "user", "pw", "example.com", "example.com", "", "/b%20c/", "?q=1", "#top"],
            "relative": "http://h.example/a/x?y#z",
            "invalid": "TypeError",
            "invalidBase": "TypeError",
            "canParse": [true, false, null],
            "setters": ["http://b.example:8080/new%20path?k=v#frag", "v",
                "http://b.example:8080/new%20path?k=v#frag",
                r#"{"u":"http://b.example:8080/new%20path?k=v#frag"}"#],
            "linkedParams": ["http://a.example/?y=2&z=a+b%26c", "http://a.example/", ""],
            "hrefResets": [null, "2", "b.example"],
            "badHref": "TypeError",
        })
    );
}

#[test]
fn search_params_follow_the_form_encoding() {
    let (hook, load) = evaluate(
        r#"{
            parsed: () => {
                const p = new URLSearchParams("?a=1&b=x+y&a=2&c=%E2%82%AC&d&=e&f=%zz");
                return [...p];
            },
            lookups: () => {
                const p = new URLSearchParams([["a", "1"], ["b", "2"], ["a", "3"]]);
                return [p.get("a"), p.getAll("a"), p.get("none"), p.has("b"), p.has("b", "9"), p.size];
            },
            record: () => new URLSearchParams({ x: 1, y: "two" }).toString(),
            copy: () => new URLSearchParams(new URLSearchParams("k=v")).toString(),
            edits: () => {
                const p = new URLSearchParams("b=1&a=2&b=3&c=4");
                p.set("b", "9");
                p.delete("c", "5");
                const kept = p.toString();
                p.delete("c");
                p.append("a", "0");
                p.sort();
                return [kept, p.toString(), [...p.keys()], [...p.values()]];
            },
            encoding: () => new URLSearchParams([["q", "a b/\u20ac*~"]]).toString(),
            badPair: () => new URLSearchParams([["only"]]),
            each: () => { const seen = []; new URLSearchParams("a=1&b=2").forEach((v, k) => seen.push(k + v)); return seen; },
        }"#,
    );
    assert_eq!(hook, load);
    assert_eq!(
        hook,
        json!({
            "parsed": [["a", "1"], ["b", "x y"], ["a", "2"], ["c", "\u{20ac}"], ["d", ""], ["", "e"], ["f", "%zz"]],
            "lookups": ["1", ["1", "3"], null, true, false, 3],
            "record": "x=1&y=two",
            "copy": "k=v",
            "edits": ["b=9&a=2&c=4", "a=2&a=0&b=9", ["a", "a", "b"], ["2", "0", "9"]],
            "encoding": "q=a+b%2F%E2%82%AC*%7E",
            "badPair": "TypeError",
            "each": ["a1", "b2"],
        })
    );
}
