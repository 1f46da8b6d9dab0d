// The plugin side of weir's runtime: builds `ctx` for each hook call, records what the
// hook changes, and reports it to Rust as JSON. It runs once per isolate and keeps the
// host functions in this closure, out of the plugin's reach.
(function (host, plugin) {
  "use strict";
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const freeze = Object.freeze;
  const keys = Object.keys;
  const hostCall = host.call;
  const hostSettle = host.settle;
  const hostRequest = host.request;
  const hostLog = host.log;
  const hostCrypto = host.crypto;
  const hostEdit = host.edit;
  const hostHeader = host.header;
  const hostHeaderList = host.headerList;
  const hostRecord = host.record;
  const hostStatus = host.status;
  const hostFinish = host.finish;
  const hostDiscard = host.discard;
  const hostConfig = host.config;
  const UPSTREAM = 0;
  const RESPONSE = 1;
  const SET = 0;
  const APPEND = 1;
  const DELETE = 2;

  function deepFreeze(value) {
    if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
      freeze(value);
      for (const key of keys(value)) deepFreeze(value[key]);
    }
    return value;
  }

  function errorText(error) {
    if (error instanceof Error) return `${error.name}: ${error.message}`;
    try {
      return `Uncaught ${typeof error === "string" ? error : stringify(error)}`;
    } catch {
      return "Uncaught value";
    }
  }

  function isOutOfMemory(error) {
    return error instanceof InternalError && error.message === "out of memory";
  }

  // Bytes cross into Rust as [isBinary, string]: UTF-8 text, or one char per byte.
  function bin(data) {
    if (typeof data === "string") return [false, data];
    if (data instanceof ArrayBuffer) data = new Uint8Array(data);
    if (data instanceof Uint8Array) {
      let text = "";
      for (let i = 0; i < data.length; i += 8192) {
        text += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
      }
      return [true, text];
    }
    throw new TypeError("expected a string, a Uint8Array or an ArrayBuffer");
  }

  const crypto = freeze({
    sha256: (data, encoding) => hostCrypto.sha256(...bin(data), encoding),
    hmac: (algorithm, key, data, encoding) =>
      hostCrypto.hmac(String(algorithm), ...bin(key), ...bin(data), encoding),
    timingSafeEqual: (a, b) => hostCrypto.equal(...bin(a), ...bin(b)),
    verify: (algorithm, key, data, signature) =>
      hostCrypto.verify(
        String(algorithm),
        typeof key === "string" ? key : stringify(key),
        ...bin(data),
        ...bin(signature),
      ),
    randomBytes: (length, encoding) => hostCrypto.random(length, encoding),
    randomUUID: () => hostCrypto.uuid(),
    encode: (data, encoding) => hostCrypto.encode(...bin(data), String(encoding)),
    decode: (text, encoding) => hostCrypto.decode(String(text), String(encoding)),
  });

  async function call(inv, op, args) {
    const answer = parse(await hostCall(inv, op, stringify(args)));
    if (!answer.ok) throw new Error(answer.error);
    return answer.value;
  }

  function services(inv) {
    return freeze({
      cache: freeze({
        get: (key) => call(inv, "cache.get", [String(key)]),
        set: (key, value, options) =>
          call(inv, "cache.set", [String(key), stringify(value), options?.ttlSeconds ?? null]),
        add: (key, value, options) =>
          call(inv, "cache.add", [String(key), stringify(value), options?.ttlSeconds ?? null]),
        compareAndSet: (key, expected, value, options) =>
          call(inv, "cache.compareAndSet", [
            String(key),
            expected === undefined ? null : stringify(expected),
            stringify(value),
            options?.ttlSeconds ?? null,
          ]),
        delete: (key) => call(inv, "cache.delete", [String(key)]),
        incr: (key, options) =>
          call(inv, "cache.incr", [String(key), options?.by ?? 1, options?.ttlSeconds ?? null]),
      }),
      http: freeze({
        fetch: async (url, init) => {
          const body = init?.body;
          const binary = isBytes(body);
          const request = {
            url: String(url),
            method: init?.method ?? "GET",
            headers: init?.headers ?? {},
            body: body === undefined || binary ? null : typeof body === "string" ? body : stringify(body),
            bodyBase64: binary ? crypto.encode(body, "base64") : null,
            timeoutMs: init?.timeoutMs ?? null,
          };
          const response = await call(inv, "http.fetch", [request]);
          // UTF-8 text comes as text; other bytes as base64.
          const text = response.body ?? null;
          const bytes = () =>
            text === null ? crypto.decode(response.bodyBase64, "base64") : crypto.decode(text, "utf8");
          const asText = () => text ?? crypto.encode(bytes(), "utf8");
          return freeze({
            status: response.status,
            ok: response.status >= 200 && response.status < 300,
            headers: freeze(response.headers),
            text: async () => asText(),
            json: async () => parse(asText()),
            bytes: async () => bytes(),
            arrayBuffer: async () => bytes().buffer,
          });
        },
      }),
    });
  }

  // Header edits are recorded in Rust as they are made (remove, then set, then append),
  // so a hook's changes need no serializing when it returns. Rust checks and lower-cases
  // the names (an invalid one throws a TypeError).
  class HeaderEditor {
    #inv;
    #target;
    constructor(inv, target) {
      this.#inv = inv;
      this.#target = target;
    }
    set(name, value) {
      hostEdit(this.#inv, this.#target, SET, String(name), String(value));
    }
    append(name, value) {
      hostEdit(this.#inv, this.#target, APPEND, String(name), String(value));
    }
    delete(name) {
      hostEdit(this.#inv, this.#target, DELETE, String(name), "");
    }
    get(name) {
      return hostHeader(this.#inv, this.#target, String(name).toLowerCase()) ?? null;
    }
    has(name) {
      return this.get(name) !== null;
    }
    // Every header as [name, value] pairs (names lower case, repeated ones apart), with
    // this plugin's edits.
    entries() {
      return parse(hostHeaderList(this.#inv, this.#target) ?? "[]");
    }
    keys() {
      return [...new Set(this.entries().map(([name]) => name))];
    }
  }

  const isBytes = (value) => value instanceof Uint8Array || value instanceof ArrayBuffer;

  // A body as bytes: text as UTF-8, a value as JSON, bytes copied.
  function bytesOf(body) {
    if (body instanceof Uint8Array) return new Uint8Array(body);
    if (body instanceof ArrayBuffer) return new Uint8Array(body.slice(0));
    return crypto.decode(typeof body === "string" ? body : stringify(body), "utf8");
  }

  // Records a body; an object becomes JSON. Returns whether it was JSON.
  function recordBody(inv, body) {
    if (typeof body === "string") {
      hostRecord(inv, "body", body);
      return false;
    }
    if (isBytes(body)) {
      hostRecord(inv, "bodyBase64", crypto.encode(body, "base64"));
      return false;
    }
    hostRecord(inv, "body", stringify(body));
    return true;
  }

  function checkStatus(status) {
    if (!Number.isInteger(status) || status < 100 || status > 599) {
      throw new RangeError(`status must be an integer from 100 to 599, got ${stringify(status)}`);
    }
    return status;
  }

  class Response {
    #inv;
    #status;
    #body;
    headers;
    constructor(inv) {
      this.#inv = inv;
      this.headers = new HeaderEditor(inv, RESPONSE);
    }
    get status() {
      return this.#status ?? hostStatus(this.#inv);
    }
    set status(status) {
      this.#status = checkStatus(status);
      hostRecord(this.#inv, "status", String(status));
    }
    setBody(body) {
      this.#body = body;
      if (recordBody(this.#inv, body) && !this.headers.has("content-type")) {
        this.headers.set("content-type", "application/json");
      }
    }
    text() {
      const body = this.#body;
      if (body === undefined) return call(this.#inv, "response.body", ["text"]);
      if (typeof body === "string") return Promise.resolve(body);
      if (isBytes(body)) return Promise.resolve(crypto.encode(body, "utf8"));
      return Promise.resolve(stringify(body));
    }
    async json() {
      return parse(await this.text());
    }
    async bytes() {
      const body = this.#body;
      if (body === undefined) return crypto.decode(await call(this.#inv, "response.body", ["base64"]), "base64");
      return bytesOf(body);
    }
    async arrayBuffer() {
      return (await this.bytes()).buffer;
    }
  }

  // ctx.request: frozen; each member is fetched from Rust when first read, so a hook that
  // reads one header does not pay for the whole request.
  class Request {
    #inv;
    #cache = {};
    constructor(inv) {
      this.#inv = inv;
      freeze(this);
    }
    #text(name) {
      const cache = this.#cache;
      if (!(name in cache)) cache[name] = hostRequest(this.#inv, name) ?? null;
      return cache[name];
    }
    // Without a prototype, so `headers.constructor` is a header that is absent, not a
    // function every request seems to carry.
    #map(name) {
      const cache = this.#cache;
      return (cache[name] ??= freeze(Object.assign(Object.create(null), parse(hostRequest(this.#inv, name) ?? "{}"))));
    }
    get method() { return this.#text("method"); }
    get url() { return this.#text("url"); }
    get path() { return this.#text("path"); }
    get rawQuery() { return this.#text("rawQuery"); }
    get route() { return this.#text("route"); }
    get requestId() { return this.#text("requestId"); }
    get clientIp() { return this.#text("clientIp"); }
    get headers() { return this.#map("headers"); }
    get query() { return this.#map("query"); }
    get pathParams() { return this.#map("pathParams"); }
    text() { return call(this.#inv, "request.body", ["text"]); }
    async json() { return parse(await this.text()); }
    async bytes() { return hostCrypto.decode(await call(this.#inv, "request.body", ["base64"]), "base64"); }
    async arrayBuffer() { return (await this.bytes()).buffer; }
  }
  freeze(Request.prototype);

  // A URI query (RFC 3986): pchar, "/", "?" and percent-encodings.
  const QUERY = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@\/?]|%[0-9A-Fa-f]{2})*$/;

  class Upstream {
    #inv;
    #path;
    #query;
    #body;
    headers;
    constructor(inv) {
      this.#inv = inv;
      this.headers = new HeaderEditor(inv, UPSTREAM);
    }
    get path() {
      return this.#path;
    }
    set path(path) {
      path = String(path);
      if (!path.startsWith("/")) throw new TypeError(`ctx.upstream.path must start with "/", got ${stringify(path)}`);
      this.#path = path;
      hostRecord(this.#inv, "path", path);
    }
    get query() {
      return this.#query;
    }
    get body() {
      return this.#body;
    }
    // Replaces the body sent upstream: text, bytes, or a value sent as JSON.
    set body(body) {
      if (body === undefined) throw new TypeError("ctx.upstream.body cannot be undefined (set \"\" for an empty body)");
      this.#body = body;
      if (typeof body === "string") {
        hostRecord(this.#inv, "upstreamBody", body);
      } else if (isBytes(body)) {
        hostRecord(this.#inv, "upstreamBodyBase64", crypto.encode(body, "base64"));
      } else {
        hostRecord(this.#inv, "upstreamBody", stringify(body));
        if (!this.headers.has("content-type")) this.headers.set("content-type", "application/json");
      }
    }
    // Text (a leading "?" dropped) or a URLSearchParams; characters a query may hold.
    set query(query) {
      query = String(query);
      if (query.startsWith("?")) query = query.slice(1);
      if (!QUERY.test(query)) throw new TypeError(`ctx.upstream.query has characters a query cannot hold (percent-encode them; URLSearchParams does): ${stringify(query)}`);
      this.#query = query;
      hostRecord(this.#inv, "query", query);
    }
  }

  // Configs by the chain link's id: the JSON crosses from Rust only the first time.
  const configs = new Map();
  function configFor(id, inv) {
    let config = configs.get(id);
    if (config === undefined) {
      if (configs.size >= 256) configs.clear();
      config = deepFreeze(parse(hostConfig(inv) ?? "{}"));
      configs.set(id, config);
    }
    return config;
  }

  function makeLog(inv) {
    const at = (level) => (message, fields) =>
      hostLog(inv, level, String(message), fields === undefined ? undefined : stringify(fields));
    return freeze({ debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") });
  }

  // A call's slot: what its ctx reads and what the call leaves behind. Slots, each with
  // its ctx, are reused once their call is over, so a call allocates nothing for its ctx;
  // members (`ctx.request`, `ctx.upstream`, ...) are made when first used. A hook must not
  // keep its ctx past its own end (it would see a later call's).
  class Ctx {
    #s;
    constructor(slot) {
      this.#s = slot;
    }
    get config() {
      return this.#s.config;
    }
    get request() {
      const s = this.#s;
      s.touched = true;
      const m = (s.m ??= {});
      return (m.request ??= new Request(s.inv));
    }
    get state() {
      const s = this.#s;
      s.touched = true;
      if (s.state === undefined) s.state = s.stateJson ? parse(s.stateJson) : {};
      return s.state;
    }
    get user() {
      const s = this.#s;
      s.touched = true;
      if (s.user === undefined && s.userJson) s.user = parse(s.userJson);
      return s.user;
    }
    set user(user) {
      const s = this.#s;
      s.touched = true;
      s.user = user;
      s.userSet = true;
    }
    get response() {
      const s = this.#s;
      s.touched = true;
      const m = (s.m ??= {});
      return (m.response ??= new Response(s.inv));
    }
    get upstream() {
      const s = this.#s;
      s.touched = true;
      const m = (s.m ??= {});
      return (m.upstream ??= new Upstream(s.inv));
    }
    get services() {
      const s = this.#s;
      s.touched = true;
      const m = (s.m ??= {});
      return (m.services ??= services(s.inv));
    }
    get log() {
      const s = this.#s;
      s.touched = true;
      const m = (s.m ??= {});
      return (m.log ??= makeLog(s.inv));
    }
    get crypto() {
      return crypto;
    }
    reject(status, body, headers) {
      this.response.status = checkStatus(status);
      if (body !== undefined) this.response.setBody(body);
      for (const [name, value] of Object.entries(headers ?? {})) this.response.headers.set(name, value);
      hostRecord(this.#s.inv, "rejected", "");
    }
    forward(target) {
      hostRecord(this.#s.inv, "forward", String(target));
    }
  }

  function newSlot() {
    const slot = {
      inv: 0, config: undefined, stateJson: null, userJson: null,
      state: undefined, user: undefined, userSet: false, m: undefined, touched: false,
      ctx: undefined,
    };
    slot.ctx = new Ctx(slot);
    return slot;
  }

  const spare = [];
  function release(slot) {
    if (spare.length < 8) spare.push(slot);
  }

  const OK = "";

  // Hands state and user (the parts kept in JavaScript) to Rust when the hook is done.
  function done(slot) {
    // A user that was read may have been changed in place, like state.
    const user = slot.userSet || slot.user !== undefined;
    if (slot.state === undefined && !user) return OK;
    try {
      const state = slot.state === undefined ? null : stringify(slot.state);
      const userJson = user ? stringify(slot.user === undefined ? null : slot.user) : null;
      hostFinish(slot.inv, state, userJson);
      return OK;
    } catch (error) {
      return failure(error);
    }
  }

  function failure(error, onError) {
    const out = isOutOfMemory(error)
      ? { ok: false, kind: "memory", error: "out of memory" }
      : { ok: false, kind: "exception", error: errorText(error) };
    if (onError !== undefined) out.onError = errorText(onError);
    return stringify(out);
  }

  function isThenable(value) {
    return value !== null && typeof value === "object" && typeof value.then === "function";
  }

  // Returns the report, or undefined when it will come through host.settle. What the hook
  // changed is discarded; only what onError does (e.g. ctx.reject) is kept.
  function thrown(inv, ctx, error) {
    hostDiscard(inv);
    if (isOutOfMemory(error) || typeof plugin.onError !== "function") return failure(error);
    let handled;
    try {
      handled = plugin.onError(ctx, error);
    } catch (onError) {
      return failure(error, onError);
    }
    if (!isThenable(handled)) return failure(error);
    handled.then(
      () => hostSettle(inv, failure(error)),
      (onError) => hostSettle(inv, failure(error, onError)),
    );
    return undefined;
  }

  const hooks = ["onLoad", "beforeRequest", "afterResponse", "onError", "onUnload"].filter(
    (name) => typeof plugin?.[name] === "function",
  );
  // Hooks by the number Rust calls them with (`Hook::index`).
  const HOOKS = ["onLoad", "beforeRequest", "afterResponse", "onUnload"];

  return freeze({
    hooks,
    // The hot path: kept flat, since every function call costs in QuickJS.
    call(hook, inv, configId, stateJson, userJson) {
      let config = configs.get(configId);
      if (config === undefined) config = configFor(configId, inv);
      const slot = spare.pop() ?? newSlot();
      slot.inv = inv;
      slot.config = config;
      slot.stateJson = stateJson;
      slot.userJson = userJson;
      // Members the last call made (the ctx records when it makes one).
      if (slot.touched) {
        slot.state = slot.user = slot.m = undefined;
        slot.userSet = slot.touched = false;
      }
      const ctx = slot.ctx;
      let result;
      try {
        result = plugin[HOOKS[hook]](ctx);
      } catch (error) {
        const out = thrown(inv, ctx, error);
        if (out !== undefined) release(slot);
        return out;
      }
      if (result === undefined || result === null || typeof result.then !== "function") {
        const out = slot.touched ? done(slot) : OK;
        if (spare.length < 8) spare.push(slot);
        return out;
      }
      result.then(
        () => {
          hostSettle(inv, done(slot));
          release(slot);
        },
        (error) => {
          const out = thrown(inv, ctx, error);
          if (out !== undefined) {
            hostSettle(inv, out);
            release(slot);
          }
        },
      );
      return undefined;
    },
  });
});
