// rate-limit: refuses requests beyond a rate, with 429, `Retry-After` and the IETF
// `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers-09:
// `RateLimit-Policy: "default";q=100;w=60`, `RateLimit: "default";r=42;t=17`), which
// allowed responses carry too unless configured otherwise.
//
// Requests are counted by a key made of parts: the client IP, the route, a dotted path
// into `ctx.user` (as an auth plugin before this one set it), a request header, or several
// of them. A request without one of its parts is counted by its client IP instead (or,
// with `onMissingKey: skip`, not limited). A Route's override changes the limits for its
// requests; `tiers` give some keys their own limits, chosen by a user field or a header
// (`tierBy: user.plan`, `tiers: {gold: {limit: 1000}}`).
//
// Three algorithms, their state in `ctx.services.cache` (in Redis when the proxy has one,
// so every replica counts the same requests, atomically):
// - `sliding-window` (default): the count of this fixed window plus the previous one's,
//   weighted by how much of it still lies within one window of now (`incr`).
// - `fixed-window`: a counter per window of time (`incr`), reset at each boundary.
// - `token-bucket`: `burst` tokens, refilled at `limit` per window; kept as one number
//   (GCRA's theoretical arrival time, in microseconds) updated by `compareAndSet`, retried
//   when another request changed it first.
// Refused requests are not counted. When the cache fails, `onStoreError` decides: `allow`
// (default) lets the request pass, `deny` answers 503; either way a warning is logged.
// Time is `Date.now()`: replicas' clocks should agree (NTP).
import type { Context, Json, Plugin } from "weir";
import { fail, memoizeByConfig, positiveInteger } from "./config";

type Algorithm = "sliding-window" | "fixed-window" | "token-bucket";

interface Limits {
  /** Requests allowed per window (the refill rate of a token bucket). */
  limit?: number;
  /** The window, in seconds (default 60). */
  windowSeconds?: number;
  /** Token bucket: how many requests may come at once (default `limit`). */
  burst?: number;
  /** The policy's name in the headers and its counters (default `default`; a tier's: its key). */
  name?: string;
}

interface Config extends Limits {
  /** How requests are counted (default `sliding-window`). */
  algorithm?: Algorithm;
  /** What a key is made of: `ip`, `route`, `user.<path>`, `header.<name>` (default `[ip]`). */
  by?: string[];
  /** A request without a part of its key: counted by its client IP (`ip`, default) or not limited (`skip`). */
  onMissingKey?: "ip" | "skip";
  /** What chooses a tier: `user.<path>` or `header.<name>` (or `ip`, `route`). */
  tierBy?: string;
  /** Limits by the value of `tierBy`; other values get the config's own. */
  tiers?: Record<string, Limits>;
  /** Which responses carry `RateLimit-Policy` and `RateLimit`: `all` (default), `refused` or `none`. */
  headers?: "all" | "refused" | "none";
  /** When the cache fails: `allow` the request (default) or `deny` it with 503. */
  onStoreError?: "allow" | "deny";
}

/** One limit, ready to count with. */
interface Policy {
  name: string;
  limit: number;
  windowSeconds: number;
  windowMs: number;
  burst: number;
  /** Token bucket: microseconds between two tokens. */
  intervalUs: number;
  /** The `RateLimit-Policy` member. */
  header: string;
}

/** Reads a key part from the request: its text, or null when the request has none. */
type Part = { label: string; read: (ctx: Context<Config>) => string | null };

interface Parsed {
  algorithm: Algorithm;
  policy: Policy;
  by: Part[];
  fallbackToIp: boolean;
  tierBy: Part | null;
  tiers: Map<string, Policy>;
  headersOnAllowed: boolean;
  headersOnRefused: boolean;
  denyOnStoreError: boolean;
}

/** What counting a request decided. */
interface Decision {
  allowed: boolean;
  /** Requests still allowed now. */
  remaining: number;
  /** Seconds until the window ends (a token bucket: until it is full); on a refusal, until a retry may pass. */
  resetSeconds: number;
}

/** A failure of the cache, as opposed to a bug of this plugin. */
class StoreError extends Error {}

const ALGORITHMS: Algorithm[] = ["sliding-window", "fixed-window", "token-bucket"];
const SHORT: Record<Algorithm, string> = { "sliding-window": "sw", "fixed-window": "fw", "token-bucket": "tb" };
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PRINTABLE = /^[\x20-\x7e]+$/;
/** Token bucket: attempts at `compareAndSet` before the request is refused as contended. */
const ATTEMPTS = 8;
/** Keys longer than this are hashed. */
const MAX_KEY = 200;
const PLUGIN = "rate-limit";

/** A dotted path read from `ctx.user`: scalars as text, other values as JSON. */
function userPart(path: string[]) {
  return (ctx: Context<Config>): string | null => {
    let node: Json | undefined = ctx.user;
    for (const key of path) {
      if (node === null || node === undefined || typeof node !== "object") return null;
      node = Array.isArray(node) ? (/^\d+$/.test(key) ? node[Number(key)] : undefined) : node[key];
    }
    if (node === undefined || node === null || node === "") return null;
    return typeof node === "string" ? node : JSON.stringify(node);
  };
}

function part(spec: unknown, field: string): Part {
  if (spec === "ip") return { label: "ip", read: (ctx) => ctx.request.clientIp };
  if (spec === "route") return { label: "route", read: (ctx) => ctx.request.route };
  if (typeof spec === "string" && spec.startsWith("user.")) {
    const path = spec.slice(5).split(".");
    if (path.every((key) => key !== "")) return { label: spec, read: userPart(path) };
  }
  if (typeof spec === "string" && spec.startsWith("header.") && TOKEN.test(spec.slice(7))) {
    const name = spec.slice(7).toLowerCase();
    return { label: `header.${name}`, read: (ctx) => ctx.request.headers[name] || null };
  }
  fail(PLUGIN, `${field} must be ip, route, user.<path> or header.<name>, not ${JSON.stringify(spec)}`);
}

/** A policy name as a structured-field string (RFC 8941). */
function sfString(name: string): string {
  return `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function policy(limits: Limits, base: Policy | null, fallbackName: string, field: string): Policy {
  const limit = positiveInteger(PLUGIN, limits.limit, `${field}limit`, base?.limit);
  const windowSeconds = positiveInteger(PLUGIN, limits.windowSeconds, `${field}windowSeconds`, base?.windowSeconds ?? 60);
  const burst = positiveInteger(PLUGIN, limits.burst, `${field}burst`, limits.limit === undefined ? base?.burst ?? limit : limit);
  const name = limits.name ?? fallbackName;
  if (typeof name !== "string" || !PRINTABLE.test(name)) {
    fail(PLUGIN, `${field}name must be printable ASCII text (a policy name in the RateLimit headers), not ${JSON.stringify(name)}`);
  }
  const windowMs = windowSeconds * 1000;
  return {
    name,
    limit,
    windowSeconds,
    windowMs,
    burst,
    intervalUs: Math.max(1, Math.round((windowMs * 1000) / limit)),
    header: `${sfString(name)};q=${limit};w=${windowSeconds}`,
  };
}

function parse(config: Config): Parsed {
  const algorithm = config.algorithm ?? "sliding-window";
  if (!ALGORITHMS.includes(algorithm)) fail(PLUGIN, `algorithm must be one of ${ALGORITHMS.join(", ")}, not ${JSON.stringify(algorithm)}`);
  const by = config.by ?? ["ip"];
  if (!Array.isArray(by) || by.length === 0) fail(PLUGIN, "by must be a non-empty list of key parts");
  const base = policy(config, null, "default", "");
  const tiers = new Map<string, Policy>();
  const tierSpecs = config.tiers ?? {};
  if (typeof tierSpecs !== "object" || Array.isArray(tierSpecs)) fail(PLUGIN, "tiers must map tier values to limits");
  for (const [value, limits] of Object.entries(tierSpecs)) {
    if (limits === null || typeof limits !== "object") fail(PLUGIN, `tiers.${value} must be an object of limits`);
    // A tier inherits the config's limits; its counters are its own (its name).
    tiers.set(value, policy(limits, base, value, `tiers.${value}.`));
  }
  if (tiers.size > 0 && config.tierBy === undefined) fail(PLUGIN, "tierBy is required with tiers");
  const missing = config.onMissingKey ?? "ip";
  if (missing !== "ip" && missing !== "skip") fail(PLUGIN, `onMissingKey must be ip or skip, not ${JSON.stringify(missing)}`);
  const headers = config.headers ?? "all";
  if (headers !== "all" && headers !== "refused" && headers !== "none") {
    fail(PLUGIN, `headers must be all, refused or none, not ${JSON.stringify(headers)}`);
  }
  const onStoreError = config.onStoreError ?? "allow";
  if (onStoreError !== "allow" && onStoreError !== "deny") {
    fail(PLUGIN, `onStoreError must be allow or deny, not ${JSON.stringify(onStoreError)}`);
  }
  return {
    algorithm,
    policy: base,
    by: by.map((spec, i) => part(spec, `by[${i}]`)),
    fallbackToIp: missing === "ip",
    tierBy: config.tierBy === undefined ? null : part(config.tierBy, "tierBy"),
    tiers,
    headersOnAllowed: headers === "all",
    headersOnRefused: headers !== "none",
    denyOnStoreError: onStoreError === "deny",
  };
}

const settings = memoizeByConfig(parse);

/** The counter key of a request, or null when it is not limited. */
function keyOf(ctx: Context<Config>, s: Parsed, p: Policy): string | null {
  const parts: string[] = [];
  for (const part of s.by) {
    const value = part.read(ctx);
    if (value !== null) {
      parts.push(`${part.label}=${encodeURIComponent(value)}`);
      continue;
    }
    const ip = s.fallbackToIp ? ctx.request.clientIp : null;
    if (ip === null) return null;
    parts.push(`ip=${encodeURIComponent(ip)}`);
  }
  let key = parts.join("&");
  if (key.length > MAX_KEY) key = `sha256=${ctx.crypto.sha256(key, "base64url")}`;
  return `${encodeURIComponent(p.name)}:${SHORT[s.algorithm]}:${p.windowSeconds}:${key}`;
}

async function cached<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw new StoreError(error instanceof Error ? error.message : String(error));
  }
}

function seconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

async function fixedWindow(ctx: Context<Config>, p: Policy, key: string): Promise<Decision> {
  const cache = ctx.services.cache;
  const now = Date.now();
  const index = Math.floor(now / p.windowMs);
  const end = (index + 1) * p.windowMs;
  const counter = `${key}:${index}`;
  const ttlSeconds = (end - now) / 1000 + 1;
  const count = await cached(() => cache.incr(counter, { ttlSeconds }));
  if (count > p.limit) {
    // A refused request does not count.
    await cached(() => cache.incr(counter, { by: -1, ttlSeconds }));
    return { allowed: false, remaining: 0, resetSeconds: Math.max(1, seconds(end - now)) };
  }
  return { allowed: true, remaining: p.limit - count, resetSeconds: seconds(end - now) };
}

/** Sliding window: how long until `previous · (1 − elapsed/window) + current + 1 ≤ limit`. */
function slidingRetryMs(p: Policy, previous: number, current: number, elapsed: number): number {
  if (current + 1 <= p.limit && previous > 0) {
    const at = (1 - (p.limit - current - 1) / previous) * p.windowMs;
    return Math.max(0, at - elapsed);
  }
  // Not before the next window, where this window's count is the previous one.
  const at = current > 0 ? (1 - (p.limit - 1) / current) * p.windowMs : 0;
  return p.windowMs - elapsed + Math.max(0, at);
}

async function slidingWindow(ctx: Context<Config>, p: Policy, key: string): Promise<Decision> {
  const cache = ctx.services.cache;
  const now = Date.now();
  const index = Math.floor(now / p.windowMs);
  const elapsed = now - index * p.windowMs;
  const counter = `${key}:${index}`;
  // A window's count is read during the next one too.
  const ttlSeconds = (2 * p.windowMs - elapsed) / 1000 + 1;
  const [current, stored] = await cached(() =>
    Promise.all([cache.incr(counter, { ttlSeconds }), cache.get(`${key}:${index - 1}`)]),
  );
  const previous = typeof stored === "number" && stored > 0 ? stored : 0;
  const estimate = previous * (1 - elapsed / p.windowMs) + current;
  if (estimate > p.limit) {
    await cached(() => cache.incr(counter, { by: -1, ttlSeconds }));
    const retry = slidingRetryMs(p, previous, current - 1, elapsed);
    return { allowed: false, remaining: 0, resetSeconds: Math.max(1, seconds(retry)) };
  }
  return {
    allowed: true,
    remaining: Math.max(0, Math.floor(p.limit - estimate)),
    resetSeconds: seconds(p.windowMs - elapsed),
  };
}

/**
 * Token bucket as GCRA: the entry is the time (µs) at which the bucket would be full again
 * (its theoretical arrival time); a request takes one token, i.e. pushes it one interval
 * further, unless that lies more than `burst` intervals ahead.
 */
async function tokenBucket(ctx: Context<Config>, p: Policy, key: string): Promise<Decision> {
  const cache = ctx.services.cache;
  const capacityUs = p.burst * p.intervalUs;
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const nowUs = Date.now() * 1000;
    const stored = await cached(() => cache.get(key));
    if (stored !== null && !(typeof stored === "number" && Number.isSafeInteger(stored))) {
      ctx.log.warn("rate-limit: a token bucket entry is not a time; it is reset", { key });
      await cached(() => cache.delete(key));
      continue;
    }
    const full = stored === null ? nowUs : Math.max(stored, nowUs);
    const next = full + p.intervalUs;
    const allowAt = next - capacityUs;
    if (nowUs < allowAt) {
      return { allowed: false, remaining: 0, resetSeconds: Math.max(1, Math.ceil((allowAt - nowUs) / 1e6)) };
    }
    const ttlSeconds = (next - nowUs) / 1e6 + 1;
    const expected = stored === null ? undefined : stored;
    if (await cached(() => cache.compareAndSet(key, expected, next, { ttlSeconds }))) {
      return {
        allowed: true,
        remaining: Math.floor((nowUs - allowAt) / p.intervalUs),
        resetSeconds: Math.ceil((next - nowUs) / 1e6),
      };
    }
  }
  // Every attempt lost to another request on the same key: that key is busy, so refuse
  // rather than let contention open the limit.
  ctx.log.warn("rate-limit: the token bucket is too contended to update; the request is refused", { key });
  return { allowed: false, remaining: 0, resetSeconds: 1 };
}

function rateLimitHeader(p: Policy, d: Decision): string {
  return `${sfString(p.name)};r=${d.remaining};t=${d.resetSeconds}`;
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  async beforeRequest(ctx) {
    const s = settings(ctx);
    let p = s.policy;
    if (s.tierBy !== null) {
      const tier = s.tierBy.read(ctx);
      if (tier !== null) p = s.tiers.get(tier) ?? p;
    }
    const key = keyOf(ctx, s, p);
    if (key === null) return;
    let decision: Decision;
    try {
      decision =
        s.algorithm === "token-bucket"
          ? await tokenBucket(ctx, p, key)
          : s.algorithm === "fixed-window"
            ? await fixedWindow(ctx, p, key)
            : await slidingWindow(ctx, p, key);
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      const fields = { error: error.message, onStoreError: s.denyOnStoreError ? "deny" : "allow" };
      if (!s.denyOnStoreError) {
        ctx.log.warn("rate-limit: the cache failed; the request passes unlimited", fields);
        return;
      }
      ctx.log.warn("rate-limit: the cache failed; the request is refused", fields);
      return ctx.reject(503, { error: "rate_limit_unavailable", message: "the rate limit cannot be checked now" });
    }
    if (!decision.allowed) {
      const headers: Record<string, string> = { "retry-after": String(decision.resetSeconds) };
      if (s.headersOnRefused) {
        headers["ratelimit-policy"] = p.header;
        headers["ratelimit"] = rateLimitHeader(p, decision);
      }
      return ctx.reject(
        429,
        {
          error: "rate_limited",
          message: `too many requests: ${p.limit} per ${p.windowSeconds} s allowed; retry in ${decision.resetSeconds} s`,
        },
        headers,
      );
    }
    if (s.headersOnAllowed) {
      // Appended, so several rate-limit plugins on a Route list every policy.
      ctx.response.headers.append("ratelimit-policy", p.header);
      ctx.response.headers.append("ratelimit", rateLimitHeader(p, decision));
    }
  },
} satisfies Plugin<Config>;
