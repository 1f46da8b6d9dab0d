// hmac-session: lets in requests signed with the secret of a session, so a client proves
// on every request that it holds the secret without ever sending it:
//
//   Authorization: Session <session id>
//   X-Timestamp: <Unix seconds>
//   X-Nonce: <16 to 128 characters of A-Z a-z 0-9 - _ . ~ + / =, new for each request>
//   X-Signature: hex (or base64) HMAC-SHA-256(secret, canonical request)
//
// The canonical request is six lines joined by "\n" (no final newline): the method in
// upper case; the path (as the proxy normalizes it); the query, its pairs decoded (`+` is
// a space), percent-encoded again as RFC 3986 does (all but A-Z a-z 0-9 - _ . ~), sorted
// by name then value and joined by `&`; the X-Timestamp value; the X-Nonce value; the hex
// SHA-256 of the body's bytes (of nothing when there is none). docs/plugins.md has an
// example to check a client against.
//
// A request is refused (401, JSON naming the reason) unless its timestamp is within
// `timestampWindowSeconds` of the proxy's clock (either way), its session is in the cache,
// its signature matches (compared in constant time), and its nonce was never seen for the
// session: nonces are recorded with the cache's atomic `add` until their timestamp leaves
// the window, so a replay is refused by every proxy sharing the cache (Redis).
//
// A session is two cache entries: `session:<id>` = `{"secret", "user", "createdAt"}`,
// which lives `sessionMaxAgeSeconds` at most, and `active:<id>` = the time it was last
// used, which expires after `sessionTtlSeconds` without use (re-written at most once a
// minute). Both must be there. With `createPath`, a POST there by a client an earlier
// plugin identified (`ctx.user`, e.g. from api-key or jwt-auth) creates a session for that
// identity and answers its id and secret; with `revokePath`, a signed DELETE there ends the
// session. The session's `user` becomes `ctx.user`; the credentials never go upstream.
import type { Context, Json, Plugin } from "weir";
import { fail, memoizeByConfig, positiveInteger } from "./config";

type Algorithm = "SHA-256" | "SHA-384" | "SHA-512";

interface Config {
  /** The HMAC's hash (default `SHA-256`). */
  algorithm?: Algorithm;
  /** How far X-Timestamp may be from the proxy's clock, either way (default 300). */
  timestampWindowSeconds?: number;
  /** A session ends after this long without a request (default 3600). */
  sessionTtlSeconds?: number;
  /** A session ends this long after it was created, used or not (default 86400). */
  sessionMaxAgeSeconds?: number;
  /** A POST here, by a client an earlier plugin identified, creates a session (unset: none). */
  createPath?: string;
  /** A signed DELETE here ends the session it is signed with (unset: none). */
  revokePath?: string;
  /** The realm of `WWW-Authenticate` (default `api`). */
  realm?: string;
}

interface Parsed {
  algorithm: Algorithm;
  digestBytes: number;
  windowSeconds: number;
  ttlSeconds: number;
  maxAgeSeconds: number;
  /** How long `active:<id>` is left alone before it is written again, in ms. */
  refreshMs: number;
  createPath: string | null;
  revokePath: string | null;
  challenge: string;
}

interface Session {
  secret: string;
  user: Json;
  createdAt: number | null;
}

const ALGORITHMS: Record<Algorithm, number> = { "SHA-256": 32, "SHA-384": 48, "SHA-512": 64 };
const SESSION_ID = /^[A-Za-z0-9_-]{16,128}$/;
const NONCE = /^[A-Za-z0-9\-_.~+/=]{16,128}$/;
const TIMESTAMP = /^\d{1,12}$/;
const HEX = /^[0-9a-fA-F]+$/;
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;
/** Headers of the scheme, never sent upstream. */
const CREDENTIALS = ["authorization", "x-signature", "x-timestamp", "x-nonce"];
const PLUGIN = "hmac-session";

function path(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string" || !value.startsWith("/")) fail(PLUGIN, `${field} must be a path starting with /`);
  return value;
}

function parse(config: Config): Parsed {
  const algorithm = config.algorithm ?? "SHA-256";
  if (!Object.hasOwn(ALGORITHMS, algorithm)) {
    fail(PLUGIN, `algorithm must be SHA-256, SHA-384 or SHA-512, not ${JSON.stringify(algorithm)}`);
  }
  const ttlSeconds = positiveInteger(PLUGIN, config.sessionTtlSeconds, "sessionTtlSeconds", 3600);
  const realm = (config.realm ?? "api").replace(/["\\]/g, "");
  return {
    algorithm,
    digestBytes: ALGORITHMS[algorithm],
    windowSeconds: positiveInteger(PLUGIN, config.timestampWindowSeconds, "timestampWindowSeconds", 300),
    ttlSeconds,
    maxAgeSeconds: positiveInteger(PLUGIN, config.sessionMaxAgeSeconds, "sessionMaxAgeSeconds", 86400),
    refreshMs: Math.min(60, ttlSeconds / 10) * 1000,
    createPath: path(config.createPath, "createPath"),
    revokePath: path(config.revokePath, "revokePath"),
    challenge: `Session realm="${realm}"`,
  };
}

const settings = memoizeByConfig(parse);

/** Percent-encoding of RFC 3986: every byte but the unreserved characters, upper-case hex. */
function encode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The canonical query: pairs decoded, re-encoded, sorted by name then value. */
function canonicalQuery(rawQuery: string): string {
  const pairs: [string, string][] = [];
  for (const [name, value] of new URLSearchParams(rawQuery)) pairs.push([encode(name), encode(value)]);
  pairs.sort(([n1, v1], [n2, v2]) => (n1 < n2 ? -1 : n1 > n2 ? 1 : v1 < v2 ? -1 : v1 > v2 ? 1 : 0));
  return pairs.map(([name, value]) => `${name}=${value}`).join("&");
}

/** The signature's bytes, from hex or base64 (either alphabet, padded or not); null when neither. */
function signatureBytes(ctx: Context<Config>, text: string, digestBytes: number): Uint8Array | null {
  try {
    if (HEX.test(text) && text.length === digestBytes * 2) return ctx.crypto.decode(text, "hex");
    if (!BASE64.test(text)) return null;
    return ctx.crypto.decode(text.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, ""), "base64url");
  } catch {
    return null;
  }
}

function refuse(ctx: Context<Config>, s: Parsed, reason: string, message: string) {
  return ctx.reject(401, { error: "unauthorized", message, reason }, { "www-authenticate": s.challenge });
}

/** The session's cache entries as a session, or null (with a warning when malformed). */
function sessionOf(ctx: Context<Config>, entry: unknown): Session | null {
  if (entry === null || entry === undefined) return null;
  const value = entry as { secret?: unknown; user?: Json; createdAt?: unknown };
  if (typeof value !== "object" || typeof value.secret !== "string" || value.secret === "") {
    ctx.log.warn("hmac-session: a session entry is not {secret, user, createdAt}; it is refused");
    return null;
  }
  return {
    secret: value.secret,
    user: value.user ?? null,
    createdAt: typeof value.createdAt === "number" ? value.createdAt : null,
  };
}

/** POST createPath: a session for the identity an earlier plugin found. */
async function create(ctx: Context<Config>, s: Parsed) {
  const user = ctx.user;
  if (user === undefined || user === null) {
    return refuse(ctx, s, "no_identity", "creating a session needs a client identified by an earlier plugin");
  }
  const id = ctx.crypto.randomBytes(18, "base64url");
  const secret = ctx.crypto.randomBytes(32, "base64url");
  const now = Date.now();
  const cache = ctx.services.cache;
  await cache.set(`session:${id}`, { secret, user, createdAt: now }, { ttlSeconds: s.maxAgeSeconds });
  await cache.set(`active:${id}`, now, { ttlSeconds: Math.min(s.ttlSeconds, s.maxAgeSeconds) });
  ctx.response.status = 201;
  ctx.response.headers.set("cache-control", "no-store");
  ctx.response.setBody({
    sessionId: id,
    secret,
    algorithm: s.algorithm,
    idleTimeoutSeconds: s.ttlSeconds,
    expiresAt: new Date(now + s.maxAgeSeconds * 1000).toISOString(),
  });
}

async function verify(ctx: Context<Config>, s: Parsed) {
  const headers = ctx.request.headers;
  const auth = /^session +(\S+)\s*$/i.exec(headers["authorization"] ?? "");
  if (auth === null) return refuse(ctx, s, "no_session", "an Authorization: Session <id> header is required");
  const id = auth[1];
  for (const name of ["X-Signature", "X-Timestamp", "X-Nonce"]) {
    if (!headers[name.toLowerCase()]) return refuse(ctx, s, "missing_header", `the ${name} header is required`);
  }
  const timestamp = headers["x-timestamp"];
  const nonce = headers["x-nonce"];
  if (!SESSION_ID.test(id)) return refuse(ctx, s, "malformed_header", "the session id must be 16 to 128 characters of A-Z a-z 0-9 - _");
  if (!TIMESTAMP.test(timestamp)) return refuse(ctx, s, "malformed_header", "X-Timestamp must be Unix time in seconds");
  if (!NONCE.test(nonce)) {
    return refuse(ctx, s, "malformed_header", "X-Nonce must be 16 to 128 characters of A-Z a-z 0-9 - _ . ~ + / =");
  }
  const signature = signatureBytes(ctx, headers["x-signature"], s.digestBytes);
  if (signature === null) return refuse(ctx, s, "malformed_header", "X-Signature must be hex or base64");

  const now = Date.now();
  const skew = Number(timestamp) - now / 1000;
  if (Math.abs(skew) > s.windowSeconds) {
    return refuse(
      ctx,
      s,
      "stale_timestamp",
      `X-Timestamp is ${Math.round(Math.abs(skew))} s ${skew < 0 ? "behind" : "ahead of"} the server's clock; at most ${s.windowSeconds} s are accepted`,
    );
  }

  const cache = ctx.services.cache;
  const [entry, active] = await Promise.all([cache.get(`session:${id}`), cache.get(`active:${id}`)]);
  const session = active === null ? null : sessionOf(ctx, entry);
  if (session === null || (session.createdAt !== null && now >= session.createdAt + s.maxAgeSeconds * 1000)) {
    return refuse(ctx, s, "unknown_session", "the session does not exist (expired, revoked or never created)");
  }

  let body: Uint8Array;
  try {
    body = await ctx.request.bytes();
  } catch (error) {
    ctx.log.info("hmac-session: the body is too large to verify", { error: String(error) });
    return ctx.reject(413, { error: "body_too_large", message: "the body is too large to verify its signature" });
  }
  const canonical = [
    ctx.request.method.toUpperCase(),
    ctx.request.path,
    canonicalQuery(ctx.request.rawQuery),
    timestamp,
    nonce,
    ctx.crypto.sha256(body, "hex"),
  ].join("\n");
  const expected = ctx.crypto.hmac(s.algorithm, session.secret, canonical);
  if (!ctx.crypto.timingSafeEqual(expected, signature)) {
    return refuse(ctx, s, "signature_mismatch", "the signature does not match the request");
  }

  // Remembered until the timestamp leaves the window: later, the timestamp refuses it.
  const nonceTtl = Number(timestamp) + s.windowSeconds - now / 1000 + 1;
  if (!(await cache.add(`nonce:${id}:${nonce}`, 1, { ttlSeconds: nonceTtl }))) {
    return refuse(ctx, s, "nonce_reused", "the nonce was already used");
  }

  if (ctx.request.method === "DELETE" && ctx.request.path === s.revokePath) {
    await cache.delete(`session:${id}`);
    await cache.delete(`active:${id}`);
    ctx.response.status = 204;
    return;
  }
  // Sliding expiry, written at most once per refresh interval. Were a revocation to race
  // with this, `active:` would come back alone, and a session needs both entries.
  if (typeof active !== "number" || now - active >= s.refreshMs) {
    let ttlSeconds = s.ttlSeconds;
    if (session.createdAt !== null) ttlSeconds = Math.min(ttlSeconds, (session.createdAt + s.maxAgeSeconds * 1000 - now) / 1000);
    await cache.set(`active:${id}`, now, { ttlSeconds });
  }
  for (const name of CREDENTIALS) ctx.upstream.headers.delete(name);
  ctx.user = session.user;
  ctx.state["hmacSession.id"] = id;
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    const s = settings(ctx);
    if (ctx.request.method === "POST" && ctx.request.path === s.createPath) return create(ctx, s);
    return verify(ctx, s);
  },
} satisfies Plugin<Config>;
