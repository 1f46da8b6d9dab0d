// config.ts: reading a plugin's config, shared by the plugins of the library. It is no
// plugin (no plugin.ts, no plugin.yaml): each plugin that uses it has a symlink to it,
// plugins/<name>/config.ts -> ../shared/config.ts, imports it as "./config", and
// plugins/sync_manifests.py carries its content in the plugin's ConfigMap as the key
// config.ts, so every plugin runs the same code and none copies it. Edit
// plugins/shared/config.ts, then run `python3 plugins/sync_manifests.py`: the ConfigMap of
// every plugin using it changes.
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
