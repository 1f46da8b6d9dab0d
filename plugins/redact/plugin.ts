// redact: removes configured fields from JSON response bodies, and configured headers
// from every response, so a backend's internals (password hashes, SSNs, debug headers)
// never reach clients. Fields are dotted paths (`user.password`, `items.*.ssn`) or JSON
// pointers (`/user/password`, `/a~1b`); `*` stands for every element of an array or
// every member of an object, a number for one array element. Only `application/json`
// and `*+json` bodies are read. A JSON body that cannot be redacted (it does not parse,
// it is compressed, or it is larger than the proxy's body limit, which plugins cannot
// read) passes unchanged with a warning in the log, or, with `onUnredactable: refuse`,
// is replaced by a 502. So that bodies arrive readable, `Accept-Encoding` is removed
// from requests sent upstream (unless `removeAcceptEncoding: false`).
import type { Context, Json, Plugin } from "weir";
import { memoizeByConfig } from "./config";

interface Config {
  /** Fields removed from JSON bodies: dotted paths or JSON pointers, `*` for any element or member. */
  fields?: string[];
  /** Response headers removed, from every response. */
  headers?: string[];
  /** A value put in place of each field instead of removing it (e.g. "[REDACTED]"). */
  replaceWith?: Json;
  /** A JSON body that cannot be redacted: `pass` it with a warning (default), or `refuse` it with a 502. */
  onUnredactable?: "pass" | "refuse";
  /** Whether `Accept-Encoding` is removed upstream, so bodies come uncompressed (default true when `fields` is set). */
  removeAcceptEncoding?: boolean;
}

interface Parsed {
  paths: string[][];
  headers: string[];
  replace: boolean;
  replacement: Json;
  refuse: boolean;
  removeAcceptEncoding: boolean;
}

/** Headers describing the upstream's bytes, wrong once the body is replaced. */
const BODY_HEADERS = ["etag", "content-md5", "content-digest", "repr-digest"];

const JSON_TYPE = /^application\/(?:[\w.!#$&^-]+\+)?json$/;

/** A field as path segments; the reason as a string when it is not one. */
function segments(field: unknown): string[] | string {
  if (typeof field !== "string" || field === "") return "is not a dotted path or a JSON pointer";
  if (field.startsWith("/")) {
    return field
      .slice(1)
      .split("/")
      .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  }
  const parts = field.split(".");
  if (parts.some((part) => part === "")) return "has an empty segment (a key with dots needs a JSON pointer)";
  return parts;
}

function parse(config: Config): Parsed {
  const paths = (config.fields ?? []).map((field, i) => {
    const path = segments(field);
    if (typeof path === "string") throw new TypeError(`redact: config.fields[${i}] ${JSON.stringify(field)} ${path}`);
    return path;
  });
  return {
    paths,
    headers: (config.headers ?? []).map((name) => String(name).toLowerCase()),
    replace: config.replaceWith !== undefined,
    replacement: config.replaceWith ?? null,
    refuse: config.onUnredactable === "refuse",
    removeAcceptEncoding: paths.length > 0 && config.removeAcceptEncoding !== false,
  };
}

const settings = memoizeByConfig(parse);

const hasOwn = (object: object, key: string) => Object.prototype.hasOwnProperty.call(object, key);
const INDEX = /^(?:0|[1-9]\d*)$/;

/**
 * The value put in place of a field: a copy of `replaceWith` when it is an array or an
 * object, since the config is frozen (a later path reaching into it would throw) and
 * each place must be its own.
 */
function replacement(s: Parsed): Json {
  return s.replacement !== null && typeof s.replacement === "object" ? structuredClone(s.replacement) : s.replacement;
}

/** Removes (or replaces) what `path[at..]` names under `node`; how many it did. */
function redact(node: Json, path: string[], at: number, s: Parsed): number {
  if (node === null || typeof node !== "object") return 0;
  const segment = path[at];
  const last = at === path.length - 1;
  let count = 0;
  if (Array.isArray(node)) {
    const indices =
      segment === "*" ? node.map((_, i) => i) : INDEX.test(segment) && Number(segment) < node.length ? [Number(segment)] : [];
    if (!last) {
      for (const i of indices) count += redact(node[i], path, at + 1, s);
      return count;
    }
    // Backwards, so removing an element does not shift the ones still to remove.
    for (let k = indices.length - 1; k >= 0; k--) {
      if (s.replace) node[indices[k]] = replacement(s);
      else node.splice(indices[k], 1);
    }
    return indices.length;
  }
  const keys = segment === "*" ? Object.keys(node) : hasOwn(node, segment) ? [segment] : [];
  for (const key of keys) {
    if (!last) count += redact(node[key], path, at + 1, s);
    else {
      if (s.replace) node[key] = replacement(s);
      else delete node[key];
      count += 1;
    }
  }
  return count;
}

function isJson(contentType: string | null): boolean {
  if (contentType === null) return false;
  return JSON_TYPE.test(contentType.split(";")[0].trim().toLowerCase());
}

/** A JSON body that could not be redacted: passed on (logged), or refused with a 502. */
function unredactable(ctx: Context<Config>, s: Parsed, reason: string) {
  ctx.log.warn(`redact: the JSON body could not be redacted: ${reason}`, {
    status: ctx.response.status,
    action: s.refuse ? "refused" : "passed",
  });
  if (!s.refuse) return;
  ctx.response.status = 502;
  for (const name of [...BODY_HEADERS, "content-encoding"]) ctx.response.headers.delete(name);
  ctx.response.headers.set("content-type", "application/json");
  ctx.response.setBody({ error: "bad_gateway", message: "the response could not be redacted" });
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    if (settings(ctx).removeAcceptEncoding) ctx.upstream.headers.delete("accept-encoding");
  },
  afterResponse(ctx) {
    const s = settings(ctx);
    for (const name of s.headers) ctx.response.headers.delete(name);
    if (s.paths.length === 0 || ctx.request.method === "HEAD") return;
    const status = ctx.response.status;
    if (status === 204 || status === 304 || !isJson(ctx.response.headers.get("content-type"))) return;
    const encoding = (ctx.response.headers.get("content-encoding") ?? "identity").trim().toLowerCase();
    if (encoding !== "identity" && encoding !== "") return unredactable(ctx, s, `it is encoded (${encoding})`);
    return ctx.response.text().then(
      (text) => {
        if (text.trim() === "") return;
        let body: Json;
        try {
          body = JSON.parse(text);
        } catch (error) {
          return unredactable(ctx, s, `it is not JSON (${error instanceof Error ? error.message : String(error)})`);
        }
        let count = 0;
        for (const path of s.paths) count += redact(body, path, 0, s);
        if (count === 0) return;
        for (const name of BODY_HEADERS) ctx.response.headers.delete(name);
        ctx.response.setBody(body);
      },
      (error) => unredactable(ctx, s, error instanceof Error ? error.message : String(error)),
    );
  },
} satisfies Plugin<Config>;
