// Run with `weir-proxy plugin test plugins/admin-gate`.
//
// The verifier is jwt-auth's (./jwt.ts, a symlink), tested there algorithm by algorithm
// and refusal by refusal; here, what admin-gate adds: the trusted headers are stripped
// from every request and set only for a token it verified with an admin role. Keys and
// tokens come from jwt-auth's fixtures (./fixtures.ts, a symlink), made with PyJWT.
import type { BeforeResult, Json, TestContext, TestRequest, TestSuite } from "weir";
import { AUDIENCE, ISSUED_AT, ISSUER, JWKS, KEYS, SPECIAL, TOKENS } from "./fixtures";

const KEY_LIST: Json[] = [
  { kid: "rsa-1", pem: KEYS.rsa1Pem },
  { kid: "ec-256", jwk: KEYS.ec256Jwk },
  { kid: "hs-256", secret: KEYS.secret256 },
];

const CONFIG = {
  algorithms: ["RS256", "ES256", "HS256"],
  keys: KEY_LIST,
  issuers: [ISSUER],
  audiences: [AUDIENCE],
  paths: ["/admin/*", "/tenants/{tenant}/admin/*"],
  roles: ["admin", "superuser"],
  pathClaims: { tenant: "tenants" },
};

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

const FORGED = {
  "x-gateway-admin-user": "root",
  "X-Gateway-Admin-Roles": "admin",
  "x-gateway-admin-tenant": "globex",
};

function body(result: BeforeResult): { [key: string]: Json } {
  return JSON.parse(result.response?.body ?? "{}");
}

async function admitted(t: TestContext, request: TestRequest, config?: Json): Promise<BeforeResult> {
  const result = await t.beforeRequest(request, config === undefined ? undefined : { config });
  t.equal(result.outcome, "continue", `expected a pass: ${result.response?.body ?? result.failure?.detail}`);
  return result;
}

async function status(t: TestContext, request: TestRequest, expected: number, message?: RegExp, config?: Json) {
  const result = await t.beforeRequest(request, config === undefined ? undefined : { config });
  t.equal(result.response?.status, expected, `${request.path}: ${result.response?.body ?? result.outcome}`);
  if (message !== undefined) t.match(body(result).message, message);
  return result;
}

/** The headers removed upstream, sorted. */
const removed = (result: BeforeResult) => [...(result.patch?.headers.remove ?? [])].sort();

export default {
  config: CONFIG,
  tests: {
    async "an administrator's token opens a guarded path, with the trusted headers"(t) {
      const result = await admitted(t, { path: "/admin/users", headers: { ...bearer(SPECIAL.admin), ...FORGED } });
      t.equal(result.patch?.headers.set, {
        "x-gateway-admin-user": ["root"],
        "x-gateway-admin-roles": ["admin"],
      });
      // The forged ones are gone (x-gateway-admin-tenant is not set again), and the token too.
      t.equal(removed(result), ["authorization", "x-gateway-admin-roles", "x-gateway-admin-tenant", "x-gateway-admin-user"]);
      t.equal(result.patch?.user, { id: "root", roles: ["admin"] });
    },
    async "trusted headers a client sends are removed from every request, guarded or not"(t) {
      for (const path of ["/", "/orders", "/api/admin", "/administrator"]) {
        const result = await admitted(t, { path, headers: { ...FORGED, "x-gateway-admin-anything": "1", "x-other": "kept" } });
        t.equal(removed(result), ["x-gateway-admin-anything", "x-gateway-admin-roles", "x-gateway-admin-tenant", "x-gateway-admin-user"], path);
        t.equal(result.patch?.headers.set, {}, path);
        t.equal(result.patch?.user, null, `${path}: not guarded, no token read`);
      }
      // Even without any: the headers it sets are always removed.
      const plain = await admitted(t, { path: "/orders" });
      t.equal(removed(plain), ["x-gateway-admin-roles", "x-gateway-admin-user"]);
    },
    async "a guarded path without a token: 401"(t) {
      const result = await status(t, { path: "/admin", headers: FORGED }, 401);
      t.equal(result.response?.headers["www-authenticate"], 'Bearer realm="admin"');
      t.equal(body(result), { error: "unauthorized", message: "a bearer token is required in the Authorization header" });
    },
    async "an identity another plugin left in ctx.user never opens a guarded path"(t) {
      const result = await status(t, { path: "/admin/users", user: { id: "root", roles: ["admin"] } }, 401);
      t.equal(result.response?.headers["www-authenticate"], 'Bearer realm="admin"');
    },
    async "a verified token without an admin role: 403"(t) {
      const result = await status(t, { path: "/admin/users", headers: bearer(TOKENS.RS256) }, 403);
      t.equal(body(result), { error: "forbidden", message: "one of the roles admin, superuser is required" });
      t.equal(result.response?.headers["www-authenticate"], undefined);
      const one = await status(t, { path: "/admin", headers: bearer(TOKENS.RS256) }, 403, undefined, { ...CONFIG, roles: ["admin"] });
      t.equal(body(one).message, "the admin role is required");
    },
    async "refused tokens: 401 invalid_token, as jwt-auth answers"(t) {
      t.clock.set((ISSUED_AT + 7200) * 1000);
      const cases: [string, RegExp][] = [
        [SPECIAL.adminExpired, /^the token has expired$/],
        [SPECIAL.adminForged, /^the token's signature is not valid$/],
        [SPECIAL.adminOtherAudience, /^the token's audience is not accepted$/],
        [SPECIAL.algNone, /^unsigned tokens \(alg none\) are not accepted$/],
        [SPECIAL.hs256WithPublicPem, /^no key matches the token's kid and alg$/],
        [TOKENS.PS256, /^the algorithm PS256 is not allowed$/],
        [SPECIAL.kidPathDevNull, /^no key matches the token's kid and alg$/],
      ];
      for (const [token, message] of cases) {
        const result = await status(t, { path: "/admin/users", headers: { ...bearer(token), ...FORGED } }, 401, message);
        t.match(result.response?.headers["www-authenticate"], /^Bearer realm="admin", error="invalid_token", error_description="/);
      }
    },
    async "a token that names nobody is refused"(t) {
      await status(t, { path: "/admin", headers: bearer(SPECIAL.noSub) }, 401, /^the token lacks the claim sub$/, { ...CONFIG, roles: ["orders-reader"] });
    },
    async "guarded paths are matched ignoring case and a trailing slash, segment by segment"(t) {
      for (const path of ["/admin", "/admin/", "/ADMIN", "/Admin/Users", "/admin/a/b/c"]) {
        await status(t, { path }, 401);
      }
      for (const path of ["/administrator", "/admins/x", "/api/admin", "/tenants/acme", "/tenants/admin"]) {
        await admitted(t, { path });
      }
    },
    async "pathClaims: the tenant of the path must be one the token grants"(t) {
      await admitted(t, { path: "/tenants/acme/admin/users", headers: bearer(SPECIAL.admin) });
      await admitted(t, { path: "/tenants/globex/admin", headers: bearer(SPECIAL.admin) });
      await status(t, { path: "/tenants/initech/admin/users", headers: bearer(SPECIAL.admin) }, 403, /^the token's tenants claim does not grant this tenant$/);
      // Paths match ignoring case, tenants do not.
      await status(t, { path: "/TENANTS/ACME/admin", headers: bearer(SPECIAL.admin) }, 403, /does not grant this tenant/);
      // A string claim; the role is a string too.
      const sam = await admitted(t, { path: "/tenants/initech/admin", headers: bearer(SPECIAL.superuser) });
      t.equal(sam.patch?.headers.set["x-gateway-admin-roles"], ["superuser"]);
      // Paths without {tenant} are not bound to it.
      await admitted(t, { path: "/admin", headers: bearer(SPECIAL.superuser) });
    },
    async "a path parameter named like a member of every object binds only where a path captures it"(t) {
      const config = { ...CONFIG, paths: ["/orgs/{constructor}/admin/*", "/admin/*"], pathClaims: { constructor: "tenants" } };
      await admitted(t, { path: "/admin/users", headers: bearer(SPECIAL.admin) }, config);
      await admitted(t, { path: "/orgs/acme/admin", headers: bearer(SPECIAL.admin) }, config);
      await status(t, { path: "/orgs/initech/admin", headers: bearer(SPECIAL.admin) }, 403, /does not grant this constructor/, config);
    },
    async "an HS256 administrator's token, with a configured secret"(t) {
      const result = await admitted(t, { path: "/admin", headers: bearer(SPECIAL.adminHs256) });
      t.equal(result.patch?.headers.set["x-gateway-admin-user"], ["root"]);
    },
    async "keys from the JWKS, in admin-gate's own cache"(t) {
      const uri = "https://idp.example.test/admin/jwks.json";
      t.fetch.stub(uri, { body: JWKS.rotated });
      const { keys, ...rest } = CONFIG;
      t.ok(keys.length === 3);
      const config = { ...rest, algorithms: ["RS256"], jwksUri: uri };
      await admitted(t, { path: "/admin", headers: bearer(SPECIAL.admin) }, config);
      await admitted(t, { path: "/admin", headers: bearer(SPECIAL.admin) }, config);
      t.equal(t.fetch.calls().length, 1);
      t.ok((await t.cache.get(`jwks:${uri}`)) !== null);
      t.fetch.stub(uri, { error: "down" });
      const down = "https://idp.example.test/admin-down/jwks.json";
      t.fetch.stub(down, { error: "connection refused" });
      const unavailable = await status(t, { path: "/admin", headers: bearer(SPECIAL.admin) }, 503, /could not be fetched/, { ...config, jwksUri: down });
      t.equal(unavailable.response?.headers["retry-after"], "30");
    },
    async "ctx.user: set for the access log unless an earlier plugin set it"(t) {
      const earlier = { id: "alice", via: "jwt-auth" };
      const kept = await admitted(t, { path: "/admin", headers: bearer(SPECIAL.admin), user: earlier });
      t.equal(kept.patch?.user, earlier);
      t.equal(kept.patch?.headers.set["x-gateway-admin-user"], ["root"], "the headers say what this plugin verified");
    },
    async "other header names, a prefix of its own, claims as headers"(t) {
      const config = {
        ...CONFIG,
        headerPrefix: "X-Internal-",
        userHeader: "x-internal-admin",
        rolesHeader: "x-admin-roles",
        claimHeaders: { "x-internal-email": "email", "x-internal-tenants": "tenants", "x-internal-phone": "phone" },
      };
      const forged = { "x-internal-admin": "root", "x-admin-roles": "admin", "x-internal-whatever": "1", "x-internal-phone": "1", "x-gateway-admin-user": "kept" };
      const result = await admitted(t, { path: "/admin", headers: { ...bearer(SPECIAL.admin), ...forged } }, config);
      t.equal(result.patch?.headers.set, {
        "x-internal-admin": ["root"],
        "x-admin-roles": ["admin"],
        "x-internal-email": ["alice@example.test"],
        "x-internal-tenants": ["acme,globex"],
      });
      t.equal(removed(result), ["authorization", "x-admin-roles", "x-internal-admin", "x-internal-email", "x-internal-phone", "x-internal-tenants", "x-internal-whatever"]);
    },
    async "rolesClaim and idClaim"(t) {
      const config = { ...CONFIG, rolesClaim: "realm_access.roles", idClaim: "email", roles: ["billing"] };
      const result = await admitted(t, { path: "/admin", headers: bearer(SPECIAL.richClaims) }, config);
      t.equal(result.patch?.headers.set, { "x-gateway-admin-user": ["alice@example.test"], "x-gateway-admin-roles": ["billing,support"] });
    },
    async "keepToken, and a token in a cookie"(t) {
      const kept = await admitted(t, { path: "/admin", headers: bearer(SPECIAL.admin) }, { ...CONFIG, keepToken: true });
      t.ok(!removed(kept).includes("authorization"));
      const cookie = await admitted(t, { path: "/admin", headers: { cookie: `a=1; admin_session=${SPECIAL.admin}` } }, { ...CONFIG, cookie: "admin_session" });
      t.equal(cookie.patch?.headers.set.cookie, ["a=1"]);
    },
    async "a Route's override guards other paths with other roles"(t) {
      const config = { ...CONFIG, paths: ["/ops/*"], roles: ["orders-reader"], pathClaims: null };
      await admitted(t, { path: "/ops/metrics", headers: bearer(TOKENS.ES256) }, config);
      await admitted(t, { path: "/admin" }, config);
    },
    async "a config the plugin cannot use fails the hook, naming the field"(t) {
      const cases: [Json, RegExp][] = [
        [{ ...CONFIG, paths: [] }, /admin-gate: config\.paths must list the guarded paths/],
        [{ ...CONFIG, roles: [] }, /admin-gate: config\.roles must list the roles/],
        [{ ...CONFIG, pathClaims: { org: "orgs" } }, /admin-gate: config\.pathClaims\.org names no \{org\} of the paths/],
        [{ ...CONFIG, headerPrefix: "x gateway" }, /admin-gate: config\.headerPrefix must be the start of a header name/],
        [{ ...CONFIG, paths: ["/admin*"] }, /admin-gate: config\.paths\[0\] "\/admin\*" is no path pattern/],
        [{ ...CONFIG, keys: [] }, /admin-gate: config\.keys is empty and there is no jwksUri/],
        [{ ...CONFIG, userHeader: "authorization" }, /the header with the token/],
      ];
      for (const [config, detail] of cases) {
        const result = await t.beforeRequest({ path: "/admin", headers: bearer(SPECIAL.admin) }, { config });
        t.equal(result.outcome, "failed");
        t.match(result.failure?.detail, detail);
      }
    },
  },
} satisfies TestSuite;
