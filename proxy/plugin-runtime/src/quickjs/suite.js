// The test side of `weir-proxy plugin test`: runs one test of a `*.test.ts` suite with a
// `t` that drives the plugin under test through the real runtime (host "test.*" calls)
// and asserts on the outcome.
(function (host, suite) {
  "use strict";
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const hostCall = host.call;
  const hostCallNow = host.callNow;
  const hostSettle = host.settle;

  if (suite === null || typeof suite !== "object" || typeof suite.tests !== "object") {
    throw new TypeError("a test file must `export default { tests: { name(t) {…} } }`");
  }

  class AssertionError extends Error {
    constructor(message) {
      super(message);
      this.name = "AssertionError";
    }
  }

  function show(value) {
    try {
      return value === undefined ? "undefined" : stringify(value);
    } catch {
      return String(value);
    }
  }

  function same(a, b) {
    if (Object.is(a, b)) return true;
    if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
    if (Array.isArray(a) !== Array.isArray(b)) return false;
    const keysA = Object.keys(a);
    const keysB = Object.keys(b);
    if (keysA.length !== keysB.length) return false;
    return keysA.every((key) => Object.hasOwn(b, key) && same(a[key], b[key]));
  }

  function fail(message, detail) {
    throw new AssertionError(message ? `${message}: ${detail}` : detail);
  }

  async function call(inv, op, args) {
    const answer = parse(await hostCall(inv, op, stringify(args)));
    if (!answer.ok) throw new Error(answer.error);
    return answer.value;
  }

  function callNow(op, args) {
    const answer = parse(hostCallNow(op, stringify(args)));
    if (!answer.ok) throw new Error(answer.error);
    return answer.value;
  }

  // A time for the clock: milliseconds, a Date, or text Date.parse reads.
  function millis(time) {
    const ms = typeof time === "string" ? Date.parse(time) : Number(time);
    if (!Number.isFinite(ms)) throw new TypeError(`not a time: ${show(time)}`);
    return ms;
  }

  const clock = Object.freeze({
    now: () => callNow("test.clock.now", []),
    set: (time) => callNow("test.clock.set", [millis(time)]),
    advance: (ms) => callNow("test.clock.advance", [millis(ms)]),
  });

  // A stub's bytes body goes as base64.
  function stubAnswer(response) {
    const body = response?.body;
    if (!(body instanceof Uint8Array || body instanceof ArrayBuffer)) return response ?? {};
    const bytes = new Uint8Array(body);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return { ...response, body: undefined, bodyBase64: btoa(binary) };
  }

  const fetchStubs = Object.freeze({
    stub: (url, response, options) =>
      callNow("test.fetch.stub", [String(url), stubAnswer(response), options?.method ?? null]),
    calls: () => callNow("test.fetch.calls", []),
  });

  function makeT(inv) {
    return Object.freeze({
      beforeRequest: (request, options) =>
        call(inv, "test.beforeRequest", [request ?? {}, options?.config ?? null]),
      afterResponse: (before, response) =>
        call(inv, "test.afterResponse", [before?.carry ?? null, response ?? {}]),
      clock,
      fetch: fetchStubs,
      cache: Object.freeze({
        get: (key) => call(inv, "test.cache.get", [String(key)]),
        set: (key, value, options) =>
          call(inv, "test.cache.set", [String(key), value, options?.ttlSeconds ?? null]),
        delete: (key) => call(inv, "test.cache.delete", [String(key)]),
      }),
      logs: () => callNow("test.logs", []),
      equal(actual, expected, message) {
        if (!same(actual, expected)) fail(message, `expected ${show(expected)}, got ${show(actual)}`);
      },
      notEqual(actual, expected, message) {
        if (same(actual, expected)) fail(message, `expected anything but ${show(expected)}`);
      },
      ok(value, message) {
        if (!value) fail(message, `expected a truthy value, got ${show(value)}`);
      },
      match(text, pattern, message) {
        if (typeof text !== "string" || !pattern.test(text)) fail(message, `${show(text)} does not match ${pattern}`);
      },
      fail(message) {
        fail(undefined, message ?? "failed");
      },
    });
  }

  function failure(error) {
    const text = error instanceof Error ? `${error.name}: ${error.message}` : `Uncaught ${show(error)}`;
    return stringify({ ok: false, kind: "exception", error: text });
  }

  const passed = stringify({ ok: true });

  return Object.freeze({
    hooks: [],
    describe: stringify({
      plugin: typeof suite.plugin === "string" ? suite.plugin : null,
      config: suite.config ?? {},
      timeoutMs: Number.isInteger(suite.timeoutMs) && suite.timeoutMs > 0 ? suite.timeoutMs : null,
      tests: Object.keys(suite.tests),
    }),
    run(name, inv) {
      const test = suite.tests[name];
      let result;
      try {
        result = test(makeT(inv));
      } catch (error) {
        return failure(error);
      }
      if (result === null || typeof result !== "object" || typeof result.then !== "function") return passed;
      result.then(
        () => hostSettle(inv, passed),
        (error) => hostSettle(inv, failure(error)),
      );
      return undefined;
    },
  });
});
