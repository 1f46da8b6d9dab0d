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
  const hostResponse = host.response;
  const hostLog = host.log;
  const hostCrypto = host.crypto;
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
  const BEFORE = "beforeRequest";
  const AFTER = "afterResponse";

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

  function bodyReader(inv, op) {
    return {
      text: () => call(inv, op, ["text"]),
      json: async () => parse(await call(inv, op, ["text"])),
      bytes: async () => hostCrypto.decode(await call(inv, op, ["base64"]), "base64"),
    };
  }

  function services(inv) {
    return freeze({
      cache: freeze({
        get: (key) => call(inv, "cache.get", [String(key)]),
        set: (key, value, options) =>
          call(inv, "cache.set", [String(key), stringify(value), options?.ttlSeconds ?? null]),
        delete: (key) => call(inv, "cache.delete", [String(key)]),
        incr: (key, options) =>
          call(inv, "cache.incr", [String(key), options?.by ?? 1, options?.ttlSeconds ?? null]),
      }),
      http: freeze({
        fetch: async (url, init) => {
          const request = {
            url: String(url),
            method: init?.method ?? "GET",
            headers: init?.headers ?? {},
            body: init?.body === undefined ? null : typeof init.body === "string" ? init.body : stringify(init.body),
            timeoutMs: init?.timeoutMs ?? null,
          };
          const response = await call(inv, "http.fetch", [request]);
          const body = response.body;
          return freeze({
            status: response.status,
            ok: response.status >= 200 && response.status < 300,
            headers: freeze(response.headers),
            text: async () => body,
            json: async () => parse(body),
          });
        },
      }),
    });
  }

  function headerName(name) {
    const lower = String(name).toLowerCase();
    if (!TOKEN.test(lower)) throw new TypeError(`invalid header name ${stringify(String(name))}`);
    return lower;
  }

  // Header edits in the shape of Rust's HeaderEdits: remove, then set, then append.
  class HeaderEditor {
    #base;
    #edits = null;
    constructor(base) {
      this.#base = base;
    }
    #e() {
      return (this.#edits ??= { set: {}, append: {}, remove: {} });
    }
    set(name, value) {
      name = headerName(name);
      const edits = this.#e();
      edits.set[name] = [String(value)];
      delete edits.append[name];
    }
    append(name, value) {
      name = headerName(name);
      const edits = this.#e();
      if (edits.set[name]) edits.set[name].push(String(value));
      else (edits.append[name] ??= []).push(String(value));
    }
    delete(name) {
      name = headerName(name);
      const edits = this.#e();
      delete edits.set[name];
      delete edits.append[name];
      edits.remove[name] = true;
    }
    get(name) {
      name = String(name).toLowerCase();
      const edits = this.#edits;
      if (edits?.set[name]) return edits.set[name].join(", ");
      const added = edits?.append[name];
      const base = edits?.remove[name] ? undefined : this.#base()?.[name];
      if (base === undefined) return added ? added.join(", ") : null;
      return added ? [base, ...added].join(", ") : base;
    }
    has(name) {
      return this.get(name) !== null;
    }
    patch() {
      const edits = this.#edits;
      return edits && { set: edits.set, append: edits.append, remove: keys(edits.remove) };
    }
  }

  function bodyPatch(body) {
    if (typeof body === "string") return { body };
    if (body instanceof Uint8Array || body instanceof ArrayBuffer) {
      return { body: crypto.encode(body, "base64"), bodyBase64: true };
    }
    return { body: stringify(body), json: true };
  }

  function checkStatus(status) {
    if (!Number.isInteger(status) || status < 100 || status > 599) {
      throw new RangeError(`status must be an integer from 100 to 599, got ${stringify(status)}`);
    }
    return status;
  }

  class Response {
    #inv;
    #hook;
    #info;
    #status;
    #body;
    headers;
    constructor(inv, hook) {
      this.#inv = inv;
      this.#hook = hook;
      this.headers = new HeaderEditor(() => this.#upstream()?.headers);
    }
    #upstream() {
      if (this.#hook !== AFTER) return undefined;
      return (this.#info ??= parse(hostResponse(this.#inv)));
    }
    get status() {
      return this.#status ?? this.#upstream()?.status ?? 0;
    }
    set status(status) {
      this.#status = checkStatus(status);
    }
    setBody(body) {
      this.#body = bodyPatch(body);
      if (this.#body.json && !this.headers.has("content-type")) {
        this.headers.set("content-type", "application/json");
      }
    }
    text() {
      if (this.#body) return Promise.resolve(this.#body.bodyBase64 ? crypto.decode(this.#body.body, "base64") : this.#body.body);
      return call(this.#inv, "response.body", ["text"]);
    }
    async json() {
      return parse(await this.text());
    }
    patch() {
      const headers = this.headers.patch();
      if (this.#status === undefined && this.#body === undefined && !headers) return undefined;
      return { status: this.#status, headers, body: this.#body?.body, bodyBase64: this.#body?.bodyBase64 ?? false };
    }
    get answered() {
      return this.#status !== undefined || this.#body !== undefined;
    }
  }

  class Upstream {
    path;
    headers;
    constructor(request) {
      this.headers = new HeaderEditor(() => request().headers);
    }
  }

  const configs = new Map();
  function configFor(id, json) {
    let config = configs.get(id);
    if (config === undefined) {
      if (configs.size >= 256) configs.clear();
      config = deepFreeze(parse(json));
      configs.set(id, config);
    }
    return config;
  }

  function makeLog(inv) {
    const at = (level) => (message, fields) =>
      hostLog(inv, level, String(message), fields === undefined ? undefined : stringify(fields));
    return freeze({ debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") });
  }

  let reportOf;
  class Ctx {
    #inv;
    #hook;
    #state;
    #stateJson;
    #user;
    #userJson;
    #userSet = false;
    #request;
    #response;
    #upstream;
    #services;
    #log;
    #forward;
    #rejected = false;
    config;
    constructor(inv, hook, config, stateJson, userJson) {
      this.#inv = inv;
      this.#hook = hook;
      this.config = config;
      this.#stateJson = stateJson;
      this.#userJson = userJson;
    }
    get request() {
      if (this.#request === undefined) {
        const request = parse(hostRequest(this.#inv));
        Object.assign(request, bodyReader(this.#inv, "request.body"));
        this.#request = deepFreeze(request);
      }
      return this.#request;
    }
    get state() {
      if (this.#state === undefined) this.#state = this.#stateJson ? parse(this.#stateJson) : {};
      return this.#state;
    }
    get user() {
      if (this.#user === undefined && this.#userJson) this.#user = parse(this.#userJson);
      return this.#user;
    }
    set user(user) {
      this.#user = user;
      this.#userSet = true;
    }
    get response() {
      return (this.#response ??= new Response(this.#inv, this.#hook));
    }
    get upstream() {
      return (this.#upstream ??= new Upstream(() => this.request));
    }
    get services() {
      return (this.#services ??= services(this.#inv));
    }
    get log() {
      return (this.#log ??= makeLog(this.#inv));
    }
    get crypto() {
      return crypto;
    }
    reject(status, body, headers) {
      this.response.status = checkStatus(status);
      if (body !== undefined) this.response.setBody(body);
      for (const [name, value] of Object.entries(headers ?? {})) this.response.headers.set(name, value);
      this.#rejected = true;
    }
    forward(target) {
      this.#forward = String(target);
    }
    static {
      reportOf = (ctx) => ctx.#report();
    }
    #report() {
      const report = { ok: true };
      if (this.#state !== undefined) report.state = stringify(this.#state);
      if (this.#userSet) report.user = this.#user === undefined ? null : stringify(this.#user);
      const upstream = this.#upstream;
      if (upstream) {
        report.upstream = upstream.headers.patch() ?? undefined;
        if (upstream.path !== undefined) {
          const path = String(upstream.path);
          if (!path.startsWith("/")) throw new TypeError(`ctx.upstream.path must start with "/", got ${stringify(path)}`);
          report.path = path;
        }
      }
      if (this.#forward !== undefined) report.forward = this.#forward;
      const response = this.#response;
      if (response) {
        report.response = response.patch();
        report.answer = this.#rejected || (this.#hook === BEFORE && response.answered);
      }
      report.rejected = this.#rejected;
      return report;
    }
  }

  function report(ctx) {
    try {
      return stringify(reportOf(ctx));
    } catch (error) {
      return failure(error);
    }
  }

  function failure(error, ctx, onError) {
    const out = isOutOfMemory(error)
      ? { ok: false, kind: "memory", error: "out of memory" }
      : { ok: false, kind: "exception", error: errorText(error) };
    if (onError !== undefined) out.onError = errorText(onError);
    if (ctx !== undefined) {
      // What onError answered (ctx.reject) is kept; everything else of a failed hook is not.
      try {
        const answered = reportOf(ctx);
        if (answered.answer) {
          out.response = answered.response;
          out.answer = true;
          out.rejected = answered.rejected;
        }
      } catch {
        // onError left ctx unreportable: the failure stands alone.
      }
    }
    return stringify(out);
  }

  function isThenable(value) {
    return value !== null && typeof value === "object" && typeof value.then === "function";
  }

  // Returns the report, or undefined when it will come through host.settle.
  function thrown(inv, ctx, error) {
    if (isOutOfMemory(error) || typeof plugin.onError !== "function") return failure(error);
    let handled;
    try {
      handled = plugin.onError(ctx, error);
    } catch (onError) {
      return failure(error, ctx, onError);
    }
    if (!isThenable(handled)) return failure(error, ctx);
    handled.then(
      () => hostSettle(inv, failure(error, ctx)),
      (onError) => hostSettle(inv, failure(error, ctx, onError)),
    );
    return undefined;
  }

  const hooks = ["onLoad", "beforeRequest", "afterResponse", "onError"].filter(
    (name) => typeof plugin?.[name] === "function",
  );

  return freeze({
    hooks,
    call(hook, inv, configId, configJson, stateJson, userJson) {
      const ctx = new Ctx(inv, hook, configFor(configId, configJson), stateJson, userJson);
      let result;
      try {
        result = plugin[hook](ctx);
      } catch (error) {
        return thrown(inv, ctx, error);
      }
      if (!isThenable(result)) return report(ctx);
      result.then(
        () => hostSettle(inv, report(ctx)),
        (error) => {
          const out = thrown(inv, ctx, error);
          if (out !== undefined) hostSettle(inv, out);
        },
      );
      return undefined;
    },
  });
});
