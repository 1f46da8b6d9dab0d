// Run with `weir-proxy plugin test plugins/api-key`.
//
// The hashes are SHA-256 of the keys in hex, as `printf %s KEY | sha256sum` prints them.
import type { Json, TestContext, TestRequest, TestSuite } from "weir";

const ALICE = "alice-key-0123456789";
const CI = "ci-key-abcdefghij";
const OPS = "ops-key-zyxwvutsrq";
const UNKNOWN = "unknown-key-000000";

const ALICE_HASH = "7bafaa96aa2351e6b7fbc258246b08ee66ade6196c76850108303b1dd6d6eb62";

// A key known only to the cache, and its entry's cache key.
const PARTNER = "cache-only-key-42";
const PARTNER_ENTRY = "key:cc77e091923087f4a09c41da6f78154b9d82b549a91fc3aaa5908ffb61796038";
const PARTNER_USER = { id: "partner", scopes: ["orders:read", "reports:read"] };

const KEYS: Json[] = [
  { hash: ALICE_HASH, id: "alice", scopes: ["orders:read"] },
  { hash: "4f0e7b84fa936f1518b304e9b9b3fc2169109c5d0d56a11acc13f8592d6bf326", id: "ci", scopes: ["orders:read", "orders:write"] },
  // Upper-case hex is the same hash; no scopes at all.
  { hash: "4D6DD6FBC71A556973136B26265ADC72DA0D4A7EE2F0ECF7753C5879677757F9", id: "ops" },
];

const CONFIG = { keys: KEYS };
const CACHE = { ...CONFIG, lookup: "cache" };
const BOTH = { ...CONFIG, lookup: "both" };

const INVALID_ENTRY = "api-key: a cache entry is not {id, scopes}; the key is refused";

function withConfig(config: Json | undefined) {
  return config === undefined ? undefined : { config };
}

/** Asserts a 401 whose JSON body says `message`. */
async function unauthorized(t: TestContext, request: TestRequest, message: RegExp, config?: Json) {
  const result = await t.beforeRequest(request, withConfig(config));
  t.equal(result.outcome, "respond");
  t.equal(result.response?.status, 401);
  t.equal(result.response?.headers["www-authenticate"], 'ApiKey realm="api"');
  t.equal(result.response?.headers["content-type"], "application/json");
  const body = JSON.parse(result.response?.body ?? "{}");
  t.equal(body.error, "unauthorized");
  t.match(body.message, message);
}

export default {
  config: CONFIG,
  tests: {
    async "a known key in x-api-key passes, as ctx.user, without the header"(t) {
      const result = await t.beforeRequest({ path: "/orders", headers: { "x-api-key": ALICE } });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.user, { id: "alice", scopes: ["orders:read"] });
      t.equal(result.patch?.headers.remove, ["x-api-key"]);
      t.equal(result.patch?.path, null, "the path is left to the Route");
    },
    async "every configured key works, upper-case hashes and no scopes too"(t) {
      const ci = await t.beforeRequest({ headers: { "x-api-key": CI } });
      t.equal(ci.patch?.user, { id: "ci", scopes: ["orders:read", "orders:write"] });
      const ops = await t.beforeRequest({ headers: { "x-api-key": OPS } });
      t.equal(ops.patch?.user, { id: "ops", scopes: [] });
    },
    async "white space around the key is ignored"(t) {
      const result = await t.beforeRequest({ headers: { "x-api-key": `  ${ALICE} ` } });
      t.equal(result.patch?.user, { id: "alice", scopes: ["orders:read"] });
    },
    async "a request without a key is refused with 401"(t) {
      await unauthorized(t, { path: "/orders" }, /an API key is required in the x-api-key header$/);
      await unauthorized(t, { headers: { "x-api-key": "  " } }, /is required/);
    },
    async "an unknown key is refused with 401"(t) {
      await unauthorized(t, { headers: { "x-api-key": UNKNOWN } }, /the API key is not valid/);
      // A key's hash is not a key.
      await unauthorized(t, { headers: { "x-api-key": ALICE_HASH } }, /not valid/);
      // Nor is a key that differs only in case.
      await unauthorized(t, { headers: { "x-api-key": ALICE.toUpperCase() } }, /not valid/);
    },
    async "the refusal never forwards anything"(t) {
      const result = await t.beforeRequest({ headers: { "x-api-key": UNKNOWN } });
      t.equal(result.patch, undefined);
      t.equal(result.response?.rejected, true);
    },
    async "another header name"(t) {
      const config = { ...CONFIG, header: "X-Gateway-Key" };
      const result = await t.beforeRequest({ headers: { "x-gateway-key": CI, "x-api-key": UNKNOWN } }, { config });
      t.equal(result.patch?.user, { id: "ci", scopes: ["orders:read", "orders:write"] });
      t.equal(result.patch?.headers.remove, ["x-gateway-key"]);
      await unauthorized(t, { headers: { "x-api-key": ALICE } }, /in the x-gateway-key header$/, config);
    },
    async "a key in the query parameter passes, and is taken out of the upstream query"(t) {
      const config = { ...CONFIG, queryParam: "api_key" };
      const result = await t.beforeRequest(
        { path: "/orders", query: `page=2&api_key=${ALICE}&q=a%20b+c&api_key=again` },
        { config },
      );
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.user, { id: "alice", scopes: ["orders:read"] });
      t.equal(result.patch?.query, "page=2&q=a%20b+c", "the other parameters keep their encoding");
      t.equal(result.patch?.path, null, "the path is left to the Route's rewrite");
    },
    async "an encoded parameter name is the same parameter"(t) {
      const config = { ...CONFIG, queryParam: "api key" };
      const result = await t.beforeRequest({ path: "/x", query: `api+key=${CI}&a=1` }, { config });
      t.equal(result.patch?.user, { id: "ci", scopes: ["orders:read", "orders:write"] });
      t.equal(result.patch?.query, "a=1");
    },
    async "a query holding only the key leaves no query upstream"(t) {
      const config = { ...CONFIG, queryParam: "api_key" };
      const result = await t.beforeRequest({ path: "/orders", query: `api_key=${ALICE}` }, { config });
      t.equal(result.patch?.query, "");
    },
    async "the header wins over the query parameter, which is removed all the same"(t) {
      const config = { ...CONFIG, queryParam: "api_key" };
      const result = await t.beforeRequest(
        { path: "/orders", query: `api_key=${UNKNOWN}`, headers: { "x-api-key": CI } },
        { config },
      );
      t.equal(result.patch?.user, { id: "ci", scopes: ["orders:read", "orders:write"] });
      t.equal(result.patch?.query, "");
    },
    async "without queryParam the query is neither read nor touched"(t) {
      await unauthorized(t, { query: `api_key=${ALICE}` }, /required in the x-api-key header$/);
      const result = await t.beforeRequest({ query: `api_key=${ALICE}`, headers: { "x-api-key": ALICE } });
      t.equal(result.patch?.path, null);
      t.equal(result.patch?.query, undefined);
    },
    async "a missing key names the query parameter too"(t) {
      await unauthorized(t, { path: "/" }, /the x-api-key header or the api_key query parameter/, { ...CONFIG, queryParam: "api_key" });
      await unauthorized(t, { query: "api_key=" }, /is required/, { ...CONFIG, queryParam: "api_key" });
    },
    async "required scopes: a key with them passes"(t) {
      const config = { ...CONFIG, requiredScopes: ["orders:write", "orders:read"] };
      const result = await t.beforeRequest({ headers: { "x-api-key": CI } }, { config });
      t.equal(result.outcome, "continue");
    },
    async "required scopes: a key without them is refused with 403, naming them"(t) {
      const config = { ...CONFIG, requiredScopes: ["orders:read", "orders:write"] };
      const alice = await t.beforeRequest({ headers: { "x-api-key": ALICE } }, { config });
      t.equal(alice.response?.status, 403);
      t.equal(alice.response?.headers["www-authenticate"], undefined);
      t.equal(JSON.parse(alice.response?.body ?? "{}"), { error: "forbidden", message: "the API key lacks the scope orders:write" });
      const ops = await t.beforeRequest({ headers: { "x-api-key": OPS } }, { config });
      t.equal(JSON.parse(ops.response?.body ?? "{}").message, "the API key lacks the scopes orders:read, orders:write");
    },
    async "an identity header goes upstream, and a client's own never does"(t) {
      const config = { ...CONFIG, identityHeader: "x-api-client" };
      const result = await t.beforeRequest({ headers: { "x-api-key": ALICE, "x-api-client": "root" } }, { config });
      t.equal(result.patch?.headers.remove, ["x-api-client", "x-api-key"]);
      t.equal(result.patch?.headers.set["x-api-client"], ["alice"]);
      const refused = await t.beforeRequest({ headers: { "x-api-client": "root" } }, { config });
      t.equal(refused.response?.status, 401);
    },
    async "the realm of WWW-Authenticate"(t) {
      const result = await t.beforeRequest({}, { config: { ...CONFIG, realm: "orders" } });
      t.equal(result.response?.headers["www-authenticate"], 'ApiKey realm="orders"');
    },
    async "no keys configured: every key is refused"(t) {
      await unauthorized(t, { headers: { "x-api-key": ALICE } }, /not valid/, {});
    },
    async "lookup cache: config keys are not used, and a key not in the cache is refused"(t) {
      await unauthorized(t, { headers: { "x-api-key": ALICE } }, /not valid/, { ...CONFIG, lookup: "cache" });
    },
    async "lookup both: a configured key passes without the cache"(t) {
      const config = { ...CONFIG, lookup: "both" };
      const result = await t.beforeRequest({ headers: { "x-api-key": CI } }, { config });
      t.equal(result.patch?.user, { id: "ci", scopes: ["orders:read", "orders:write"] });
      await unauthorized(t, { headers: { "x-api-key": UNKNOWN } }, /not valid/, config);
    },
    async "a route's override changes the required scopes"(t) {
      const open = await t.beforeRequest({ headers: { "x-api-key": ALICE } });
      t.equal(open.outcome, "continue");
      const strict = await t.beforeRequest({ headers: { "x-api-key": ALICE } }, { config: { ...CONFIG, requiredScopes: ["admin"] } });
      t.equal(strict.response?.status, 403);
    },
    async "lookup cache: a key in the cache passes, as ctx.user from its entry"(t) {
      await t.cache.set(PARTNER_ENTRY, PARTNER_USER);
      const result = await t.beforeRequest({ path: "/orders", headers: { "x-api-key": PARTNER } }, { config: CACHE });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.user, PARTNER_USER);
      t.equal(result.patch?.headers.remove, ["x-api-key"]);
      t.equal(t.logs(), [], "nothing to warn about");
      t.equal(await t.cache.get(PARTNER_ENTRY), PARTNER_USER, "the entry is left as it was");
    },
    async "lookup cache: an entry without scopes has none"(t) {
      await t.cache.set(PARTNER_ENTRY, { id: "partner" });
      const result = await t.beforeRequest({ headers: { "x-api-key": PARTNER } }, { config: CACHE });
      t.equal(result.patch?.user, { id: "partner", scopes: [] });
    },
    async "lookup cache: required scopes, the identity header and the query key work as with config keys"(t) {
      await t.cache.set(PARTNER_ENTRY, PARTNER_USER);
      const config = { ...CACHE, identityHeader: "x-api-client", queryParam: "api_key" };
      const result = await t.beforeRequest(
        { path: "/reports", query: `api_key=${PARTNER}&day=1`, headers: { "x-api-client": "root" } },
        { config: { ...config, requiredScopes: ["reports:read"] } },
      );
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.user, PARTNER_USER);
      t.equal(result.patch?.headers.set["x-api-client"], ["partner"]);
      t.equal(result.patch?.query, "day=1");
      const refused = await t.beforeRequest({ headers: { "x-api-key": PARTNER } }, { config: { ...config, requiredScopes: ["orders:write"] } });
      t.equal(refused.response?.status, 403);
      t.equal(JSON.parse(refused.response?.body ?? "{}").message, "the API key lacks the scope orders:write");
    },
    async "lookup both: a key not in the config is found in the cache"(t) {
      await t.cache.set(PARTNER_ENTRY, PARTNER_USER);
      const result = await t.beforeRequest({ headers: { "x-api-key": PARTNER } }, { config: BOTH });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.user, PARTNER_USER);
    },
    async "lookup both: the config is tried first"(t) {
      await t.cache.set(`key:${ALICE_HASH}`, { id: "impostor", scopes: ["admin"] });
      const result = await t.beforeRequest({ headers: { "x-api-key": ALICE } }, { config: BOTH });
      t.equal(result.patch?.user, { id: "alice", scopes: ["orders:read"] });
    },
    async "lookup config (the default): the cache is not read"(t) {
      await t.cache.set(PARTNER_ENTRY, PARTNER_USER);
      await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/);
      await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/, { ...CONFIG, lookup: "config" });
    },
    async "a cache entry of another shape is refused, with a warning"(t) {
      const malformed: Json[] = [
        "partner",
        42,
        true,
        ["partner"],
        {},
        { id: "" },
        { id: 7, scopes: [] },
        { id: "partner", scopes: "orders:read" },
        { id: "partner", scopes: ["orders:read", 1] },
      ];
      for (const lookup of [CACHE, BOTH]) {
        for (const entry of malformed) {
          await t.cache.set(PARTNER_ENTRY, entry);
          await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/, lookup);
          const logs = t.logs();
          t.equal(logs.length, 1, JSON.stringify(entry));
          t.equal(logs[0].level, "warn", JSON.stringify(entry));
          t.equal(logs[0].message, INVALID_ENTRY, JSON.stringify(entry));
          t.equal(logs[0].source, "ctx.log");
        }
      }
    },
    async "a key that is simply not in the cache is refused without a warning"(t) {
      await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/, CACHE);
      await unauthorized(t, { headers: { "x-api-key": UNKNOWN } }, /the API key is not valid/, BOTH);
      t.equal(t.logs(), []);
    },
    async "deleting the entry revokes the key"(t) {
      await t.cache.set(PARTNER_ENTRY, PARTNER_USER);
      const before = await t.beforeRequest({ headers: { "x-api-key": PARTNER } }, { config: CACHE });
      t.equal(before.outcome, "continue");
      t.equal(await t.cache.delete(PARTNER_ENTRY), true);
      await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/, CACHE);
      await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/, BOTH);
    },
    async "an entry written with a TTL revokes the key when it expires"(t) {
      await t.cache.set(PARTNER_ENTRY, PARTNER_USER, { ttlSeconds: 60 });
      for (const config of [CACHE, BOTH]) {
        const fresh = await t.beforeRequest({ headers: { "x-api-key": PARTNER } }, { config });
        t.equal(fresh.patch?.user, PARTNER_USER);
      }
      t.clock.advance(59_999);
      const last = await t.beforeRequest({ headers: { "x-api-key": PARTNER } }, { config: CACHE });
      t.equal(last.patch?.user, PARTNER_USER, "still valid a millisecond before it expires");
      t.clock.advance(1);
      await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/, CACHE);
      await unauthorized(t, { headers: { "x-api-key": PARTNER } }, /the API key is not valid/, BOTH);
      // A configured key does not expire with the cache.
      const alice = await t.beforeRequest({ headers: { "x-api-key": ALICE } }, { config: BOTH });
      t.equal(alice.patch?.user, { id: "alice", scopes: ["orders:read"] });
    },
    async "an identity an earlier plugin set lets no request without a valid key in, and the key's holder replaces it"(t) {
      const user = { id: "admin", scopes: ["orders:read", "orders:write"] };
      await unauthorized(t, { user }, /an API key is required/);
      await unauthorized(t, { user, headers: { "x-api-key": UNKNOWN } }, /the API key is not valid/);
      const result = await t.beforeRequest({ user, headers: { "x-api-key": ALICE } }, { config: { ...CONFIG, requiredScopes: ["orders:write"] } });
      t.equal(result.response?.status, 403, "the key's scopes count, not the earlier identity's");
      const passed = await t.beforeRequest({ user, headers: { "x-api-key": ALICE } });
      t.equal(passed.patch?.user, { id: "alice", scopes: ["orders:read"] });
    },
    async "names of members every object has are names like others"(t) {
      const config = { ...CONFIG, header: "constructor", queryParam: "toString" };
      await unauthorized(t, {}, /an API key is required in the constructor header or the toString query parameter/, config);
      const byHeader = await t.beforeRequest({ headers: { constructor: ALICE } }, { config });
      t.equal(byHeader.patch?.user, { id: "alice", scopes: ["orders:read"] });
      const byQuery = await t.beforeRequest({ query: `toString=${CI}` }, { config });
      t.equal(byQuery.patch?.user, { id: "ci", scopes: ["orders:read", "orders:write"] });
    },
    async "other config errors fail the hook, naming the field"(t) {
      const cases: [Json, RegExp][] = [
        [{ lookup: "redis" }, /config\.lookup must be "config", "cache" or "both", not "redis"/],
        [{ keys: [{ hash: ALICE_HASH, id: "" }] }, /config\.keys\[0\]\.id must be a non-empty string/],
        [{ keys: [{ hash: ALICE_HASH, id: "alice", scopes: "orders:read" }] }, /config\.keys\[0\]\.scopes must be a list of strings/],
        [{ requiredScopes: ["a", 1] }, /config\.requiredScopes must be a list of strings/],
      ];
      for (const [config, detail] of cases) {
        const result = await t.beforeRequest({ headers: { "x-api-key": ALICE } }, { config });
        t.equal(result.outcome, "failed", JSON.stringify(config));
        t.match(result.failure?.detail, detail);
      }
    },
    async "a config hash that is no SHA-256 fails the hook, naming it"(t) {
      const result = await t.beforeRequest(
        { headers: { "x-api-key": ALICE } },
        { config: { keys: [KEYS[0], { hash: "abc", id: "short" }] } },
      );
      t.equal(result.outcome, "failed");
      t.match(result.failure?.detail, /config\.keys\[1\]\.hash must be the SHA-256 of the key in hex/);
    },
  },
} satisfies TestSuite;
