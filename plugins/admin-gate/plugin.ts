// admin-gate: guards administrative paths and tells their upstream who the administrator
// is, in trusted headers (`x-gateway-admin-user`, `x-gateway-admin-roles`, more from
// claims) that it alone sets:
//
// - on EVERY request, guarded or not, every header starting with `headerPrefix`
//   (`x-gateway-admin-`) and every header it sets is removed from what goes upstream, so
//   no client can forge them;
// - on a guarded path (`paths`: `/admin/*`, `/admin/{tenant}/*`, compared ignoring case,
//   so `/ADMIN` is guarded too), the request needs a JWT that this plugin verifies
//   itself, with ./jwt.ts, the verifier of jwt-auth (a symlink to
//   plugins/jwt-auth/jwt.ts, carried in this plugin's ConfigMap), with its own keys,
//   issuers and audiences: none, or a refused one, is 401 as jwt-auth answers it;
// - the verified token must give one of `roles` (403 otherwise), and, with
//   `pathClaims`, the `{param}`s of the path it names (`/admin/{tenant}/*` with
//   `pathClaims: {tenant: tenants}`: the tenant must be in the token's `tenants`);
// - then, and only then, the headers are set.
//
// It trusts no identity another plugin left in `ctx.user`: plugins run in an order the
// Route and the Plugins' `order` decide, and any of them may write `ctx.user`, so the
// trusted headers come only from a signature checked here. That also lets it run with
// `scope: Global` (before every Route's own plugins) to strip the headers everywhere.
import type { Context, Json, LoadContext, Plugin } from "weir";
import { boolean, memoizeByConfig } from "./config";
import {
  claimAt,
  claimName,
  compilePaths,
  configError,
  headerName,
  headerValue,
  matchPath,
  names,
  own,
  parseVerifier,
  presented,
  refuse,
  removeToken,
  stringList,
  verifyToken,
} from "./jwt";
import type { Outcome, PathPattern, Verifier, VerifierConfig } from "./jwt";

interface Config extends VerifierConfig {
  /** The guarded paths (`/admin/*`, `/admin/{tenant}/*`). */
  paths: string[];
  /** Roles that open them: a token needs one. */
  roles: string[];
  /** The claim with the token's roles; default `roles`. */
  rolesClaim?: string;
  /** The claim naming the administrator (`x-gateway-admin-user`); default `sub`. */
  idClaim?: string;
  /** Headers starting with it are removed from every request; default `x-gateway-admin-`. */
  headerPrefix?: string;
  /** The header with the administrator's id; default `x-gateway-admin-user`. */
  userHeader?: string;
  /** The header with the token's roles; default `x-gateway-admin-roles`. */
  rolesHeader?: string;
  /** More headers from claims: header name -> claim. */
  claimHeaders?: Record<string, string>;
  /** `{param}`s of the guarded paths the token must name: param -> claim listing the allowed values. */
  pathClaims?: Record<string, string>;
  /** Whether the token's header (or cookie) goes upstream on guarded paths; default false. */
  keepToken?: boolean;
}

interface Parsed {
  verifier: Verifier;
  paths: PathPattern[];
  roles: string[];
  rolesClaim: string;
  idClaim: string;
  prefix: string;
  userHeader: string;
  rolesHeader: string;
  claimHeaders: [string, string][];
  pathClaims: [string, string][];
  keepToken: boolean;
  /** Headers removed from every request: those this plugin sets. */
  strip: string[];
}

const PLUGIN = "admin-gate";

function claimMap(value: unknown, field: string): [string, string][] {
  if (value === undefined || value === null) return [];
  if (typeof value !== "object" || Array.isArray(value)) throw configError(PLUGIN, field, "must map names to claims");
  return Object.entries(value as Record<string, unknown>).map(([name, claim]): [string, string] => [name, claimName(PLUGIN, claim, `${field}.${name}`, "")]);
}

function parse(config: Config, ctx: LoadContext<Config>): Parsed {
  const verifier = parseVerifier(ctx, PLUGIN, config, "admin");
  const paths = compilePaths(PLUGIN, config.paths, "paths", true);
  if (paths.length === 0) throw configError(PLUGIN, "paths", "must list the guarded paths");
  const roles = stringList(PLUGIN, config.roles, "roles");
  if (roles.length === 0) throw configError(PLUGIN, "roles", "must list the roles that open the guarded paths");
  const prefix = config.headerPrefix ?? "x-gateway-admin-";
  if (typeof prefix !== "string" || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(prefix)) {
    throw configError(PLUGIN, "headerPrefix", "must be the start of a header name");
  }
  const claimHeaders = claimMap(config.claimHeaders, "claimHeaders").map(([header, claim]): [string, string] => [
    headerName(PLUGIN, header, `claimHeaders.${header}`, ""),
    claim,
  ]);
  const pathClaims = claimMap(config.pathClaims, "pathClaims");
  for (const [param] of pathClaims) {
    if (!paths.some((path) => path.params.includes(param))) {
      throw configError(PLUGIN, `pathClaims.${param}`, `names no {${param}} of the paths`);
    }
  }
  const userHeader = headerName(PLUGIN, config.userHeader, "userHeader", `${prefix.toLowerCase()}user`);
  const rolesHeader = headerName(PLUGIN, config.rolesHeader, "rolesHeader", `${prefix.toLowerCase()}roles`);
  const strip = [...new Set([userHeader, rolesHeader, ...claimHeaders.map(([header]) => header)])];
  if (strip.includes(verifier.header)) throw configError(PLUGIN, "userHeader", `or another header it sets is ${verifier.header}, the header with the token`);
  const keepToken = boolean(PLUGIN, config.keepToken, "keepToken", false);
  return {
    verifier,
    paths,
    roles,
    rolesClaim: claimName(PLUGIN, config.rolesClaim, "rolesClaim", "roles"),
    idClaim: claimName(PLUGIN, config.idClaim, "idClaim", "sub"),
    prefix: prefix.toLowerCase(),
    userHeader,
    rolesHeader,
    claimHeaders,
    pathClaims,
    keepToken,
    strip,
  };
}

const settings = memoizeByConfig(parse);

function admit(ctx: Context<Config>, s: Parsed, params: Record<string, string>, outcome: Outcome) {
  if (!outcome.ok) return refuse(ctx, s.verifier, outcome);
  const { claims } = outcome;
  const idClaim = claimAt(claims, s.idClaim);
  const id = typeof idClaim === "string" && idClaim !== "" ? idClaim : typeof idClaim === "number" ? String(idClaim) : null;
  if (id === null) return refuse(ctx, s.verifier, { ok: false, message: `the token lacks the claim ${s.idClaim}` });
  const roles = names(claimAt(claims, s.rolesClaim));
  // Whoever the request is from, for the access log, unless an earlier plugin said.
  if (ctx.user === undefined || ctx.user === null) ctx.user = { id, roles };
  if (!roles.some((role) => s.roles.includes(role))) {
    const message = s.roles.length === 1 ? `the ${s.roles[0]} role is required` : `one of the roles ${s.roles.join(", ")} is required`;
    return ctx.reject(403, { error: "forbidden", message });
  }
  for (const [param, claim] of s.pathClaims) {
    const value = own(params, param);
    if (value === undefined) continue;
    // Compared exactly, even though paths match ignoring case: /admin/ACME is not
    // /admin/acme for an upstream that tells them apart.
    if (!names(claimAt(claims, claim)).includes(value)) {
      return ctx.reject(403, { error: "forbidden", message: `the token's ${claim} claim does not grant this ${param}` });
    }
  }
  ctx.upstream.headers.set(s.userHeader, headerValue(id) ?? "");
  ctx.upstream.headers.set(s.rolesHeader, roles.join(","));
  for (const [header, claim] of s.claimHeaders) {
    const value = headerValue(claimAt(claims, claim));
    if (value !== null) ctx.upstream.headers.set(header, value);
  }
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    const s = settings(ctx);
    // Every request, guarded or not: no client's copy of a trusted header goes upstream.
    for (const name of Object.keys(ctx.request.headers)) {
      if (name.startsWith(s.prefix)) ctx.upstream.headers.delete(name);
    }
    for (const name of s.strip) ctx.upstream.headers.delete(name);
    const match = matchPath(s.paths, ctx.request.path);
    if (match === null) return;
    const from = presented(ctx.request, s.verifier);
    if (!("token" in from)) return refuse(ctx, s.verifier, from);
    if (!s.keepToken) removeToken(ctx, s.verifier, from);
    const outcome = verifyToken(ctx, s.verifier, from.token);
    if (outcome instanceof Promise) return outcome.then((result) => admit(ctx, s, match.params, result));
    return admit(ctx, s, match.params, outcome);
  },
} satisfies Plugin<Config>;
