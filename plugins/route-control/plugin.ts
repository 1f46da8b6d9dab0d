// route-control: sends some requests to another backend of the Route (`ctx.forward`):
// a share of the traffic (canary), or the requests that carry a header or a cookie (A/B,
// testers, internal users). Rules are tried in order and the first that matches chooses
// the backend; when none does, the Route's own weighted choice stands.
//
// A rule matches when every condition it has holds: `header` and `cookie` (a value, a
// regular expression, or mere presence), and `weight`, the percentage of requests it
// takes. Each request falls in a bucket from 0 to 100: the SHA-256 of its sticky value
// (a header, a cookie or a field of `ctx.user`, with an optional salt), so a user stays
// on one side from request to request, or a random one when it has no such value
// (`sticky.setCookie` gives such a client a random cookie, so it stays too). Weighted
// rules take consecutive bands of the buckets, in order (the first [0, w1), the next
// [w1, w1 + w2), ... modulo 100), so the shares of unconditional rules add up: weights 5
// and 20 send 5% and 20% of the traffic, never the same users.
import type { Context, Json, Plugin } from "weir";
import { memoizeByConfig } from "./config";

interface Condition {
  /** The header or cookie name. */
  name: string;
  /** The exact value it must have. */
  value?: string;
  /** A regular expression (JavaScript syntax) the value must match. */
  regex?: string;
}

interface Rule {
  /** The backend id matching requests go to, e.g. `service:shop/api-canary:8080`. */
  backend: string;
  /** Percentage of requests (0 to 100) this rule takes, by bucket (default 100). */
  weight?: number;
  /** A request header that must be present (with `value` or matching `regex`, when set). */
  header?: Condition;
  /** A cookie that must be present (with `value` or matching `regex`, when set). */
  cookie?: Condition;
}

interface Sticky {
  /** A request header whose value decides the bucket (e.g. `x-user-id`). */
  header?: string;
  /** A cookie whose value decides the bucket. */
  cookie?: string;
  /** A dotted path into `ctx.user` whose value decides the bucket (e.g. `id`). */
  user?: string;
  /** Mixed into the hash, so a new experiment shuffles users again. */
  salt?: string;
  /** With `cookie`: gives a client without it (or with it empty) a random one, so it stays on its side. */
  setCookie?: boolean;
  /** Lifetime of a cookie set by `setCookie`, in seconds (default 30 days). */
  maxAgeSeconds?: number;
}

interface Config {
  rules?: Rule[];
  sticky?: Sticky;
}

interface Matcher {
  name: string;
  test: (value: string) => boolean;
}

interface ParsedRule {
  backend: string;
  header: Matcher | null;
  cookie: Matcher | null;
  /** The band of buckets: [start, start + weight) modulo 100; null for every bucket. */
  band: { start: number; weight: number } | null;
}

interface Parsed {
  rules: ParsedRule[];
  sticky: Sticky;
  stickyUser: string[] | null;
}

function matcher(condition: Condition | undefined, field: string): Matcher | null {
  if (condition === undefined || condition === null) return null;
  if (typeof condition.name !== "string" || condition.name === "") {
    throw new TypeError(`route-control: config.${field}.name must be a non-empty string`);
  }
  const { value, regex } = condition;
  if (value !== undefined && regex !== undefined) {
    throw new TypeError(`route-control: config.${field} may have value or regex, not both`);
  }
  if (value !== undefined) return { name: condition.name, test: (v) => v === value };
  if (regex !== undefined) {
    let pattern: RegExp;
    try {
      pattern = new RegExp(regex);
    } catch (error) {
      throw new TypeError(`route-control: config.${field}.regex ${JSON.stringify(regex)} is not a regular expression: ${error}`);
    }
    return { name: condition.name, test: (v) => pattern.test(v) };
  }
  return { name: condition.name, test: () => true };
}

function parse(config: Config): Parsed {
  let start = 0;
  const rules = (config.rules ?? []).map((rule, i) => {
    if (typeof rule?.backend !== "string" || rule.backend === "") {
      throw new TypeError(`route-control: config.rules[${i}].backend must be a backend id`);
    }
    const weight = rule.weight ?? 100;
    if (typeof weight !== "number" || !(weight >= 0 && weight <= 100)) {
      throw new TypeError(`route-control: config.rules[${i}].weight must be a number from 0 to 100`);
    }
    const parsed: ParsedRule = {
      backend: rule.backend,
      header: matcher(rule.header, `rules[${i}].header`),
      cookie: matcher(rule.cookie, `rules[${i}].cookie`),
      band: weight >= 100 ? null : { start, weight },
    };
    start = (start + weight) % 100;
    return parsed;
  });
  const sticky = config.sticky ?? {};
  return { rules, sticky, stickyUser: typeof sticky.user === "string" ? sticky.user.split(".") : null };
}

const settings = memoizeByConfig(parse);

/**
 * `object[key]` when it is the object's own: a header, parameter or user field named
 * `constructor` or `__proto__` is one the request has, not a member of every object.
 */
function own<T>(object: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

/** The value of cookie `name` in a Cookie header (the first, unquoted), or null. */
function cookie(header: string | undefined, name: string): string | null {
  if (header === undefined) return null;
  for (const pair of header.split(";")) {
    const eq = pair.indexOf("=");
    if (eq < 0 || pair.slice(0, eq).trim() !== name) continue;
    const value = pair.slice(eq + 1).trim();
    return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
  }
  return null;
}

function userValue(user: Json | undefined, path: string[]): string | null {
  let node: Json | undefined = user;
  for (const key of path) {
    if (node === null || typeof node !== "object" || Array.isArray(node)) return null;
    node = own(node, key);
  }
  if (typeof node === "string") return node === "" ? null : node;
  if (typeof node === "number" || typeof node === "boolean") return String(node);
  return null;
}

/** The request's bucket in [0, 100): its sticky value's hash, or random. */
function bucket(ctx: Context<Config>, s: Parsed): number {
  const sticky = s.sticky;
  let value: string | null = null;
  if (sticky.header !== undefined) value = own(ctx.request.headers, sticky.header.toLowerCase()) ?? null;
  else if (sticky.cookie !== undefined) {
    value = cookie(own(ctx.request.headers, "cookie"), sticky.cookie);
    // An empty cookie decides nothing: such a client gets one too, or it would change
    // sides on every request.
    if ((value === null || value === "") && sticky.setCookie === true) {
      value = ctx.crypto.randomUUID();
      const maxAge = sticky.maxAgeSeconds ?? 30 * 24 * 3600;
      const secure = ctx.request.url.startsWith("https:") ? "; Secure" : "";
      ctx.response.headers.append("set-cookie", `${sticky.cookie}=${value}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Lax${secure}`);
    }
  } else if (s.stickyUser !== null) value = userValue(ctx.user, s.stickyUser);
  if (value === null || value === "") return Math.random() * 100;
  const hash = ctx.crypto.sha256(`${sticky.salt ?? ""}${value}`);
  const n = ((hash[0] << 24) | (hash[1] << 16) | (hash[2] << 8) | hash[3]) >>> 0;
  return (n / 4294967296) * 100;
}

function inBand(band: ParsedRule["band"], value: number): boolean {
  if (band === null) return true;
  return (value - band.start + 100) % 100 < band.weight;
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    const s = settings(ctx);
    // Worked out once, and only when a weighted rule asks (a set cookie included).
    let value: number | null = null;
    const hasSticky = s.sticky.cookie !== undefined && s.sticky.setCookie === true;
    if (hasSticky) value = bucket(ctx, s);
    const headers = ctx.request.headers;
    for (const rule of s.rules) {
      if (rule.header !== null) {
        const header = own(headers, rule.header.name.toLowerCase());
        if (header === undefined || !rule.header.test(header)) continue;
      }
      if (rule.cookie !== null) {
        const found = cookie(own(headers, "cookie"), rule.cookie.name);
        if (found === null || !rule.cookie.test(found)) continue;
      }
      if (rule.band !== null) {
        value ??= bucket(ctx, s);
        if (!inBand(rule.band, value)) continue;
      }
      return ctx.forward(rule.backend);
    }
  },
} satisfies Plugin<Config>;
