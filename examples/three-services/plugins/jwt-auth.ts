// jwt-auth: checks the HS256 JSON Web Token in `authorization: Bearer ...` (as issued by
// user-service's login, signed with the same secret), puts the user in `ctx.user` for
// the plugins after it and the access log, and tells the upstream who it is in
// `x-user-id`. Without a valid token: 401 with a JSON body, unless the config says the
// token is optional (public Routes), in which case the request goes on anonymously.
// Either way an `x-user-id` sent by the client never reaches the upstream. A Route may
// also require a role from the token's `roles` claim: 403 for users without it.
import type { Context, Plugin } from "weir";

interface Config {
  /** The HMAC key the tokens are signed with. */
  secret: string;
  /** The `iss` a token must carry, when set. */
  issuer?: string;
  /** Whether requests without a valid token are refused (default) or passed on anonymously. */
  required?: boolean;
  /** Leeway for `exp` and `nbf`, in seconds (default 30). */
  clockSkewSeconds?: number;
  /** A role the user must have (`roles` claim), e.g. "admin"; 403 otherwise. */
  requiredRole?: string;
}

interface User {
  id: string;
  name: string | null;
  roles: string[];
}

const USER_HEADER = "x-user-id";
const BEARER = /^Bearer\s+([\w-]+)\.([\w-]+)\.([\w-]+)$/;

/** The token's user, or why there is none. */
function verify(ctx: Context<Config>): User | string {
  const match = BEARER.exec(ctx.request.headers["authorization"] ?? "");
  if (!match) return "a bearer token is required";
  const [, header, payload, signature] = match;
  const config = ctx.config;
  const expected = ctx.crypto.hmac("SHA-256", config.secret, `${header}.${payload}`, "base64url");
  if (!ctx.crypto.timingSafeEqual(expected, signature)) return "the token's signature is not valid";
  let alg: unknown;
  let claims: Record<string, unknown>;
  try {
    alg = JSON.parse(text(ctx, header)).alg;
    claims = JSON.parse(text(ctx, payload));
  } catch {
    return "the token is malformed";
  }
  if (alg !== "HS256") return "the token is not HS256";
  const now = Date.now() / 1000;
  const skew = config.clockSkewSeconds ?? 30;
  if (typeof claims.exp !== "number" || claims.exp + skew < now) return "the token has expired";
  if (typeof claims.nbf === "number" && claims.nbf - skew > now) return "the token is not valid yet";
  if (config.issuer !== undefined && claims.iss !== config.issuer) return "the token has another issuer";
  if (typeof claims.sub !== "string" || claims.sub === "") return "the token names no subject";
  const roles = Array.isArray(claims.roles) ? claims.roles.filter((r) => typeof r === "string") : [];
  return { id: claims.sub, name: typeof claims.name === "string" ? claims.name : null, roles };
}

function text(ctx: Context<Config>, base64url: string): string {
  return ctx.crypto.encode(ctx.crypto.decode(base64url, "base64url"), "utf8");
}

export default {
  beforeRequest(ctx) {
    ctx.upstream.headers.delete(USER_HEADER);
    const user = verify(ctx);
    if (typeof user === "string") {
      if (ctx.config.required === false) return;
      return ctx.reject(
        401,
        { error: "unauthorized", message: user },
        { "www-authenticate": 'Bearer realm="api"' },
      );
    }
    ctx.user = { ...user };
    const role = ctx.config.requiredRole;
    if (role !== undefined && !user.roles.includes(role)) {
      return ctx.reject(403, { error: "forbidden", message: `the ${role} role is required` });
    }
    ctx.upstream.headers.set(USER_HEADER, user.id);
  },
} satisfies Plugin<Config>;
