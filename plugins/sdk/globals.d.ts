// The standard globals of a plugin's isolate (docs/plugins.md, "Standard globals"): the
// isolate has these and nothing else of the web platform. For a project whose `lib` has
// no DOM (plugins/tsconfig.json: ES2023 only), so editors offer what plugins really have;
// the DOM's own declarations would clash with these.

/** Base64 of a string of bytes (characters U+0000 to U+00FF); throws InvalidCharacterError otherwise. */
declare function btoa(data: string): string;
/** The bytes of base64 text, as a string of U+0000 to U+00FF; white space is ignored. */
declare function atob(data: string): string;
/** A deep copy (objects, arrays, Date, RegExp, Map, Set, ArrayBuffer and views, errors); throws DataCloneError for functions and symbols. */
declare function structuredClone<T>(value: T): T;

/** UTF-8 encoding. */
declare class TextEncoder {
  readonly encoding: "utf-8";
  encode(input?: string): Uint8Array;
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number };
}

/** UTF-8 decoding (the only encoding), with U+FFFD for invalid bytes unless `fatal`. */
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  readonly encoding: "utf-8";
  readonly fatal: boolean;
  readonly ignoreBOM: boolean;
  decode(input?: ArrayBuffer | ArrayBufferView, options?: { stream?: boolean }): string;
}

/** application/x-www-form-urlencoded pairs, as the URL Standard defines them. */
declare class URLSearchParams implements Iterable<[string, string]> {
  constructor(init?: string | Iterable<[string, string]> | Record<string, string> | URLSearchParams);
  readonly size: number;
  append(name: string, value: string): void;
  delete(name: string, value?: string): void;
  get(name: string): string | null;
  getAll(name: string): string[];
  has(name: string, value?: string): boolean;
  set(name: string, value: string): void;
  sort(): void;
  forEach(callback: (value: string, name: string, parent: URLSearchParams) => void, thisArg?: unknown): void;
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
  toString(): string;
}

/** Lines of the proxy's log, tagged with the plugin (no request id: `ctx.log` has it). */
declare const console: {
  log(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  trace(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};

/** A URL parsed by the URL Standard (as browsers parse it); throws TypeError for no URL. */
declare class URL {
  constructor(input: string, base?: string);
  static canParse(input: string, base?: string): boolean;
  static parse(input: string, base?: string): URL | null;
  href: string;
  readonly origin: string;
  protocol: string;
  username: string;
  password: string;
  host: string;
  hostname: string;
  port: string;
  pathname: string;
  search: string;
  readonly searchParams: URLSearchParams;
  hash: string;
  toString(): string;
  toJSON(): string;
}
