// header-rewrite: sets and removes request headers on the way upstream, and sets
// response headers on the way back, as its config says. Runs on any Route it is attached
// to (or, with `scope: Global`, on every Route of its namespace).
import type { Plugin } from "weir";

interface Config {
  /** Request headers set before going upstream. */
  request?: { set?: Record<string, string>; remove?: string[] };
  /** Response headers set on whatever answers (upstream, plugin or proxy). */
  response?: { set?: Record<string, string>; remove?: string[] };
}

export default {
  beforeRequest(ctx) {
    const config = ctx.config as Config;
    for (const [name, value] of Object.entries(config.request?.set ?? {})) {
      ctx.upstream.headers.set(name, value);
    }
    for (const name of config.request?.remove ?? []) {
      ctx.upstream.headers.delete(name);
    }
  },
  afterResponse(ctx) {
    const config = ctx.config as Config;
    for (const [name, value] of Object.entries(config.response?.set ?? {})) {
      ctx.response.headers.set(name, value);
    }
    for (const name of config.response?.remove ?? []) {
      ctx.response.headers.delete(name);
    }
  },
} satisfies Plugin;
