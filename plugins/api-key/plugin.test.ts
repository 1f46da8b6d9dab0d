// Run with `weir-proxy plugin test plugins/api-key`.
//
// The hashes are SHA-256 of the keys in hex, as `printf %s KEY | sha256sum` prints them.
import type { Json, TestContext, TestRequest, TestSuite } from "weir";

const ALICE = "alice-key-0123456789";
const CI = "ci-key-abcdefghij";
const OPS = "ops-key-zyxwvutsrq";
const UNKNOWN = "unknown-key-000000";

const ALICE_HASH = "7bafaa96aa2351e6b7fbc258246b08ee66ade6196c76850108303b1dd6d6eb62";

const KEYS: Json[] = [
  { hash: ALICE_HASH, id: "alice", scopes: ["orders:read"] },
  { hash: "4f0e7b84fa936f1518b304e9b9b3fc2169109c5d0d56a11acc13f8592d6bf326", id: "ci", scopes: ["orders:read", "orders:write"] },
  // Upper-case hex is the same hash; no scopes at all.
  { hash: "4D6DD6FBC71A556973136B26265ADC72DA0D4A7EE2F0ECF7753C5879677757F9", id: "ops" },
];

const CONFIG = { keys: KEYS };

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
