// Run with `weir-proxy plugin test plugins/request-log`.
//
// The harness cannot show log lines to a suite yet, so these tests check what the
// plugin does to the request and response (nothing) under every config; the line itself
// is checked by plugins/test_plugins.py in the command's output.
import type { Json, TestContext, TestRequest, TestResponse, TestSuite } from "weir";

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

/** Runs both hooks and asserts that neither changed anything. */
async function unchanged(t: TestContext, config?: Json, request: TestRequest = REQUEST, response: TestResponse = RESPONSE) {
  const before = await t.beforeRequest(request, config === undefined ? undefined : { config });
  t.equal(before.outcome, "continue");
  t.equal(before.patch, UNCHANGED_REQUEST);
  const after = await t.afterResponse(before, response);
  t.equal(after.outcome, "continue");
  t.equal(after.patch, UNCHANGED_RESPONSE);
}

export default {
  config: CONFIG,
  tests: {
    async "logs without changing the request or the response"(t) {
      await unchanged(t);
    },
    async "an empty config logs the defaults"(t) {
      await unchanged(t, {});
    },
    async "a request without query, headers or client address"(t) {
      await unchanged(t, CONFIG, {});
    },
    async "sampleRate 0 logs nothing and changes nothing"(t) {
      await unchanged(t, { ...CONFIG, sampleRate: 0 });
    },
    async "sampleRate 0 still logs errors, unchanged"(t) {
      await unchanged(t, { ...CONFIG, sampleRate: 0 }, REQUEST, { status: 503 });
      await unchanged(t, { ...CONFIG, sampleRate: 0, alwaysLogFrom: 400 }, REQUEST, { status: 404 });
      await unchanged(t, { ...CONFIG, sampleRate: 0.5 }, REQUEST, { status: 200 });
    },
    async "a request another plugin answered is logged too"(t) {
      // afterResponse without a status from upstream: what a local answer looks like.
      await unchanged(t, CONFIG, REQUEST, { status: 401, headers: { "www-authenticate": "Bearer" } });
    },
    async "a user field that is not there logs null"(t) {
      await unchanged(t, { ...CONFIG, userField: "profile.email" });
    },
    async "a sample rate outside 0..1 fails the hook, naming it"(t) {
      for (const rate of [2, -0.1, "all"]) {
        const result = await t.beforeRequest(REQUEST, { config: { sampleRate: rate } });
        t.equal(result.outcome, "failed", String(rate));
        t.match(result.failure?.detail, /config\.sampleRate must be a number from 0 to 1/);
      }
    },
  },
} satisfies TestSuite;
