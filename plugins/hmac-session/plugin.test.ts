// Run with `weir-proxy plugin test plugins/hmac-session`.
//
// Requests are signed here as a client would, with the SHA-256 and HMAC below (checked
// against FIPS 180 and RFC 4231 vectors), not with the ctx.crypto the plugin uses; the
// example of docs/plugins.md is checked against signatures Python's hmac computed, and
// plugins/test_shared_limits.py signs in Python against real proxies.
import type { BeforeResult, Json, TestContext, TestRequest, TestSuite } from "weir";

// ---- SHA-256 and HMAC-SHA-256 (FIPS 180-4, RFC 2104), for signing test requests ----

function primes(count: number): number[] {
  const found: number[] = [];
  for (let n = 2; found.length < count; n++) if (found.every((p) => n % p !== 0)) found.push(n);
  return found;
}
const frac = (x: number) => ((x - Math.floor(x)) * 2 ** 32) >>> 0;
const K = primes(64).map((p) => frac(Math.cbrt(p)));
const H0 = primes(8).map((p) => frac(Math.sqrt(p)));
const rotr = (x: number, n: number) => (x >>> n) | (x << (32 - n));

function sha256(data: Uint8Array): Uint8Array {
  const padded = new Uint8Array(((data.length + 72) >> 6) << 6);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor((data.length * 8) / 2 ** 32));
  view.setUint32(padded.length - 4, (data.length * 8) >>> 0);
  const h = new Uint32Array(H0);
  const w = new Uint32Array(64);
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [k, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    [a, b, c, d, e, f, g, k].forEach((x, i) => (h[i] += x));
  }
  const out = new Uint8Array(32);
  h.forEach((x, i) => new DataView(out.buffer).setUint32(4 * i, x));
  return out;
}

const utf8 = (text: string) => new TextEncoder().encode(text);
const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function hmacSha256(key: string | Uint8Array, message: string): Uint8Array {
  let k = typeof key === "string" ? utf8(key) : key;
  if (k.length > 64) k = sha256(k);
  const inner = new Uint8Array(64 + utf8(message).length);
  const outer = new Uint8Array(64 + 32);
  for (let i = 0; i < 64; i++) {
    inner[i] = (k[i] ?? 0) ^ 0x36;
    outer[i] = (k[i] ?? 0) ^ 0x5c;
  }
  inner.set(utf8(message), 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

function base64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

// ---- the fixtures ----

const START = Date.parse("2030-01-01T00:00:00Z");
const NOW = String(START / 1000);
const ID = "sess-0123456789abcdef";
const SECRET = "6Xq0o7kq1cXoJm3q8pJb1uQ2mWZ9f3QeC4yTgq8P0dA";
const USER = { id: "alice", scopes: ["orders:read"] };
const CONFIG = { createPath: "/session", revokePath: "/session" };

/** Stores a session as the plugin does (or another system would, through Redis). */
async function preload(t: TestContext, id = ID, secret = SECRET, user: Json = USER, createdAt: number | null = START) {
  const entry: Json = createdAt === null ? { secret, user } : { secret, user, createdAt };
  await t.cache.set(`session:${id}`, entry, { ttlSeconds: 86400 });
  await t.cache.set(`active:${id}`, t.clock.now(), { ttlSeconds: 3600 });
}

interface Signing {
  id?: string;
  secret?: string;
  timestamp?: string;
  nonce?: string;
  /** The canonical request signed, when not the request's own (to sign something else). */
  canonical?: string;
  encoding?: "hex" | "base64";
}

let nonces = 0;

/** The canonical request as docs/plugins.md defines it, for a request without a query. */
function canonical(method: string, path: string, query: string, timestamp: string, nonce: string, body: string) {
  return [method, path, query, timestamp, nonce, hex(sha256(utf8(body)))].join("\n");
}

/** `request` with the headers of the scheme; its query must already be canonical. */
function signed(request: TestRequest, signing: Signing = {}): TestRequest {
  const timestamp = signing.timestamp ?? NOW;
  const nonce = signing.nonce ?? `nonce-${String(++nonces).padStart(12, "0")}`;
  const body = typeof request.body === "string" ? request.body : request.body === undefined ? "" : JSON.stringify(request.body);
  const text =
    signing.canonical ??
    canonical(request.method ?? "GET", request.path ?? "/", request.query ?? "", timestamp, nonce, body);
  const mac = hmacSha256(signing.secret ?? SECRET, text);
  return {
    ...request,
    headers: {
      ...request.headers,
      authorization: `Session ${signing.id ?? ID}`,
      "x-timestamp": timestamp,
      "x-nonce": nonce,
      "x-signature": signing.encoding === "base64" ? base64(mac) : hex(mac),
    },
  };
}

/** Asserts a 401 with `reason`, and a message matching `message`. */
async function refused(t: TestContext, request: TestRequest, reason: string, message: RegExp, config?: Json) {
  const result = await t.beforeRequest(request, config === undefined ? undefined : { config });
  t.equal(result.outcome, "respond", reason);
  t.equal(result.response?.status, 401, reason);
  t.equal(result.response?.headers["www-authenticate"], 'Session realm="api"');
  t.equal(result.response?.headers["content-type"], "application/json");
  const body = JSON.parse(result.response?.body ?? "{}");
  t.equal(body.error, "unauthorized");
  t.equal(body.reason, reason);
  t.match(body.message, message);
  return result;
}

async function passes(t: TestContext, request: TestRequest, config?: Json): Promise<BeforeResult> {
  const result = await t.beforeRequest(request, config === undefined ? undefined : { config });
  t.equal(result.outcome, "continue", JSON.stringify(result.response ?? result.failure));
  return result;
}

const ORDERS: TestRequest = { method: "GET", path: "/orders" };

export default {
  config: CONFIG,
  tests: {
    async "the test's own SHA-256 and HMAC agree with FIPS 180 and RFC 4231"(t) {
      t.equal(hex(sha256(utf8(""))), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
      t.equal(hex(sha256(utf8("abc"))), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
      t.equal(
        hex(sha256(utf8("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      );
      t.equal(
        hex(hmacSha256("Jefe", "what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
      );
      t.equal(
        hex(hmacSha256(new Uint8Array(131).fill(0xaa), "Test Using Larger Than Block-Size Key - Hash Key First")),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        "a key longer than a block is hashed first",
      );
    },
    async "a signed request passes as the session's user, without its credentials upstream"(t) {
      t.clock.set(START);
      await preload(t);
      const result = await passes(t, signed(ORDERS));
      t.equal(result.patch?.user, USER);
      t.equal(result.patch?.headers.remove, ["authorization", "x-nonce", "x-signature", "x-timestamp"]);
      t.equal(result.patch?.responseHeaders, { set: {}, append: {}, remove: [] });
    },
    async "the example of the guide, signed by Python's hmac"(t) {
      // docs/plugins.md, "hmac-session"; the signatures from
      //   hmac.new(secret, canonical.encode(), hashlib.sha256 / sha384 / sha512).hexdigest()
      t.clock.set(START);
      await preload(t);
      const body = '{"item":"book","qty":2}';
      const text = canonical(
        "POST", "/orders/42/items", "a=1&b=x%20y&b=~", NOW, "3f1c2b5e-9d4a-4c47-8f0e-2a6b1d9c7e55", body,
      );
      t.equal(
        text,
        "POST\n/orders/42/items\na=1&b=x%20y&b=~\n1893456000\n3f1c2b5e-9d4a-4c47-8f0e-2a6b1d9c7e55\n" +
          "6383114cff22e5f82e81e96fbe30c7239424b9ed893e27fea7eb67532aa03fb9",
      );
      const signatures: [string, string][] = [
        ["SHA-256", "69bd2ec0152262d0d57dc1aea1e6e937550048dca77d8fbe0bcb3ccbc5bfbe3f"],
        ["SHA-384", "ef03faac520f18d02d5a2e4200ab3a2561037573500579becb10a33a9286162300af5a02a8fdd4dd5b3f848a2545115e"],
        [
          "SHA-512",
          "51628f8946991f01be9d2d0c812588637727ea20cede39cfdaeab57df8a7fd9b363c0afe22769e452077e0d7458dbdb4e891a1c1e92f7a1d8532c3c5f543b09b",
        ],
      ];
      t.equal(hex(hmacSha256(SECRET, text)), signatures[0][1]);
      for (const [algorithm, signature] of signatures) {
        const request = {
          method: "POST",
          path: "/orders/42/items",
          // Another order and encoding of the same query: the canonical form is the same.
          query: "b=x+y&a=1&b=%7E",
          body,
          headers: {
            authorization: `Session ${ID}`,
            "x-timestamp": NOW,
            "x-nonce": "3f1c2b5e-9d4a-4c47-8f0e-2a6b1d9c7e55",
            "x-signature": signature,
          },
        };
        const config = { ...CONFIG, algorithm };
        await passes(t, request, config);
        await t.cache.delete(`nonce:${ID}:3f1c2b5e-9d4a-4c47-8f0e-2a6b1d9c7e55`);
        if (algorithm !== "SHA-256") {
          await refused(t, request, "signature_mismatch", /does not match/, { ...CONFIG });
        }
      }
    },
    async "a body and a query are signed; upper-case hex and base64 signatures are accepted"(t) {
      t.clock.set(START);
      await preload(t);
      await passes(t, signed({ method: "PUT", path: "/orders/7", query: "a=%2F&z=", body: { qty: 3 } }));
      const request = signed({ method: "POST", path: "/orders", body: "caf\u00e9" });
      await passes(t, { ...request, headers: { ...request.headers, "x-signature": request.headers!["x-signature"].toUpperCase() } });
      await passes(t, signed(ORDERS, { encoding: "base64" }));
      const url = signed(ORDERS, { encoding: "base64" });
      const b64url = url.headers!["x-signature"].replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      await passes(t, { ...url, headers: { ...url.headers, "x-signature": b64url } });
    },
    async "no Session authorization: 401 no_session"(t) {
      t.clock.set(START);
      await preload(t);
      await refused(t, ORDERS, "no_session", /an Authorization: Session <id> header is required/);
      const bearer = signed(ORDERS);
      await refused(t, { ...bearer, headers: { ...bearer.headers, authorization: `Bearer ${ID}` } }, "no_session", /required/);
    },
    async "a missing header of the scheme: 401 missing_header, naming it"(t) {
      t.clock.set(START);
      await preload(t);
      for (const name of ["X-Signature", "X-Timestamp", "X-Nonce"]) {
        const request = signed(ORDERS);
        const headers = { ...request.headers };
        delete headers[name.toLowerCase()];
        await refused(t, { ...request, headers }, "missing_header", new RegExp(`^the ${name} header is required$`));
      }
    },
    async "malformed headers: 401 malformed_header"(t) {
      t.clock.set(START);
      await preload(t);
      const cases: [Record<string, string>, RegExp][] = [
        [{ authorization: "Session short" }, /session id/],
        [{ "x-timestamp": "1893456000.5" }, /X-Timestamp must be Unix time in seconds/],
        [{ "x-timestamp": "2030-01-01T00:00:00Z" }, /X-Timestamp/],
        [{ "x-nonce": "too-short" }, /X-Nonce must be 16 to 128 characters/],
        [{ "x-nonce": "has spaces in it, sixteen+" }, /X-Nonce/],
        [{ "x-signature": "not a signature!" }, /X-Signature must be hex or base64/],
      ];
      for (const [headers, message] of cases) {
        const request = signed(ORDERS);
        await refused(t, { ...request, headers: { ...request.headers, ...headers } }, "malformed_header", message);
      }
    },
    async "a timestamp outside the window, either way: 401 stale_timestamp"(t) {
      t.clock.set(START);
      await preload(t);
      await refused(t, signed(ORDERS, { timestamp: String(START / 1000 - 301) }), "stale_timestamp", /301 s behind the server's clock; at most 300 s are accepted/);
      await refused(t, signed(ORDERS, { timestamp: String(START / 1000 + 301) }), "stale_timestamp", /301 s ahead of the server's clock/);
      await passes(t, signed(ORDERS, { timestamp: String(START / 1000 - 300) }));
      await passes(t, signed(ORDERS, { timestamp: String(START / 1000 + 300) }));
      const request = signed(ORDERS);
      t.clock.advance(300_001);
      await refused(t, request, "stale_timestamp", /300 s behind/);
    },
    async "timestampWindowSeconds sets the window"(t) {
      t.clock.set(START);
      await preload(t);
      const config = { ...CONFIG, timestampWindowSeconds: 30 };
      await refused(t, signed(ORDERS, { timestamp: String(START / 1000 - 31) }), "stale_timestamp", /at most 30 s/, config);
      await passes(t, signed(ORDERS, { timestamp: String(START / 1000 + 30) }), config);
    },
    async "an unknown, idle or malformed session: 401 unknown_session"(t) {
      t.clock.set(START);
      await refused(t, signed(ORDERS), "unknown_session", /does not exist \(expired, revoked or never created\)/);
      await preload(t);
      await t.cache.delete(`active:${ID}`);
      await refused(t, signed(ORDERS), "unknown_session", /does not exist/);
      await preload(t, ID, "");
      t.logs();
      await refused(t, signed(ORDERS), "unknown_session", /does not exist/);
      t.match(t.logs()[0]?.message, /a session entry is not \{secret, user, createdAt\}/);
    },
    async "a signature of anything else: 401 signature_mismatch"(t) {
      t.clock.set(START);
      await preload(t);
      const wrong: TestRequest[] = [
        signed(ORDERS, { secret: "another-secret" }),
        { ...signed(ORDERS), path: "/admin" },
        { ...signed(ORDERS), method: "DELETE" },
        { ...signed(ORDERS), query: "all=1" },
        { ...signed({ method: "POST", path: "/orders", body: "qty=1" }), body: "qty=100" },
      ];
      for (const request of wrong) await refused(t, request, "signature_mismatch", /^the signature does not match the request$/);
      const swapped = signed(ORDERS, { nonce: "nonce-aaaaaaaaaaaa" });
      await refused(t, { ...swapped, headers: { ...swapped.headers, "x-nonce": "nonce-bbbbbbbbbbbb" } }, "signature_mismatch", /does not match/);
      const flipped = signed(ORDERS);
      const signature = flipped.headers!["x-signature"];
      const other = (signature[0] === "0" ? "1" : "0") + signature.slice(1);
      await refused(t, { ...flipped, headers: { ...flipped.headers, "x-signature": other } }, "signature_mismatch", /does not match/);
      // 60 hex digits read as base64 are 45 bytes: not the 32 of an HMAC-SHA-256.
      await refused(t, { ...flipped, headers: { ...flipped.headers, "x-signature": signature.slice(0, 60) } }, "signature_mismatch", /does not match/);
    },
    async "a replayed request: 401 nonce_reused, until its timestamp is out of the window"(t) {
      t.clock.set(START);
      await preload(t);
      const request = signed(ORDERS, { nonce: "replay-me-0123456789" });
      await passes(t, request);
      await refused(t, request, "nonce_reused", /^the nonce was already used$/);
      t.equal(await t.cache.get(`nonce:${ID}:replay-me-0123456789`), 1);
      // The same nonce in another request is refused too.
      await refused(t, signed({ method: "POST", path: "/other" }, { nonce: "replay-me-0123456789" }), "nonce_reused", /already used/);
      t.clock.advance(299_000);
      await refused(t, request, "nonce_reused", /already used/);
      t.clock.advance(2_000);
      t.equal(await t.cache.get(`nonce:${ID}:replay-me-0123456789`), null, "forgotten once the timestamp is stale");
      await refused(t, request, "stale_timestamp", /behind/);
    },
    async "nonces are per session"(t) {
      t.clock.set(START);
      await preload(t);
      await preload(t, "sess-fedcba9876543210", "other-secret", { id: "bob" });
      await passes(t, signed(ORDERS, { nonce: "shared-nonce-000000" }));
      const bob = await passes(t, signed(ORDERS, { id: "sess-fedcba9876543210", secret: "other-secret", nonce: "shared-nonce-000000" }));
      t.equal(bob.patch?.user, { id: "bob" });
    },
    async "a refused signature does not use up its nonce"(t) {
      t.clock.set(START);
      await preload(t);
      await refused(t, signed(ORDERS, { secret: "wrong", nonce: "first-try-00000000" }), "signature_mismatch", /does not match/);
      await passes(t, signed(ORDERS, { nonce: "first-try-00000000" }));
    },
    async "sliding expiry: each use keeps the session for sessionTtlSeconds more"(t) {
      const config = { ...CONFIG, sessionTtlSeconds: 600 };
      t.clock.set(START);
      await preload(t);
      await t.cache.set(`active:${ID}`, START, { ttlSeconds: 600 });
      for (let i = 1; i <= 5; i++) {
        t.clock.set(START + i * 500_000);
        await passes(t, signed(ORDERS, { timestamp: String(t.clock.now() / 1000) }), config);
        t.equal(await t.cache.get(`active:${ID}`), t.clock.now());
      }
      t.clock.advance(600_000);
      await refused(t, signed(ORDERS, { timestamp: String(t.clock.now() / 1000) }), "unknown_session", /does not exist/, config);
    },
    async "the idle entry is written at most once per refresh interval"(t) {
      // sessionTtlSeconds 600: refreshed when a minute old.
      const config = { ...CONFIG, sessionTtlSeconds: 600 };
      t.clock.set(START);
      await preload(t);
      t.clock.advance(59_000);
      await passes(t, signed(ORDERS, { timestamp: String(t.clock.now() / 1000) }), config);
      t.equal(await t.cache.get(`active:${ID}`), START);
      t.clock.advance(1_000);
      await passes(t, signed(ORDERS, { timestamp: String(t.clock.now() / 1000) }), config);
      t.equal(await t.cache.get(`active:${ID}`), START + 60_000);
    },
    async "a session ends sessionMaxAgeSeconds after its creation, used or not"(t) {
      const config = { ...CONFIG, sessionMaxAgeSeconds: 1000 };
      t.clock.set(START);
      await preload(t, ID, SECRET, USER, START - 990_000);
      await passes(t, signed(ORDERS), config);
      t.clock.advance(10_000);
      await refused(t, signed(ORDERS, { timestamp: String(t.clock.now() / 1000) }), "unknown_session", /does not exist/, config);
    },
    async "a session another system wrote without createdAt has no maximum age"(t) {
      t.clock.set(START);
      await preload(t, ID, SECRET, "alice", null);
      const result = await passes(t, signed(ORDERS));
      t.equal(result.patch?.user, "alice");
    },
    async "POST createPath creates a session for the identified client, which then signs"(t) {
      t.clock.set(START);
      const result = await t.beforeRequest({ method: "POST", path: "/session", user: { id: "ci", scopes: [] } });
      t.equal(result.outcome, "respond");
      t.equal(result.response?.status, 201);
      t.equal(result.response?.rejected, false);
      t.equal(result.response?.headers["cache-control"], "no-store");
      t.equal(result.response?.headers["content-type"], "application/json");
      const session = JSON.parse(result.response?.body ?? "{}");
      t.match(session.sessionId, /^[A-Za-z0-9_-]{24}$/);
      t.match(session.secret, /^[A-Za-z0-9_-]{43}$/);
      t.equal(session.algorithm, "SHA-256");
      t.equal(session.idleTimeoutSeconds, 3600);
      t.equal(session.expiresAt, "2030-01-02T00:00:00.000Z");
      t.equal(await t.cache.get(`session:${session.sessionId}`), { createdAt: START, secret: session.secret, user: { id: "ci", scopes: [] } });
      t.clock.advance(5_000);
      const used = await passes(t, signed(ORDERS, { id: session.sessionId, secret: session.secret, timestamp: String(t.clock.now() / 1000) }));
      t.equal(used.patch?.user, { id: "ci", scopes: [] });
      const other = await t.beforeRequest({ method: "POST", path: "/session", user: "ci" });
      t.notEqual(JSON.parse(other.response?.body ?? "{}").sessionId, session.sessionId);
    },
    async "POST createPath without an identity: 401 no_identity"(t) {
      t.clock.set(START);
      await refused(t, { method: "POST", path: "/session" }, "no_identity", /needs a client identified by an earlier plugin/);
    },
    async "without createPath, a POST there is an ordinary request"(t) {
      t.clock.set(START);
      await refused(t, { method: "POST", path: "/session", user: "ci" }, "no_session", /required/, {});
    },
    async "a signed DELETE revokePath ends the session"(t) {
      t.clock.set(START);
      await preload(t);
      await refused(t, { method: "DELETE", path: "/session" }, "no_session", /required/);
      const result = await t.beforeRequest(signed({ method: "DELETE", path: "/session" }));
      t.equal(result.outcome, "respond");
      t.equal(result.response?.status, 204);
      t.equal(result.response?.body, "");
      t.equal(await t.cache.get(`session:${ID}`), null);
      t.equal(await t.cache.get(`active:${ID}`), null);
      await refused(t, signed(ORDERS), "unknown_session", /does not exist/);
    },
    async "without revokePath, a signed DELETE goes upstream"(t) {
      t.clock.set(START);
      await preload(t);
      await passes(t, signed({ method: "DELETE", path: "/session" }), { createPath: "/session" });
      await passes(t, signed(ORDERS));
    },
    async "the realm of WWW-Authenticate"(t) {
      const result = await t.beforeRequest(ORDERS, { config: { realm: "orders" } });
      t.equal(result.response?.headers["www-authenticate"], 'Session realm="orders"');
    },
    async "a body too large to hash: 413"(t) {
      t.clock.set(START);
      await preload(t);
      const result = await t.beforeRequest(signed({ method: "POST", path: "/upload", body: "x".repeat(70_000) }));
      t.equal(result.response?.status, 413);
      t.equal(JSON.parse(result.response?.body ?? "{}"), {
        error: "body_too_large",
        message: "the body is too large to verify its signature",
      });
    },
    async "a bad config fails the hook, naming the field"(t) {
      const cases: [Json, RegExp][] = [
        [{ algorithm: "MD5" }, /config\.algorithm must be SHA-256, SHA-384 or SHA-512/],
        [{ timestampWindowSeconds: 0 }, /config\.timestampWindowSeconds must be a positive integer/],
        [{ sessionTtlSeconds: "1h" }, /config\.sessionTtlSeconds must be a positive integer/],
        [{ createPath: "session" }, /config\.createPath must be a path starting with \//],
      ];
      for (const [config, reason] of cases) {
        const result = await t.beforeRequest(ORDERS, { config });
        t.equal(result.outcome, "failed", JSON.stringify(config));
        t.match(result.failure?.detail, reason);
      }
    },
  },
} satisfies TestSuite;
