// api-key: lets in requests that carry a known API key, in a header (`x-api-key` by
// default) or, when configured, a query parameter. Keys are never stored: the config
// (or the cache) holds the SHA-256 of each, in hex, with the identity and scopes of its
// holder, which go to `ctx.user` (`{id, scopes}`) for the plugins after this one and the
// access log. Hashes are compared with `ctx.crypto.timingSafeEqual`, against every
// configured key. The key never reaches the upstream: its header is removed, and its
// query parameter taken out of the upstream query. Without a key, or with an unknown one:
// 401 with `WWW-Authenticate`; with a key that lacks a scope the Route requires: 403.
//
// With `lookup: "cache"` (or `"both"`, config first) a key is also looked up in
// `ctx.services.cache` under `key:<sha256 hex>`, whose entry is `{"id": ..., "scopes":
// [...]}`: keys issued, and revoked (deleted, or written with a TTL), by another system
// through Redis, without changing the Plugin.
import type { Context, Plugin } from "weir";
import { memoizeByConfig, strings } from "./config";

interface Key {
  /** SHA-256 of the key, 64 hex digits. */
  hash: string;
  /** Who holds the key: `ctx.user.id`. */
  id: string;
  /** What the holder may do: `ctx.user.scopes`. */
  scopes?: string[];
}

interface Config {
  /** The request header with the key (default `x-api-key`). */
  header?: string;
  /** A query parameter that may carry the key instead (unset: the query is not read). */
  queryParam?: string;
  /** Known keys, by hash. */
  keys?: Key[];
  /** Where keys are looked up: `config` (default), `cache`, or `both` (config first). */
  lookup?: "config" | "cache" | "both";
  /** Scopes a key must all have on this Route; 403 otherwise. */
  requiredScopes?: string[];
  /** The realm of `WWW-Authenticate` (default `api`). */
  realm?: string;
  /** A header sent upstream with the key's id (a client's own is removed). */
  identityHeader?: string;
}

interface Identity {
  id: string;
  scopes: string[];
}

interface Parsed {
  header: string;
  queryParam: string | null;
  keys: { hash: string; identity: Identity }[];
  inConfig: boolean;
  inCache: boolean;
  requiredScopes: string[];
  challenge: string;
  identityHeader: string | null;
}

const HASH = /^[0-9a-fA-F]{64}$/;
const PLUGIN = "api-key";

function parse(config: Config): Parsed {
  const keys = (config.keys ?? []).map((key, i) => {
    if (typeof key?.hash !== "string" || !HASH.test(key.hash)) {
      throw new TypeError(`api-key: config.keys[${i}].hash must be the SHA-256 of the key in hex (64 digits)`);
    }
    if (typeof key.id !== "string" || key.id === "") {
      throw new TypeError(`api-key: config.keys[${i}].id must be a non-empty string`);
    }
    const scopes = strings(PLUGIN, key.scopes, `keys[${i}].scopes`);
    return { hash: key.hash.toLowerCase(), identity: { id: key.id, scopes } };
  });
  const lookup = config.lookup ?? "config";
  if (lookup !== "config" && lookup !== "cache" && lookup !== "both") {
    throw new TypeError(`api-key: config.lookup must be "config", "cache" or "both", not ${JSON.stringify(lookup)}`);
  }
  const realm = (config.realm ?? "api").replace(/["\\]/g, "");
  return {
    header: (config.header ?? "x-api-key").toLowerCase(),
    queryParam: config.queryParam ?? null,
    keys,
    inConfig: lookup !== "cache",
    inCache: lookup !== "config",
    requiredScopes: strings(PLUGIN, config.requiredScopes, "requiredScopes"),
    challenge: `ApiKey realm="${realm}"`,
    identityHeader: config.identityHeader ?? null,
  };
}

const settings = memoizeByConfig(parse);

/**
 * `object[key]` when it is the object's own: a header, parameter or user field named
 * `constructor` or `__proto__` is one the request has, not a member of every object.
 */
function own<T>(object: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    return raw;
  }
}

/** `rawQuery` without the pairs named `name`; null when it has none. */
function withoutParam(rawQuery: string, name: string): string | null {
  if (rawQuery === "") return null;
  const pairs = rawQuery.split("&");
  const kept = pairs.filter((pair) => {
    const eq = pair.indexOf("=");
    return decodeName(eq < 0 ? pair : pair.slice(0, eq)) !== name;
  });
  return kept.length === pairs.length ? null : kept.join("&");
}

/** The configured key whose hash is `hash`; every entry is compared, in constant time. */
function inConfig(ctx: Context<Config>, keys: Parsed["keys"], hash: string): Identity | null {
  let found: Identity | null = null;
  for (const key of keys) {
    if (ctx.crypto.timingSafeEqual(hash, key.hash)) found = key.identity;
  }
  return found;
}

/** A cache entry as an identity; null (with a warning) when it is not one. */
function identityOf(ctx: Context<Config>, entry: unknown): Identity | null {
  if (entry === null || entry === undefined) return null;
  const value = entry as { id?: unknown; scopes?: unknown };
  const scopes = value.scopes ?? [];
  if (
    typeof value !== "object" ||
    typeof value.id !== "string" ||
    value.id === "" ||
    !Array.isArray(scopes) ||
    scopes.some((s) => typeof s !== "string")
  ) {
    ctx.log.warn("api-key: a cache entry is not {id, scopes}; the key is refused");
    return null;
  }
  return { id: value.id, scopes: scopes as string[] };
}

function unauthorized(ctx: Context<Config>, settings: Parsed, message: string) {
  return ctx.reject(401, { error: "unauthorized", message }, { "www-authenticate": settings.challenge });
}

/** Lets `identity` in (or refuses it for want of scopes). */
function admit(ctx: Context<Config>, settings: Parsed, identity: Identity | null) {
  if (identity === null) return unauthorized(ctx, settings, "the API key is not valid");
  ctx.user = { id: identity.id, scopes: [...identity.scopes] };
  const missing = settings.requiredScopes.filter((scope) => !identity.scopes.includes(scope));
  if (missing.length > 0) {
    return ctx.reject(403, {
      error: "forbidden",
      message: `the API key lacks the scope${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`,
    });
  }
  if (settings.identityHeader !== null) ctx.upstream.headers.set(settings.identityHeader, identity.id);
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    const s = settings(ctx);
    // Whatever happens next, the upstream never sees the key, nor a forged identity.
    ctx.upstream.headers.delete(s.header);
    if (s.identityHeader !== null) ctx.upstream.headers.delete(s.identityHeader);
    let key = (own(ctx.request.headers, s.header) ?? "").trim();
    if (s.queryParam !== null) {
      const rest = withoutParam(ctx.request.rawQuery, s.queryParam);
      // Only the query changes: the path stays the Route's rewrite.
      if (rest !== null) ctx.upstream.query = rest;
      if (key === "") key = own(ctx.request.query, s.queryParam) ?? "";
    }
    if (key === "") {
      const where = s.queryParam === null ? `the ${s.header} header` : `the ${s.header} header or the ${s.queryParam} query parameter`;
      return unauthorized(ctx, s, `an API key is required in ${where}`);
    }
    const hash = ctx.crypto.sha256(key, "hex");
    const found = s.inConfig ? inConfig(ctx, s.keys, hash) : null;
    if (found !== null || !s.inCache) return admit(ctx, s, found);
    return ctx.services.cache.get(`key:${hash}`).then((entry) => admit(ctx, s, identityOf(ctx, entry)));
  },
} satisfies Plugin<Config>;
