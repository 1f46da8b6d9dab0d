// Run with `weir-proxy plugin test plugins/jwt-auth`.
//
// Keys from the issuer's JWKS, fetched through ctx.services.http (answered here by
// t.fetch stubs): caching in ctx.services.cache with its TTL, refresh on an unknown kid
// (rate-limited), rotation, failures, stale keys. The JWKS state in module memory lives
// as long as the plugin's isolate, which outlives a test, so each test uses a JWKS URL
// of its own.
import type { BeforeResult, Json, TestContext, TestSuite } from "weir";
import { AUDIENCE, ISSUER, JWKS, KEYS, SPECIAL, TOKENS } from "./fixtures";

const url = (name: string) => `https://idp.example.test/${name}/jwks.json`;

function config(name: string, extra: { [key: string]: Json } = {}): Json {
  return {
    algorithms: ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
    jwksUri: url(name),
    issuers: [ISSUER],
    audiences: [AUDIENCE],
    ...extra,
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function call(t: TestContext, token: string, cfg: Json): Promise<BeforeResult> {
  return t.beforeRequest({ path: "/orders", headers: bearer(token) }, { config: cfg });
}

async function passes(t: TestContext, token: string, cfg: Json, message?: string) {
  const result = await call(t, token, cfg);
  t.equal(result.outcome, "continue", `${message ?? "expected a pass"}: ${result.response?.body ?? result.failure?.detail}`);
  t.equal((result.patch?.user as { id: Json } | null)?.id, "alice");
}

async function refused(t: TestContext, token: string, cfg: Json, message: RegExp) {
  const result = await call(t, token, cfg);
  t.equal(result.response?.status, 401, `expected 401 (${message})`);
  t.match(JSON.parse(result.response?.body ?? "{}").message, message);
  t.match(result.response?.headers["www-authenticate"], /^Bearer realm="api", error="invalid_token", error_description=/);
}

const fetches = (t: TestContext) => t.fetch.calls().length;

const MINUTE = 60_000;

export default {
  plugin: "plugin.ts",
  // What onLoad checks; every test gives its own.
  config: config("suite"),
  tests: {
    async "keys come from the JWKS: fetched once, then from memory"(t) {
      const cfg = config("once");
      t.fetch.stub(url("once"), { body: JWKS.initial });
      for (const alg of ["RS256", "PS256", "ES256", "ES384", "EdDSA"] as const) await passes(t, TOKENS[alg], cfg, alg);
      const calls = t.fetch.calls();
      t.equal(calls.length, 1);
      t.equal(calls[0].url, url("once"));
      t.equal(calls[0].method, "GET");
      t.equal(calls[0].headers.accept, "application/json");
      t.equal(calls[0].timeoutMs, 1500);
    },
    async "the set is shared through the cache, with its expiry"(t) {
      t.fetch.stub(url("cached"), { body: JWKS.initial, headers: { "cache-control": "public, max-age=600" } });
      await passes(t, TOKENS.RS256, config("cached"));
      const entry = await t.cache.get<{ keys: { kid: string | null; kind: string; alg: string | null; jwk: string }[]; fetchedAt: number; expiresAt: number }>(`jwks:${url("cached")}`);
      t.ok(entry !== null, "cached");
      t.equal(entry!.expiresAt - entry!.fetchedAt, 600_000, "fresh for the max-age");
      t.equal(entry!.fetchedAt, t.clock.now());
      // Signing keys only (no oct, enc, short RSA or secp256k1 key), public members only.
      t.equal(entry!.keys.map((k) => [k.kid, k.kind]), [["rsa-1", "RSA"], ["ec-256", "P-256"], ["ec-384", "P-384"], ["ed-1", "Ed25519"]]);
      t.equal(Object.keys(JSON.parse(entry!.keys[0].jwk)).sort(), ["e", "kty", "n"]);
    },
    async "a set another isolate (or replica) cached is used without fetching"(t) {
      const now = t.clock.now();
      await t.cache.set(`jwks:${url("preloaded")}`, {
        keys: [{ kid: "rsa-1", kind: "RSA", alg: null, jwk: JSON.stringify(KEYS.rsa1Jwk) }],
        fetchedAt: now - MINUTE,
        expiresAt: now + 10 * MINUTE,
      });
      await passes(t, TOKENS.RS256, config("preloaded"));
      t.equal(fetches(t), 0);
      // An entry of another shape is ignored, and the set fetched.
      await t.cache.set(`jwks:${url("garbled")}`, { keys: "no", fetchedAt: now, expiresAt: now + MINUTE });
      t.fetch.stub(url("garbled"), { body: JWKS.initial });
      await passes(t, TOKENS.RS256, config("garbled"));
      t.equal(fetches(t), 1);
    },
    async "an unknown kid refreshes the set once; another within minRefreshIntervalSeconds does not"(t) {
      const cfg = config("unknown");
      t.fetch.stub(url("unknown"), { body: JWKS.initial });
      await passes(t, TOKENS.RS256, cfg);
      t.equal(fetches(t), 1);
      t.clock.advance(31_000);
      await refused(t, SPECIAL.unknownKid, cfg, /^no key matches the token's kid and alg$/);
      t.equal(fetches(t), 2, "the unknown kid refreshed the set");
      t.clock.advance(10_000);
      await refused(t, SPECIAL.unknownKid2, cfg, /^no key matches the token's kid and alg$/);
      await refused(t, SPECIAL.unknownKid, cfg, /^no key matches/);
      t.equal(fetches(t), 2, "not again within the interval");
      // Known keys still pass meanwhile, without fetching.
      await passes(t, TOKENS.ES384, cfg);
      t.equal(fetches(t), 2);
      t.clock.advance(21_000);
      await refused(t, SPECIAL.unknownKid2, cfg, /^no key matches/);
      t.equal(fetches(t), 3, "the interval is over");
    },
    async "key rotation: a kid the issuer published since is picked up"(t) {
      const cfg = config("rotation");
      t.fetch.stub(url("rotation"), { body: JWKS.initial });
      await passes(t, TOKENS.RS256, cfg);
      // rsa-2 appears right after the first fetch: not fetched again so soon.
      t.fetch.stub(url("rotation"), { body: JWKS.rotated });
      await refused(t, SPECIAL.rs256Rotated, cfg, /^no key matches/);
      t.equal(fetches(t), 1);
      t.clock.advance(30_000);
      await passes(t, SPECIAL.rs256Rotated, cfg, "rsa-2 after the refresh");
      t.equal(fetches(t), 2);
      await passes(t, TOKENS.RS256, cfg, "rsa-1 still published");
      // The refreshed set replaced the cached one.
      const entry = await t.cache.get<{ keys: { kid: string }[] }>(`jwks:${url("rotation")}`);
      t.equal(entry?.keys.map((k) => k.kid), ["rsa-1", "rsa-2"]);
    },
    async "the refresh for an unknown kid is taken once per interval across isolates (cache.add)"(t) {
      const now = t.clock.now();
      const entry = { keys: [{ kid: "rsa-1", kind: "RSA", alg: null, jwk: JSON.stringify(KEYS.rsa1Jwk) }], fetchedAt: now - MINUTE, expiresAt: now + 10 * MINUTE };
      // Another isolate refreshed a moment ago and holds the lock.
      await t.cache.set(`jwks:${url("locked")}`, entry);
      await t.cache.set(`jwks-refresh:${url("locked")}`, now, { ttlSeconds: 30 });
      t.fetch.stub(url("locked"), { body: JWKS.rotated });
      await refused(t, SPECIAL.rs256Rotated, config("locked"), /^no key matches/);
      t.equal(fetches(t), 0);
      // Without the lock, this isolate refreshes, and takes the lock.
      await t.cache.set(`jwks:${url("unlocked")}`, entry);
      t.fetch.stub(url("unlocked"), { body: JWKS.rotated });
      await passes(t, SPECIAL.rs256Rotated, config("unlocked"));
      t.equal(fetches(t), 1);
      t.equal(await t.cache.get(`jwks-refresh:${url("unlocked")}`), now);
      // Another isolate seeing the lock adopts the set this one cached.
      await t.cache.set(`jwks:${url("adopt")}`, entry);
      await passes(t, TOKENS.RS256, config("adopt"));
      await t.cache.set(`jwks:${url("adopt")}`, { ...entry, keys: [...entry.keys, { kid: "rsa-2", kind: "RSA", alg: null, jwk: JSON.stringify(KEYS.rsa2Jwk) }], fetchedAt: now });
      await t.cache.set(`jwks-refresh:${url("adopt")}`, now, { ttlSeconds: 30 });
      await passes(t, SPECIAL.rs256Rotated, config("adopt"));
      t.equal(fetches(t), 1);
    },
    async "the set expires after Cache-Control max-age, and is fetched again"(t) {
      const cfg = config("maxage");
      t.fetch.stub(url("maxage"), { body: JWKS.initial, headers: { "cache-control": "max-age=120" } });
      await passes(t, TOKENS.RS256, cfg);
      t.clock.advance(119_000);
      await passes(t, TOKENS.RS256, cfg);
      t.equal(fetches(t), 1, "still fresh");
      t.clock.advance(1_000);
      await passes(t, TOKENS.RS256, cfg);
      t.equal(fetches(t), 2, "expired");
    },
    async "without max-age the set is fresh for 300 s; ttlSeconds overrides max-age"(t) {
      t.fetch.stub(url("default-ttl"), { body: JWKS.initial });
      await passes(t, TOKENS.ES256, config("default-ttl"));
      t.clock.advance(299_000);
      await passes(t, TOKENS.ES256, config("default-ttl"));
      t.equal(fetches(t), 1);
      t.clock.advance(1_000);
      await passes(t, TOKENS.ES256, config("default-ttl"));
      t.equal(fetches(t), 2);

      const cfg = config("ttl", { jwks: { ttlSeconds: 45 } });
      t.fetch.stub(url("ttl"), { body: JWKS.initial, headers: { "cache-control": "max-age=86400" } });
      await passes(t, TOKENS.ES256, cfg);
      t.clock.advance(45_000);
      await passes(t, TOKENS.ES256, cfg);
      t.equal(fetches(t), 4);
    },
    async "max-age is held between minRefreshIntervalSeconds and a day; no-store counts as 0"(t) {
      t.fetch.stub(url("no-store"), { body: JWKS.initial, headers: { "cache-control": "no-store" } });
      await passes(t, TOKENS.ES256, config("no-store"));
      t.clock.advance(29_000);
      await passes(t, TOKENS.ES256, config("no-store"));
      t.equal(fetches(t), 1, "not fetched on every request");
      t.clock.advance(1_000);
      await passes(t, TOKENS.ES256, config("no-store"));
      t.equal(fetches(t), 2);
    },
    async "a JWKS that cannot be fetched: 503 with Retry-After, or 401 with onError unauthorized"(t) {
      const failures: [string, { [key: string]: Json }][] = [
        ["down", { error: "connection refused" }],
        ["500", { status: 500, body: "oops" }],
        ["redirect", { status: 302, headers: { location: "https://elsewhere.example/jwks" } }],
        ["not-json", { body: "<html>" }],
        ["no-keys", { body: { issuer: ISSUER } }],
      ];
      for (const [name, stub] of failures) {
        t.fetch.stub(url(name), stub);
        const result = await call(t, TOKENS.RS256, config(name));
        t.equal(result.response?.status, 503, name);
        t.equal(result.response?.headers["retry-after"], "30", name);
        t.equal(result.response?.headers["www-authenticate"], undefined);
        t.equal(JSON.parse(result.response?.body ?? "{}"), { error: "unavailable", message: "the keys to check the token could not be fetched" }, name);
        t.match(t.logs().map((l) => `${l.level} ${l.message}`).join("\n"), new RegExp(`warn jwt-auth: fetching the JWKS at ${url(name).replace(/[./]/g, "\\$&")} failed`), name);
      }
      t.fetch.stub(url("down-401"), { error: "connection refused" });
      await refused(t, TOKENS.RS256, config("down-401", { jwks: { onError: "unauthorized" } }), /^the keys to check the token could not be fetched$/);
    },
    async "a failed fetch is not retried within the interval"(t) {
      const cfg = config("flaky");
      t.fetch.stub(url("flaky"), { error: "timed out" });
      t.equal((await call(t, TOKENS.RS256, cfg)).response?.status, 503);
      t.fetch.stub(url("flaky"), { body: JWKS.initial });
      t.clock.advance(29_000);
      t.equal((await call(t, TOKENS.RS256, cfg)).response?.status, 503);
      t.equal(fetches(t), 1, "the issuer is not hammered");
      t.clock.advance(1_000);
      await passes(t, TOKENS.RS256, cfg);
      t.equal(fetches(t), 2);
    },
    async "a set that cannot be refreshed is used up to maxStaleSeconds past its expiry"(t) {
      const cfg = config("stale", { jwks: { ttlSeconds: 60, maxStaleSeconds: 600 } });
      t.fetch.stub(url("stale"), { body: JWKS.initial });
      await passes(t, TOKENS.RS256, cfg);
      t.fetch.stub(url("stale"), { status: 503 });
      t.clock.advance(61_000);
      await passes(t, TOKENS.RS256, cfg, "stale keys kept");
      t.equal(fetches(t), 2);
      t.match(t.logs().map((l) => JSON.stringify(l.fields)).join("\n"), /"keptKeys":true/);
      t.clock.advance(598_000); // 659 s after the fetch
      await passes(t, TOKENS.RS256, cfg, "still within maxStaleSeconds");
      t.clock.advance(2_000);
      t.equal((await call(t, TOKENS.RS256, cfg)).response?.status, 503, "too stale");
      // maxStaleSeconds 0: an expired set is not used.
      const strict = config("strict", { jwks: { ttlSeconds: 60, maxStaleSeconds: 0 } });
      t.fetch.stub(url("strict"), { body: JWKS.initial });
      await passes(t, TOKENS.RS256, strict);
      t.fetch.stub(url("strict"), { error: "down" });
      t.clock.advance(60_000);
      t.equal((await call(t, TOKENS.RS256, strict)).response?.status, 503);
    },
    async "an oct key of the JWKS never verifies an HS256 token"(t) {
      t.fetch.stub(url("oct"), { body: JWKS.initial });
      const cfg = config("oct", { algorithms: ["RS256", "HS256"], keys: [{ kid: "hs-256", secret: KEYS.secret256 }] });
      await refused(t, SPECIAL.hs256WithJwksOct, cfg, /^no key matches the token's kid and alg$/);
      t.equal(fetches(t), 0, "HS* never reads the JWKS");
      await passes(t, TOKENS.HS256, cfg, "a configured secret verifies, without fetching");
      t.equal(fetches(t), 0);
    },
    async "encryption keys, short RSA keys and unknown curves of the JWKS are skipped"(t) {
      t.fetch.stub(url("skipped"), { body: JWKS.initial });
      await refused(t, SPECIAL.rs256ShortKey, config("skipped"), /^no key matches the token's kid and alg$/);
    },
    async "a JWK's alg pins its key to that algorithm"(t) {
      t.fetch.stub(url("pinned"), { body: JWKS.pinned });
      await passes(t, TOKENS.RS256, config("pinned"));
      await refused(t, TOKENS.PS256, config("pinned"), /^no key matches the token's kid and alg$/);
    },
    async "the JWKS's algorithms are the allow-list's"(t) {
      t.fetch.stub(url("allow"), { body: JWKS.initial });
      await refused(t, TOKENS.PS256, config("allow", { algorithms: ["RS256"] }), /^the algorithm PS256 is not allowed$/);
      await refused(t, TOKENS.EdDSA, config("allow", { algorithms: ["RS256", "ES256"] }), /^the algorithm EdDSA is not allowed$/);
    },
    async "a token without kid is tried against the JWKS keys of its algorithm's kind"(t) {
      t.fetch.stub(url("nokid"), { body: JWKS.noKids });
      await passes(t, SPECIAL.rs256NoKid, config("nokid"));
      await refused(t, TOKENS.RS256, config("nokid"), /^no key matches/); // kid rsa-1, keys without kid
      t.fetch.stub(url("kids"), { body: JWKS.rotated });
      await passes(t, SPECIAL.rs256NoKid, config("kids"));
    },
    async "a forged token whose kid is in the JWKS is refused without refreshing"(t) {
      t.fetch.stub(url("forged"), { body: JWKS.initial });
      await passes(t, TOKENS.RS256, config("forged"));
      t.clock.advance(MINUTE);
      await refused(t, SPECIAL.forgedRs256, config("forged"), /^the token's signature is not valid$/);
      await refused(t, SPECIAL.forgedEs256, config("forged"), /^the token's signature is not valid$/);
      t.equal(fetches(t), 1);
    },
    async "configured keys are tried first, the JWKS after"(t) {
      t.fetch.stub(url("both"), { body: JWKS.rotated });
      const cfg = config("both", { keys: [{ kid: "rsa-1", pem: KEYS.rsa1Pem }] });
      await passes(t, TOKENS.RS256, cfg);
      t.equal(fetches(t), 0);
      await passes(t, SPECIAL.rs256Rotated, cfg);
      t.equal(fetches(t), 1);
    },
    async "concurrent requests of an isolate share one fetch"(t) {
      t.fetch.stub(url("concurrent"), { body: JWKS.initial });
      const cfg = config("concurrent");
      const results = await Promise.all([call(t, TOKENS.RS256, cfg), call(t, TOKENS.ES256, cfg), call(t, TOKENS.EdDSA, cfg)]);
      t.equal(results.map((r) => r.outcome), ["continue", "continue", "continue"]);
      t.equal(fetches(t), 1);
    },
    async "an http:// jwksUri needs jwks.allowHttp"(t) {
      const cfg = { ...(config("x") as object), jwksUri: "http://idp.internal/jwks.json", jwks: { allowHttp: true } };
      t.fetch.stub("http://idp.internal/jwks.json", { body: JWKS.initial });
      await passes(t, TOKENS.RS256, cfg);
      const refusedConfig = await t.beforeRequest({ headers: bearer(TOKENS.RS256) }, { config: { ...cfg, jwks: {} } });
      t.equal(refusedConfig.outcome, "failed");
      t.match(refusedConfig.failure?.detail, /config\.jwksUri is http:\/\/: use HTTPS, or set jwks\.allowHttp/);
    },
    async "jwks.timeoutMs bounds the fetch"(t) {
      t.fetch.stub(url("timeout"), { body: JWKS.initial });
      await passes(t, TOKENS.RS256, config("timeout", { jwks: { timeoutMs: 250 } }));
      t.equal(t.fetch.calls()[0].timeoutMs, 250);
    },
  },
} satisfies TestSuite;
