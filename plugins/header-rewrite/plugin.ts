// header-rewrite: sets and removes request headers on the way upstream, and sets
// response headers on the way back, as its config says. Runs on any Route it is attached
// to (or, with `scope: Global`, on every Route of its namespace).
//
// Values may hold templates: `${user.id}` (any dotted path into `ctx.user`, as an auth
// plugin before this one set it), `${request.header.x-foo}`, `${request.query.name}`,
// `${request.pathParam.id}`, `${request.method}`, `${request.path}`, `${request.url}`,
// `${request.clientIp}`, `${request.requestId}` and `${route}`; `$${` is a literal `${`.
// A header whose template names a value the request does not have is removed instead of
// set (`missing: remove`, the default: so `x-user-id: ${user.id}` never passes on a
// client's own `x-user-id` for an anonymous request), or set with the value left empty
// (`missing: empty`). Control characters, which header values cannot hold, are dropped
// from what a template inserts.
import type { Context, Json, Plugin } from "weir";
import { memoizeByConfig } from "./config";

interface Headers {
  /** Headers set (replacing every value of the name); values may hold templates. */
  set?: Record<string, string>;
  /** Headers removed. */
  remove?: string[];
}

interface Config {
  /** Request headers set and removed before going upstream. */
  request?: Headers;
  /** Response headers set and removed on whatever answers (upstream, plugin or proxy). */
  response?: Headers;
  /** A header whose template names a missing value: `remove` it (default) or leave the value `empty`. */
  missing?: "remove" | "empty";
}

/** Reads a template variable: its text, or null when the request has no such value. */
type Variable = (ctx: Context<Config>) => string | null;

/** A compiled value: literal text and variables, in order. */
type Template = (string | Variable)[];

interface Parsed {
  request: { set: [string, Template][]; remove: string[] };
  response: { set: [string, Template][]; remove: string[] };
  removeMissing: boolean;
}

const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/g;

/**
 * `object[key]` when it is the object's own: a header, parameter or user field named
 * `constructor` or `__proto__` is one the request has, not a member of every object.
 */
function own<T>(object: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

/** A value of `ctx.user` (or of a header, ...) as header text; null when missing. */
function text(value: Json | undefined): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value) && value.every((v) => v !== null && typeof v !== "object")) return value.join(",");
  return JSON.stringify(value);
}

function userPath(path: string[]): Variable {
  return (ctx) => {
    let node: Json | undefined = ctx.user;
    for (const key of path) {
      if (node === null || node === undefined || typeof node !== "object") return null;
      node = Array.isArray(node) ? (/^\d+$/.test(key) ? node[Number(key)] : undefined) : own(node, key);
    }
    return text(node);
  };
}

const REQUEST: Record<string, Variable> = {
  method: (ctx) => ctx.request.method,
  path: (ctx) => ctx.request.path,
  url: (ctx) => ctx.request.url,
  clientIp: (ctx) => ctx.request.clientIp,
  requestId: (ctx) => ctx.request.requestId,
  route: (ctx) => ctx.request.route,
};

const KNOWN =
  "user.<path>, request.header.<name>, request.query.<name>, request.pathParam.<name>, " +
  "request.method, request.path, request.url, request.clientIp, request.requestId, route";

function variable(name: string): Variable | null {
  const parts = name.split(".");
  if (name === "route") return REQUEST.route;
  if (parts[0] === "user" && parts.length > 1 && parts.every((p) => p !== "")) return userPath(parts.slice(1));
  if (parts[0] !== "request" || parts.length < 2) return null;
  const rest = parts.slice(2).join(".");
  if (parts.length === 2) return Object.prototype.hasOwnProperty.call(REQUEST, parts[1]) ? REQUEST[parts[1]] : null;
  if (rest === "") return null;
  switch (parts[1]) {
    case "header": {
      const header = rest.toLowerCase();
      return (ctx) => own(ctx.request.headers, header) ?? null;
    }
    case "query":
      return (ctx) => own(ctx.request.query, rest) ?? null;
    case "pathParam":
      return (ctx) => own(ctx.request.pathParams, rest) ?? null;
    default:
      return null;
  }
}

function compile(value: unknown, field: string): Template {
  if (typeof value !== "string") throw new TypeError(`header-rewrite: ${field} must be a string`);
  const template: Template = [];
  let literal = "";
  let at = 0;
  while (at < value.length) {
    const start = value.indexOf("${", at);
    if (start < 0) {
      literal += value.slice(at);
      break;
    }
    if (start > 0 && value[start - 1] === "$") {
      // `$${`: a literal `${`.
      literal += value.slice(at, start - 1) + "${";
      at = start + 2;
      continue;
    }
    const end = value.indexOf("}", start);
    if (end < 0) throw new TypeError(`header-rewrite: ${field}: "\${" without a closing "}" (write $\${ for a literal \${)`);
    const name = value.slice(start + 2, end).trim();
    const read = variable(name);
    if (read === null) throw new TypeError(`header-rewrite: ${field}: unknown variable \${${name}} (known: ${KNOWN})`);
    literal += value.slice(at, start);
    if (literal !== "") template.push(literal);
    literal = "";
    template.push(read);
    at = end + 1;
  }
  if (literal !== "") template.push(literal);
  return template;
}

function headers(config: Headers | undefined, field: string) {
  return {
    set: Object.entries(config?.set ?? {}).map(([name, value]): [string, Template] => [
      name,
      compile(value, `config.${field}.set[${JSON.stringify(name)}]`),
    ]),
    remove: config?.remove ?? [],
  };
}

function parse(config: Config): Parsed {
  return {
    request: headers(config.request, "request"),
    response: headers(config.response, "response"),
    removeMissing: config.missing !== "empty",
  };
}

const settings = memoizeByConfig(parse);

/** The template's text; null when a value is missing and such headers are removed. */
function render(ctx: Context<Config>, template: Template, removeMissing: boolean): string | null {
  let out = "";
  for (const part of template) {
    if (typeof part === "string") {
      out += part;
      continue;
    }
    const value = part(ctx);
    if (value === null && removeMissing) return null;
    out += (value ?? "").replace(CONTROL, "");
  }
  return out;
}

function apply(ctx: Context<Config>, edits: Parsed["request"], target: "upstream" | "response", removeMissing: boolean) {
  const editor = target === "upstream" ? ctx.upstream.headers : ctx.response.headers;
  for (const [name, template] of edits.set) {
    const value = render(ctx, template, removeMissing);
    if (value === null) editor.delete(name);
    else editor.set(name, value);
  }
  for (const name of edits.remove) editor.delete(name);
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad template fails the load, with the reason.
    settings(ctx);
  },
  beforeRequest(ctx) {
    const s = settings(ctx);
    apply(ctx, s.request, "upstream", s.removeMissing);
  },
  afterResponse(ctx) {
    const s = settings(ctx);
    apply(ctx, s.response, "response", s.removeMissing);
  },
} satisfies Plugin<Config>;
