// jwt-auth: lets in requests that carry a valid JSON Web Token: `Authorization: Bearer
// <token>` (or another header, or a cookie), signed with a configured key (an HMAC
// secret, a PEM or JWK public key) or a key of the issuer's JWKS, with an allowed
// algorithm, within its time claims, from an accepted issuer for an accepted audience.
// The verification is ./jwt.ts, shared with admin-gate; this plugin decides what a
// verified token means for the request:
//
// - the user goes to `ctx.user` (`{id, roles, scopes}`, and `claims` when configured)
//   for the plugins after this one and the access log;
// - claims chosen by `forwardClaims` go upstream as headers (and the verified payload as
//   `payloadHeader`); a client's own copies of those headers are removed from every
//   request, public paths and refusals included, so an upstream can trust them;
// - the token's header (or cookie) is removed from the upstream request unless
//   `keepToken`;
// - a Route may require scopes (`requiredScopes`): 403 with `error="insufficient_scope"`;
// - `publicPaths` skip the check (no token needed, none read).
//
// Refusals follow RFC 6750: no token, 401 with `WWW-Authenticate: Bearer realm="api"`; a
// refused token, 401 with `error="invalid_token"` and the reason in `error_description`
// and in the JSON body; a malformed header, 400 `invalid_request`; no keys to check the
// token with (the JWKS cannot be fetched), 503 with `Retry-After` (or 401, with
// `jwks.onError: unauthorized`).
import type { Context, Json, LoadContext, Plugin } from "weir";
import { boolean, memoizeByConfig } from "./config";
import {
  challenge,
  claimAt,
  claimName,
  compilePaths,
  configError,
  headerName,
  headerValue,
  matchPath,
  names,
  parseVerifier,
  presented,
  refuse,
  removeToken,
  stringList,
  verifyToken,
} from "./jwt";
import type { Outcome, PathPattern, Verifier, VerifierConfig } from "./jwt";

interface Config extends VerifierConfig {
  /** Paths that need no token (`/healthz`, `/docs/{page}`, `/public/*`). */
  publicPaths?: string[];
  /** Whether the token's header (or cookie) goes upstream; default false. */
  keepToken?: boolean;
  /** The claim that is `ctx.user.id`; default `sub`. */
  idClaim?: string;
  /** The claim with the user's roles (`ctx.user.roles`); default `roles`. */
  rolesClaim?: string;
  /** The claim with the token's scopes (`ctx.user.scopes`); default `scope`, else `scp`. */
  scopesClaim?: string;
  /** More claims copied to `ctx.user.claims`. */
  userClaims?: string[];
  /** Upstream headers set from claims: header name -> claim. */
  forwardClaims?: Record<string, string>;
  /** An upstream header with the verified payload (base64url JSON, as in the token). */
  payloadHeader?: string;
  /** Scopes the token must all have; 403 otherwise. */
  requiredScopes?: string[];
}

interface Parsed {
  verifier: Verifier;
  publicPaths: PathPattern[];
  keepToken: boolean;
  idClaim: string;
  rolesClaim: string;
  scopesClaim: string | null;
  userClaims: string[];
  forward: [string, string][];
  payloadHeader: string | null;
  requiredScopes: string[];
  /** Headers this plugin sets, so never passed on from the client. */
  strip: string[];
}

const PLUGIN = "jwt-auth";

function parse(config: Config, ctx: LoadContext<Config>): Parsed {
  const verifier = parseVerifier(ctx, PLUGIN, config, "api");
  const forwardClaims = config.forwardClaims ?? {};
  if (forwardClaims === null || typeof forwardClaims !== "object" || Array.isArray(forwardClaims)) {
    throw configError(PLUGIN, "forwardClaims", "must map header names to claims");
  }
  const forward = Object.entries(forwardClaims).map(([header, claim]): [string, string] => [
    headerName(PLUGIN, header, `forwardClaims.${header}`, ""),
    claimName(PLUGIN, claim, `forwardClaims.${header}`, ""),
  ]);
  const payloadHeader = config.payloadHeader === undefined || config.payloadHeader === null ? null : headerName(PLUGIN, config.payloadHeader, "payloadHeader", "");
  const strip = [...new Set([...forward.map(([header]) => header), ...(payloadHeader === null ? [] : [payloadHeader])])];
  if (strip.includes(verifier.header)) throw configError(PLUGIN, "forwardClaims", `sets ${verifier.header}, the header with the token`);
  const keepToken = boolean(PLUGIN, config.keepToken, "keepToken", false);
  return {
    verifier,
    publicPaths: compilePaths(PLUGIN, config.publicPaths, "publicPaths", false),
    keepToken,
    idClaim: claimName(PLUGIN, config.idClaim, "idClaim", "sub"),
    rolesClaim: claimName(PLUGIN, config.rolesClaim, "rolesClaim", "roles"),
    scopesClaim: config.scopesClaim === undefined || config.scopesClaim === null ? null : claimName(PLUGIN, config.scopesClaim, "scopesClaim", "scope"),
    userClaims: stringList(PLUGIN, config.userClaims, "userClaims"),
    forward,
    payloadHeader,
    requiredScopes: stringList(PLUGIN, config.requiredScopes, "requiredScopes"),
    strip,
  };
}

const settings = memoizeByConfig(parse);

/** The user of a verified token, for `ctx.user`. */
function userOf(s: Parsed, claims: { [claim: string]: Json }): { [key: string]: Json } {
  const id = claimAt(claims, s.idClaim);
  const scopes = s.scopesClaim === null ? claimAt(claims, "scope") ?? claimAt(claims, "scp") : claimAt(claims, s.scopesClaim);
  const user: { [key: string]: Json } = {
    id: typeof id === "string" ? id : typeof id === "number" ? String(id) : null,
    roles: names(claimAt(claims, s.rolesClaim)),
    scopes: names(scopes),
  };
  if (s.userClaims.length > 0) {
    const copied: { [claim: string]: Json } = {};
    for (const claim of s.userClaims) {
      const value = claimAt(claims, claim);
      if (value !== undefined) copied[claim] = value;
    }
    user.claims = copied;
  }
  return user;
}

function admit(ctx: Context<Config>, s: Parsed, outcome: Outcome) {
  if (!outcome.ok) return refuse(ctx, s.verifier, outcome);
  const user = userOf(s, outcome.claims);
  ctx.user = user;
  const scopes = user.scopes as string[];
  const missing = s.requiredScopes.filter((scope) => !scopes.includes(scope));
  if (missing.length > 0) {
    const message = `the token lacks the scope${missing.length > 1 ? "s" : ""} ${missing.join(", ")}`;
    return ctx.reject(
      403,
      { error: "forbidden", message },
      { "www-authenticate": challenge(s.verifier, "insufficient_scope", message, s.requiredScopes.join(" ")) },
    );
  }
  for (const [header, claim] of s.forward) {
    const value = headerValue(claimAt(outcome.claims, claim));
    if (value !== null) ctx.upstream.headers.set(header, value);
  }
  if (s.payloadHeader !== null) ctx.upstream.headers.set(s.payloadHeader, outcome.payload);
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    const s = settings(ctx);
    // Whatever happens next, the upstream never sees a client's copy of what this
    // plugin vouches for.
    for (const header of s.strip) ctx.upstream.headers.delete(header);
    if (s.publicPaths.length > 0 && matchPath(s.publicPaths, ctx.request.path) !== null) return;
    const from = presented(ctx.request, s.verifier);
    if (!("token" in from)) return refuse(ctx, s.verifier, from);
    if (!s.keepToken) removeToken(ctx, s.verifier, from);
    const outcome = verifyToken(ctx, s.verifier, from.token);
    if (outcome instanceof Promise) return outcome.then((result) => admit(ctx, s, result));
    return admit(ctx, s, outcome);
  },
} satisfies Plugin<Config>;
