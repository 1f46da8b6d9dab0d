// config.ts: reading a plugin's config, shared by the plugins of the library. It is no
// plugin (no plugin.ts, no plugin.yaml): each plugin that uses it has a symlink to it,
// plugins/<name>/config.ts -> ../shared/config.ts, imports it as "./config", and
// plugins/sync_manifests.py carries its content in the plugin's ConfigMap as the key
// config.ts, so every plugin runs the same code and none copies it. Edit
// plugins/shared/config.ts, then run `python3 plugins/sync_manifests.py`: the ConfigMap of
// every plugin using it changes.
//
// A config mistake is a TypeError naming the plugin and the field, e.g.
// `rate-limit: config.windowSeconds must be a positive integer, not 0`: it fails the
// plugin's onLoad (the Plugin's config) or the hook (a Route's override).
import type { LoadContext } from "weir";

/**
 * `settings(ctx)`: `parse(ctx.config, ctx)`, once per config object. Configs are deeply
 * frozen and the runtime hands a route the same object on every request, so each is
 * parsed once; a config `parse` refuses is not remembered, and throws on every call.
 */
export function memoizeByConfig<C extends object, P>(
  parse: (config: Readonly<C>, ctx: LoadContext<C>) => P,
): (ctx: LoadContext<C>) => P {
  const parsed = new WeakMap<object, P>();
  return (ctx) => {
    const config = ctx.config;
    let found = parsed.get(config);
    if (found === undefined) {
      found = parse(config, ctx);
      parsed.set(config, found);
    }
    return found;
  };
}

/** Throws `<plugin>: config.<message>`: `fail("rate-limit", "by must be ...")`. */
export function fail(plugin: string, message: string): never {
  throw new TypeError(`${plugin}: config.${message}`);
}

/**
 * A positive (safe) integer; `fallback` when unset (undefined or null), and when there
 * is no fallback either, `<field> is required`.
 */
export function positiveInteger(plugin: string, value: unknown, field: string, fallback?: number): number {
  if (value === undefined || value === null) {
    if (fallback === undefined) fail(plugin, `${field} is required`);
    return fallback;
  }
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    fail(plugin, `${field} must be a positive integer, not ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * A list of strings that all pass `test` (the list itself, unchanged); [] when unset
 * (undefined or null). Otherwise `<field> must be a list of <what>`.
 */
export function strings(
  plugin: string,
  value: unknown,
  field: string,
  what = "strings",
  test: (item: string) => boolean = () => true,
): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((item) => typeof item !== "string" || !test(item))) {
    fail(plugin, `${field} must be a list of ${what}`);
  }
  return value;
}

/** true or false; `fallback` when undefined (null is a mistake, as any other value). */
export function boolean(plugin: string, value: unknown, field: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") fail(plugin, `${field} must be true or false`);
  return value;
}
