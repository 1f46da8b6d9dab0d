// response-cache: keeps upstream responses to GET and HEAD requests in `ctx.services.cache`
// (Redis when the proxy has one, so replicas share them) and answers later requests for
// the same thing from there, in beforeRequest, without going upstream.
//
// A request's key is its method, host, path, query (its pairs sorted) and the request
// headers `keyHeaders` names (and, with `keyUser`, a field of `ctx.user`); a response with
// `Vary` is stored per value of the headers it names. A response is kept for its
// `Cache-Control: s-maxage` or `max-age` (less its `Age`), else `ttlSeconds`, at most
// `maxTtlSeconds`; never when it says `no-store`, `private` or `no-cache`, sets a cookie,
// varies on `*`, has a status outside `statuses`, or has a body over `maxEntryBytes`.
// Requests with `Authorization` are neither answered from nor stored in the cache unless
// `cacheAuthorized` (and then only responses marked shareable: `public`, `s-maxage` or
// `must-revalidate`, unless `authorization` is part of the key). A request's own
// `Cache-Control: no-cache` (or `Pragma: no-cache`) goes upstream and stores the new
// response; its `no-store` bypasses the cache (both unless `honorRequestNoCache: false`).
//
// Answers carry `X-Cache: HIT` (with `Age`), `MISS` (went upstream) or `BYPASS` (the
// request may not use the cache). Plugins cannot list a response's headers, so a stored
// response keeps the usual representation headers (content-type, etag, ...) and those
// `responseHeaders` adds. A failing cache never fails a request: it is a miss, with a
// warning.
import type { Context, Json, Plugin } from "weir";
import { boolean, fail, memoizeByConfig, positiveInteger, strings } from "./config";

interface Config {
  /** Freshness of a response whose Cache-Control gives none, in seconds (default 60). */
  ttlSeconds?: number;
  /** The longest a response is kept, whatever it says (default 86400). */
  maxTtlSeconds?: number;
  /** Statuses stored (default 200, 203, 204, 300, 301, 308, 404, 410). */
  statuses?: number[];
  /** Request headers that are part of the key. */
  keyHeaders?: string[];
  /** A dotted path into `ctx.user` that is part of the key (a cache per identity). */
  keyUser?: string;
  /** Response headers stored besides the default ones. */
  responseHeaders?: string[];
  /** The largest body stored, in bytes (default 65536; the proxy's body limit caps it too). */
  maxEntryBytes?: number;
  /** Whether requests with Authorization use the cache (default false). */
  cacheAuthorized?: boolean;
  /** Whether a request's Cache-Control no-cache / no-store is obeyed (default true). */
  honorRequestNoCache?: boolean;
}

interface Parsed {
  ttlSeconds: number;
  maxTtlSeconds: number;
  statuses: Set<number>;
  keyHeaders: string[];
  keyUser: string[] | null;
  storedHeaders: string[];
  maxEntryBytes: number;
  cacheAuthorized: boolean;
  /** With cacheAuthorized: whether the credentials are part of the key. */
  keyedByAuthorization: boolean;
  honorRequestNoCache: boolean;
}

/** A stored response. */
interface Entry {
  status: number;
  headers: [string, string][];
  /** The body, base64. */
  body: string;
  /** When it was stored (ms). */
  storedAt: number;
  /** Its age when it was stored (the upstream's `Age`), in seconds. */
  age: number;
  /** Seconds it is fresh for, from `storedAt`. */
  ttl: number;
}

/** What the primary key holds when the response varies: the headers it varies on. */
interface Variants {
  vary: string[];
}

const DEFAULT_STATUSES = [200, 203, 204, 300, 301, 308, 404, 410];
/** Response headers every stored response keeps (when the upstream sent them). */
const STORED_HEADERS = [
  "cache-control",
  "content-disposition",
  "content-encoding",
  "content-language",
  "content-location",
  "content-type",
  "etag",
  "expires",
  "last-modified",
  "link",
  "location",
  "vary",
];
/** Never stored, whatever `responseHeaders` says. */
const NEVER_STORED = new Set(["set-cookie", "age", "x-cache", "content-length", "transfer-encoding", "connection"]);
const STATE = "responseCache.key";
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PLUGIN = "response-cache";

function names(value: unknown, field: string): string[] {
  return strings(PLUGIN, value, field, "header names", (n) => TOKEN.test(n)).map((n) => n.toLowerCase());
}

function parse(config: Config): Parsed {
  const statuses = config.statuses ?? DEFAULT_STATUSES;
  if (!Array.isArray(statuses) || statuses.some((s) => !Number.isInteger(s) || s < 100 || s > 599)) {
    fail(PLUGIN, "statuses must be a list of statuses");
  }
  const keyHeaders = names(config.keyHeaders, "keyHeaders").sort();
  const extra = names(config.responseHeaders, "responseHeaders").filter((n) => !NEVER_STORED.has(n));
  let keyUser: string[] | null = null;
  if (config.keyUser !== undefined && config.keyUser !== null) {
    if (typeof config.keyUser !== "string" || config.keyUser.split(".").some((k) => k === "")) {
      fail(PLUGIN, "keyUser must be a dotted path into ctx.user");
    }
    keyUser = config.keyUser.split(".");
  }
  const cacheAuthorized = boolean(PLUGIN, config.cacheAuthorized, "cacheAuthorized", false);
  const honorRequestNoCache = boolean(PLUGIN, config.honorRequestNoCache, "honorRequestNoCache", true);
  return {
    ttlSeconds: positiveInteger(PLUGIN, config.ttlSeconds, "ttlSeconds", 60),
    maxTtlSeconds: positiveInteger(PLUGIN, config.maxTtlSeconds, "maxTtlSeconds", 86400),
    statuses: new Set(statuses),
    keyHeaders,
    keyUser,
    storedHeaders: [...new Set([...STORED_HEADERS, ...extra])],
    maxEntryBytes: positiveInteger(PLUGIN, config.maxEntryBytes, "maxEntryBytes", 65536),
    cacheAuthorized,
    keyedByAuthorization: keyHeaders.includes("authorization"),
    honorRequestNoCache,
  };
}

const settings = memoizeByConfig(parse);

/** Cache-Control directives, lower-case, with their values (unquoted) or "". */
function directives(value: string | null | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (value ?? "").split(",")) {
    const [name, ...rest] = part.split("=");
    const key = name.trim().toLowerCase();
    if (key !== "") out.set(key, rest.join("=").trim().replace(/^"(.*)"$/, "$1"));
  }
  return out;
}

function seconds(value: string | undefined | null): number | null {
  return value !== undefined && value !== null && /^\d+$/.test(value) ? Number(value) : null;
}

function userValue(user: Json | undefined, path: string[]): string {
  let node: Json | undefined = user;
  for (const key of path) {
    if (node === null || node === undefined || typeof node !== "object" || Array.isArray(node)) return "";
    node = node[key];
  }
  return node === undefined || node === null ? "" : typeof node === "string" ? node : JSON.stringify(node);
}

/** The primary key of a request: its method, host, path, sorted query and chosen headers. */
function primaryKey(ctx: Context<Config>, s: Parsed): string {
  const request = ctx.request;
  const query = request.rawQuery.split("&").filter((p) => p !== "").sort().join("&");
  const material = [request.method, new URL(request.url).host, request.path, query];
  for (const name of s.keyHeaders) material.push(`${name}:${request.headers[name] ?? ""}`);
  if (s.keyUser !== null) material.push(`user:${userValue(ctx.user, s.keyUser)}`);
  return `entry:${ctx.crypto.sha256(material.join("\n"), "hex")}`;
}

/** The key of the variant of `primary` this request selects. */
function variantKey(ctx: Context<Config>, primary: string, vary: string[]): string {
  const material = [primary, ...vary.map((name) => `${name}:${ctx.request.headers[name] ?? ""}`)];
  return `variant:${ctx.crypto.sha256(material.join("\n"), "hex")}`;
}

function isEntry(value: unknown): value is Entry {
  const entry = value as Entry;
  return (
    typeof value === "object" && value !== null &&
    Number.isInteger(entry.status) && Array.isArray(entry.headers) && typeof entry.body === "string" &&
    typeof entry.storedAt === "number" && typeof entry.age === "number" && typeof entry.ttl === "number"
  );
}

/** The stored response for this request, if any (a cache failure is a miss, logged). */
async function lookup(ctx: Context<Config>, primary: string): Promise<Entry | null> {
  const cache = ctx.services.cache;
  try {
    let found: Json = await cache.get(primary);
    const vary = (found as Variants | null)?.vary;
    if (Array.isArray(vary)) found = await cache.get(variantKey(ctx, primary, vary));
    return isEntry(found) ? found : null;
  } catch (error) {
    ctx.log.warn("response-cache: the cache failed; the request goes upstream", { error: String(error) });
    return null;
  }
}

function answer(ctx: Context<Config>, entry: Entry, now: number) {
  ctx.response.status = entry.status;
  const seen = new Set<string>();
  for (const [name, value] of entry.headers) {
    if (seen.has(name)) ctx.response.headers.append(name, value);
    else ctx.response.headers.set(name, value);
    seen.add(name);
  }
  ctx.response.headers.set("age", String(entry.age + Math.max(0, Math.floor((now - entry.storedAt) / 1000))));
  ctx.response.headers.set("x-cache", "HIT");
  if (entry.body !== "") ctx.response.setBody(ctx.crypto.decode(entry.body, "base64"));
}

/** Why the response to this request cannot be stored, or null when it can. */
function unstorable(ctx: Context<Config>, s: Parsed, control: Map<string, string>): string | null {
  const response = ctx.response;
  if (!s.statuses.has(response.status)) return `status ${response.status}`;
  for (const directive of ["no-store", "private", "no-cache"]) {
    if (control.has(directive)) return `Cache-Control: ${directive}`;
  }
  if (response.headers.has("set-cookie")) return "Set-Cookie";
  if (ctx.request.headers["authorization"] !== undefined && !s.keyedByAuthorization) {
    // RFC 9111, 3.5: a shared cache reuses a response to an authorized request only when
    // the response allows it.
    if (!["public", "s-maxage", "must-revalidate"].some((d) => control.has(d))) {
      return "a response to an authorized request not marked public";
    }
  }
  if ((response.headers.get("content-type") ?? "").toLowerCase().startsWith("text/event-stream")) return "an event stream";
  return null;
}

async function store(ctx: Context<Config>, s: Parsed, primary: string) {
  const response = ctx.response;
  const control = directives(response.headers.get("cache-control"));
  const why = unstorable(ctx, s, control);
  if (why !== null) {
    ctx.log.debug("response-cache: not stored", { why });
    return;
  }
  const varyHeader = response.headers.get("vary") ?? "";
  const vary = [...new Set(varyHeader.split(",").map((n) => n.trim().toLowerCase()).filter((n) => n !== ""))].sort();
  if (vary.includes("*")) return;
  const age = seconds(response.headers.get("age")) ?? 0;
  const lifetime = seconds(control.get("s-maxage")) ?? seconds(control.get("max-age")) ?? s.ttlSeconds;
  const ttl = Math.min(lifetime, s.maxTtlSeconds) - age;
  if (ttl <= 0) return;
  const length = seconds(response.headers.get("content-length"));
  if (length !== null && length > s.maxEntryBytes) return;
  let body: Uint8Array;
  try {
    body = await response.bytes();
  } catch (error) {
    // Larger than the proxy's body limit: it streams on untouched.
    ctx.log.debug("response-cache: the body cannot be read; not stored", { error: String(error) });
    return;
  }
  if (body.length > s.maxEntryBytes) return;
  const headers: [string, string][] = [];
  for (const name of s.storedHeaders) {
    const value = response.headers.get(name);
    if (value !== null) headers.push([name, value]);
  }
  const entry: Entry = {
    status: response.status,
    headers,
    body: body.length === 0 ? "" : ctx.crypto.encode(body, "base64"),
    storedAt: Date.now(),
    age,
    ttl,
  };
  const cache = ctx.services.cache;
  try {
    if (vary.length === 0) {
      await cache.set(primary, entry as unknown as Json, { ttlSeconds: ttl });
    } else {
      const variants: Variants = { vary };
      await cache.set(primary, variants as unknown as Json, { ttlSeconds: s.maxTtlSeconds });
      await cache.set(variantKey(ctx, primary, vary), entry as unknown as Json, { ttlSeconds: ttl });
    }
  } catch (error) {
    ctx.log.warn("response-cache: the cache failed; the response is not stored", { error: String(error) });
  }
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  async beforeRequest(ctx) {
    const s = settings(ctx);
    const request = ctx.request;
    if (request.method !== "GET" && request.method !== "HEAD") return;
    const control = directives(request.headers["cache-control"]);
    const noCache =
      s.honorRequestNoCache && (control.has("no-cache") || (request.headers["pragma"] ?? "").toLowerCase().includes("no-cache"));
    if (
      (request.headers["authorization"] !== undefined && !s.cacheAuthorized) ||
      request.headers["range"] !== undefined ||
      (s.honorRequestNoCache && control.has("no-store"))
    ) {
      ctx.response.headers.set("x-cache", "BYPASS");
      return;
    }
    const primary = primaryKey(ctx, s);
    if (!noCache) {
      const entry = await lookup(ctx, primary);
      const now = Date.now();
      if (entry !== null && now < entry.storedAt + entry.ttl * 1000) return answer(ctx, entry, now);
    }
    ctx.response.headers.set("x-cache", "MISS");
    ctx.state[STATE] = primary;
  },
  async afterResponse(ctx) {
    const primary = ctx.state[STATE];
    if (typeof primary !== "string") return;
    await store(ctx, settings(ctx), primary);
  },
} satisfies Plugin<Config>;
