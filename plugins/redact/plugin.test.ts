// Run with `weir-proxy plugin test plugins/redact`.
import type { Json, TestContext, TestRequest, TestResponse, TestSuite } from "weir";

const CONFIG = {
  fields: ["user.password", "items.*.ssn", "/internal~1debug", "*.token"],
  headers: ["x-backend-version", "Server"],
};

const JSON_HEADERS = { "content-type": "application/json" };

/** Runs a request through both hooks and returns the afterResponse result. */
async function respond(t: TestContext, response: TestResponse, options?: { config?: Json; request?: TestRequest }) {
  const before = await t.beforeRequest(options?.request ?? {}, options?.config === undefined ? undefined : { config: options.config });
  t.equal(before.outcome, "continue");
  return t.afterResponse(before, response);
}

/** The body the client gets (parsed), asserting it was replaced. */
function replaced(t: TestContext, after: { outcome: string; patch?: { body: string | null } }): Json {
  t.equal(after.outcome, "continue");
  t.ok(after.patch?.body !== null && after.patch?.body !== undefined, "the body is replaced");
  return JSON.parse(after.patch?.body ?? "null");
}

const WARNING = "redact: the JSON body could not be redacted: ";

/** Asserts that the plugin logged one warning, whose reason matches, with these fields. */
function warned(t: TestContext, reason: RegExp, fields: Json) {
  const lines = t.logs();
  t.equal(lines.length, 1, "one line");
  t.equal(lines[0].level, "warn");
  t.equal(lines[0].source, "ctx.log");
  t.ok(lines[0].message.startsWith(WARNING), lines[0].message);
  t.match(lines[0].message.slice(WARNING.length), reason);
  t.equal(lines[0].fields, fields);
}

export default {
  config: CONFIG,
  tests: {
    async "removes the configured fields, keeps the rest"(t) {
      const after = await respond(t, {
        headers: JSON_HEADERS,
        body: {
          user: { name: "alice", password: "hash" },
          items: [{ id: 1, ssn: "123" }, { id: 2 }, { id: 3, ssn: "456" }, "not an object"],
          "internal/debug": { sql: "select" },
          internal: { debug: "kept: the pointer names the key internal/debug" },
          session: { token: "t1", kept: true },
          list: [{ token: "arrays are members too" }],
        },
      });
      t.equal(replaced(t, after), {
        user: { name: "alice" },
        items: [{ id: 1 }, { id: 2 }, { id: 3 }, "not an object"],
        internal: { debug: "kept: the pointer names the key internal/debug" },
        session: { kept: true },
        list: [{ token: "arrays are members too" }],
      });
      t.equal(after.patch?.status, null);
    },
    async "removes the configured headers from every response"(t) {
      const after = await respond(t, {
        headers: { "content-type": "text/html", "x-backend-version": "1.2.3", server: "gunicorn" },
        body: "<p>hi</p>",
      });
      t.equal(after.patch?.headers.remove, ["server", "x-backend-version"]);
      t.equal(after.patch?.body, null, "an HTML body is not touched");
    },
    async "asks the upstream for uncompressed bodies"(t) {
      const before = await t.beforeRequest({ headers: { "accept-encoding": "gzip, br" } });
      t.equal(before.patch?.headers.remove, ["accept-encoding"]);
      const kept = await t.beforeRequest({}, { config: { ...CONFIG, removeAcceptEncoding: false } });
      t.equal(kept.patch?.headers.remove, []);
      const headersOnly = await t.beforeRequest({}, { config: { headers: ["server"] } });
      t.equal(headersOnly.patch?.headers.remove, [], "nothing to read, nothing to ask");
    },
    async "a body without any configured field is passed on as it was"(t) {
      const after = await respond(t, { headers: JSON_HEADERS, body: '{"user": {"name": "bob"}}' });
      t.equal(after.patch?.body, null);
    },
    async "JSON pointers and dotted paths, with array indices"(t) {
      const config = { fields: ["/a~1b/c~0d", "/rows/1", "x.0.y", "/"] };
      const after = await respond(t, {
        headers: JSON_HEADERS,
        body: { "a/b": { "c~d": 1, e: 2 }, rows: ["r0", "r1", "r2"], x: [{ y: 1, z: 2 }, { y: 3 }], "": "empty key" },
      }, { config });
      t.equal(replaced(t, after), { "a/b": { e: 2 }, rows: ["r0", "r2"], x: [{ z: 2 }, { y: 3 }] });
    },
    async "a wildcard at the end empties arrays and objects"(t) {
      const config = { fields: ["tags.*", "meta.*"] };
      const after = await respond(t, { headers: JSON_HEADERS, body: { tags: ["a", "b"], meta: { a: 1, b: 2 }, id: 7 } }, { config });
      t.equal(replaced(t, after), { tags: [], meta: {}, id: 7 });
    },
    async "a top-level array"(t) {
      const config = { fields: ["*.ssn"] };
      const after = await respond(t, { headers: JSON_HEADERS, body: [{ ssn: 1, n: 1 }, { n: 2 }] }, { config });
      t.equal(replaced(t, after), [{ n: 1 }, { n: 2 }]);
    },
    async "replaceWith masks instead of removing"(t) {
      const config = { fields: ["user.password", "items.*.ssn", "codes.1", "user.missing"], replaceWith: "[REDACTED]" };
      const after = await respond(t, {
        headers: JSON_HEADERS,
        body: { user: { password: "x" }, items: [{ ssn: "1" }, {}], codes: [1, 2, 3] },
      }, { config });
      t.equal(replaced(t, after), { user: { password: "[REDACTED]" }, items: [{ ssn: "[REDACTED]" }, {}], codes: [1, "[REDACTED]", 3] });
    },
    async "an object replaceWith is copied into each place, so later paths may reach into it"(t) {
      const config = { fields: ["user", "*.password", "items.*"], replaceWith: { password: "hidden", redacted: true } };
      const after = await respond(t, {
        headers: JSON_HEADERS,
        body: { user: { password: "x", id: 1 }, items: [1, 2] },
      }, { config });
      t.equal(replaced(t, after), {
        user: { password: { password: "hidden", redacted: true }, redacted: true },
        items: [{ password: "hidden", redacted: true }, { password: "hidden", redacted: true }],
      });
      t.equal(after.outcome, "continue");
    },
    async "+json media types and parameters are JSON too"(t) {
      for (const type of ["application/problem+json", "application/vnd.api+json; charset=utf-8", "Application/JSON;charset=UTF-8"]) {
        const after = await respond(t, { headers: { "content-type": type }, body: { user: { password: "x" } } });
        t.equal(replaced(t, after), { user: {} }, type);
      }
    },
    async "other media types are not read"(t) {
      for (const type of ["text/plain", "application/jsonp", "application/json-seq", "text/json"]) {
        const after = await respond(t, { headers: { "content-type": type }, body: { user: { password: "x" } } });
        t.equal(after.patch?.body, null, type);
      }
      const untyped = await respond(t, { body: { user: { password: "x" } } });
      t.equal(untyped.patch?.body, null, "no content-type");
    },
    async "a replaced body loses the upstream's validators"(t) {
      const after = await respond(t, {
        headers: { ...JSON_HEADERS, etag: '"abc"', "content-md5": "x" },
        body: { user: { password: "x" } },
      });
      t.equal(after.patch?.headers.remove, ["content-digest", "content-md5", "etag", "repr-digest", "server", "x-backend-version"]);
    },
    async "error responses are redacted too"(t) {
      const after = await respond(t, { status: 500, headers: JSON_HEADERS, body: { user: { password: "x", id: 1 } } });
      t.equal(replaced(t, after), { user: { id: 1 } });
    },
    async "HEAD, 204 and empty bodies are left alone"(t) {
      const head = await respond(t, { headers: JSON_HEADERS, body: { user: { password: "x" } } }, { request: { method: "HEAD" } });
      t.equal(head.patch?.body, null);
      const noContent = await respond(t, { status: 204, headers: JSON_HEADERS });
      t.equal(noContent.patch?.body, null);
      const empty = await respond(t, { headers: JSON_HEADERS, body: "" });
      t.equal(empty.patch?.body, null);
    },
    async "a body that is not JSON passes unchanged, with a warning"(t) {
      const after = await respond(t, { headers: JSON_HEADERS, body: '{"user": {"password": "x"' });
      t.equal(after.outcome, "continue");
      t.equal(after.patch?.body, null);
      t.equal(after.patch?.status, null);
      warned(t, /^it is not JSON \(.+\)$/, { status: 200, action: "passed" });
    },
    async "a body larger than the body limit passes unchanged, with a warning"(t) {
      const big = JSON.stringify({ user: { password: "x" }, padding: "p".repeat(70_000) });
      const after = await respond(t, { headers: JSON_HEADERS, body: big });
      t.equal(after.outcome, "continue");
      t.equal(after.patch?.body, null);
      warned(t, /^the body is larger than 65536 bytes; it stays in the proxy$/, { status: 200, action: "passed" });
    },
    async "a compressed body passes unchanged, with a warning"(t) {
      const after = await respond(t, { status: 201, headers: { ...JSON_HEADERS, "content-encoding": "gzip" }, body: "\u001f\u008b..." });
      t.equal(after.patch?.body, null);
      warned(t, /^it is encoded \(gzip\)$/, { status: 201, action: "passed" });
      const listed = await respond(t, { headers: { ...JSON_HEADERS, "content-encoding": " BR " }, body: "x" });
      t.equal(listed.patch?.body, null);
      warned(t, /^it is encoded \(br\)$/, { status: 200, action: "passed" });
    },
    async "identity and empty encodings are read"(t) {
      for (const encoding of ["identity", "Identity", ""]) {
        const after = await respond(t, { headers: { ...JSON_HEADERS, "content-encoding": encoding }, body: { user: { password: "x" } } });
        t.equal(replaced(t, after), { user: {} }, encoding);
      }
      t.equal(t.logs(), []);
    },
    async "bodies that are redacted, or need not be, log nothing"(t) {
      await respond(t, { headers: JSON_HEADERS, body: { user: { password: "x" } } });
      await respond(t, { headers: JSON_HEADERS, body: { other: 1 } });
      await respond(t, { headers: JSON_HEADERS, body: "" });
      await respond(t, { headers: { "content-type": "text/html", "content-encoding": "gzip" }, body: "<p>" });
      await respond(t, { status: 204, headers: { ...JSON_HEADERS, "content-encoding": "gzip" } });
      await respond(t, { headers: JSON_HEADERS, body: "{not json" }, { request: { method: "HEAD" } });
      await respond(t, { headers: JSON_HEADERS, body: "{not json" }, { config: { headers: ["server"] } });
      t.equal(t.logs(), []);
    },
    async "onUnredactable refuse: what cannot be redacted becomes a 502"(t) {
      const config = { ...CONFIG, onUnredactable: "refuse" };
      const cases: TestResponse[] = [
        { headers: JSON_HEADERS, body: "{not json" },
        { headers: JSON_HEADERS, body: JSON.stringify({ padding: "p".repeat(70_000) }) },
        { headers: { ...JSON_HEADERS, "content-encoding": "br", etag: '"e"' }, body: "\u0000\u0001" },
      ];
      const reasons = [/^it is not JSON \(.+\)$/, /^the body is larger than 65536 bytes/, /^it is encoded \(br\)$/];
      for (const [i, response] of cases.entries()) {
        const after = await respond(t, response, { config });
        t.equal(after.outcome, "continue");
        t.equal(after.patch?.status, 502);
        warned(t, reasons[i], { status: 200, action: "refused" });
        t.equal(JSON.parse(after.patch?.body ?? "{}"), { error: "bad_gateway", message: "the response could not be redacted" });
        t.equal(after.patch?.headers.set["content-type"], ["application/json"]);
        t.ok(after.patch?.headers.remove.includes("content-encoding"));
      }
      const fine = await respond(t, { headers: JSON_HEADERS, body: { user: { password: "x" } } }, { config });
      t.equal(fine.patch?.status, null);
    },
    async "a route's override changes the fields"(t) {
      const body = { user: { password: "x", email: "a@example.com" } };
      const after = await respond(t, { headers: JSON_HEADERS, body }, { config: { fields: ["user.email"] } });
      t.equal(replaced(t, after), { user: { password: "x" } });
    },
    async "an empty config changes nothing"(t) {
      const after = await respond(t, { headers: { ...JSON_HEADERS, server: "x" }, body: { user: { password: "x" } } }, { config: {} });
      t.equal(after.patch, { status: null, headers: { set: {}, append: {}, remove: [] }, body: null });
    },
    async "a field that is no path fails the hook, naming it"(t) {
      for (const bad of ["", "a..b", ".a", "a."]) {
        const result = await t.beforeRequest({}, { config: { fields: ["ok", bad] } });
        t.equal(result.outcome, "failed", bad);
        t.match(result.failure?.detail, /config\.fields\[1\]/, bad);
      }
    },
  },
} satisfies TestSuite;
