// Types of weir plugins: what a hook's `ctx` offers, and the test API of
// `weir-proxy plugin test`. Plugins import them as types only:
//
//   import type { Plugin } from "weir";
//   export default { beforeRequest(ctx) { ... } } satisfies Plugin;
//
// docs/plugins.md describes the phases, limits and failure handling.

declare module "weir" {
  /** JSON values: configs, state, user, cache entries. */
  export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

  /** Bytes given to crypto functions: UTF-8 text, or raw bytes. */
  export type BytesLike = string | Uint8Array | ArrayBuffer;

  /** Text encodings of bytes. */
  export type Encoding = "hex" | "base64" | "base64url" | "utf8";

  /** A plugin module's default export. Every hook may be async. */
  export interface Plugin<Config = any> {
    /** Once per isolate per plugin version, before any request. Throwing fails the load. */
    onLoad?(ctx: LoadContext<Config>): void | Promise<void>;
    /** Before the upstream call. May answer directly (`ctx.reject`, `ctx.response.status`). */
    beforeRequest?(ctx: Context<Config>): void | Promise<void>;
    /** After the upstream response (or a direct answer of a later plugin), before it is sent. */
    afterResponse?(ctx: Context<Config>): void | Promise<void>;
    /** When this plugin's hook threw. May answer with `ctx.reject`; otherwise failurePolicy decides. */
    onError?(ctx: Context<Config>, error: unknown): void | Promise<void>;
    /**
     * Once per isolate when this plugin version is retired (a new version replaced it, or it
     * was removed), with the same `ctx` as `onLoad`: release what `onLoad` set up (cached
     * keys, counters). Calls in flight may still finish; failures are logged, nothing else.
     */
    onUnload?(ctx: LoadContext<Config>): void | Promise<void>;
  }

  /** `ctx` of `onLoad`: no request. */
  export interface LoadContext<Config = any> {
    /** The plugin's own config (deeply frozen). */
    readonly config: Readonly<Config>;
    readonly log: Log;
    readonly services: Services;
    readonly crypto: Crypto;
  }

  /** `ctx` of `beforeRequest`, `afterResponse` and `onError`. */
  export interface Context<Config = any> extends LoadContext<Config> {
    /** The config for this route: the plugin's, merged with the route's override. */
    readonly config: Readonly<Config>;
    /** The client's request, as received (deeply frozen). */
    readonly request: Request;
    /** Changes to the request sent upstream. */
    readonly upstream: Upstream;
    /** The response: headers to add in `beforeRequest`, the upstream response in `afterResponse`. */
    readonly response: ResponseBuilder;
    /**
     * Who the request is from, as a plugin set it; shared with later plugins and
     * `afterResponse`. Changes made in place count as much as an assignment.
     */
    user: Json | undefined;
    /** A per-request bag shared by all plugins of the request, in both phases (JSON values only). */
    readonly state: { [key: string]: Json };
    /**
     * Answers the request with `status` and stops the chain. In `beforeRequest` the request
     * does not go upstream. An object body is sent as JSON. `return ctx.reject(...)` to stop
     * the hook too. Counted as `rejected` in metrics; not an error.
     */
    reject(status: number, body?: string | Uint8Array | Json, headers?: Record<string, string>): void;
    /**
     * Sends the request to another backend of the route (by backend id, e.g.
     * `service:shop/api-canary:8080`) or to an allow-listed URL. Anything else is logged and ignored.
     */
    forward(target: string): void;
  }

  /** The client's request. */
  export interface Request {
    readonly method: string;
    /** The full URL (`https://host/path?query`). */
    readonly url: string;
    /** The normalized path, without the query. */
    readonly path: string;
    /** Decoded query parameters (first value of each name). */
    readonly query: Readonly<Record<string, string>>;
    /** The query string as received, without `?`. */
    readonly rawQuery: string;
    /** Headers by lower-case name; repeated headers joined with ", " (cookies with "; "). */
    readonly headers: Readonly<Record<string, string>>;
    /** `namespace/name` of the matched Route. */
    readonly route: string;
    /** Values of the route's `{param}` segments. */
    readonly pathParams: Readonly<Record<string, string>>;
    /** The client's IP address, or null when unknown. */
    readonly clientIp: string | null;
    /** The request id (also in access logs and `x-request-id`). */
    readonly requestId: string;
    /** The body as text; rejects when it is larger than the proxy's body limit (64 KiB by default). */
    text(): Promise<string>;
    /** The body parsed as JSON. */
    json<T = Json>(): Promise<T>;
    /** The body as bytes. */
    bytes(): Promise<Uint8Array>;
    arrayBuffer(): Promise<ArrayBuffer>;
  }

  /** Header edits. Names are case-insensitive; invalid names throw a TypeError. */
  export interface HeaderEditor {
    /** The current value (with the edits made so far), or null. */
    get(name: string): string | null;
    has(name: string): boolean;
    /**
     * Every header as `[name, value]` pairs, with the edits made so far: names lower case,
     * repeated headers (`set-cookie`) as separate pairs.
     */
    entries(): Array<[string, string]>;
    /** The names of the headers, lower case, each once. */
    keys(): string[];
    /** Replaces every value of `name`. */
    set(name: string, value: string): void;
    /** Adds a value (e.g. another `set-cookie`). */
    append(name: string, value: string): void;
    delete(name: string): void;
  }

  /** The request as it will be sent upstream. */
  export interface Upstream {
    readonly headers: HeaderEditor;
    /**
     * A new path (optionally with `?query`); must start with "/". Replaces the Route's
     * rewrite of the client's path; without a query, the client's query is kept.
     */
    path: string | undefined;
    /**
     * A new query (text without `?`, or a URLSearchParams), sent after whatever path goes
     * upstream (the Route's rewrite, or `path`); `""` sends none. Start from
     * `ctx.request.rawQuery` to edit the client's: `const q = new URLSearchParams(ctx.request.rawQuery);
     * q.delete("api_key"); ctx.upstream.query = q;`. Characters a query cannot hold throw a
     * TypeError. Reads what this plugin set (undefined until then).
     */
    get query(): string | undefined;
    set query(query: string | URLSearchParams);
    /**
     * A body sent upstream instead of the client's: text, bytes, or a value sent as JSON
     * (with `content-type: application/json` unless the request has a content-type). The
     * proxy sets its `content-length`. `ctx.request` still reads the client's body. Reads
     * what this plugin set (undefined until then).
     */
    get body(): string | Uint8Array | ArrayBuffer | Json | undefined;
    set body(body: string | Uint8Array | ArrayBuffer | Json);
  }

  /** The response. */
  export interface ResponseBuilder {
    /**
     * The status: the upstream's in `afterResponse`, 0 in `beforeRequest` until set. Setting
     * it in `beforeRequest` answers the request directly.
     */
    status: number;
    readonly headers: HeaderEditor;
    /** Replaces the body; an object is sent as JSON (with `content-type: application/json`). */
    setBody(body: string | Uint8Array | Json): void;
    /** The body (the upstream's, or as replaced); rejects above the body limit. */
    text(): Promise<string>;
    json<T = Json>(): Promise<T>;
    bytes(): Promise<Uint8Array>;
    arrayBuffer(): Promise<ArrayBuffer>;
  }

  /** Structured logs, tagged with the plugin and the request id. */
  export interface Log {
    debug(message: string, fields?: Record<string, Json>): void;
    info(message: string, fields?: Record<string, Json>): void;
    warn(message: string, fields?: Record<string, Json>): void;
    error(message: string, fields?: Record<string, Json>): void;
  }

  /** Host services; each call is awaited, and counts against the hook's time budget. */
  export interface Services {
    readonly cache: Cache;
    readonly http: Http;
  }

  /**
   * A key-value store shared by every isolate of the proxy (and every replica when the
   * proxy has a Redis URL). Keys are private to the plugin.
   */
  export interface Cache {
    get<T = Json>(key: string): Promise<T | null>;
    set(key: string, value: Json, options?: { ttlSeconds?: number }): Promise<void>;
    /**
     * Stores the value only when the key has no entry (set-if-absent), atomically, across
     * proxies too with Redis: whether it stored. A nonce seen twice, a lock, a first hit.
     */
    add(key: string, value: Json, options?: { ttlSeconds?: number }): Promise<boolean>;
    /**
     * Replaces the entry only when it holds `expected` (compared as `JSON.stringify` text;
     * `undefined`: only when there is no entry), atomically: whether it replaced. The new
     * entry expires after `ttlSeconds`.
     */
    compareAndSet(
      key: string,
      expected: Json | undefined,
      value: Json,
      options?: { ttlSeconds?: number },
    ): Promise<boolean>;
    /** Whether the key existed. */
    delete(key: string): Promise<boolean>;
    /**
     * Adds `by` (default 1) to an integer entry (missing counts as 0) and returns the sum. A new
     * counter expires after `ttlSeconds`; later increments keep that expiry (a fixed window).
     */
    incr(key: string, options?: { by?: number; ttlSeconds?: number }): Promise<number>;
  }

  /** Outbound HTTP. Loopback, private, link-local and metadata addresses are refused (also
   * behind DNS names) unless the proxy allow-lists them. Redirects are not followed. */
  export interface Http {
    fetch(url: string, init?: FetchInit): Promise<FetchResponse>;
  }

  export interface FetchInit {
    method?: string;
    headers?: Record<string, string>;
    /** Text, bytes, or a value sent as JSON. */
    body?: string | Uint8Array | ArrayBuffer | Json;
    /** Time limit (capped by the proxy); default 2000. */
    timeoutMs?: number;
  }

  export interface FetchResponse {
    readonly status: number;
    readonly ok: boolean;
    readonly headers: Readonly<Record<string, string>>;
    /** The body as text (bytes that are not UTF-8 become U+FFFD). */
    text(): Promise<string>;
    json<T = Json>(): Promise<T>;
    /** The body's bytes, exactly. */
    bytes(): Promise<Uint8Array>;
    arrayBuffer(): Promise<ArrayBuffer>;
  }

  /** Cryptography done by the proxy (QuickJS has none). Without `encoding`, bytes come back as a Uint8Array. */
  export interface Crypto {
    sha256(data: BytesLike): Uint8Array;
    sha256(data: BytesLike, encoding: Encoding): string;
    hmac(algorithm: HmacAlgorithm, key: BytesLike, data: BytesLike): Uint8Array;
    hmac(algorithm: HmacAlgorithm, key: BytesLike, data: BytesLike, encoding: Encoding): string;
    /** Equality in time that depends only on the lengths. */
    timingSafeEqual(a: BytesLike, b: BytesLike): boolean;
    /**
     * Whether `signature` signs `data`. `key` is a PEM `PUBLIC KEY` or a JWK of the
     * algorithm's kind (an RSA key for RS/PS, a P-256 key for ES256, P-384 for ES384, Ed25519
     * for EdDSA); any other key throws a TypeError rather than verifying some other way.
     * ES256/ES384 take the fixed-size `r‖s` form of JWS; RSA keys need 2048 bits or more.
     */
    verify(algorithm: SignatureAlgorithm, key: string | JsonWebKey, data: BytesLike, signature: BytesLike): boolean;
    randomBytes(length: number): Uint8Array;
    randomBytes(length: number, encoding: Encoding): string;
    randomUUID(): string;
    encode(data: BytesLike, encoding: Encoding): string;
    decode(text: string, encoding: Encoding): Uint8Array;
  }

  /** HMAC hashes. */
  export type HmacAlgorithm = "SHA-256" | "SHA-384" | "SHA-512";

  /** Signature algorithms by their JWS names (RFC 7518, RFC 8037). */
  export type SignatureAlgorithm =
    | "RS256" | "RS384" | "RS512"
    | "PS256" | "PS384" | "PS512"
    | "ES256" | "ES384"
    | "EdDSA";

  /** A public key as a JWK (RFC 7517). */
  export interface JsonWebKey {
    kty: "RSA" | "EC" | "OKP";
    crv?: "P-256" | "P-384" | "Ed25519";
    n?: string;
    e?: string;
    x?: string;
    y?: string;
    [member: string]: unknown;
  }

  // ---- Tests (`weir-proxy plugin test DIR`) ----

  /**
   * The default export of a `*.test.ts` file. The plugin under test is `plugin` (a file
   * beside the suite), or the suite's name without `.test` (`jwt.test.ts` tests `jwt.ts`).
   */
  export interface TestSuite<Config = any> {
    plugin?: string;
    /** The plugin's config for every test, unless a call gives its own. */
    config?: Config;
    /** Time one test may take, in milliseconds (default 10000). */
    timeoutMs?: number;
    tests: Record<string, (t: TestContext) => void | Promise<void>>;
  }

  /** A request as a test describes it; everything is optional. */
  export interface TestRequest {
    method?: string;
    path?: string;
    /** The query string, without `?`. */
    query?: string;
    headers?: Record<string, string>;
    body?: string | Json;
    pathParams?: Record<string, string>;
    clientIp?: string;
    route?: string;
    requestId?: string;
    /** Backend ids of the route, for `ctx.forward`. */
    backends?: string[];
    /** `ctx.user` as an earlier plugin of the chain (an auth plugin) left it. */
    user?: Json;
    /** `ctx.state` as earlier plugins of the chain left it. */
    state?: Record<string, Json>;
  }

  export interface TestResponse {
    status?: number;
    headers?: Record<string, string>;
    body?: string | Json;
  }

  export interface HeaderEdits {
    set: Record<string, string[]>;
    append: Record<string, string[]>;
    remove: string[];
  }

  /** What the proxy is told after `beforeRequest`. */
  export interface BeforeResult {
    outcome: "continue" | "respond" | "failed";
    /** Present when the outcome is "continue". */
    patch?: {
      headers: HeaderEdits;
      path: string | null;
      /** Present when a plugin set `ctx.upstream.query`. */
      query?: string;
      /** Present when a plugin set `ctx.upstream.body`: the body sent upstream, as text. */
      body?: string;
      upstream: { type: "Backend" | "Url"; value: string } | null;
      responseHeaders: HeaderEdits;
      user: Json | null;
    };
    /** Present when the outcome is "respond". */
    response?: { status: number; headers: Record<string, string>; body: string; rejected: boolean };
    /** Present when the outcome is "failed" (the proxy answers 503 with `body`). */
    failure?: PluginFailure;
  }

  /** What the proxy is told after `afterResponse`. */
  export interface AfterResult {
    outcome: "continue" | "failed";
    patch?: { status: number | null; headers: HeaderEdits; body: string | null };
    failure?: PluginFailure;
  }

  export interface PluginFailure {
    kind: "timeout" | "exception" | "memory" | "notLoaded";
    hook: "beforeRequest" | "afterResponse";
    detail: string;
    status: 503;
    body: { error: "plugin_failed"; message: string; plugin: string };
  }

  /**
   * The time the plugin's `Date` (and the suite's) tells, and its cache expires entries by.
   * It stands still at the suite's start time unless a test sets or advances it; each test
   * starts there again.
   */
  export interface TestClock {
    /** Milliseconds since the epoch. */
    now(): number;
    /** Moves the clock to a time (milliseconds, a Date, or ISO 8601 text); returns it. */
    set(time: number | Date | string): number;
    /** Moves the clock forward (or back, negative) by `ms`; returns the new time. */
    advance(ms: number): number;
  }

  /** What a stubbed fetch answers. */
  export interface StubResponse {
    /** Default 200. */
    status?: number;
    headers?: Record<string, string>;
    /** Text or bytes as they are; any other value as JSON (with `content-type: application/json`). */
    body?: string | Uint8Array | ArrayBuffer | Json;
    /** Fail the fetch with this message instead (a refused connection, a timeout). */
    error?: string;
  }

  /** A fetch the plugin made. */
  export interface FetchCall {
    url: string;
    method: string;
    headers: Record<string, string>;
    body: string | null;
    /** A bytes body, base64. */
    bodyBase64: string | null;
    timeoutMs: number | null;
  }

  /**
   * `ctx.services.http.fetch` in tests: answered by stubs, never by the network. A fetch no
   * stub answers fails (`no stub answers GET https://...`).
   */
  export interface TestFetch {
    /** Answers fetches of exactly `url` (of `method`, or any); a later stub of it wins. */
    stub(url: string, response: StubResponse, options?: { method?: string }): void;
    /** The fetches the plugin made in this test, in order. */
    calls(): FetchCall[];
  }

  /** The plugin's cache (its own key space, in memory), to preload or inspect. */
  export interface TestCache {
    get<T = Json>(key: string): Promise<T | null>;
    set(key: string, value: Json, options?: { ttlSeconds?: number }): Promise<void>;
    delete(key: string): Promise<boolean>;
  }

  /** A line the plugin logged (`ctx.log` or `console`). */
  export interface LogLine {
    level: "trace" | "debug" | "info" | "warn" | "error";
    message: string;
    fields: Record<string, Json>;
    source: "ctx.log" | "console";
  }

  /**
   * `t`: drives the plugin under test through the real runtime, and asserts. Each test
   * starts afresh: the clock at the suite's start, the cache empty, no stubs, no lines.
   */
  export interface TestContext {
    beforeRequest(request?: TestRequest, options?: { config?: Json }): Promise<BeforeResult>;
    /** Runs `afterResponse` for the request `before` came from (once per request). */
    afterResponse(before: BeforeResult, response?: TestResponse): Promise<AfterResult>;
    readonly clock: TestClock;
    readonly fetch: TestFetch;
    readonly cache: TestCache;
    /** The lines the plugin logged since the test began (or the last call), taken. */
    logs(): LogLine[];
    /** Deep equality of JSON-like values. */
    equal(actual: unknown, expected: unknown, message?: string): void;
    notEqual(actual: unknown, expected: unknown, message?: string): void;
    ok(value: unknown, message?: string): void;
    match(text: unknown, pattern: RegExp, message?: string): void;
    fail(message?: string): never;
  }
}
