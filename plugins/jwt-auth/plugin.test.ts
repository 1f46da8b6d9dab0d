// Run with `weir-proxy plugin test plugins/jwt-auth`.
//
// Keys configured in the Plugin (HMAC secrets, PEM and JWK public keys): every algorithm,
// every way a token is refused, the claims' mapping to ctx.user and upstream headers,
// where the token comes from, public paths. The JWKS is jwks.test.ts's. Keys and tokens
// are made by make_fixtures.py with PyJWT (fixtures.ts).
import type { BeforeResult, Json, TestContext, TestRequest, TestSuite } from "weir";
import { AUDIENCE, FAR, ISSUED_AT, ISSUER, KEYS, SPECIAL, TOKENS } from "./fixtures";

const ALL = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

const KEY_LIST: Json[] = [
  { kid: "hs-256", secret: KEYS.secret256, algorithms: ["HS256"] },
  { kid: "hs-384", secret: KEYS.secret384, algorithms: ["HS384"] },
  { kid: "hs-512", secret: KEYS.secret512, algorithms: ["HS512"] },
  // Without their own algorithms: those of the allow-list their kind verifies.
  { kid: "rsa-1", pem: KEYS.rsa1Pem },
  { kid: "ec-256", jwk: KEYS.ec256Jwk },
  { kid: "ec-384", pem: KEYS.ec384Pem },
  { kid: "ed-1", jwk: KEYS.edJwk },
];

const CONFIG = { algorithms: ALL, keys: KEY_LIST, issuers: [ISSUER], audiences: [AUDIENCE] };

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Milliseconds of a NumericDate. */
const at = (seconds: number) => seconds * 1000;

function body(result: BeforeResult): { [key: string]: Json } {
  return JSON.parse(result.response?.body ?? "{}");
}

async function passes(t: TestContext, request: TestRequest, config?: Json): Promise<BeforeResult> {
  const result = await t.beforeRequest(request, config === undefined ? undefined : { config });
  t.equal(result.outcome, "continue", `expected the request to pass: ${result.response?.body ?? result.failure?.detail}`);
  return result;
}

/** Asserts a 401 for a refused token, with RFC 6750's challenge and the reason. */
async function invalid(t: TestContext, token: string, message: RegExp, config?: Json, realm = "api") {
  const result = await t.beforeRequest({ headers: bearer(token) }, config === undefined ? undefined : { config });
  t.equal(result.outcome, "respond", `expected a refusal (${message})`);
  t.equal(result.response?.status, 401);
  const answer = body(result);
  t.equal(answer.error, "unauthorized");
  t.match(answer.message, message);
  t.equal(
    result.response?.headers["www-authenticate"],
    `Bearer realm="${realm}", error="invalid_token", error_description="${answer.message}"`,
  );
  t.equal(result.response?.headers["content-type"], "application/json");
  t.equal(result.patch, undefined, "nothing goes upstream");
}

/** A token of three segments built by hand (its signature is not checked before its form). */
function raw(header: string | Json, payload: string | Json, signature = "c2ln"): string {
  const encode = (part: string | Json) =>
    typeof part === "string" ? part : btoa(JSON.stringify(part)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `${encode(header)}.${encode(payload)}.${signature}`;
}

function failedConfig(t: TestContext, result: BeforeResult, detail: RegExp) {
  t.equal(result.outcome, "failed");
  t.match(result.failure?.detail, detail);
}

export default {
  config: CONFIG,
  tests: {
    async "a valid token of every algorithm passes, as ctx.user, without the Authorization header"(t) {
      for (const alg of ALL) {
        const result = await passes(t, { path: "/orders", headers: bearer(TOKENS[alg as keyof typeof TOKENS]) });
        t.equal(result.patch?.user, { id: "alice", roles: ["orders-reader"], scopes: ["orders:read", "orders:write"] }, alg);
        t.equal(result.patch?.headers.remove, ["authorization"], alg);
        t.equal(result.patch?.headers.set, {}, alg);
      }
    },
    async "the Bearer scheme is case-insensitive and spaces around the token are ignored"(t) {
      await passes(t, { headers: { authorization: `bearer   ${TOKENS.RS256}  ` } });
      await passes(t, { headers: { authorization: `BEARER ${TOKENS.ES256}` } });
    },
    async "no token: 401 with a challenge that has no error code (RFC 6750 §3.1)"(t) {
      const requests: Record<string, string>[] = [{}, { authorization: "" }, { authorization: "Basic YWxpY2U6c2VjcmV0" }, { authorization: "Bearer" }];
      for (const headers of requests) {
        const result = await t.beforeRequest({ path: "/orders", headers });
        t.equal(result.response?.status, 401, JSON.stringify(headers));
        t.equal(result.response?.headers["www-authenticate"], 'Bearer realm="api"');
        t.equal(body(result), { error: "unauthorized", message: "a bearer token is required in the Authorization header" });
      }
    },
    async "two bearer tokens (two Authorization headers, joined) are a bad request"(t) {
      const result = await t.beforeRequest({ headers: { authorization: `Bearer ${TOKENS.RS256}, Bearer ${TOKENS.ES256}` } });
      t.equal(result.response?.status, 400);
      t.equal(body(result), { error: "bad_request", message: "the authorization header must hold one bearer token" });
      t.equal(
        result.response?.headers["www-authenticate"],
        'Bearer realm="api", error="invalid_request", error_description="the authorization header must hold one bearer token"',
      );
    },
    async "a token signed by another key is refused"(t) {
      await invalid(t, SPECIAL.forgedRs256, /^the token's signature is not valid$/);
      await invalid(t, SPECIAL.forgedEs256, /^the token's signature is not valid$/);
      await invalid(t, SPECIAL.forgedHs256, /^the token's signature is not valid$/);
    },
    async "a token whose payload was changed after signing is refused"(t) {
      const [h, , s] = TOKENS.RS256.split(".");
      const payload = btoa(JSON.stringify({ sub: "root", roles: ["admin"], exp: FAR, iss: ISSUER, aud: AUDIENCE }))
        .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      await invalid(t, `${h}.${payload}.${s}`, /signature is not valid/);
      await invalid(t, `${TOKENS.HS256.slice(0, -4)}AAAA`, /signature is not valid/);
    },
    async "alg none is refused in every spelling, signed or not"(t) {
      const config = { ...CONFIG, algorithms: ALL };
      for (const token of [SPECIAL.algNone, SPECIAL.algNoneCapital, SPECIAL.algNoneUpper, SPECIAL.algNoneSigned]) {
        await invalid(t, token, /^unsigned tokens \(alg none\) are not accepted$/, config);
      }
    },
    async "a token without alg, or with an algorithm nobody knows, is refused"(t) {
      await invalid(t, SPECIAL.algMissing, /^the token's header has no alg$/);
      await invalid(t, SPECIAL.algUnknown, /^the token's algorithm is not allowed$/);
    },
    async "an algorithm outside the allow-list is refused, even with a key that would verify it"(t) {
      const config = { algorithms: ["RS256"], keys: [{ pem: KEYS.rsa1Pem }] };
      await passes(t, { headers: bearer(TOKENS.RS256) }, config);
      for (const alg of ["PS256", "RS384", "RS512", "PS512"] as const) {
        await invalid(t, TOKENS[alg], new RegExp(`^the algorithm ${alg} is not allowed$`), config);
      }
      // A key's own list narrows the allow-list.
      const narrowed = { algorithms: ["RS256", "PS256"], keys: [{ pem: KEYS.rsa1Pem, algorithms: ["PS256"] }] };
      await passes(t, { headers: bearer(TOKENS.PS256) }, narrowed);
      await invalid(t, TOKENS.RS256, /^no key matches the token's kid and alg$/, narrowed);
    },
    async "algorithm confusion: an HS256 token signed with the RSA public key is refused"(t) {
      // Only the public key is configured: HS256 is not allowed at all.
      const rsaOnly = { algorithms: ["RS256"], keys: [{ kid: "rsa-1", pem: KEYS.rsa1Pem }] };
      await invalid(t, SPECIAL.hs256WithPublicPem, /^the algorithm HS256 is not allowed$/, rsaOnly);
      // HS256 allowed for a secret, beside the public key: the public key is never tried
      // as a secret, whatever the token's kid.
      const both: Json = { algorithms: ["RS256", "HS256"], keys: [{ kid: "rsa-1", pem: KEYS.rsa1Pem }, { secret: KEYS.secret256 }] };
      await passes(t, { headers: bearer(TOKENS.RS256) }, both);
      await passes(t, { headers: bearer(TOKENS.HS256) }, both);
      await invalid(t, SPECIAL.hs256WithPublicPem, /^the token's signature is not valid$/, both);
      await invalid(t, SPECIAL.hs256WithPublicJwk, /^the token's signature is not valid$/, both);
      // The same key as a JWK.
      const jwk = { algorithms: ["RS256", "HS256"], keys: [{ kid: "rsa-1", jwk: KEYS.rsa1Jwk }] };
      await invalid(t, SPECIAL.hs256WithPublicJwk, /^no key matches the token's kid and alg$/, jwk);
    },
    async "a configured JWK's alg pins it to that algorithm"(t) {
      const config: Json = { algorithms: ["RS256", "PS256"], keys: [{ jwk: { ...KEYS.rsa1Jwk, alg: "PS256" } }] };
      await passes(t, { headers: bearer(TOKENS.PS256) }, config);
      await invalid(t, TOKENS.RS256, /^no key matches the token's kid and alg$/, config);
    },
    async "a public key of another kind never verifies: an RS256 kid pointing at an EC key"(t) {
      const config = { algorithms: ["RS256", "ES256"], keys: [{ kid: "rsa-1", jwk: KEYS.ec256Jwk }] };
      await invalid(t, TOKENS.RS256, /^no key matches the token's kid and alg$/, config);
    },
    async "kid tricks: a kid is only ever a lookup key"(t) {
      // Path traversal to an empty file, SQL injection: no configured key has that kid.
      await invalid(t, SPECIAL.kidPathDevNull, /^no key matches the token's kid and alg$/);
      await invalid(t, SPECIAL.kidSqlInjection, /^no key matches the token's kid and alg$/);
      // A key without kid is tried, and the forged signature fails.
      const wildcard = { algorithms: ["HS256"], keys: [{ secret: KEYS.secret256 }] };
      await invalid(t, SPECIAL.kidPathDevNull, /^the token's signature is not valid$/, wildcard);
      // A URL in kid is not fetched.
      await invalid(t, SPECIAL.kidUrl, /^no key matches the token's kid and alg$/);
      t.equal(t.fetch.calls(), []);
      // A kid that is no string, or is too long, makes the header malformed.
      await invalid(t, SPECIAL.kidNumber, /^the token's kid is not a string of at most 256 characters$/);
      await invalid(t, SPECIAL.kidObject, /^the token's kid is not a string/);
      await invalid(t, SPECIAL.kidTooLong, /^the token's kid is not a string/);
    },
    async "keys a token carries or points at (jwk, jku, x5u) are never used"(t) {
      await invalid(t, SPECIAL.embeddedJwk, /^no key matches the token's kid and alg$/);
      await invalid(t, SPECIAL.jkuHeader, /^the token's signature is not valid$/);
      await invalid(t, SPECIAL.x5uHeader, /^the token's signature is not valid$/);
      t.equal(t.fetch.calls(), [], "nothing is fetched");
    },
    async "critical header parameters are refused"(t) {
      await invalid(t, SPECIAL.critHeader, /^the token has critical header parameters \(crit\), which are not supported$/);
    },
    async "ES256 takes JWS's r||s signature, not DER"(t) {
      await invalid(t, SPECIAL.es256Der, /^the token's signature is not valid$/);
    },
    async "a PS256 header over an RS256 signature is refused"(t) {
      await invalid(t, SPECIAL.ps256SignedPkcs1, /^the token's signature is not valid$/);
    },
    async "malformed tokens are refused before any key is tried"(t) {
      const [h, p, s] = TOKENS.RS256.split(".");
      const form = /^the token is not a JWT \(three base64url segments\)$/;
      await invalid(t, "not-a-jwt", form);
      await invalid(t, `${h}.${p}`, form);
      await invalid(t, `${h}.${p}.${s}.x`, form);
      await invalid(t, `${h}=.${p}.${s}`, form, undefined);
      await invalid(t, `${h}.${p.slice(0, 10)}+/${p.slice(10)}.${s}`, form);
      await invalid(t, `.${p}.${s}`, form);
      await invalid(t, `${h}.${p}.${s}.${s}.${s}`, /^encrypted tokens \(JWE\) are not accepted$/);
      await invalid(t, `${h}.${p}.`, /^the token has no signature$/);
      await invalid(t, `${h}.${p}.${s}=`, /^the token's signature is not base64url$/);
      await invalid(t, `${h}.${p}.${s.slice(0, -1)}`, /^the token's signature is not base64url$/); // not canonical
      await invalid(t, raw("bm90IGpzb24", p), /^the token's header is not a base64url JSON object$/);
      await invalid(t, raw("WzFd", p), /^the token's header is not a base64url JSON object$/); // [1]
      await invalid(t, raw("_w", p), /^the token's header is not a base64url JSON object$/); // 0xff: no UTF-8
      await invalid(t, raw("eyJhbGciOiJSUzI1NiJ", p), /^the token's header is not a base64url JSON object$/); // not canonical base64url
      await invalid(t, raw({ alg: "RS256", kid: "rsa-1" }, "WzFd"), /^the token's payload is not a base64url JSON object$/);
      await invalid(t, raw({ alg: "RS256", kid: "rsa-1" }, "bnVsbA"), /^the token's payload is not a base64url JSON object$/); // null
    },
    async "a token longer than maxTokenLength is refused before it is parsed"(t) {
      const long = `${"a".repeat(9000)}.b.c`;
      await invalid(t, long, /^the token is longer than 8192 characters$/);
      await invalid(t, TOKENS.RS256, /^the token is longer than 300 characters$/, { ...CONFIG, maxTokenLength: 300 });
    },
    async "exp: refused from exp + clockSkewSeconds on"(t) {
      const exp = ISSUED_AT + 3600;
      t.clock.set(at(exp + 59));
      await passes(t, { headers: bearer(SPECIAL.expiresInAnHour) });
      t.clock.set(at(exp + 60));
      await invalid(t, SPECIAL.expiresInAnHour, /^the token has expired$/);
      // Without leeway, the second of exp itself is too late.
      t.clock.set(at(exp - 1));
      await passes(t, { headers: bearer(SPECIAL.expiresInAnHour) }, { ...CONFIG, clockSkewSeconds: 0 });
      t.clock.set(at(exp));
      await invalid(t, SPECIAL.expiresInAnHour, /^the token has expired$/, { ...CONFIG, clockSkewSeconds: 0 });
      // A fractional exp counts its fraction.
      t.clock.set(at(exp + 0.25));
      await passes(t, { headers: bearer(SPECIAL.expFraction) }, { ...CONFIG, clockSkewSeconds: 0 });
      t.clock.set(at(exp + 0.5));
      await invalid(t, SPECIAL.expFraction, /^the token has expired$/, { ...CONFIG, clockSkewSeconds: 0 });
    },
    async "nbf: refused until nbf - clockSkewSeconds"(t) {
      const nbf = ISSUED_AT + 600;
      t.clock.set(at(nbf - 61));
      await invalid(t, SPECIAL.notBeforeTenMinutes, /^the token is not valid yet \(nbf\)$/);
      t.clock.set(at(nbf - 60));
      await passes(t, { headers: bearer(SPECIAL.notBeforeTenMinutes) });
      t.clock.set(at(nbf - 1));
      await invalid(t, SPECIAL.notBeforeTenMinutes, /not valid yet/, { ...CONFIG, clockSkewSeconds: 0 });
    },
    async "iat: a token issued in the future is refused, beyond the leeway"(t) {
      const iat = ISSUED_AT + 600;
      t.clock.set(at(iat - 61));
      await invalid(t, SPECIAL.issuedInTenMinutes, /^the token was issued in the future \(iat\)$/);
      t.clock.set(at(iat - 60));
      await passes(t, { headers: bearer(SPECIAL.issuedInTenMinutes) });
    },
    async "maxAgeSeconds: tokens issued longer ago are refused, and tokens without iat too"(t) {
      const config = { ...CONFIG, maxAgeSeconds: 3600, clockSkewSeconds: 0 };
      t.clock.set(at(ISSUED_AT + 3600));
      await passes(t, { headers: bearer(TOKENS.RS256) }, config);
      t.clock.set(at(ISSUED_AT + 3601));
      await invalid(t, TOKENS.RS256, /^the token is too old \(iat\)$/, config);
      await invalid(t, SPECIAL.noIat, /^the token has no issue time \(iat\)$/, config);
    },
    async "a token without exp is refused unless requireExp is false"(t) {
      await invalid(t, SPECIAL.noExp, /^the token has no expiry \(exp\)$/);
      await passes(t, { headers: bearer(SPECIAL.noExp) }, { ...CONFIG, requireExp: false });
    },
    async "time claims that are no numbers are refused"(t) {
      await invalid(t, SPECIAL.expString, /^the token's exp is not a number$/);
      await invalid(t, SPECIAL.expString, /^the token's exp is not a number$/, { ...CONFIG, requireExp: false });
    },
    async "iss must be one of issuers"(t) {
      await invalid(t, SPECIAL.issOther, /^the token's issuer is not accepted$/);
      await invalid(t, SPECIAL.noIss, /^the token's issuer is not accepted$/);
      await passes(t, { headers: bearer(SPECIAL.issOther) }, { ...CONFIG, issuers: [ISSUER, "https://attacker.example/"] });
      const { issuers, ...anyIssuer } = CONFIG;
      t.ok(issuers.length === 1);
      await passes(t, { headers: bearer(SPECIAL.noIss) }, anyIssuer);
    },
    async "aud: a token passes with any one of audiences"(t) {
      await passes(t, { headers: bearer(SPECIAL.audList) });
      await invalid(t, SPECIAL.audOther, /^the token's audience is not accepted$/);
      await invalid(t, SPECIAL.audOtherList, /^the token's audience is not accepted$/);
      await invalid(t, SPECIAL.noAud, /^the token's audience is not accepted$/);
      await passes(t, { headers: bearer(SPECIAL.audOtherList) }, { ...CONFIG, audiences: ["crm-api", "hr-api"] });
      const { audiences, ...anyAudience } = CONFIG;
      t.ok(audiences.length === 1);
      await passes(t, { headers: bearer(SPECIAL.noAud) }, anyAudience);
    },
    async "requiredClaims: by name or dotted path"(t) {
      await invalid(t, SPECIAL.noSub, /^the token lacks the claim sub$/, { ...CONFIG, requiredClaims: ["sub"] });
      await passes(t, { headers: bearer(SPECIAL.richClaims) }, { ...CONFIG, requiredClaims: ["sub", "realm_access.roles", "address.city"] });
      await invalid(t, SPECIAL.richClaims, /^the token lacks the claim address\.zip$/, { ...CONFIG, requiredClaims: ["address.zip"] });
    },
    async "the claims signed are what ctx.user holds: idClaim, rolesClaim, scopesClaim, userClaims"(t) {
      const config = {
        ...CONFIG,
        idClaim: "email",
        rolesClaim: "realm_access.roles",
        userClaims: ["https://example.test/tenant", "address.city", "missing"],
      };
      const result = await passes(t, { headers: bearer(SPECIAL.richClaims) }, config);
      t.equal(result.patch?.user, {
        id: "alice@example.test",
        roles: ["billing", "support"],
        // No `scope`: the `scp` list.
        scopes: ["orders:read", "invoices:read"],
        claims: { "https://example.test/tenant": "acme", "address.city": "Lyon" },
      });
      const groups = await passes(t, { headers: bearer(SPECIAL.richClaims) }, { ...CONFIG, rolesClaim: "groups", scopesClaim: "scope" });
      t.equal(groups.patch?.user, { id: "bob", roles: ["ops", "oncall"], scopes: [] });
    },
    async "a numeric sub is a string id; a roles string is split"(t) {
      const result = await passes(t, { headers: bearer(SPECIAL.numericSub) });
      t.equal(result.patch?.user, { id: "1234", roles: ["admin", "auditor"], scopes: ["orders:read", "orders:write"] });
      const none = await passes(t, { headers: bearer(SPECIAL.noSub) });
      t.equal((none.patch?.user as { id: Json }).id, null);
    },
    async "forwardClaims: claims go upstream as headers, a client's copies never"(t) {
      const config = {
        ...CONFIG,
        forwardClaims: {
          "X-User-Id": "sub",
          "x-user-roles": "realm_access.roles",
          "x-user-tenant": "https://example.test/tenant",
          "x-user-name": "name",
          "x-user-age": "age",
          "x-user-verified": "verified",
          "x-user-address": "address",
          "x-user-phone": "phone",
        },
      };
      const forged = { "x-user-id": "root", "x-user-phone": "+1 555", "x-user-tenant": "globex" };
      const result = await passes(t, { headers: { ...bearer(SPECIAL.richClaims), ...forged } }, config);
      t.equal(result.patch?.headers.set, {
        "x-user-id": ["bob"],
        "x-user-roles": ["billing,support"],
        "x-user-tenant": ["acme"],
        // Control characters dropped: no header injection.
        "x-user-name": ["BobX-Injected: yes"],
        "x-user-age": ["42"],
        "x-user-verified": ["true"],
        "x-user-address": ['{"city":"Lyon"}'],
      });
      // Every forwarded header is removed first: x-user-phone (no such claim) stays removed.
      t.ok(result.patch?.headers.remove.includes("x-user-phone"));
      t.ok(result.patch?.headers.remove.includes("x-user-id"));
      // Refused requests go nowhere; public paths lose the forged headers too.
      const publicConfig = { ...config, publicPaths: ["/public/*"] };
      const open = await passes(t, { path: "/public/x", headers: forged }, publicConfig);
      t.equal([...(open.patch?.headers.remove ?? [])].sort(), Object.keys(config.forwardClaims).map((h) => h.toLowerCase()).sort());
      t.equal(open.patch?.headers.set, {});
    },
    async "payloadHeader: the verified payload goes upstream as it was signed"(t) {
      const result = await passes(t, { headers: { ...bearer(TOKENS.ES256), "x-jwt-payload": "forged" } }, { ...CONFIG, payloadHeader: "x-jwt-payload" });
      t.equal(result.patch?.headers.set["x-jwt-payload"], [TOKENS.ES256.split(".")[1]]);
      t.ok(result.patch?.headers.remove.includes("x-jwt-payload"));
    },
    async "keepToken: the Authorization header goes upstream"(t) {
      const result = await passes(t, { headers: bearer(TOKENS.RS256) }, { ...CONFIG, keepToken: true });
      t.equal(result.patch?.headers.remove, []);
    },
    async "the token may come from a cookie, which is then removed from the upstream Cookie header"(t) {
      const config = { ...CONFIG, cookie: "session" };
      const result = await passes(t, { headers: { cookie: `theme=dark; session=${TOKENS.EdDSA}; lang=fr` } }, config);
      t.equal(result.patch?.headers.set.cookie, ["theme=dark; lang=fr"]);
      t.equal(result.patch?.headers.remove, []);
      const only = await passes(t, { headers: { cookie: `session="${TOKENS.RS256}"` } }, config);
      t.equal(only.patch?.headers.remove, ["cookie"]);
      // The header wins over the cookie.
      const both = await t.beforeRequest({ headers: { ...bearer(SPECIAL.forgedRs256), cookie: `session=${TOKENS.RS256}` } }, { config });
      t.equal(both.response?.status, 401);
      // Neither: the message names both places.
      const none = await t.beforeRequest({ headers: { cookie: "sessionx=1" } }, { config });
      t.equal(body(none).message, "a bearer token is required in the Authorization header or the session cookie");
      // keepToken keeps the cookie.
      const kept = await passes(t, { headers: { cookie: `session=${TOKENS.RS256}` } }, { ...config, keepToken: true });
      t.equal(kept.patch?.headers.set, {});
      t.equal(kept.patch?.headers.remove, []);
    },
    async "a header or cookie named like a member of every object is only the request's"(t) {
      for (const name of ["constructor", "__proto__", "toString"]) {
        const result = await t.beforeRequest({}, { config: { ...CONFIG, header: name, cookie: name } });
        t.equal(result.response?.status, 401, name);
        await passes(t, { headers: { [name]: TOKENS.RS256 } }, { ...CONFIG, header: name });
      }
    },
    async "another header: the token itself, or with the Bearer scheme"(t) {
      const config = { ...CONFIG, header: "X-JWT" };
      const plain = await passes(t, { headers: { "x-jwt": TOKENS.PS384, ...bearer(SPECIAL.forgedRs256) } }, config);
      t.equal(plain.patch?.headers.remove, ["x-jwt"], "Authorization is not this plugin's then");
      await passes(t, { headers: { "x-jwt": `Bearer ${TOKENS.PS384}` } }, config);
      const none = await t.beforeRequest({ headers: bearer(TOKENS.RS256) }, { config });
      t.equal(body(none).message, "a token is required in the x-jwt header");
    },
    async "publicPaths need no token: exact paths, {param} segments and /* prefixes"(t) {
      const config = { ...CONFIG, publicPaths: ["/healthz", "/docs/{page}", "/public/*", "/assets/{version}/*"] };
      for (const path of ["/healthz", "/healthz/", "/docs/intro", "/public", "/public/", "/public/a/b", "/assets/v2", "/assets/v2/app.js"]) {
        const result = await passes(t, { path, headers: bearer(SPECIAL.forgedRs256) }, config);
        t.equal(result.patch?.user, null, `${path}: no token is read there`);
        t.equal(result.patch?.headers.remove, [], `${path}: the header is not this plugin's there`);
      }
      for (const path of ["/", "/healthz/x", "/docs", "/docs/a/b", "/publicity", "/Public/x", "/assets", "/api/public/x"]) {
        const result = await t.beforeRequest({ path }, { config });
        t.equal(result.response?.status, 401, path);
      }
      await passes(t, { path: "/anything" }, { ...CONFIG, publicPaths: ["/*"] });
    },
    async "requiredScopes: 403 insufficient_scope naming the missing ones"(t) {
      const config = { ...CONFIG, requiredScopes: ["orders:read", "orders:delete", "orders:admin"] };
      const result = await t.beforeRequest({ headers: bearer(TOKENS.RS256) }, { config });
      t.equal(result.response?.status, 403);
      t.equal(body(result), { error: "forbidden", message: "the token lacks the scopes orders:delete, orders:admin" });
      t.equal(
        result.response?.headers["www-authenticate"],
        'Bearer realm="api", error="insufficient_scope", error_description="the token lacks the scopes orders:delete, orders:admin", scope="orders:read orders:delete orders:admin"',
      );
      await passes(t, { headers: bearer(TOKENS.RS256) }, { ...CONFIG, requiredScopes: ["orders:write"] });
    },
    async "realm names the protection space in every challenge"(t) {
      const config = { ...CONFIG, realm: "orders" };
      const missing = await t.beforeRequest({}, { config });
      t.equal(missing.response?.headers["www-authenticate"], 'Bearer realm="orders"');
      await invalid(t, SPECIAL.forgedRs256, /signature/, config, "orders");
    },
    async "HMAC secrets may be written in base64"(t) {
      const config = { algorithms: ["HS256"], keys: [{ kid: "hs-b64", secret: KEYS.secretBase64, secretEncoding: "base64" }] };
      await passes(t, { headers: bearer(SPECIAL.hs256Base64Secret) }, config);
      await invalid(t, TOKENS.HS256, /^no key matches the token's kid and alg$/, config);
    },
    async "a configured key without kid matches any kid, one with a kid only its own"(t) {
      const config: Json = { algorithms: ["RS256"], keys: [{ kid: "other", pem: KEYS.rsa2Pem }, { pem: KEYS.rsa1Pem }] };
      await passes(t, { headers: bearer(TOKENS.RS256) }, config);
      await passes(t, { headers: bearer(SPECIAL.rs256NoKid) }, config);
      const pinned = { algorithms: ["RS256"], keys: [{ kid: "rsa-1", pem: KEYS.rsa1Pem }] };
      await passes(t, { headers: bearer(SPECIAL.rs256NoKid) }, pinned);
      await invalid(t, SPECIAL.rs256Rotated, /^no key matches the token's kid and alg$/, pinned);
    },
    async "a config the plugin cannot use fails the hook, naming the field"(t) {
      const cases: [Json, RegExp][] = [
        [{ keys: [{ pem: KEYS.rsa1Pem }] }, /config\.keys\[0\] has no algorithms: give keys\[0\]\.algorithms or algorithms/],
        [{ algorithms: ["HS384"], keys: [{ secret: KEYS.secret256 }] }, /config\.keys\[0\]\.secret is 32 bytes; HS384 needs at least 48/],
        [{ algorithms: ["HS256"], keys: [{ secret: "too-short" }] }, /config\.keys\[0\]\.secret is 9 bytes; HS256 needs at least 32/],
        [{ algorithms: ["ES256"], keys: [{ pem: KEYS.rsa1Pem }] }, /config\.keys\[0\] verifies none of the allowed algorithms \(an RSA key\)/],
        [{ algorithms: ["RS256"], keys: [{ pem: KEYS.rsa1Pem, algorithms: ["ES256"] }] }, /config\.keys\[0\]\.algorithms holds ES256, which an RSA key cannot verify/],
        [{ algorithms: ["HS256"], keys: [{ pem: KEYS.rsa1Pem, algorithms: ["HS256"] }] }, /holds HS256, which an RSA key cannot verify/],
        [{ algorithms: ["RS256"], keys: [{ pem: KEYS.rsaShortPem }] }, /config\.keys\[0\]\.pem cannot be used: invalid key: an RSA key of 1024 bits \(RSA keys need 2048 to 8192 bits\)/],
        [{ algorithms: ["RS256"], keys: [{ jwk: KEYS.rsaShortJwk }] }, /config\.keys\[0\]\.jwk cannot be used: invalid key: an RSA key of 1024 bits/],
        [{ algorithms: ["RS256"], keys: [{ pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" }] }, /config\.keys\[0\]\.pem is no RSA, EC P-256, EC P-384 or Ed25519 public key/],
        [{ algorithms: ["RS256"], keys: [{ pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----" }] }, /config\.keys\[0\]\.pem must be a PEM public key/],
        [{ algorithms: ["HS256"], keys: [{ jwk: { kty: "oct", k: "c2VjcmV0" } }] }, /config\.keys\[0\]\.jwk is a symmetric key: give HMAC secrets as secret/],
        [{ algorithms: ["RS256"], keys: [{ jwk: { ...KEYS.rsa1Jwk, d: "AAAA" } }] }, /config\.keys\[0\]\.jwk holds a private key \(d\)/],
        [{ algorithms: ["RS256"], keys: [{ jwk: { kty: "RSA", e: "AQAB" } }] }, /config\.keys\[0\]\.jwk cannot be used: invalid key: the JWK has no "n"/],
        [{ algorithms: ["RS256"], keys: [{ jwk: { ...KEYS.rsa1Jwk, use: "enc" } }] }, /config\.keys\[0\]\.jwk is a key for "enc", not for signatures/],
        [{ algorithms: ["RS256"], keys: [{ jwk: { ...KEYS.rsa1Jwk, alg: "ES256" } }] }, /config\.keys\[0\]\.jwk\.alg "ES256" is no algorithm an RSA key verifies/],
        [{ algorithms: ["RS256"], keys: [{ jwk: { ...KEYS.rsa1Jwk, alg: "PS256" } }] }, /config\.keys\[0\] verifies none of the allowed algorithms/],
        [{ algorithms: ["HS256"], keys: [{ secret: "not base64!", secretEncoding: "base64" }] }, /config\.keys\[0\]\.secret is not base64/],
        [{ algorithms: ["HS256"], keys: [{ secret: KEYS.secret256, pem: KEYS.rsa1Pem }] }, /config\.keys\[0\] must have exactly one of secret, pem and jwk/],
        [{ algorithms: ["RS256"] }, /config\.keys is empty and there is no jwksUri/],
        [{ algorithms: ["RS256"], jwksUri: "http://idp.example.test/jwks" }, /config\.jwksUri is http:\/\/: use HTTPS, or set jwks\.allowHttp/],
        [{ algorithms: ["HS256"], jwksUri: "https://idp.example.test/jwks" }, /config\.algorithms must list the public-key algorithms the JWKS's keys may verify/],
        [{ algorithms: ["none"], keys: [{ secret: KEYS.secret256 }] }, /config\.algorithms holds "none", not one of HS256/],
        [{ ...CONFIG, publicPaths: ["/a/*/b"] }, /config\.publicPaths\[0\] "\/a\/\*\/b" is no path pattern/],
        [{ ...CONFIG, forwardClaims: { authorization: "sub" } }, /config\.forwardClaims sets authorization, the header with the token/],
      ];
      for (const [config, detail] of cases) {
        failedConfig(t, await t.beforeRequest({ headers: bearer(TOKENS.RS256) }, { config }), detail);
      }
    },
  },
} satisfies TestSuite;
