// Standard globals plugin authors expect from browsers and Node, none of which reach
// outside the isolate: atob/btoa, TextEncoder/TextDecoder (UTF-8), structuredClone, URL
// URLSearchParams and console. Called once per isolate, before the plugin module is
// evaluated (so its top-level code may use them), with the global object, the URL
// Standard's parser (Rust's `url` crate: `parseUrl(input, base, setter, value)`, each
// argument given, null when absent, gives the components as JSON, or null for no URL),
// the console's way to the proxy's log (`log(level, message)`) and Rust's UTF-8 decoding
// (`decodeUtf8(binaryString, fatal, stream)` gives `{text, used}`, throws for bad UTF-8
// when fatal).
(function (global, parseUrl, log, decodeUtf8) {
  "use strict";
  const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const VALUES = {};
  for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET[i]] = i;

  function invalidCharacter(message) {
    const error = new Error(message);
    error.name = "InvalidCharacterError";
    return error;
  }

  // Base64 of a string whose characters are all bytes (U+0000 to U+00FF).
  function btoa(data) {
    const text = String(data);
    let out = "";
    for (let i = 0; i < text.length; i += 3) {
      const a = text.charCodeAt(i);
      const b = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      const c = i + 2 < text.length ? text.charCodeAt(i + 2) : 0;
      if (a > 0xff || b > 0xff || c > 0xff) {
        throw invalidCharacter("btoa: the string has characters outside of Latin-1");
      }
      const bits = (a << 16) | (b << 8) | c;
      out += ALPHABET[bits >> 18] + ALPHABET[(bits >> 12) & 63];
      out += i + 1 < text.length ? ALPHABET[(bits >> 6) & 63] : "=";
      out += i + 2 < text.length ? ALPHABET[bits & 63] : "=";
    }
    return out;
  }

  // The bytes of base64 `data` as a string of U+0000 to U+00FF (forgiving-base64 decode).
  function atob(data) {
    let text = String(data).replace(/[\t\n\f\r ]/g, "");
    if (text.length % 4 === 0) text = text.replace(/==?$/, "");
    if (text.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(text)) {
      throw invalidCharacter("atob: not valid base64");
    }
    let out = "";
    let bits = 0;
    let count = 0;
    for (const char of text) {
      bits = (bits << 6) | VALUES[char];
      count += 6;
      if (count >= 8) {
        count -= 8;
        out += String.fromCharCode((bits >> count) & 0xff);
      }
    }
    return out;
  }

  // A string as UTF-8 into `dest`, as much as fits; lone surrogates become U+FFFD.
  function utf8(text, dest) {
    let read = 0;
    let written = 0;
    for (let i = 0; i < text.length; i++) {
      let code = text.charCodeAt(i);
      let units = 1;
      if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
        const next = text.charCodeAt(i + 1);
        if (next >= 0xdc00 && next <= 0xdfff) {
          code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
          units = 2;
        }
      }
      if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
      const size = code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
      if (written + size > dest.length) break;
      if (size === 1) {
        dest[written++] = code;
      } else {
        const lead = size === 2 ? 0xc0 : size === 3 ? 0xe0 : 0xf0;
        dest[written++] = lead | (code >> (6 * (size - 1)));
        for (let shift = 6 * (size - 2); shift >= 0; shift -= 6) {
          dest[written++] = 0x80 | ((code >> shift) & 63);
        }
      }
      read += units;
      i += units - 1;
    }
    return { read, written };
  }

  class TextEncoder {
    get encoding() {
      return "utf-8";
    }

    encode(input = "") {
      const text = String(input);
      const bytes = new Uint8Array(text.length * 3);
      return bytes.slice(0, utf8(text, bytes).written);
    }

    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array)) {
        throw new TypeError("encodeInto: the destination must be a Uint8Array");
      }
      return utf8(String(source), destination);
    }
  }

  const EMPTY = new Uint8Array(0);

  // Bytes as a binary string (one character per byte), the form Rust takes them in.
  function binary(bytes) {
    let text = "";
    for (let i = 0; i < bytes.length; i += 8192) {
      text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    }
    return text;
  }
  const UTF8_LABELS = ["utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"];

  function bytesOf(input) {
    if (input === undefined) return new Uint8Array(0);
    if (input instanceof ArrayBuffer) return new Uint8Array(input);
    if (ArrayBuffer.isView(input)) {
      return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    }
    throw new TypeError("decode: expected an ArrayBuffer or a view of one");
  }

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    #pending = EMPTY;
    #started = false;

    constructor(label = "utf-8", options = {}) {
      if (!UTF8_LABELS.includes(String(label).trim().toLowerCase())) {
        throw new RangeError(`TextDecoder: only UTF-8 is supported, not ${JSON.stringify(String(label))}`);
      }
      this.#fatal = Boolean(options && options.fatal);
      this.#ignoreBOM = Boolean(options && options.ignoreBOM);
    }

    get encoding() {
      return "utf-8";
    }

    get fatal() {
      return this.#fatal;
    }

    get ignoreBOM() {
      return this.#ignoreBOM;
    }

    decode(input, options = {}) {
      const stream = Boolean(options && options.stream);
      let bytes = bytesOf(input);
      const pending = this.#pending;
      if (pending.length > 0) {
        const joined = new Uint8Array(pending.length + bytes.length);
        joined.set(pending);
        joined.set(bytes, pending.length);
        bytes = joined;
      }
      this.#pending = EMPTY;
      let decoded;
      try {
        decoded = decodeUtf8(binary(bytes), this.#fatal, stream);
      } catch (error) {
        this.#started = false;
        throw error;
      }
      let out = decoded.text;
      if (decoded.used < bytes.length) this.#pending = bytes.slice(decoded.used);
      if (!this.#started && out.length > 0) {
        this.#started = true;
        if (!this.#ignoreBOM && out.charCodeAt(0) === 0xfeff) out = out.slice(1);
      }
      if (!stream) {
        this.#started = false;
      }
      return out;
    }
  }

  function dataCloneError(what) {
    const error = new Error(`structuredClone: ${what} cannot be cloned`);
    error.name = "DataCloneError";
    return error;
  }

  // A deep copy by the structured clone algorithm, for the types an isolate has: plain
  // objects, arrays, Date, RegExp, Map, Set, ArrayBuffer and its views, errors, with
  // shared and circular references kept.
  function structuredClone(value) {
    const seen = new Map();
    function clone(v) {
      if (v === null || (typeof v !== "object" && typeof v !== "function" && typeof v !== "symbol")) {
        return v;
      }
      if (typeof v === "function") throw dataCloneError("a function");
      if (typeof v === "symbol") throw dataCloneError("a symbol");
      if (seen.has(v)) return seen.get(v);
      let copy;
      if (Array.isArray(v)) {
        copy = new Array(v.length);
        seen.set(v, copy);
        for (const key of Object.keys(v)) copy[key] = clone(v[key]);
        return copy;
      }
      if (v instanceof Date) copy = new Date(v.getTime());
      else if (v instanceof RegExp) copy = new RegExp(v.source, v.flags);
      else if (v instanceof ArrayBuffer) copy = v.slice(0);
      else if (ArrayBuffer.isView(v)) {
        const buffer = clone(v.buffer);
        copy = v instanceof DataView
          ? new DataView(buffer, v.byteOffset, v.byteLength)
          : new v.constructor(buffer, v.byteOffset, v.length);
      } else if (v instanceof Map) {
        copy = new Map();
        seen.set(v, copy);
        for (const [k, item] of v) copy.set(clone(k), clone(item));
        return copy;
      } else if (v instanceof Set) {
        copy = new Set();
        seen.set(v, copy);
        for (const item of v) copy.add(clone(item));
        return copy;
      } else if (v instanceof Error) {
        copy = new Error(v.message);
        copy.name = v.name;
      } else if (v instanceof Promise || v instanceof WeakMap || v instanceof WeakSet) {
        throw dataCloneError(Object.prototype.toString.call(v));
      } else {
        copy = {};
        seen.set(v, copy);
        for (const key of Object.keys(v)) copy[key] = clone(v[key]);
        return copy;
      }
      seen.set(v, copy);
      return copy;
    }
    return clone(value);
  }

  // application/x-www-form-urlencoded, as the URL Standard defines it.
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const KEEP = /[*\-._0-9A-Za-z]/;

  function formEncode(text) {
    let out = "";
    for (const byte of encoder.encode(text)) {
      const char = String.fromCharCode(byte);
      if (byte === 0x20) out += "+";
      else if (KEEP.test(char)) out += char;
      else out += "%" + (byte < 16 ? "0" : "") + byte.toString(16).toUpperCase();
    }
    return out;
  }

  function formDecode(text) {
    const bytes = encoder.encode(text.replace(/\+/g, " "));
    const out = [];
    for (let i = 0; i < bytes.length; i++) {
      const hex = String.fromCharCode(bytes[i + 1] ?? 0, bytes[i + 2] ?? 0);
      if (bytes[i] === 0x25 && /^[0-9A-Fa-f]{2}$/.test(hex)) {
        out.push(parseInt(hex, 16));
        i += 2;
      } else {
        out.push(bytes[i]);
      }
    }
    return decoder.decode(new Uint8Array(out));
  }

  function parseForm(query) {
    const list = [];
    for (const part of query.split("&")) {
      if (part === "") continue;
      const at = part.indexOf("=");
      const name = at < 0 ? part : part.slice(0, at);
      const value = at < 0 ? "" : part.slice(at + 1);
      list.push([formDecode(name), formDecode(value)]);
    }
    return list;
  }

  // Lets a URL and its searchParams keep each other up to date.
  const LINK = Symbol("url");
  const RESET = Symbol("reset");

  class URLSearchParams {
    #list = [];
    [LINK] = null;

    constructor(init = "") {
      if (init instanceof URLSearchParams) {
        this.#list = [...init];
      } else if (init !== null && typeof init === "object") {
        if (typeof init[Symbol.iterator] === "function") {
          for (const pair of init) {
            const entry = [...pair];
            if (entry.length !== 2) throw new TypeError("URLSearchParams: each pair needs a name and a value");
            this.#list.push([String(entry[0]), String(entry[1])]);
          }
        } else {
          for (const name of Object.keys(init)) this.#list.push([name, String(init[name])]);
        }
      } else {
        const text = String(init);
        this.#list = parseForm(text.startsWith("?") ? text.slice(1) : text);
      }
    }

    [RESET](query) {
      this.#list = parseForm(query);
    }

    #changed() {
      if (this[LINK]) this[LINK](this.toString());
    }

    get size() {
      return this.#list.length;
    }

    append(name, value) {
      this.#list.push([String(name), String(value)]);
      this.#changed();
    }

    delete(name, value) {
      name = String(name);
      this.#list = this.#list.filter(([n, v]) => n !== name || (value !== undefined && v !== String(value)));
      this.#changed();
    }

    get(name) {
      const found = this.#list.find(([n]) => n === String(name));
      return found ? found[1] : null;
    }

    getAll(name) {
      return this.#list.filter(([n]) => n === String(name)).map(([, v]) => v);
    }

    has(name, value) {
      return this.#list.some(([n, v]) => n === String(name) && (value === undefined || v === String(value)));
    }

    set(name, value) {
      name = String(name);
      const first = this.#list.findIndex(([n]) => n === name);
      if (first < 0) {
        this.#list.push([name, String(value)]);
      } else {
        this.#list[first] = [name, String(value)];
        this.#list = this.#list.filter(([n], i) => n !== name || i === first);
      }
      this.#changed();
    }

    sort() {
      // Stable, by UTF-16 code units.
      this.#list = this.#list
        .map((entry, i) => [entry, i])
        .sort(([a, i], [b, j]) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : i - j))
        .map(([entry]) => entry);
      this.#changed();
    }

    forEach(callback, thisArg) {
      for (const [name, value] of this) callback.call(thisArg, value, name, this);
    }

    *entries() {
      for (const [name, value] of this.#list) yield [name, value];
    }

    *keys() {
      for (const [name] of this.#list) yield name;
    }

    *values() {
      for (const [, value] of this.#list) yield value;
    }

    [Symbol.iterator]() {
      return this.entries();
    }

    toString() {
      return this.#list.map(([n, v]) => `${formEncode(n)}=${formEncode(v)}`).join("&");
    }
  }

  function parsed(json) {
    return json === null || json === undefined ? null : JSON.parse(json);
  }

  // The components of `input` resolved against `base` (undefined: none), or null.
  function parse(input, base) {
    return parsed(parseUrl(String(input), base === undefined ? null : String(base), null, null));
  }

  class URL {
    #parts;
    #params;

    constructor(input, base) {
      const parts = parse(input, base);
      if (parts === null) throw new TypeError(`Invalid URL: ${JSON.stringify(String(input))}`);
      this.#parts = parts;
      this.#params = new URLSearchParams(parts.search);
      // An empty list leaves no "?" behind (the search setter's rule).
      this.#params[LINK] = (query) => this.#update("search", query);
    }

    static canParse(input, base) {
      return parse(input, base) !== null;
    }

    static parse(input, base) {
      try {
        return new URL(input, base);
      } catch {
        return null;
      }
    }

    #update(setter, value) {
      this.#parts = parsed(parseUrl(this.#parts.href, null, setter, String(value)));
    }

    get href() {
      return this.#parts.href;
    }

    set href(value) {
      const parts = parse(value);
      if (parts === null) throw new TypeError(`Invalid URL: ${JSON.stringify(String(value))}`);
      this.#parts = parts;
      this.#params[RESET](parts.search.slice(1));
    }

    get origin() {
      return this.#parts.origin;
    }

    get searchParams() {
      return this.#params;
    }

    get search() {
      return this.#parts.search;
    }

    set search(value) {
      this.#update("search", value);
      this.#params[RESET](this.#parts.search.slice(1));
    }

    // The components read from the parse and written through its setters, alike.
    static {
      for (const name of ["protocol", "username", "password", "host", "hostname", "port", "pathname", "hash"]) {
        Object.defineProperty(URL.prototype, name, {
          get() {
            return this.#parts[name];
          },
          set(value) {
            this.#update(name, value);
          },
          configurable: true,
        });
      }
    }

    toString() {
      return this.href;
    }

    toJSON() {
      return this.href;
    }
  }

  // One argument as console.log shows it: strings as they are, errors with their stack,
  // the rest as JSON when it has some.
  function show(value) {
    if (typeof value === "string") return value;
    if (value instanceof Error) return value.stack ? `${value.name}: ${value.message}\n${value.stack}` : `${value.name}: ${value.message}`;
    if (typeof value === "object" && value !== null) {
      try {
        return JSON.stringify(value) ?? String(value);
      } catch {
        return String(value);
      }
    }
    return String(value);
  }

  const write = (level) => (...args) => log(level, args.map(show).join(" "));
  const console = Object.freeze({
    log: write("info"),
    info: write("info"),
    debug: write("debug"),
    trace: write("debug"),
    warn: write("warn"),
    error: write("error"),
  });

  for (const [name, value] of Object.entries({ atob, btoa, TextEncoder, TextDecoder, structuredClone, URL, URLSearchParams, console })) {
    Object.defineProperty(global, name, { value, writable: true, configurable: true, enumerable: false });
  }
})
