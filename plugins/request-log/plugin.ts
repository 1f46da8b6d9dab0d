// request-log: one structured log line per request (`ctx.log.info("request", fields)`,
// tagged by the proxy with the plugin and the request id): method, path, query, route,
// status, duration, user, client IP, and the request and response headers the config
// chooses. Secrets never reach the log: the values of sensitive headers (authorization,
// cookies, API keys; more by config) and of sensitive query parameters (tokens, keys,
// passwords; more by config) are logged as "[REDACTED]". `sampleRate` logs a share of
// the requests; responses from `alwaysLogFrom` (500) up are logged whatever the rate.
//
// The duration runs from this plugin's beforeRequest to its afterResponse: the upstream
// and the plugins after this one. Put request-log first to time the other plugins too.
import type { Context, Json, Plugin } from "weir";
import { memoizeByConfig, strings } from "./config";

interface Config {
  /** Share of requests logged, from 0 to 1 (default 1). */
  sampleRate?: number;
  /** Responses with this status or above are always logged (default 500; 600: none). */
  alwaysLogFrom?: number;
  /** A dotted path into `ctx.user` logged as `user` (default `id`). */
  userField?: string;
  /** Request headers logged (as the client sent them). */
  requestHeaders?: string[];
  /** Response headers logged (as the client gets them, so far). */
  responseHeaders?: string[];
  /** Headers whose values are logged as "[REDACTED]", besides the default ones. */
  redactHeaders?: string[];
  /** Query parameters whose values are logged as "[REDACTED]", besides the default ones. */
  redactQuery?: string[];
}

interface Parsed {
  sampleRate: number;
  alwaysLogFrom: number;
  userField: string[];
  requestHeaders: string[];
  responseHeaders: string[];
  redactHeaders: Set<string>;
  redactQuery: Set<string>;
}

const REDACTED = "[REDACTED]";
const SENSITIVE_HEADERS = ["authorization", "cookie", "set-cookie", "x-api-key", "proxy-authorization"];
const SENSITIVE_QUERY = ["access_token", "api_key", "apikey", "password", "token"];
/** Where beforeRequest leaves its start time in `ctx.state`. */
const STARTED = "requestLog.startedMs";
const PLUGIN = "request-log";

function names(list: unknown, field: string): string[] {
  return strings(PLUGIN, list, field, "names").map((n) => n.toLowerCase());
}

function parse(config: Config): Parsed {
  const sampleRate = config.sampleRate ?? 1;
  if (typeof sampleRate !== "number" || !(sampleRate >= 0 && sampleRate <= 1)) {
    throw new TypeError(`request-log: config.sampleRate must be a number from 0 to 1, not ${JSON.stringify(sampleRate)}`);
  }
  const alwaysLogFrom = config.alwaysLogFrom ?? 500;
  if (typeof alwaysLogFrom !== "number") throw new TypeError("request-log: config.alwaysLogFrom must be a status");
  return {
    sampleRate,
    alwaysLogFrom,
    userField: (config.userField ?? "id").split("."),
    requestHeaders: names(config.requestHeaders, "requestHeaders"),
    responseHeaders: names(config.responseHeaders, "responseHeaders"),
    redactHeaders: new Set([...SENSITIVE_HEADERS, ...names(config.redactHeaders, "redactHeaders")]),
    redactQuery: new Set([...SENSITIVE_QUERY, ...names(config.redactQuery, "redactQuery")]),
  };
}

const settings = memoizeByConfig(parse);

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, " "));
  } catch {
    return raw;
  }
}

/** The raw query with the values of sensitive parameters replaced. */
function redactedQuery(rawQuery: string, sensitive: Set<string>): string {
  return rawQuery
    .split("&")
    .map((pair) => {
      const eq = pair.indexOf("=");
      const name = eq < 0 ? pair : pair.slice(0, eq);
      return sensitive.has(decodeName(name).toLowerCase()) ? `${name}=${REDACTED}` : pair;
    })
    .join("&");
}

/**
 * `object[key]` when it is the object's own: a header, parameter or user field named
 * `constructor` or `__proto__` is one the request has, not a member of every object.
 */
function own<T>(object: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

function userOf(user: Json | undefined, path: string[]): Json {
  let node: Json | undefined = user;
  for (const key of path) {
    if (node === null || node === undefined || typeof node !== "object" || Array.isArray(node)) return null;
    node = own(node, key);
  }
  return node === undefined ? null : node;
}

function chosen(list: string[], read: (name: string) => string | null | undefined, redact: Set<string>) {
  const out: Record<string, Json> = {};
  for (const name of list) {
    const value = read(name);
    if (value === null || value === undefined) continue;
    out[name] = redact.has(name) ? REDACTED : value;
  }
  return out;
}

/** The fields of a request's log line. */
function fields(ctx: Context<Config>, s: Parsed, now: number): Record<string, Json> {
  const request = ctx.request;
  const started = ctx.state[STARTED];
  const line: Record<string, Json> = {
    method: request.method,
    path: request.path,
    route: request.route,
    status: ctx.response.status,
    durationMs: typeof started === "number" ? now - started : null,
    user: userOf(ctx.user, s.userField),
    clientIp: request.clientIp,
  };
  if (request.rawQuery !== "") line.query = redactedQuery(request.rawQuery, s.redactQuery);
  if (s.requestHeaders.length > 0) {
    line.requestHeaders = chosen(s.requestHeaders, (name) => own(request.headers, name), s.redactHeaders);
  }
  if (s.responseHeaders.length > 0) {
    line.responseHeaders = chosen(s.responseHeaders, (name) => ctx.response.headers.get(name), s.redactHeaders);
  }
  return line;
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    settings(ctx);
    ctx.state[STARTED] = Date.now();
  },
  afterResponse(ctx) {
    const s = settings(ctx);
    const status = ctx.response.status;
    if (status < s.alwaysLogFrom && !(s.sampleRate >= 1 || Math.random() < s.sampleRate)) return;
    ctx.log.info("request", fields(ctx, s, Date.now()));
  },
} satisfies Plugin<Config>;
