// Run with `weir-proxy plugin test plugins/request-log`.
//
// The line is read with `t.logs()`; plugins/test_plugins.py also checks it in a real
// proxy's JSON log.
import type { Json, LogLine, TestContext, TestRequest, TestResponse, TestSuite } from "weir";

const CONFIG = {
  requestHeaders: ["user-agent", "authorization", "x-tenant", "x-secret"],
  responseHeaders: ["content-type", "set-cookie"],
  redactHeaders: ["X-Secret"],
  redactQuery: ["session"],
};

const REQUEST: TestRequest = {
  method: "POST",
  path: "/orders",
  query: "page=2&token=abc&session=s1&api%5Fkey=k",
  headers: {
    "user-agent": "curl/8",
    authorization: "Bearer secret-token",
    cookie: "sid=1",
    "x-tenant": "acme",
    "x-secret": "s3cr3t",
  },
  clientIp: "203.0.113.9",
  route: "shop/orders",
  requestId: "request-log-test",
};

const RESPONSE: TestResponse = {
  status: 201,
  headers: { "content-type": "application/json", "set-cookie": "sid=2" },
  body: { id: 1 },
};

const UNCHANGED_REQUEST = {
  headers: { set: {}, append: {}, remove: [] },
  path: null,
  upstream: null,
  responseHeaders: { set: {}, append: {}, remove: [] },
  user: null,
};

const UNCHANGED_RESPONSE = { status: null, headers: { set: {}, append: {}, remove: [] }, body: null };

/** Runs both hooks, asserts that neither changed anything, and returns the lines logged. */
async function unchanged(t: TestContext, config?: Json, request: TestRequest = REQUEST, response: TestResponse = RESPONSE): Promise<LogLine[]> {
  const before = await t.beforeRequest(request, config === undefined ? undefined : { config });
  t.equal(before.outcome, "continue");
  t.equal(before.patch, UNCHANGED_REQUEST);
  const after = await t.afterResponse(before, response);
  t.equal(after.outcome, "continue");
  t.equal(after.patch, UNCHANGED_RESPONSE);
  return t.logs();
}

/** Runs both hooks, `ms` apart by the clock, and returns the fields of the one line logged. */
async function line(
  t: TestContext,
  options: { config?: Json; request?: TestRequest; response?: TestResponse; ms?: number } = {},
): Promise<Record<string, Json>> {
  const before = await t.beforeRequest(options.request ?? REQUEST, options.config === undefined ? undefined : { config: options.config });
  t.equal(before.outcome, "continue");
  t.clock.advance(options.ms ?? 0);
  const after = await t.afterResponse(before, options.response ?? RESPONSE);
  t.equal(after.outcome, "continue");
  const lines = t.logs();
  t.equal(lines.length, 1, "one line per request");
  t.equal(lines[0].level, "info");
  t.equal(lines[0].message, "request");
  t.equal(lines[0].source, "ctx.log");
  return lines[0].fields;
}

/** How many lines `count` requests answered with `status` log under `config`. */
async function logged(t: TestContext, config: Json, status: number, count = 1): Promise<number> {
  let lines = 0;
  for (let i = 0; i < count; i++) {
    const before = await t.beforeRequest({ path: "/" }, { config });
    await t.afterResponse(before, { status });
    lines += t.logs().length;
  }
  return lines;
}

function near(t: TestContext, actual: number, expected: number, tolerance: number, what: string) {
  t.ok(Math.abs(actual - expected) <= tolerance, `${what}: ${actual}, expected ${expected} ± ${tolerance}`);
}

export default {
  config: CONFIG,
  tests: {
    async "logs without changing the request or the response"(t) {
      t.equal((await unchanged(t)).length, 1);
    },
    async "an empty config logs the defaults"(t) {
      const lines = await unchanged(t, {});
      t.equal(lines.length, 1);
      t.equal(lines[0].fields, {
        method: "POST",
        path: "/orders",
        query: "page=2&token=[REDACTED]&session=s1&api%5Fkey=[REDACTED]",
        route: "shop/orders",
        status: 201,
        durationMs: 0,
        user: null,
        clientIp: "203.0.113.9",
      });
    },
    async "a request without query, headers or client address"(t) {
      const lines = await unchanged(t, CONFIG, {});
      t.equal(lines.length, 1);
      t.equal(lines[0].fields, {
        method: "GET",
        path: "/",
        route: "test/route",
        status: 201,
        durationMs: 0,
        user: null,
        clientIp: null,
        requestHeaders: {},
        responseHeaders: { "content-type": "application/json", "set-cookie": "[REDACTED]" },
      });
    },
    async "sampleRate 0 logs nothing and changes nothing"(t) {
      t.equal(await unchanged(t, { ...CONFIG, sampleRate: 0 }), []);
    },
    async "sampleRate 0 still logs errors, unchanged"(t) {
      t.equal((await unchanged(t, { ...CONFIG, sampleRate: 0 }, REQUEST, { status: 503 })).length, 1);
      t.equal((await unchanged(t, { ...CONFIG, sampleRate: 0, alwaysLogFrom: 400 }, REQUEST, { status: 404 })).length, 1);
      await unchanged(t, { ...CONFIG, sampleRate: 0.5 }, REQUEST, { status: 200 });
    },
    async "a request another plugin answered is logged too"(t) {
      // afterResponse without a status from upstream: what a local answer looks like.
      const lines = await unchanged(t, CONFIG, REQUEST, { status: 401, headers: { "www-authenticate": "Bearer" } });
      t.equal(lines.length, 1);
      t.equal(lines[0].fields.status, 401);
      t.equal(lines[0].fields.responseHeaders, {});
    },
    async "a user field that is not there logs null"(t) {
      const lines = await unchanged(t, { ...CONFIG, userField: "profile.email" });
      t.equal(lines[0].fields.user, null);
    },
    async "the line: method, path, query, route, status, duration, user, client IP and chosen headers"(t) {
      const fields = await line(t, { request: { ...REQUEST, user: { id: "ci-pipeline", scopes: ["orders:read"] } }, ms: 37 });
      t.equal(fields, {
        method: "POST",
        path: "/orders",
        query: "page=2&token=[REDACTED]&session=[REDACTED]&api%5Fkey=[REDACTED]",
        route: "shop/orders",
        status: 201,
        durationMs: 37,
        user: "ci-pipeline",
        clientIp: "203.0.113.9",
        requestHeaders: { "user-agent": "curl/8", authorization: "[REDACTED]", "x-tenant": "acme", "x-secret": "[REDACTED]" },
        responseHeaders: { "content-type": "application/json", "set-cookie": "[REDACTED]" },
      });
    },
    async "durationMs runs from beforeRequest to afterResponse by the clock"(t) {
      t.equal((await line(t)).durationMs, 0, "a clock that stands still");
      t.equal((await line(t, { ms: 1 })).durationMs, 1);
      t.equal((await line(t, { ms: 2_500 })).durationMs, 2_500);
      // Time that passes before the request does not count.
      t.clock.advance(60_000);
      t.equal((await line(t, { ms: 12 })).durationMs, 12);
    },
    async "userField picks what of ctx.user is logged"(t) {
      const user = { id: "u-1", profile: { email: "alice@example.com", age: 41 }, roles: ["a", "b"] };
      t.equal((await line(t, { request: { ...REQUEST, user } })).user, "u-1", "id by default");
      t.equal((await line(t, { request: { ...REQUEST, user }, config: { userField: "profile.email" } })).user, "alice@example.com");
      t.equal((await line(t, { request: { ...REQUEST, user }, config: { userField: "profile.age" } })).user, 41);
      t.equal((await line(t, { request: { ...REQUEST, user }, config: { userField: "roles" } })).user, ["a", "b"]);
      t.equal((await line(t, { request: { ...REQUEST, user }, config: { userField: "profile.phone" } })).user, null, "absent");
      t.equal((await line(t, { request: { ...REQUEST, user }, config: { userField: "id.deeper" } })).user, null, "under a string");
      t.equal((await line(t, { request: { ...REQUEST, user: "alice" } })).user, null, "a user that is no object");
      t.equal((await line(t, { request: { ...REQUEST, user: { name: "no id" } } })).user, null);
    },
    async "names of members every object has are names like others"(t) {
      const config = { userField: "constructor", requestHeaders: ["constructor"] };
      const absent = await line(t, { config, request: { user: { id: "u-1" } } });
      t.equal(absent.user, null);
      t.equal(absent.requestHeaders, {});
      const present = await line(t, { config, request: { user: { constructor: "u-2" }, headers: { constructor: "h" } } });
      t.equal(present.user, "u-2");
      t.equal(present.requestHeaders, { constructor: "h" });
      t.equal((await line(t, { config: { userField: "__proto__" }, request: { user: { id: "u-1" } } })).user, null);
    },
    async "sensitive headers are always logged as [REDACTED], configured ones too, in any case"(t) {
      const config = {
        requestHeaders: ["Authorization", "cookie", "x-api-key", "proxy-authorization", "x-session", "x-plain", "x-absent"],
        responseHeaders: ["set-cookie", "x-debug-token", "x-plain"],
        redactHeaders: ["X-Session", "x-debug-token"],
      };
      const fields = await line(t, {
        config,
        request: {
          headers: {
            authorization: "Basic YWxpY2U6c2VjcmV0",
            cookie: "sid=1",
            "x-api-key": "k",
            "proxy-authorization": "Basic eA==",
            "x-session": "s",
            "x-plain": "visible",
          },
        },
        response: { status: 200, headers: { "set-cookie": "sid=2", "x-debug-token": "t", "x-plain": "shown" } },
      });
      t.equal(fields.requestHeaders, {
        authorization: "[REDACTED]",
        cookie: "[REDACTED]",
        "x-api-key": "[REDACTED]",
        "proxy-authorization": "[REDACTED]",
        "x-session": "[REDACTED]",
        "x-plain": "visible",
      });
      t.equal(fields.responseHeaders, { "set-cookie": "[REDACTED]", "x-debug-token": "[REDACTED]", "x-plain": "shown" });
    },
    async "sensitive query parameters are logged as [REDACTED], by decoded name in any case"(t) {
      const query = [
        "q=a%20b+c",
        "access_token=1",
        "API_KEY=2",
        "apikey=3",
        "pass%77ord=4",
        "token",
        "token=again",
        "Session=5",
        "sessions=6",
        "tokens=7",
        "",
      ].join("&");
      const fields = await line(t, { request: { path: "/search", query } });
      t.equal(
        fields.query,
        "q=a%20b+c&access_token=[REDACTED]&API_KEY=[REDACTED]&apikey=[REDACTED]&pass%77ord=[REDACTED]" +
          "&token=[REDACTED]&token=[REDACTED]&Session=[REDACTED]&sessions=6&tokens=7&",
      );
      const spaced = await line(t, { request: { query: "my+secret=1&my%20secret=2&other=3" }, config: { redactQuery: ["My Secret"] } });
      t.equal(spaced.query, "my+secret=[REDACTED]&my%20secret=[REDACTED]&other=3");
    },
    async "sampleRate 0 logs no request below alwaysLogFrom"(t) {
      const config = { sampleRate: 0 };
      for (const status of [200, 204, 301, 404, 499]) t.equal(await logged(t, config, status), 0, String(status));
      for (const status of [500, 502, 503, 599]) t.equal(await logged(t, config, status), 1, String(status));
    },
    async "alwaysLogFrom sets where errors are always logged"(t) {
      t.equal(await logged(t, { sampleRate: 0, alwaysLogFrom: 400 }, 399), 0);
      t.equal(await logged(t, { sampleRate: 0, alwaysLogFrom: 400 }, 400), 1);
      t.equal(await logged(t, { sampleRate: 0, alwaysLogFrom: 400 }, 429), 1);
      t.equal(await logged(t, { sampleRate: 0, alwaysLogFrom: 600 }, 503), 0, "600: none");
      t.equal(await logged(t, { sampleRate: 1, alwaysLogFrom: 600 }, 200), 1, "the rate still logs");
    },
    async "sampleRate logs its share of the requests"(t) {
      near(t, await logged(t, { sampleRate: 0.25 }, 200, 400), 100, 40, "a quarter");
      t.equal(await logged(t, { sampleRate: 1 }, 200, 50), 50);
    },
    async "a sample rate outside 0..1 fails the hook, naming it"(t) {
      for (const rate of [2, -0.1, "all"]) {
        const result = await t.beforeRequest(REQUEST, { config: { sampleRate: rate } });
        t.equal(result.outcome, "failed", String(rate));
        t.match(result.failure?.detail, /config\.sampleRate must be a number from 0 to 1/);
      }
    },
    async "other config errors fail the hook, naming the field"(t) {
      const cases: [Json, RegExp][] = [
        [{ alwaysLogFrom: "500" }, /config\.alwaysLogFrom must be a status/],
        [{ requestHeaders: "user-agent" }, /config\.requestHeaders must be a list of names/],
        [{ responseHeaders: [1] }, /config\.responseHeaders must be a list of names/],
        [{ redactHeaders: [null] }, /config\.redactHeaders must be a list of names/],
        [{ redactQuery: {} }, /config\.redactQuery must be a list of names/],
      ];
      for (const [config, detail] of cases) {
        const result = await t.beforeRequest(REQUEST, { config });
        t.equal(result.outcome, "failed", JSON.stringify(config));
        t.match(result.failure?.detail, detail);
      }
    },
  },
} satisfies TestSuite;
