// Run with `weir-proxy plugin test plugins/response-cache`.
//
// A miss runs both hooks (the upstream's response given to afterResponse, which stores
// it); a hit is answered by beforeRequest. Time moves only with t.clock.
import type { BeforeResult, Json, TestContext, TestRequest, TestResponse, TestSuite } from "weir";

const START = Date.parse("2030-01-01T00:00:00Z");
const GET: TestRequest = { method: "GET", path: "/products", query: "page=2&sort=price" };
const OK: TestResponse = {
  status: 200,
  headers: { "content-type": "application/json", etag: '"v1"', "x-upstream": "a" },
  body: '{"products":[1,2,3]}',
};

function withConfig(config: Json | undefined) {
  return config === undefined ? undefined : { config };
}

/** A request that goes upstream (X-Cache: MISS) and gets `response`. */
async function miss(t: TestContext, request: TestRequest, response: TestResponse = OK, config?: Json) {
  const before = await t.beforeRequest(request, withConfig(config));
  t.equal(before.outcome, "continue", "a miss goes upstream");
  t.equal(before.patch?.responseHeaders.set["x-cache"], ["MISS"]);
  const after = await t.afterResponse(before, response);
  t.equal(after.outcome, "continue");
  t.equal(after.patch, { status: null, headers: { set: {}, append: {}, remove: [] }, body: null }, "the response is untouched");
}

/** A request answered from the cache; its response. */
async function hit(t: TestContext, request: TestRequest, config?: Json) {
  const result = await t.beforeRequest(request, withConfig(config));
  t.equal(result.outcome, "respond", "a hit is answered from the cache");
  t.equal(result.response?.headers["x-cache"], "HIT");
  t.equal(result.response?.rejected, false);
  return result.response!;
}

/** A request that may not use the cache (X-Cache: BYPASS). */
async function bypass(t: TestContext, request: TestRequest, config?: Json): Promise<BeforeResult> {
  const result = await t.beforeRequest(request, withConfig(config));
  t.equal(result.outcome, "continue");
  t.equal(result.patch?.responseHeaders.set["x-cache"], ["BYPASS"]);
  return result;
}

/** Asserts the response to `request` was not stored: the next request is a miss too. */
async function notStored(t: TestContext, request: TestRequest, response: TestResponse, config?: Json) {
  await miss(t, request, response, config);
  await miss(t, request, response, config);
}

export default {
  config: {},
  tests: {
    async "a miss goes upstream and is stored; the next request is answered from the cache"(t) {
      t.clock.set(START);
      await miss(t, GET);
      const response = await hit(t, GET);
      t.equal(response.status, 200);
      t.equal(response.body, '{"products":[1,2,3]}');
      t.equal(response.headers, { "content-type": "application/json", etag: '"v1"', age: "0", "x-cache": "HIT" });
    },
    async "Age grows with the time the response was kept, from the upstream's own Age"(t) {
      t.clock.set(START);
      await miss(t, GET);
      t.clock.advance(30_500);
      t.equal((await hit(t, GET)).headers.age, "30");
      const aged = { ...GET, path: "/aged" };
      await miss(t, aged, { ...OK, headers: { ...OK.headers, age: "7" } });
      t.clock.advance(2_000);
      t.equal((await hit(t, aged)).headers.age, "9");
    },
    async "without Cache-Control a response is fresh for ttlSeconds"(t) {
      t.clock.set(START);
      await miss(t, GET);
      t.clock.advance(59_999);
      await hit(t, GET);
      t.clock.advance(1);
      await miss(t, GET);
      const config = { ttlSeconds: 5 };
      await miss(t, { ...GET, path: "/short" }, OK, config);
      t.clock.advance(5_000);
      await miss(t, { ...GET, path: "/short" }, OK, config);
    },
    async "max-age and s-maxage set the freshness, less the upstream's Age; maxTtlSeconds caps it"(t) {
      t.clock.set(START);
      const withControl = (value: string, age?: string): TestResponse => ({
        ...OK,
        headers: { ...OK.headers, "cache-control": value, ...(age === undefined ? {} : { age }) },
      });
      await miss(t, { path: "/a" }, withControl("max-age=10"));
      await miss(t, { path: "/b" }, withControl("public, max-age=10, s-maxage=100"));
      await miss(t, { path: "/c" }, withControl("max-age=10", "8"));
      await miss(t, { path: "/d" }, withControl("max-age=100000"), { maxTtlSeconds: 20 });
      await miss(t, { path: "/e" }, withControl("max-age=0"));
      t.clock.advance(2_000);
      await miss(t, { path: "/c" }, withControl("max-age=10", "8"));
      await miss(t, { path: "/e" }, OK);
      t.equal((await hit(t, { path: "/a" })).headers["cache-control"], "max-age=10", "stored with the response");
      t.clock.advance(8_000);
      await miss(t, { path: "/a" }, withControl("max-age=10"));
      await hit(t, { path: "/b" });
      await hit(t, { path: "/d" }, { maxTtlSeconds: 20 });
      t.clock.advance(10_000);
      await miss(t, { path: "/d" }, OK, { maxTtlSeconds: 20 });
      t.clock.advance(80_000);
      await miss(t, { path: "/b" });
    },
    async "no-store, private and no-cache responses are not stored"(t) {
      t.clock.set(START);
      for (const control of ["no-store", "private, max-age=60", "no-cache", 'max-age=60, private="x-user"']) {
        await notStored(t, GET, { ...OK, headers: { ...OK.headers, "cache-control": control } });
      }
    },
    async "responses setting cookies, varying on everything, or of other statuses are not stored"(t) {
      t.clock.set(START);
      await notStored(t, GET, { ...OK, headers: { ...OK.headers, "set-cookie": "sid=1" } });
      await notStored(t, GET, { ...OK, headers: { ...OK.headers, vary: "Accept, *" } });
      for (const status of [201, 302, 500, 503]) await notStored(t, GET, { ...OK, status });
      await notStored(t, GET, { ...OK, headers: { ...OK.headers, "content-type": "text/event-stream" } });
    },
    async "404 is stored by default; statuses changes which are"(t) {
      t.clock.set(START);
      await miss(t, { path: "/gone" }, { status: 404, body: "no" });
      t.equal((await hit(t, { path: "/gone" })).status, 404);
      const config = { statuses: [200] };
      await notStored(t, { path: "/missing" }, { status: 404, body: "no" }, config);
    },
    async "a 204 without a body is answered without one"(t) {
      t.clock.set(START);
      await miss(t, { path: "/empty" }, { status: 204 });
      const response = await hit(t, { path: "/empty" });
      t.equal(response.status, 204);
      t.equal(response.body, "");
    },
    async "Vary: each value of the named request headers has its own response"(t) {
      t.clock.set(START);
      const vary = (lang: string): TestResponse => ({
        status: 200,
        headers: { "content-type": "text/plain", vary: "Accept-Language" },
        body: `hello in ${lang}`,
      });
      const en = { ...GET, headers: { "accept-language": "en" } };
      const fr = { ...GET, headers: { "accept-language": "fr" } };
      await miss(t, en, vary("en"));
      await miss(t, fr, vary("fr"));
      t.equal((await hit(t, en)).body, "hello in en");
      const french = await hit(t, fr);
      t.equal(french.body, "hello in fr");
      t.equal(french.headers.vary, "Accept-Language");
      await miss(t, { ...GET, headers: { "accept-language": "de" } }, vary("de"));
      await miss(t, GET, vary("none"));
      t.equal((await hit(t, GET)).body, "hello in none");
    },
    async "the query's order does not matter; its content does"(t) {
      t.clock.set(START);
      await miss(t, GET);
      await hit(t, { ...GET, query: "sort=price&page=2" });
      await miss(t, { ...GET, query: "page=3&sort=price" });
      await miss(t, { ...GET, query: "" });
      await miss(t, { ...GET, path: "/products/" });
    },
    async "HEAD and GET are stored apart"(t) {
      t.clock.set(START);
      await miss(t, GET);
      await miss(t, { ...GET, method: "HEAD" }, { status: 200, headers: { "content-type": "application/json" } });
      const head = await hit(t, { ...GET, method: "HEAD" });
      t.equal(head.body, "");
      t.equal((await hit(t, GET)).body, '{"products":[1,2,3]}');
    },
    async "other methods neither use nor fill the cache"(t) {
      t.clock.set(START);
      await miss(t, GET);
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        const before = await t.beforeRequest({ ...GET, method });
        t.equal(before.outcome, "continue");
        t.equal(before.patch?.responseHeaders.set, {}, method);
        const after = await t.afterResponse(before, OK);
        t.equal(after.patch?.headers.set, {});
      }
    },
    async "keyHeaders: the named request headers are part of the key"(t) {
      t.clock.set(START);
      const config = { keyHeaders: ["X-Tenant"] };
      const acme = { ...GET, headers: { "x-tenant": "acme" } };
      await miss(t, acme, OK, config);
      await hit(t, acme, config);
      await miss(t, { ...GET, headers: { "x-tenant": "globex" } }, OK, config);
      await miss(t, GET, OK, config);
    },
    async "keyUser: one cache per identity"(t) {
      t.clock.set(START);
      const config = { keyUser: "id" };
      await miss(t, { ...GET, user: { id: "alice" } }, { ...OK, body: "alice's" }, config);
      await miss(t, { ...GET, user: { id: "bob" } }, { ...OK, body: "bob's" }, config);
      t.equal((await hit(t, { ...GET, user: { id: "alice" } }, config)).body, "alice's");
      t.equal((await hit(t, { ...GET, user: { id: "bob" } }, config)).body, "bob's");
    },
    async "requests with Authorization bypass the cache, and are not stored"(t) {
      t.clock.set(START);
      await miss(t, GET);
      const authorized = { ...GET, headers: { authorization: "Bearer t" } };
      const before = await bypass(t, authorized);
      const after = await t.afterResponse(before, { ...OK, body: "private data" });
      t.equal(after.patch?.body, null);
      t.equal((await hit(t, GET)).body, '{"products":[1,2,3]}', "the shared entry is untouched");
    },
    async "cacheAuthorized: shared only when the response says so, or per credentials"(t) {
      t.clock.set(START);
      const config = { cacheAuthorized: true };
      const alice = { ...GET, headers: { authorization: "Bearer alice" } };
      const bob = { ...GET, headers: { authorization: "Bearer bob" } };
      await notStored(t, alice, OK, config);
      await miss(t, alice, { ...OK, headers: { ...OK.headers, "cache-control": "public, max-age=60" } }, config);
      await hit(t, bob, config);
      const perUser = { cacheAuthorized: true, keyHeaders: ["authorization"] };
      const page = { ...alice, path: "/me" };
      await miss(t, page, { ...OK, body: "alice" }, perUser);
      t.equal((await hit(t, page, perUser)).body, "alice");
      await miss(t, { ...bob, path: "/me" }, { ...OK, body: "bob" }, perUser);
    },
    async "a request's no-cache goes upstream and refreshes the stored response"(t) {
      t.clock.set(START);
      await miss(t, GET);
      await miss(t, { ...GET, headers: { "cache-control": "no-cache" } }, { ...OK, body: "fresh" });
      t.equal((await hit(t, GET)).body, "fresh");
      await miss(t, { ...GET, headers: { pragma: "no-cache" } }, { ...OK, body: "fresher" });
      t.equal((await hit(t, GET)).body, "fresher");
    },
    async "a request's no-store bypasses the cache"(t) {
      t.clock.set(START);
      await miss(t, GET);
      const before = await bypass(t, { ...GET, headers: { "cache-control": "no-store" } });
      await t.afterResponse(before, { ...OK, body: "not kept" });
      t.equal((await hit(t, GET)).body, '{"products":[1,2,3]}');
    },
    async "honorRequestNoCache false: clients cannot skip the cache"(t) {
      t.clock.set(START);
      const config = { honorRequestNoCache: false };
      await miss(t, GET, OK, config);
      await hit(t, { ...GET, headers: { "cache-control": "no-cache, no-store" } }, config);
      await hit(t, { ...GET, headers: { pragma: "no-cache" } }, config);
    },
    async "range requests bypass the cache"(t) {
      t.clock.set(START);
      await miss(t, GET);
      await bypass(t, { ...GET, headers: { range: "bytes=0-9" } });
    },
    async "a body over maxEntryBytes is not stored"(t) {
      t.clock.set(START);
      const config = { maxEntryBytes: 20 };
      const body = "x".repeat(20);
      await miss(t, { path: "/fits" }, { status: 200, body }, config);
      t.equal((await hit(t, { path: "/fits" }, config)).body, body);
      await notStored(t, { path: "/big" }, { status: 200, body: body + "x" }, config);
      // Too large by its Content-Length: not even read.
      await notStored(t, { path: "/declared" }, { status: 200, headers: { "content-length": "21" }, body: "x" }, config);
    },
    async "a body larger than the proxy's body limit is not stored"(t) {
      t.clock.set(START);
      const body = "y".repeat(70_000);
      await notStored(t, { path: "/huge" }, { status: 200, body }, { maxEntryBytes: 1_000_000 });
    },
    async "UTF-8 bodies come back byte for byte"(t) {
      t.clock.set(START);
      const body = "caf\u00e9 \u2615 \u{1f600}";
      await miss(t, { path: "/utf8" }, { status: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body });
      t.equal((await hit(t, { path: "/utf8" })).body, body);
    },
    async "only the usual headers are stored, and those responseHeaders adds; never Set-Cookie"(t) {
      t.clock.set(START);
      const response: TestResponse = {
        status: 301,
        headers: {
          location: "/new",
          "content-type": "text/html",
          "last-modified": "Tue, 01 Jan 2030 00:00:00 GMT",
          "x-request-cost": "3",
          "x-debug": "1",
          server: "upstream/1",
        },
        body: "moved",
      };
      const config = { responseHeaders: ["X-Request-Cost", "set-cookie"] };
      await miss(t, { path: "/old" }, response, config);
      t.equal((await hit(t, { path: "/old" }, config)).headers, {
        "content-type": "text/html",
        "last-modified": "Tue, 01 Jan 2030 00:00:00 GMT",
        location: "/new",
        "x-request-cost": "3",
        age: "0",
        "x-cache": "HIT",
      });
    },
    async "a bad config fails the hook, naming the field"(t) {
      const cases: [Json, RegExp][] = [
        [{ ttlSeconds: 0 }, /config\.ttlSeconds must be a positive integer/],
        [{ maxEntryBytes: "1MB" }, /config\.maxEntryBytes must be a positive integer/],
        [{ statuses: [99] }, /config\.statuses must be a list of statuses/],
        [{ keyHeaders: ["bad name"] }, /config\.keyHeaders must be a list of header names/],
        [{ keyUser: "a..b" }, /config\.keyUser must be a dotted path/],
        [{ cacheAuthorized: "yes" }, /config\.cacheAuthorized must be true or false/],
      ];
      for (const [config, reason] of cases) {
        const result = await t.beforeRequest(GET, { config });
        t.equal(result.outcome, "failed", JSON.stringify(config));
        t.match(result.failure?.detail, reason);
      }
    },
  },
} satisfies TestSuite;
