// Run with `weir-proxy plugin test examples/gitops/base/plugins`.
import type { TestSuite } from "weir";

export default {
  config: { requestsPerMinute: 2 },
  tests: {
    async "lets the first requests through and counts them down"(t) {
      const first = await t.beforeRequest({ clientIp: "192.0.2.1" });
      t.equal(first.outcome, "continue");
      t.equal(first.patch?.responseHeaders.set["x-ratelimit-limit"], ["2"]);
      t.equal(first.patch?.responseHeaders.set["x-ratelimit-remaining"], ["1"]);
      const second = await t.beforeRequest({ clientIp: "192.0.2.1" });
      t.equal(second.outcome, "continue");
      t.equal(second.patch?.responseHeaders.set["x-ratelimit-remaining"], ["0"]);
    },
    async "answers 429 with retry-after past the limit"(t) {
      for (let i = 0; i < 2; i++) await t.beforeRequest({ clientIp: "192.0.2.2" });
      const third = await t.beforeRequest({ clientIp: "192.0.2.2" });
      t.equal(third.outcome, "respond");
      t.equal(third.response?.status, 429);
      t.equal(third.response?.headers["retry-after"], "60");
      t.equal(JSON.parse(third.response?.body ?? "{}").error, "rate_limited");
    },
    async "counts each client on its own"(t) {
      for (let i = 0; i < 3; i++) await t.beforeRequest({ clientIp: "192.0.2.3" });
      const other = await t.beforeRequest({ clientIp: "192.0.2.4" });
      t.equal(other.outcome, "continue");
    },
    async "takes the limit from the config"(t) {
      const result = await t.beforeRequest({ clientIp: "192.0.2.5" }, { config: { requestsPerMinute: 100 } });
      t.equal(result.patch?.responseHeaders.set["x-ratelimit-remaining"], ["99"]);
    },
  },
} satisfies TestSuite;
