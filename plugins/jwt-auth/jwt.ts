// jwt.ts: the JSON Web Token verifier of the plugin library, shared by jwt-auth and
// admin-gate (plugins/admin-gate/jwt.ts is a symlink to this file, so each plugin's
// ConfigMap carries it and neither copies it). It knows nothing of either plugin: it
// parses the verification part of a config, finds the token of a request, verifies it
// and says why it refuses one; the plugins decide what a verified token grants.
//
// A token is checked in this order, and refused at the first failure:
//   1. it is there (the configured header with the Bearer scheme, or the cookie) and no
//      longer than `maxTokenLength`;
//   2. it is a JWS in compact form: three base64url segments, a JSON object header (a
//      JWE, five segments, is refused);
//   3. its header's `alg` is in the allow-list (`alg: none` never is), it has no `crit`,
//      and a `kid`, when present, is a string: only ever a lookup key into the configured
//      keys and the JWKS, never a path, a URL or anything else (`jku`, `x5u`, `jwk` and
//      `x5c` in the header are ignored: a token never chooses where its key comes from);
//      then it has a signature, and its payload is a JSON object;
//   4. a key verifies its signature: HS256/384/512 only with configured HMAC secrets (a
//      public key is never an HMAC secret, so the RS256-to-HS256 confusion cannot
//      happen), the others only with public keys (PEM or JWK from the config, or from the
//      JWKS) of the algorithm's kind;
//   5. its claims: `exp` (required unless `requireExp: false`), `nbf`, `iat` (not in the
//      future, not older than `maxAgeSeconds`), all with `clockSkewSeconds` of leeway by
//      `Date.now()`; `iss` among `issuers`, `aud` among `audiences`; `requiredClaims`
//      present.
//
// JWKS keys are kept per JWKS URL in module memory (per isolate) and in
// `ctx.services.cache` (shared by the proxy's isolates, and its replicas with Redis),
// fresh for `jwks.ttlSeconds` (or the response's `Cache-Control: max-age`); a token
// whose key is not in the set refreshes it, at most once per
// `jwks.minRefreshIntervalSeconds` (per isolate, and across isolates and replicas
// through an atomic `cache.add`); a set that could not be refreshed is used up to
// `jwks.maxStaleSeconds` past its expiry.
import type { Context, HmacAlgorithm, Json, LoadContext, Request, SignatureAlgorithm } from "weir";

// ---- Config ----

/** The algorithms a token may use (RFC 7518, RFC 8037); `none` is never one. */
export type Algorithm = "HS256" | "HS384" | "HS512" | SignatureAlgorithm;

export const ALGORITHMS: readonly Algorithm[] = [
  "HS256", "HS384", "HS512",
  "RS256", "RS384", "RS512",
  "PS256", "PS384", "PS512",
  "ES256", "ES384",
  "EdDSA",
];

/** A key given in the config: an HMAC secret, or a public key as PEM or JWK. */
export interface KeyConfig {
  /** Matched against the token's `kid`; unset: the key is tried whatever the token's `kid`. */
  kid?: string;
  /** What this key verifies (narrowing the top-level `algorithms`). */
  algorithms?: Algorithm[];
  /** An HMAC secret (HS256/384/512 only), in `secretEncoding`. */
  secret?: string;
  /** How `secret` is written: `utf8` (default), `base64`, `base64url` or `hex`. */
  secretEncoding?: "utf8" | "base64" | "base64url" | "hex";
  /** A public key, PEM `PUBLIC KEY` (SubjectPublicKeyInfo). */
  pem?: string;
  /** A public key as a JWK (RSA, EC P-256/P-384, OKP Ed25519). */
  jwk?: { [member: string]: Json };
}

/** How the JWKS at `jwksUri` is fetched and kept. */
export interface JwksConfig {
  /** How long a fetched set is fresh; default: its `Cache-Control: max-age`, else 300. */
  ttlSeconds?: number;
  /** Least time between two fetches of the set (unknown `kid`s, failures); default 30. */
  minRefreshIntervalSeconds?: number;
  /** How long past its expiry a set is still used while it cannot be refetched; default 3600. */
  maxStaleSeconds?: number;
  /** Time limit of one fetch, in milliseconds; default 1500. */
  timeoutMs?: number;
  /** A token that cannot be checked for want of keys: `unavailable` (503, default) or `unauthorized` (401). */
  onError?: "unavailable" | "unauthorized";
  /** Whether an `http://` `jwksUri` is accepted (default false: HTTPS only). */
  allowHttp?: boolean;
}

/** The verification part of a config, the same in jwt-auth and admin-gate. */
export interface VerifierConfig {
  /** The allow-list of algorithms: for the JWKS's keys, and keys without their own. */
  algorithms?: Algorithm[];
  keys?: KeyConfig[];
  /** Where the issuer publishes its keys (a JWKS, RFC 7517). */
  jwksUri?: string;
  jwks?: JwksConfig;
  /** Accepted `iss` values; unset: any. */
  issuers?: string[];
  /** Accepted `aud` values (a token passes with any one of them); unset: any. */
  audiences?: string[];
  /** Leeway for `exp`, `nbf` and `iat`, in seconds; default 60. */
  clockSkewSeconds?: number;
  /** Whether a token without `exp` is refused; default true. */
  requireExp?: boolean;
  /** Tokens issued (`iat`) longer ago than this are refused; unset: no limit. */
  maxAgeSeconds?: number;
  /** Claims a token must have (names or dotted paths). */
  requiredClaims?: string[];
  /** The header with the token; default `authorization` (`Bearer` scheme). */
  header?: string;
  /** A cookie that may carry the token when the header does not. */
  cookie?: string;
  /** Longest token accepted, in characters; default 8192. */
  maxTokenLength?: number;
  /** The realm of `WWW-Authenticate`. */
  realm?: string;
}

type KeyKind = "secret" | "RSA" | "P-256" | "P-384" | "Ed25519";

const HMAC: Partial<Record<Algorithm, HmacAlgorithm>> = { HS256: "SHA-256", HS384: "SHA-384", HS512: "SHA-512" };

/** RFC 7518 §3.2: an HMAC key at least as long as the hash. */
const HMAC_MIN_BYTES: Partial<Record<Algorithm, number>> = { HS256: 32, HS384: 48, HS512: 64 };

function kindOf(alg: Algorithm): KeyKind {
  if (alg in HMAC) return "secret";
  if (alg === "ES256") return "P-256";
  if (alg === "ES384") return "P-384";
  if (alg === "EdDSA") return "Ed25519";
  return "RSA";
}

/** A key the verifier may use. */
interface Key {
  /** Its `kid`; null matches any token (configured keys only). */
  kid: string | null;
  kind: KeyKind;
  /** What it verifies: the allow-list, narrowed by the key's own. */
  algorithms: Algorithm[];
  /** The secret's bytes, or the public key (PEM or JWK as JSON). */
  material: Uint8Array | string;
}

interface Jwks {
  uri: string;
  /** Freshness of a fetched set (seconds); null: the response's max-age, else the default. */
  ttl: number | null;
  minRefresh: number;
  maxStale: number;
  timeoutMs: number;
  unavailableStatus: 401 | 503;
}

/** A parsed verification config. */
export interface Verifier {
  plugin: string;
  algorithms: Algorithm[];
  keys: Key[];
  jwks: Jwks | null;
  issuers: string[] | null;
  audiences: string[] | null;
  skew: number;
  requireExp: boolean;
  maxAge: number | null;
  requiredClaims: string[];
  header: string;
  cookie: string | null;
  maxTokenLength: number;
  realm: string;
}

export const DEFAULT_JWKS_TTL_SECONDS = 300;
const MAX_JWKS_TTL_SECONDS = 86400;
const MAX_JWKS_KEYS = 100;
const MAX_KID_LENGTH = 256;

/** A config mistake: fails `onLoad` (the Plugin's config) or the hook (a Route's override). */
export function configError(plugin: string, field: string, what: string): TypeError {
  return new TypeError(`${plugin}: config.${field} ${what}`);
}

export function stringList(plugin: string, value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((s) => typeof s !== "string" || s === "")) {
    throw configError(plugin, field, "must be a list of non-empty strings");
  }
  return value as string[];
}

export function number(plugin: string, value: unknown, field: string, fallback: number, min = 0): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min) {
    throw configError(plugin, field, `must be a number of at least ${min}`);
  }
  return value;
}

const TOKEN_CHARS = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function headerName(plugin: string, value: unknown, field: string, fallback: string): string {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "string" || !TOKEN_CHARS.test(value)) throw configError(plugin, field, "must be a header name");
  return value.toLowerCase();
}

/** A claim's name, or a dotted path to it (`claimAt`). */
export function claimName(plugin: string, value: unknown, field: string, fallback: string): string {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "string" || value === "") throw configError(plugin, field, "must be a claim name or dotted path");
  return value;
}

function algorithmList(plugin: string, value: unknown, field: string): Algorithm[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || value.length === 0) throw configError(plugin, field, "must be a non-empty list of algorithms");
  for (const alg of value) {
    if (!ALGORITHMS.includes(alg as Algorithm)) {
      throw configError(plugin, field, `holds ${JSON.stringify(alg)}, not one of ${ALGORITHMS.join(", ")}`);
    }
  }
  return [...new Set(value as Algorithm[])];
}

/** The kind of a JWK's key, or null when it is no public key this verifier uses. */
function jwkKind(jwk: { [member: string]: unknown }): KeyKind | null {
  if (jwk.kty === "RSA") return "RSA";
  if (jwk.kty === "EC" && (jwk.crv === "P-256" || jwk.crv === "P-384")) return jwk.crv;
  if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return "Ed25519";
  return null;
}

/** The public members of a JWK, as the JSON `ctx.crypto.verify` takes. */
function publicJwk(jwk: { [member: string]: unknown }): string {
  const out: { [member: string]: unknown } = { kty: jwk.kty };
  for (const member of ["crv", "n", "e", "x", "y"]) {
    if (typeof jwk[member] === "string") out[member] = jwk[member];
  }
  return JSON.stringify(out);
}

function parseKey(ctx: LoadContext, plugin: string, config: KeyConfig, i: number, allowList: Algorithm[] | null): Key {
  const field = `keys[${i}]`;
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw configError(plugin, field, "must be an object");
  }
  const given = ["secret", "pem", "jwk"].filter((m) => (config as Record<string, unknown>)[m] !== undefined);
  if (given.length !== 1) throw configError(plugin, field, "must have exactly one of secret, pem and jwk");
  if (config.kid !== undefined && (typeof config.kid !== "string" || config.kid === "")) {
    throw configError(plugin, `${field}.kid`, "must be a non-empty string");
  }
  let kind: KeyKind;
  let material: Uint8Array | string;
  let pinned: Algorithm | null = null;
  if (config.secret !== undefined) {
    if (typeof config.secret !== "string" || config.secret === "") throw configError(plugin, `${field}.secret`, "must be a non-empty string");
    const encoding = config.secretEncoding ?? "utf8";
    if (!["utf8", "base64", "base64url", "hex"].includes(encoding)) {
      throw configError(plugin, `${field}.secretEncoding`, "must be utf8, base64, base64url or hex");
    }
    try {
      material = ctx.crypto.decode(config.secret, encoding);
    } catch {
      throw configError(plugin, `${field}.secret`, `is not ${encoding}`);
    }
    kind = "secret";
  } else if (config.pem !== undefined) {
    if (typeof config.pem !== "string" || !config.pem.trim().startsWith("-----BEGIN PUBLIC KEY-----")) {
      throw configError(plugin, `${field}.pem`, "must be a PEM public key (-----BEGIN PUBLIC KEY-----)");
    }
    material = config.pem;
    const found = pemKind(ctx, config.pem);
    if (found === null) throw configError(plugin, `${field}.pem`, "is no RSA, EC P-256, EC P-384 or Ed25519 public key");
    kind = found;
    // What the proxy's crypto makes of it (a broken key, an RSA key under 2048 bits), once.
    try {
      ctx.crypto.verify(algorithmsOf(kind)[0] as SignatureAlgorithm, material, "", new Uint8Array(0));
    } catch (error) {
      throw configError(plugin, `${field}.pem`, `cannot be used: ${(error as Error).message}`);
    }
  } else {
    const jwk = config.jwk;
    if (jwk === null || typeof jwk !== "object" || Array.isArray(jwk)) throw configError(plugin, `${field}.jwk`, "must be a JWK object");
    if (jwk.kty === "oct") throw configError(plugin, `${field}.jwk`, "is a symmetric key: give HMAC secrets as secret");
    if (jwk.d !== undefined) throw configError(plugin, `${field}.jwk`, "holds a private key (d): give the public key only");
    const found = jwkKind(jwk);
    if (found === null) throw configError(plugin, `${field}.jwk`, "is no RSA, EC P-256, EC P-384 or Ed25519 public key");
    kind = found;
    if (jwk.use !== undefined && jwk.use !== "sig") throw configError(plugin, `${field}.jwk`, `is a key for ${JSON.stringify(jwk.use)}, not for signatures`);
    // A JWK's own alg is the only algorithm it verifies, as in a JWKS.
    if (jwk.alg !== undefined) {
      if (typeof jwk.alg !== "string" || !ALGORITHMS.includes(jwk.alg as Algorithm) || kindOf(jwk.alg as Algorithm) !== kind) {
        throw configError(plugin, `${field}.jwk.alg`, `${JSON.stringify(jwk.alg)} is no algorithm ${describeKind(kind)} verifies`);
      }
      pinned = jwk.alg as Algorithm;
    }
    material = publicJwk(jwk);
    // A JWK that does not load (a missing or broken member, an RSA key under 2048 bits) is
    // a config error now, not a refused token later.
    try {
      ctx.crypto.verify(algorithmsOf(kind)[0] as SignatureAlgorithm, material, "", new Uint8Array(0));
    } catch (error) {
      throw configError(plugin, `${field}.jwk`, `cannot be used: ${(error as Error).message}`);
    }
  }
  const own = algorithmList(plugin, config.algorithms, `${field}.algorithms`);
  for (const alg of own ?? []) {
    if (kindOf(alg) !== kind) throw configError(plugin, `${field}.algorithms`, `holds ${alg}, which ${describeKind(kind)} cannot verify`);
  }
  if (own === null && allowList === null) {
    throw configError(plugin, field, `has no algorithms: give ${field}.algorithms or algorithms (the token's alg alone is never trusted)`);
  }
  const algorithms = (own ?? allowList ?? []).filter(
    (alg) => kindOf(alg) === kind && (allowList === null || allowList.includes(alg)) && (pinned === null || alg === pinned),
  );
  if (algorithms.length === 0) {
    throw configError(plugin, field, `verifies none of the allowed algorithms (${describeKind(kind)})`);
  }
  if (kind === "secret") {
    const bytes = (material as Uint8Array).length;
    for (const alg of algorithms) {
      const min = HMAC_MIN_BYTES[alg] ?? 0;
      if (bytes < min) throw configError(plugin, `${field}.secret`, `is ${bytes} bytes; ${alg} needs at least ${min} (RFC 7518 §3.2)`);
    }
  }
  return { kid: config.kid ?? null, kind, algorithms, material };
}

function describeKind(kind: KeyKind): string {
  return kind === "secret" ? "an HMAC secret" : kind === "RSA" ? "an RSA key" : `an ${kind === "Ed25519" ? "Ed25519" : `EC ${kind}`} key`;
}

function algorithmsOf(kind: KeyKind): Algorithm[] {
  return ALGORITHMS.filter((alg) => kindOf(alg) === kind);
}

// A JWKS key `ctx.crypto.verify` would refuse (an RSA key under 2048 bits) is skipped
// like any key this verifier cannot use: its modulus is measured from the JWK's `n`.

function base64urlBytes(ctx: LoadContext, value: unknown): Uint8Array | null {
  if (typeof value !== "string") return null;
  try {
    return ctx.crypto.decode(value, "base64url");
  } catch {
    return null;
  }
}

/** Bits of a big-endian unsigned integer. */
function rsaModulusBits(n: Uint8Array | null): number | null {
  if (n === null) return null;
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  if (i === n.length) return 0;
  return (n.length - i - 1) * 8 + (32 - Math.clz32(n[i]));
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

/** SubjectPublicKeyInfo algorithm OIDs (and EC curve OIDs), in DER. */
const SPKI_KINDS: Record<string, KeyKind> = {
  "2a864886f70d010101": "RSA", // rsaEncryption
  "2a8648ce3d0201/2a8648ce3d030107": "P-256", // ecPublicKey, prime256v1
  "2a8648ce3d0201/2b81040022": "P-384", // ecPublicKey, secp384r1
  "2b6570": "Ed25519", // id-Ed25519
};

/**
 * The kind of a PEM public key, read from its DER (SubjectPublicKeyInfo: the algorithm
 * OID, and the curve of an EC key); null when it is none of these.
 */
function pemKind(ctx: LoadContext, pem: string): KeyKind | null {
  let der: Uint8Array;
  try {
    der = ctx.crypto.decode(pem.replace(/-----[A-Z ]+-----/g, "").replace(/\s+/g, ""), "base64");
  } catch {
    return null;
  }
  const tlv = (at: number, tag: number): { start: number; end: number } | null => {
    if (at + 2 > der.length || der[at] !== tag) return null;
    let length = der[at + 1];
    let start = at + 2;
    if (length & 0x80) {
      const count = length & 0x7f;
      if (count === 0 || count > 4 || start + count > der.length) return null;
      length = 0;
      for (let k = 0; k < count; k++) length = length * 256 + der[start + k];
      start += count;
    }
    return start + length <= der.length ? { start, end: start + length } : null;
  };
  const spki = tlv(0, 0x30);
  const algorithm = spki && tlv(spki.start, 0x30);
  const oid = algorithm && tlv(algorithm.start, 0x06);
  if (!oid || !algorithm) return null;
  const curve = oid.end < algorithm.end ? tlv(oid.end, 0x06) : null;
  const id = hex(der.subarray(oid.start, oid.end));
  return SPKI_KINDS[curve ? `${id}/${hex(der.subarray(curve.start, curve.end))}` : id] ?? null;
}

/** Parses the verification part of a plugin's config; throws a TypeError naming the field. */
export function parseVerifier(ctx: LoadContext, plugin: string, config: VerifierConfig, defaultRealm: string): Verifier {
  const allowList = algorithmList(plugin, config.algorithms, "algorithms");
  if (config.keys !== undefined && config.keys !== null && !Array.isArray(config.keys)) {
    throw configError(plugin, "keys", "must be a list");
  }
  const keys = (config.keys ?? []).map((key, i) => parseKey(ctx, plugin, key, i, allowList));
  let jwks: Jwks | null = null;
  if (config.jwksUri !== undefined && config.jwksUri !== null) {
    const options = config.jwks ?? {};
    const uri = config.jwksUri;
    const https = typeof uri === "string" && /^https:\/\/[^/?#\s]+/i.test(uri);
    const http = typeof uri === "string" && /^http:\/\/[^/?#\s]+/i.test(uri);
    if (!https && !(http && options.allowHttp === true)) {
      throw configError(plugin, "jwksUri", http ? "is http://: use HTTPS, or set jwks.allowHttp" : "must be an https:// URL");
    }
    if (allowList === null || !allowList.some((alg) => kindOf(alg) !== "secret")) {
      throw configError(plugin, "algorithms", "must list the public-key algorithms the JWKS's keys may verify (RS256, ES256, ...)");
    }
    const onError = options.onError ?? "unavailable";
    if (onError !== "unavailable" && onError !== "unauthorized") {
      throw configError(plugin, "jwks.onError", "must be unavailable or unauthorized");
    }
    jwks = {
      uri,
      ttl: options.ttlSeconds === undefined || options.ttlSeconds === null ? null : number(plugin, options.ttlSeconds, "jwks.ttlSeconds", 0, 1),
      minRefresh: number(plugin, options.minRefreshIntervalSeconds, "jwks.minRefreshIntervalSeconds", 30, 1),
      maxStale: number(plugin, options.maxStaleSeconds, "jwks.maxStaleSeconds", 3600),
      timeoutMs: number(plugin, options.timeoutMs, "jwks.timeoutMs", 1500, 1),
      unavailableStatus: onError === "unavailable" ? 503 : 401,
    };
  }
  if (keys.length === 0 && jwks === null) {
    throw configError(plugin, "keys", "is empty and there is no jwksUri: no token could ever be verified");
  }
  const issuers = config.issuers === undefined || config.issuers === null ? null : stringList(plugin, config.issuers, "issuers");
  const audiences = config.audiences === undefined || config.audiences === null ? null : stringList(plugin, config.audiences, "audiences");
  const realm = config.realm ?? defaultRealm;
  if (typeof realm !== "string" || !/^[\x20\x21\x23-\x5b\x5d-\x7e]*$/.test(realm)) {
    throw configError(plugin, "realm", "must be printable ASCII without \" or \\");
  }
  if (config.cookie !== undefined && config.cookie !== null && (typeof config.cookie !== "string" || !TOKEN_CHARS.test(config.cookie))) {
    throw configError(plugin, "cookie", "must be a cookie name");
  }
  const maxAge = config.maxAgeSeconds === undefined || config.maxAgeSeconds === null ? null : number(plugin, config.maxAgeSeconds, "maxAgeSeconds", 0, 1);
  if (config.requireExp !== undefined && typeof config.requireExp !== "boolean") throw configError(plugin, "requireExp", "must be true or false");
  return {
    plugin,
    algorithms: allowList ?? [],
    keys,
    jwks,
    issuers,
    audiences,
    skew: number(plugin, config.clockSkewSeconds, "clockSkewSeconds", 60),
    requireExp: config.requireExp ?? true,
    maxAge,
    requiredClaims: stringList(plugin, config.requiredClaims, "requiredClaims"),
    header: headerName(plugin, config.header, "header", "authorization"),
    cookie: config.cookie ?? null,
    maxTokenLength: number(plugin, config.maxTokenLength, "maxTokenLength", 8192, 16),
    realm,
  };
}

// ---- Finding the token ----

/** What a request presents: a token (and where), nothing, or a malformed header. */
export type Presented =
  | { token: string; header: boolean }
  | { missing: string }
  | { invalidRequest: string };

const BEARER = /^bearer +(.*)$/i;

/**
 * `object[key]` when it is the object's own: a header or parameter named `constructor` or
 * `__proto__` is one the request has, not a member of every object.
 */
export function own<T>(object: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

/** The request's token: from the header (Bearer scheme), else from the cookie. */
export function presented(request: Request, v: Verifier): Presented {
  const raw = own(request.headers, v.header);
  if (raw !== undefined && raw.trim() !== "") {
    const value = raw.trim();
    const bearer = BEARER.exec(value);
    if (bearer !== null) {
      const token = bearer[1].trim();
      // Two Authorization headers arrive joined with ", ".
      if (token === "" || /[\s,]/.test(token)) {
        return { invalidRequest: `the ${v.header} header must hold one bearer token` };
      }
      return { token, header: true };
    }
    // Another scheme (Basic, ...) in Authorization is no bearer token; another header
    // holds the token itself.
    if (v.header !== "authorization") {
      if (/[\s,]/.test(value)) return { invalidRequest: `the ${v.header} header must hold one token` };
      return { token: value, header: true };
    }
  }
  if (v.cookie !== null) {
    const token = cookieValue(own(request.headers, "cookie"), v.cookie);
    if (token !== null && token !== "") return { token, header: false };
  }
  const where = v.header === "authorization" ? "a bearer token is required in the Authorization header" : `a token is required in the ${v.header} header`;
  return { missing: v.cookie === null ? where : `${where} or the ${v.cookie} cookie` };
}

/** The value of the first cookie named `name` in a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (header === undefined) return null;
  for (const pair of header.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
    let value = pair.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return value;
  }
  return null;
}

/** A Cookie header without the cookies named `name`; null when nothing is left. */
export function withoutCookie(header: string, name: string): string | null {
  const kept = header
    .split(";")
    .map((pair) => pair.trim())
    .filter((pair) => pair !== "" && pair.slice(0, Math.max(pair.indexOf("="), 0)).trim() !== name);
  return kept.length === 0 ? null : kept.join("; ");
}

/** Removes the token from the request sent upstream (its header, or its cookie). */
export function removeToken(ctx: Context, v: Verifier, from: Presented) {
  if (!("token" in from)) return;
  if (from.header) {
    ctx.upstream.headers.delete(v.header);
    return;
  }
  const cookies = own(ctx.request.headers, "cookie");
  if (cookies === undefined || v.cookie === null) return;
  const rest = withoutCookie(cookies, v.cookie);
  if (rest === null) ctx.upstream.headers.delete("cookie");
  else ctx.upstream.headers.set("cookie", rest);
}

// ---- Verifying ----

export type Claims = { [claim: string]: Json };

export type Outcome =
  | { ok: true; claims: Claims; header: Claims; alg: Algorithm; kid: string | null; payload: string }
  /** `unavailable`: no keys could be had (the JWKS could not be fetched). */
  | { ok: false; message: string; unavailable?: boolean };

const SEGMENT = /^[A-Za-z0-9_-]+$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true });

function refused(message: string): Outcome {
  return { ok: false, message };
}

function isObject(value: unknown): value is Claims {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** A base64url segment as a JSON object; null when it is not one. */
function segmentJson(ctx: Context, segment: string): Claims | null {
  try {
    const value: unknown = JSON.parse(UTF8.decode(ctx.crypto.decode(segment, "base64url")));
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

/** Verifies a token; synchronous unless the JWKS has to be read or fetched. */
export function verifyToken(ctx: Context, v: Verifier, token: string): Outcome | Promise<Outcome> {
  if (token.length > v.maxTokenLength) return refused(`the token is longer than ${v.maxTokenLength} characters`);
  const parts = token.split(".");
  if (parts.length === 5) return refused("encrypted tokens (JWE) are not accepted");
  if (parts.length !== 3) return refused("the token is not a JWT (three base64url segments)");
  const [h, p, s] = parts;
  if (!SEGMENT.test(h) || !SEGMENT.test(p)) return refused("the token is not a JWT (three base64url segments)");
  const header = segmentJson(ctx, h);
  if (header === null) return refused("the token's header is not a base64url JSON object");
  const alg = header.alg;
  if (typeof alg !== "string") return refused("the token's header has no alg");
  if (alg.toLowerCase() === "none") return refused("unsigned tokens (alg none) are not accepted");
  if (!ALGORITHMS.includes(alg as Algorithm) || !allowed(v, alg as Algorithm)) {
    return refused(ALGORITHMS.includes(alg as Algorithm) ? `the algorithm ${alg} is not allowed` : "the token's algorithm is not allowed");
  }
  if (header.crit !== undefined) return refused("the token has critical header parameters (crit), which are not supported");
  const kid = header.kid;
  if (kid !== undefined && (typeof kid !== "string" || kid.length > MAX_KID_LENGTH)) {
    return refused("the token's kid is not a string of at most 256 characters");
  }
  if (s === "") return refused("the token has no signature");
  if (!SEGMENT.test(s)) return refused("the token's signature is not base64url");
  let signature: Uint8Array;
  try {
    signature = ctx.crypto.decode(s, "base64url");
  } catch {
    return refused("the token's signature is not base64url");
  }
  const claims = segmentJson(ctx, p);
  if (claims === null) return refused("the token's payload is not a base64url JSON object");
  const token_ = { h, p, alg: alg as Algorithm, kid: (kid as string | undefined) ?? null, signature, header, claims };

  const staticKeys = candidates(v.keys, token_.alg, token_.kid, true);
  if (staticKeys.some((key) => check(ctx, v, token_, key))) return claimsOutcome(v, token_);
  if (v.jwks === null || kindOf(token_.alg) === "secret") {
    return refused(staticKeys.length > 0 ? "the token's signature is not valid" : "no key matches the token's kid and alg");
  }
  return jwksKeys(ctx, v, v.jwks, token_.alg, token_.kid).then((found): Outcome => {
    if (found === "unavailable") return { ok: false, unavailable: true, message: "the keys to check the token could not be fetched" };
    if (found.some((key) => check(ctx, v, token_, key))) return claimsOutcome(v, token_);
    return refused(found.length > 0 || staticKeys.length > 0 ? "the token's signature is not valid" : "no key matches the token's kid and alg");
  });
}

/** Whether the allow-list (or some configured key) takes `alg`. */
function allowed(v: Verifier, alg: Algorithm): boolean {
  return v.algorithms.includes(alg) || v.keys.some((key) => key.algorithms.includes(alg));
}

interface Token {
  h: string;
  p: string;
  alg: Algorithm;
  kid: string | null;
  signature: Uint8Array;
  header: Claims;
  claims: Claims;
}

/** The keys that may have signed a token of `alg` and `kid`. */
function candidates(keys: Key[], alg: Algorithm, kid: string | null, wildcard: boolean): Key[] {
  return keys.filter(
    (key) =>
      key.algorithms.includes(alg) &&
      (kid === null || key.kid === kid || (wildcard && key.kid === null)),
  );
}

function check(ctx: Context, v: Verifier, token: Token, key: Key): boolean {
  const input = `${token.h}.${token.p}`;
  const hmac = HMAC[token.alg];
  if (hmac !== undefined) {
    // Only HMAC secrets are ever candidates for HS*: a public key is never a secret.
    if (key.kind !== "secret") return false;
    return ctx.crypto.timingSafeEqual(ctx.crypto.hmac(hmac, key.material as Uint8Array, input), token.signature);
  }
  if (key.kind === "secret" || key.kind !== kindOf(token.alg)) return false;
  try {
    return ctx.crypto.verify(token.alg as SignatureAlgorithm, key.material as string, input, token.signature);
  } catch (error) {
    ctx.log.warn(`${v.plugin}: a key could not verify a ${token.alg} token: ${(error as Error).message}`);
    return false;
  }
}

function numericDate(claims: Claims, name: string): number | null | "invalid" {
  const value = claims[name];
  if (value === undefined || value === null) return null;
  return typeof value === "number" && Number.isFinite(value) ? value : "invalid";
}

/** The time claims, issuer, audience and required claims of a token whose signature holds. */
function claimsOutcome(v: Verifier, token: Token): Outcome {
  const { claims } = token;
  const now = Date.now() / 1000;
  const exp = numericDate(claims, "exp");
  const nbf = numericDate(claims, "nbf");
  const iat = numericDate(claims, "iat");
  for (const [name, value] of [["exp", exp], ["nbf", nbf], ["iat", iat]] as const) {
    if (value === "invalid") return refused(`the token's ${name} is not a number`);
  }
  if (exp === null && v.requireExp) return refused("the token has no expiry (exp)");
  if (typeof exp === "number" && now >= exp + v.skew) return refused("the token has expired");
  if (typeof nbf === "number" && now + v.skew < nbf) return refused("the token is not valid yet (nbf)");
  if (typeof iat === "number" && now + v.skew < iat) return refused("the token was issued in the future (iat)");
  if (v.maxAge !== null) {
    if (typeof iat !== "number") return refused("the token has no issue time (iat)");
    if (now - v.skew > iat + v.maxAge) return refused("the token is too old (iat)");
  }
  if (v.issuers !== null && !(typeof claims.iss === "string" && v.issuers.includes(claims.iss))) {
    return refused("the token's issuer is not accepted");
  }
  if (v.audiences !== null) {
    const aud = claims.aud;
    const audiences = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
    if (!audiences.some((a) => typeof a === "string" && v.audiences!.includes(a))) {
      return refused("the token's audience is not accepted");
    }
  }
  for (const name of v.requiredClaims) {
    const value = claimAt(claims, name);
    if (value === undefined || value === null) return refused(`the token lacks the claim ${name}`);
  }
  return { ok: true, claims, header: token.header, alg: token.alg, kid: token.kid, payload: token.p };
}

// ---- JWKS ----

/** A JWKS key as kept in memory and in the cache (not tied to any config). */
interface JwksKey {
  kid: string | null;
  kind: KeyKind;
  /** The JWK's own `alg`, when it has one: the only algorithm it verifies. */
  alg: string | null;
  jwk: string;
}

interface JwksEntry {
  keys: JwksKey[];
  /** When it was fetched (ms since the epoch). */
  fetchedAt: number;
  /** When it stops being fresh. */
  expiresAt: number;
}

interface JwksState {
  entry: JwksEntry | null;
  /** The last fetch this isolate started (ms), successful or not; 0: none yet. */
  lastAttempt: number;
  /** A fetch in flight, which other requests of the isolate wait for instead of fetching. */
  inflight: Promise<void> | null;
}

/** Per JWKS URL, for this isolate. */
const jwksStates = new Map<string, JwksState>();

/** The cache key of a JWKS URL's set. */
export function jwksCacheKey(uri: string): string {
  return `jwks:${uri}`;
}

/** The cache key taken (`add`) by the isolate that refreshes a set for an unknown key. */
export function jwksRefreshKey(uri: string): string {
  return `jwks-refresh:${uri}`;
}

function jwksState(uri: string): JwksState {
  let state = jwksStates.get(uri);
  if (state === undefined) {
    state = { entry: null, lastAttempt: 0, inflight: null };
    jwksStates.set(uri, state);
  }
  return state;
}

/** A JWKS's usable keys: signing keys of the kinds this verifier knows, public members only. */
export function parseJwks(ctx: LoadContext, document: unknown): JwksKey[] {
  if (!isObject(document) || !Array.isArray(document.keys)) throw new Error("the JWKS has no keys list");
  const keys: JwksKey[] = [];
  for (const jwk of document.keys) {
    if (!isObject(jwk)) continue;
    const kind = jwkKind(jwk);
    // Encryption keys, symmetric keys (an `oct` key from a JWKS is never an HMAC
    // secret) and curves this verifier does not know are skipped.
    if (kind === null) continue;
    if (jwk.use !== undefined && jwk.use !== "sig") continue;
    if (Array.isArray(jwk.key_ops) && !jwk.key_ops.includes("verify")) continue;
    if (jwk.kid !== undefined && (typeof jwk.kid !== "string" || jwk.kid.length > MAX_KID_LENGTH)) continue;
    if (jwk.alg !== undefined && (typeof jwk.alg !== "string" || !ALGORITHMS.includes(jwk.alg as Algorithm) || kindOf(jwk.alg as Algorithm) !== kind)) continue;
    if (kind === "RSA" && (rsaModulusBits(base64urlBytes(ctx, jwk.n)) ?? 0) < 2048) continue;
    keys.push({ kid: (jwk.kid as string | undefined) ?? null, kind, alg: (jwk.alg as string | undefined) ?? null, jwk: publicJwk(jwk) });
    if (keys.length === MAX_JWKS_KEYS) break;
  }
  return keys;
}

function asEntry(value: unknown): JwksEntry | null {
  if (!isObject(value) || !Array.isArray(value.keys)) return null;
  if (typeof value.fetchedAt !== "number" || typeof value.expiresAt !== "number") return null;
  const ok = value.keys.every(
    (k) =>
      isObject(k) &&
      (k.kid === null || typeof k.kid === "string") &&
      (k.alg === null || typeof k.alg === "string") &&
      typeof k.jwk === "string" &&
      ["RSA", "P-256", "P-384", "Ed25519"].includes(k.kind as string),
  );
  return ok ? (value as unknown as JwksEntry) : null;
}

/** The JWKS keys that may verify a token of `alg` and `kid` under this verifier's allow-list. */
function jwksCandidates(v: Verifier, entry: JwksEntry, alg: Algorithm, kid: string | null): Key[] {
  if (!v.algorithms.includes(alg)) return [];
  const keys: Key[] = [];
  for (const key of entry.keys) {
    if (key.kind !== kindOf(alg) || (key.alg !== null && key.alg !== alg)) continue;
    // A token's kid must be the key's; a token without kid may be any key's.
    if (kid !== null && key.kid !== kid) continue;
    keys.push({ kid: key.kid, kind: key.kind, algorithms: [alg], material: key.jwk });
  }
  return keys;
}

function fresh(entry: JwksEntry | null, now: number): boolean {
  return entry !== null && now < entry.expiresAt;
}

/** The `max-age` of a Cache-Control header, in seconds. */
export function maxAge(cacheControl: string | undefined): number | null {
  if (cacheControl === undefined) return null;
  if (/(?:^|,)\s*(?:no-store|no-cache)\s*(?:,|$)/i.test(cacheControl)) return 0;
  const match = /(?:^|,)\s*max-age\s*=\s*"?(\d+)"?\s*(?:,|$)/i.exec(cacheControl);
  return match === null ? null : Number(match[1]);
}

/** Takes the cache's set when it is newer than the isolate's (another isolate or replica fetched it). */
async function adopt(ctx: Context, v: Verifier, jwks: Jwks, state: JwksState) {
  let cached: unknown;
  try {
    cached = await ctx.services.cache.get(jwksCacheKey(jwks.uri));
  } catch (error) {
    ctx.log.warn(`${v.plugin}: reading the cached JWKS failed: ${(error as Error).message}`);
    return;
  }
  const entry = asEntry(cached);
  if (entry !== null && (state.entry === null || entry.fetchedAt > state.entry.fetchedAt)) state.entry = entry;
}

/** Fetches the set, unless this isolate (or, for an unknown key, any) fetched it lately. */
async function refresh(ctx: Context, v: Verifier, jwks: Jwks, state: JwksState, unknownKey: boolean) {
  if (state.inflight !== null) return state.inflight;
  const now = Date.now();
  if (state.lastAttempt !== 0 && now - state.lastAttempt < jwks.minRefresh * 1000) return;
  state.lastAttempt = now;
  if (unknownKey) {
    // One refresh per interval for the whole proxy (and its replicas, with Redis): a
    // stream of tokens with made-up kids costs the issuer one fetch per interval.
    let first = true;
    try {
      first = await ctx.services.cache.add(jwksRefreshKey(jwks.uri), now, { ttlSeconds: jwks.minRefresh });
    } catch (error) {
      ctx.log.warn(`${v.plugin}: the JWKS refresh lock failed: ${(error as Error).message}`);
    }
    if (!first) return adopt(ctx, v, jwks, state);
  }
  state.inflight = fetchJwks(ctx, v, jwks, state, now).finally(() => {
    state.inflight = null;
  });
  return state.inflight;
}

async function fetchJwks(ctx: Context, v: Verifier, jwks: Jwks, state: JwksState, now: number) {
  let entry: JwksEntry;
  try {
    const response = await ctx.services.http.fetch(jwks.uri, { headers: { accept: "application/json" }, timeoutMs: jwks.timeoutMs });
    if (response.status !== 200) throw new Error(`the server answered ${response.status}`);
    const keys = parseJwks(ctx, await response.json());
    let ttl = jwks.ttl;
    if (ttl === null) {
      const max = maxAge(response.headers["cache-control"]);
      ttl = max === null ? DEFAULT_JWKS_TTL_SECONDS : Math.min(Math.max(max, jwks.minRefresh), MAX_JWKS_TTL_SECONDS);
    }
    entry = { keys, fetchedAt: now, expiresAt: now + ttl * 1000 };
    if (keys.length === 0) ctx.log.warn(`${v.plugin}: the JWKS at ${jwks.uri} has no signing key this plugin can use`);
  } catch (error) {
    const stale = state.entry !== null && now < state.entry.expiresAt + jwks.maxStale * 1000;
    ctx.log.warn(`${v.plugin}: fetching the JWKS at ${jwks.uri} failed: ${(error as Error).message}`, {
      keptKeys: stale,
      retryAfterSeconds: jwks.minRefresh,
    });
    return;
  }
  state.entry = entry;
  try {
    const ttlSeconds = Math.ceil((entry.expiresAt - now) / 1000 + jwks.maxStale);
    await ctx.services.cache.set(jwksCacheKey(jwks.uri), entry as unknown as Json, { ttlSeconds });
  } catch (error) {
    ctx.log.warn(`${v.plugin}: caching the JWKS failed: ${(error as Error).message}`);
  }
}

/** The JWKS keys for a token, refreshing the set when it is stale or lacks the token's key. */
async function jwksKeys(ctx: Context, v: Verifier, jwks: Jwks, alg: Algorithm, kid: string | null): Promise<Key[] | "unavailable"> {
  const state = jwksState(jwks.uri);
  if (!fresh(state.entry, Date.now())) {
    await adopt(ctx, v, jwks, state);
    if (!fresh(state.entry, Date.now())) await refresh(ctx, v, jwks, state, false);
  }
  const usable = () => state.entry !== null && Date.now() < state.entry.expiresAt + jwks.maxStale * 1000;
  if (!usable()) return "unavailable";
  let found = jwksCandidates(v, state.entry!, alg, kid);
  if (found.length > 0) return found;
  // No key for the token: the issuer may have rotated its keys.
  const known = state.entry!.fetchedAt;
  await adopt(ctx, v, jwks, state);
  if (state.entry!.fetchedAt === known) await refresh(ctx, v, jwks, state, true);
  found = usable() ? jwksCandidates(v, state.entry!, alg, kid) : [];
  return found;
}

// ---- Answers ----

/** Text fit for a quoted-string of WWW-Authenticate (RFC 6750 §3: no `"` or `\`). */
function quoted(text: string): string {
  return text.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, "?");
}

export function challenge(v: Verifier, error?: string, description?: string, scope?: string): string {
  let value = `Bearer realm="${v.realm}"`;
  if (error !== undefined) value += `, error="${error}"`;
  if (description !== undefined) value += `, error_description="${quoted(description)}"`;
  if (scope !== undefined) value += `, scope="${quoted(scope)}"`;
  return value;
}

/** Answers a request whose token is missing, malformed or refused. */
export function refuse(ctx: Context, v: Verifier, why: Presented | Outcome) {
  if ("missing" in why) {
    // RFC 6750 §3.1: a request without credentials gets no error code.
    return ctx.reject(401, { error: "unauthorized", message: why.missing }, { "www-authenticate": challenge(v) });
  }
  if ("invalidRequest" in why) {
    return ctx.reject(
      400,
      { error: "bad_request", message: why.invalidRequest },
      { "www-authenticate": challenge(v, "invalid_request", why.invalidRequest) },
    );
  }
  if (!("ok" in why) || why.ok) throw new Error("refuse: nothing to refuse");
  if (why.unavailable === true && v.jwks !== null && v.jwks.unavailableStatus === 503) {
    return ctx.reject(
      503,
      { error: "unavailable", message: why.message },
      { "retry-after": String(v.jwks.minRefresh) },
    );
  }
  return ctx.reject(
    401,
    { error: "unauthorized", message: why.message },
    { "www-authenticate": challenge(v, "invalid_token", why.message) },
  );
}

// ---- Claims ----

/** A claim by name, or else by dotted path (`realm_access.roles`); names with dots (`https://example.com/roles`) win. */
export function claimAt(claims: Claims, path: string): Json | undefined {
  if (Object.prototype.hasOwnProperty.call(claims, path)) return claims[path];
  let node: Json | undefined = claims;
  for (const key of path.split(".")) {
    if (node === null || node === undefined || typeof node !== "object") return undefined;
    if (Array.isArray(node)) {
      node = /^\d+$/.test(key) ? node[Number(key)] : undefined;
    } else {
      node = Object.prototype.hasOwnProperty.call(node, key) ? node[key] : undefined;
    }
  }
  return node;
}

/** A claim holding a list of names: an array of strings, or one string of names separated by spaces or commas. */
export function names(value: Json | undefined): string[] {
  if (typeof value === "string") return value.split(/[\s,]+/).filter((s) => s !== "");
  if (Array.isArray(value)) return value.filter((s): s is string => typeof s === "string" && s !== "");
  return [];
}

const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/g;

/** A claim as a header value: text as it is, lists of scalars joined with ",", objects as JSON; null when missing. */
export function headerValue(value: Json | undefined): string | null {
  if (value === undefined || value === null) return null;
  let text: string;
  if (typeof value === "string") text = value;
  else if (typeof value === "number" || typeof value === "boolean") text = String(value);
  else if (Array.isArray(value) && value.every((v) => v !== null && typeof v !== "object")) text = value.join(",");
  else text = JSON.stringify(value);
  return text.replace(CONTROL, "");
}

// ---- Paths ----

/** A compiled path pattern. */
export interface PathPattern {
  source: string;
  regex: RegExp;
  params: string[];
}

const PATTERN = /^(?:\/(?:[^/{}*]+|\{[A-Za-z_][A-Za-z0-9_]*\}))*(?:\/\*?)?$/;

/**
 * Path patterns: `/healthz` (that path), `/docs/{page}` (`{name}` is one non-empty
 * segment), `/public/*` (`/public` and every path below it, segment-wise: not
 * `/publicity`), `/admin/{tenant}/*`, `/*` (every path). A trailing slash of the request
 * path is ignored.
 */
export function compilePaths(plugin: string, value: unknown, field: string, ignoreCase: boolean): PathPattern[] {
  return stringList(plugin, value, field).map((source, i) => {
    if (!PATTERN.test(source) || source === "") {
      throw configError(plugin, `${field}[${i}]`, `${JSON.stringify(source)} is no path pattern (/a/{param}/*)`);
    }
    const params: string[] = [];
    let body = source.replace(/\/\*?$/, "");
    const prefix = source.endsWith("/*");
    let regex = "^";
    for (const segment of body.split("/").slice(1)) {
      const param = /^\{(.+)\}$/.exec(segment);
      if (param !== null) {
        params.push(param[1]);
        regex += "/([^/]+)";
      } else {
        regex += "/" + segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      }
    }
    regex += prefix ? "(?:/.*)?$" : "/?$";
    body = regex;
    return { source, regex: new RegExp(body, ignoreCase ? "i" : ""), params };
  });
}

/** The first pattern matching `path`, with the segments its `{name}`s matched; null when none does. */
export function matchPath(patterns: PathPattern[], path: string): { pattern: string; params: Record<string, string> } | null {
  for (const pattern of patterns) {
    const match = pattern.regex.exec(path);
    if (match === null) continue;
    // No prototype: a parameter named like a member of every object is only there when captured.
    const params: Record<string, string> = Object.create(null);
    pattern.params.forEach((name, i) => {
      params[name] = match[i + 1];
    });
    return { pattern: pattern.source, params };
  }
  return null;
}
