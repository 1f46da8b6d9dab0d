// rate-limit: at most `requestsPerMinute` requests per client address in each minute, as
// a fixed window kept in ctx.services.cache (shared by the proxy replicas when they have
// a Redis URL). Above it, the client gets 429 with `retry-after`; every answer carries
// `x-ratelimit-limit` and `x-ratelimit-remaining`.
import type { Plugin } from "weir";

interface Config {
  requestsPerMinute: number;
}

const WINDOW_SECONDS = 60;

export default {
  async beforeRequest(ctx) {
    const { requestsPerMinute } = ctx.config as Config;
    const client = ctx.request.clientIp ?? "unknown";
    // A new counter expires after the window; increments keep its expiry.
    const used = await ctx.services.cache.incr(client, { ttlSeconds: WINDOW_SECONDS });
    ctx.response.headers.set("x-ratelimit-limit", String(requestsPerMinute));
    ctx.response.headers.set("x-ratelimit-remaining", String(Math.max(0, requestsPerMinute - used)));
    if (used > requestsPerMinute) {
      return ctx.reject(
        429,
        { error: "rate_limited", message: `more than ${requestsPerMinute} requests a minute` },
        { "retry-after": String(WINDOW_SECONDS) },
      );
    }
  },
} satisfies Plugin;
