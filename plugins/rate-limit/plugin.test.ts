// Run with `weir-proxy plugin test plugins/rate-limit`.
//
// Every test starts at START, a whole minute (and hour), so windows begin there; time
// moves only with t.clock. Counters live in the harness's in-memory cache; the same
// code against Redis, shared by two proxies, is plugins/test_shared_limits.py.
import type { BeforeResult, Json, TestContext, TestRequest, TestSuite } from "weir";

const START = Date.parse("2030-01-01T00:00:00Z");
const MINUTE = START / 60_000;
const ALICE: TestRequest = { path: "/orders", clientIp: "203.0.113.9" };
const BOB: TestRequest = { path: "/orders", clientIp: "198.51.100.7" };

const FIXED = { algorithm: "fixed-window", limit: 3, windowSeconds: 60 };

function withConfig(config: Json | undefined) {
  return config === undefined ? undefined : { config };
}

/** Asserts the request passes, and returns its RateLimit header. */
async function allowed(t: TestContext, request: TestRequest, config?: Json): Promise<string | undefined> {
  const result = await t.beforeRequest(request, withConfig(config));
  t.equal(result.outcome, "continue", `allowed: ${JSON.stringify(result.response)}`);
  const headers = result.patch?.responseHeaders.append ?? {};
  return headers["ratelimit"]?.[0];
}

/** Asserts a 429 and returns it. */
async function refused(t: TestContext, request: TestRequest, config?: Json): Promise<BeforeResult> {
  const result = await t.beforeRequest(request, withConfig(config));
  t.equal(result.outcome, "respond");
  t.equal(result.response?.status, 429);
  t.equal(result.response?.rejected, true);
  const body = JSON.parse(result.response?.body ?? "{}");
  t.equal(body.error, "rate_limited");
  t.match(body.message, /^too many requests: \d+ per \d+ s allowed; retry in \d+ s$/);
  return result;
}

function retryAfter(result: BeforeResult): number {
  return Number(result.response?.headers["retry-after"]);
}

export default {
  config: FIXED,
  tests: {
    async "fixed window: the limit passes, with RateLimit-Policy and RateLimit on each response"(t) {
      t.clock.set(START);
      for (const remaining of [2, 1, 0]) {
        const result = await t.beforeRequest(ALICE);
        t.equal(result.outcome, "continue");
        t.equal(result.patch?.responseHeaders.append, {
          "ratelimit-policy": ['"default";q=3;w=60'],
          ratelimit: [`"default";r=${remaining};t=60`],
        });
        t.equal(result.patch?.headers, { set: {}, append: {}, remove: [] }, "the upstream request is untouched");
      }
    },
    async "fixed window: beyond the limit, 429 with Retry-After until the window ends"(t) {
      t.clock.set(START);
      for (let i = 0; i < 3; i++) await allowed(t, ALICE);
      const first = await refused(t, ALICE);
      t.equal(retryAfter(first), 60);
      t.equal(first.response?.headers["ratelimit-policy"], '"default";q=3;w=60');
      t.equal(first.response?.headers["ratelimit"], '"default";r=0;t=60');
      t.equal(first.response?.headers["content-type"], "application/json");
      t.equal(JSON.parse(first.response?.body ?? "{}").message, "too many requests: 3 per 60 s allowed; retry in 60 s");
      t.clock.advance(42_500);
      t.equal(retryAfter(await refused(t, ALICE)), 18, "rounded up");
      t.clock.set(START + 60_000);
      t.equal(await allowed(t, ALICE), '"default";r=2;t=60', "a new window");
    },
    async "fixed window: refused requests are not counted"(t) {
      t.clock.set(START);
      for (let i = 0; i < 3; i++) await allowed(t, ALICE);
      for (let i = 0; i < 5; i++) await refused(t, ALICE);
      t.equal(await t.cache.get(`default:fw:60:ip=203.0.113.9:${MINUTE}`), 3);
    },
    async "fixed window: a burst across the boundary gets twice the limit"(t) {
      // What sliding-window is for: 3 at the end of one window, 3 at the start of the next.
      t.clock.set(START + 59_000);
      for (let i = 0; i < 3; i++) await allowed(t, ALICE);
      t.clock.set(START + 60_000);
      for (let i = 0; i < 3; i++) await allowed(t, ALICE);
      await refused(t, ALICE);
    },
    async "each client has its own counter"(t) {
      t.clock.set(START);
      for (let i = 0; i < 3; i++) await allowed(t, ALICE);
      await refused(t, ALICE);
      t.equal(await allowed(t, BOB), '"default";r=2;t=60');
    },
    async "sliding window: the previous window counts by how much of it is still within a window"(t) {
      const config = { algorithm: "sliding-window", limit: 10, windowSeconds: 60 };
      t.clock.set(START);
      for (let i = 9; i >= 0; i--) t.equal(await allowed(t, ALICE, config), `"default";r=${i};t=60`);
      // 10 in this window: the next request waits for the next window, and 6 s into it
      // (10 × 54/60 + 1 = 10).
      t.equal(retryAfter(await refused(t, ALICE, config)), 66);
      t.clock.set(START + 60_000);
      const boundary = await refused(t, ALICE, config);
      t.equal(retryAfter(boundary), 6, "the previous window still weighs 10 at the boundary");
      t.equal(boundary.response?.headers["ratelimit"], '"default";r=0;t=6');
      t.clock.set(START + 66_000);
      t.equal(await allowed(t, ALICE, config), '"default";r=0;t=54', "10 × 54/60 + 1 = 10");
      t.clock.set(START + 90_000);
      // 10 × 30/60 + 1 + 1 = 7.
      t.equal(await allowed(t, ALICE, config), '"default";r=3;t=30');
      t.equal(await t.cache.get(`default:sw:60:ip=203.0.113.9:${MINUTE + 1}`), 2, "refused requests not counted");
    },
    async "sliding window is the default"(t) {
      t.clock.set(START);
      const config = { limit: 2 };
      await allowed(t, ALICE, config);
      await allowed(t, ALICE, config);
      await refused(t, ALICE, config);
      t.equal(await t.cache.get(`default:sw:60:ip=203.0.113.9:${MINUTE}`), 2);
    },
    async "token bucket: a burst, then one token per interval"(t) {
      // 60 per minute is a token a second; 5 may come at once.
      const config = { algorithm: "token-bucket", limit: 60, windowSeconds: 60, burst: 5 };
      t.clock.set(START);
      for (let i = 4; i >= 0; i--) t.equal(await allowed(t, ALICE, config), `"default";r=${i};t=${5 - i}`);
      const empty = await refused(t, ALICE, config);
      t.equal(retryAfter(empty), 1);
      t.equal(empty.response?.headers["ratelimit-policy"], '"default";q=60;w=60');
      t.clock.advance(999);
      t.equal(retryAfter(await refused(t, ALICE, config)), 1);
      t.clock.advance(1);
      t.equal(await allowed(t, ALICE, config), '"default";r=0;t=5');
      await refused(t, ALICE, config);
      t.clock.advance(2_500);
      t.equal(await allowed(t, ALICE, config), `"default";r=1;t=4`, "2.5 tokens came back, one is used; full in 3.5 s");
      t.clock.advance(60_000);
      t.equal(await allowed(t, ALICE, config), '"default";r=4;t=1', "the bucket holds burst tokens at most");
    },
    async "token bucket: the entry is the bucket's full time, in microseconds, and expires then"(t) {
      const config = { algorithm: "token-bucket", limit: 2, windowSeconds: 10 };
      t.clock.set(START);
      await allowed(t, ALICE, config);
      const key = "default:tb:10:ip=203.0.113.9";
      t.equal(await t.cache.get(key), (START + 5_000) * 1000, "one token of 2 per 10 s: full in 5 s");
      await allowed(t, ALICE, config);
      t.equal(await t.cache.get(key), (START + 10_000) * 1000);
      const result = await refused(t, ALICE, config);
      t.equal(retryAfter(result), 5);
      t.clock.advance(11_001);
      t.equal(await t.cache.get(key), null, "a full bucket needs no entry");
    },
    async "token bucket: burst defaults to the limit"(t) {
      const config = { algorithm: "token-bucket", limit: 3, windowSeconds: 60 };
      t.clock.set(START);
      for (let i = 0; i < 3; i++) await allowed(t, ALICE, config);
      t.equal(retryAfter(await refused(t, ALICE, config)), 20);
    },
    async "token bucket: an entry that is no time is reset, with a warning"(t) {
      const config = { algorithm: "token-bucket", limit: 2, windowSeconds: 10 };
      t.clock.set(START);
      t.logs();
      await t.cache.set("default:tb:10:ip=203.0.113.9", { not: "a time" });
      t.equal(await allowed(t, ALICE, config), '"default";r=1;t=5');
      const [line] = t.logs();
      t.equal(line.level, "warn");
      t.match(line.message, /not a time; it is reset/);
    },
    async "by user: each user has a counter; anonymous requests are counted by IP"(t) {
      const config = { ...FIXED, by: ["user.id"] };
      t.clock.set(START);
      for (let i = 0; i < 3; i++) await allowed(t, { ...ALICE, user: { id: "alice" } }, config);
      await refused(t, { ...BOB, user: { id: "alice" } }, config);
      await allowed(t, { ...ALICE, user: { id: "bob" } }, config);
      await allowed(t, ALICE, config);
      t.equal(await t.cache.get(`default:fw:60:user.id=alice:${MINUTE}`), 3);
      t.equal(await t.cache.get(`default:fw:60:ip=203.0.113.9:${MINUTE}`), 1);
    },
    async "onMissingKey skip: requests without the key are not limited, nor told of limits"(t) {
      const config = { ...FIXED, limit: 1, by: ["user.id"], onMissingKey: "skip" };
      t.clock.set(START);
      for (let i = 0; i < 5; i++) {
        const result = await t.beforeRequest(ALICE, { config });
        t.equal(result.outcome, "continue");
        t.equal(result.patch?.responseHeaders.append, {});
      }
      await allowed(t, { ...ALICE, user: { id: "alice" } }, config);
      await refused(t, { ...ALICE, user: { id: "alice" } }, config);
    },
    async "a key of several parts: a header and the route"(t) {
      const config = { ...FIXED, limit: 1, by: ["header.X-Tenant", "route"] };
      t.clock.set(START);
      const acme = { ...ALICE, headers: { "x-tenant": "acme" }, route: "shop/orders" };
      await allowed(t, acme, config);
      await refused(t, { ...acme, clientIp: "192.0.2.1" }, config);
      await allowed(t, { ...acme, route: "shop/cart" }, config);
      await allowed(t, { ...acme, headers: { "x-tenant": "globex" } }, config);
      t.equal(await t.cache.get(`default:fw:60:header.x-tenant=acme&route=shop%2Forders:${MINUTE}`), 1);
    },
    async "a key part that is an object or a number is its JSON; a long key is hashed"(t) {
      const config = { ...FIXED, limit: 1, by: ["user.org", "user.n"] };
      t.clock.set(START);
      await allowed(t, { ...ALICE, user: { org: { id: 7 }, n: 3 } }, config);
      await refused(t, { ...ALICE, user: { n: 3, org: { id: 7 } } }, config);
      t.equal(await t.cache.get(`default:fw:60:user.org=%7B%22id%22%3A7%7D&user.n=3:${MINUTE}`), 1);
      const long = { ...ALICE, headers: { "x-tenant": "t".repeat(300) } };
      const hashed = { ...FIXED, limit: 1, by: ["header.x-tenant"] };
      await allowed(t, long, hashed);
      await refused(t, long, hashed);
    },
    async "a Route's override changes the limit; its own name gives it its own counters"(t) {
      t.clock.set(START);
      const strict = { ...FIXED, limit: 1, name: "orders-strict" };
      t.equal(await allowed(t, ALICE, strict), '"orders-strict";r=0;t=60');
      const result = await refused(t, ALICE, strict);
      t.equal(result.response?.headers["ratelimit-policy"], '"orders-strict";q=1;w=60');
      t.equal(await allowed(t, ALICE), '"default";r=2;t=60', "the Plugin's own policy is untouched");
    },
    async "tiers: limits by a user field, each tier with its own counters"(t) {
      const config = {
        ...FIXED,
        by: ["user.id"],
        tierBy: "user.plan",
        tiers: { gold: { limit: 5 }, partner: { limit: 100, windowSeconds: 3600, name: "partners" } },
      };
      t.clock.set(START);
      const gold = { ...ALICE, user: { id: "alice", plan: "gold" } };
      for (let i = 4; i >= 0; i--) t.equal(await allowed(t, gold, config), `"gold";r=${i};t=60`);
      const result = await refused(t, gold, config);
      t.equal(result.response?.headers["ratelimit-policy"], '"gold";q=5;w=60');
      const partner = { ...BOB, user: { id: "bob", plan: "partner" } };
      t.equal(await allowed(t, partner, config), '"partners";r=99;t=3600');
      const free = { ...BOB, user: { id: "carol", plan: "free" } };
      t.equal(await allowed(t, free, config), '"default";r=2;t=60', "a value without a tier: the config's limits");
      t.equal(await allowed(t, { ...BOB, user: { id: "dave" } }, config), '"default";r=2;t=60');
    },
    async "tiers by user id: a map of users to limits"(t) {
      const config = { ...FIXED, limit: 1, by: ["user.id"], tierBy: "user.id", tiers: { "ci-pipeline": { limit: 1000 } } };
      t.clock.set(START);
      t.equal(await allowed(t, { ...ALICE, user: { id: "ci-pipeline" } }, config), '"ci-pipeline";r=999;t=60');
      await allowed(t, { ...ALICE, user: { id: "someone" } }, config);
      await refused(t, { ...ALICE, user: { id: "someone" } }, config);
    },
    async "headers: refused puts them on 429s only; none on no response"(t) {
      t.clock.set(START);
      const onRefusal = { ...FIXED, limit: 1, headers: "refused" };
      const result = await t.beforeRequest(ALICE, { config: onRefusal });
      t.equal(result.patch?.responseHeaders.append, {});
      const limited = await refused(t, ALICE, onRefusal);
      t.equal(limited.response?.headers["ratelimit"], '"default";r=0;t=60');
      const silent = { ...FIXED, limit: 1, headers: "none", name: "silent" };
      t.equal((await t.beforeRequest(ALICE, { config: silent })).patch?.responseHeaders.append, {});
      const quiet = await refused(t, ALICE, silent);
      t.equal(quiet.response?.headers["ratelimit"], undefined);
      t.equal(quiet.response?.headers["ratelimit-policy"], undefined);
      t.equal(retryAfter(quiet), 60, "Retry-After always");
    },
    async "a policy name is a structured-field string"(t) {
      t.clock.set(START);
      const config = { ...FIXED, name: 'say "hi" \\ there' };
      const result = await t.beforeRequest(ALICE, { config });
      t.equal(result.patch?.responseHeaders.append["ratelimit-policy"], ['"say \\"hi\\" \\\\ there";q=3;w=60']);
    },
    async "onStoreError allow: a failing cache lets the request pass, with a warning"(t) {
      // The in-memory cache fails an incr of an entry that is no integer: a store error
      // as Redis's would be (plugins/test_shared_limits.py stops a real Redis).
      t.clock.set(START);
      await t.cache.set(`default:fw:60:ip=203.0.113.9:${MINUTE}`, "not a counter");
      t.logs();
      const result = await t.beforeRequest(ALICE);
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.responseHeaders.append, {});
      const [line] = t.logs();
      t.equal(line.level, "warn");
      t.equal(line.message, "rate-limit: the cache failed; the request passes unlimited");
      t.match(line.fields.error, /does not hold an integer/);
      t.equal(line.fields.onStoreError, "allow");
    },
    async "onStoreError deny: a failing cache refuses with 503, with a warning"(t) {
      t.clock.set(START);
      const config = { algorithm: "sliding-window", limit: 3, onStoreError: "deny" };
      await t.cache.set(`default:sw:60:ip=203.0.113.9:${MINUTE}`, "not a counter");
      t.logs();
      const result = await t.beforeRequest(ALICE, { config });
      t.equal(result.outcome, "respond");
      t.equal(result.response?.status, 503);
      t.equal(JSON.parse(result.response?.body ?? "{}"), {
        error: "rate_limit_unavailable",
        message: "the rate limit cannot be checked now",
      });
      const [line] = t.logs();
      t.equal(line.level, "warn");
      t.equal(line.message, "rate-limit: the cache failed; the request is refused");
      await allowed(t, BOB, config);
    },
    async "a bad config fails the hook, naming the field"(t) {
      const cases: [Json, RegExp][] = [
        [{ windowSeconds: 60 }, /config\.limit is required/],
        [{ limit: 0 }, /config\.limit must be a positive integer/],
        [{ limit: 1.5 }, /config\.limit must be a positive integer/],
        [{ limit: 5, algorithm: "leaky" }, /config\.algorithm must be one of/],
        [{ limit: 5, by: [] }, /config\.by must be a non-empty list/],
        [{ limit: 5, by: ["cookie.sid"] }, /config\.by\[0\] must be ip, route, user\.<path> or header\.<name>/],
        [{ limit: 5, tiers: { gold: { limit: 9 } } }, /config\.tierBy is required with tiers/],
        [{ limit: 5, tierBy: "user.plan", tiers: { gold: { burst: -1 } } }, /config\.tiers\.gold\.burst must be a positive integer/],
        [{ limit: 5, name: "caf\u00e9" }, /config\.name must be printable ASCII/],
        [{ limit: 5, onStoreError: "retry" }, /config\.onStoreError must be allow or deny/],
      ];
      for (const [config, reason] of cases) {
        const result = await t.beforeRequest(ALICE, { config });
        t.equal(result.outcome, "failed", JSON.stringify(config));
        t.match(result.failure?.detail, reason);
      }
    },
  },
} satisfies TestSuite;
