// Run with `weir-proxy plugin test plugins/header-rewrite`.
import type { TestSuite } from "weir";

export default {
  config: {
    request: { set: { "x-gateway": "weir" }, remove: ["cookie"] },
    response: { set: { "x-frame-options": "DENY" }, remove: ["server"] },
  },
  tests: {
    async "sets and removes request headers"(t) {
      const result = await t.beforeRequest({ headers: { cookie: "a=1" } });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.headers.set["x-gateway"], ["weir"]);
      t.equal(result.patch?.headers.remove, ["cookie"]);
    },
    async "sets and removes response headers"(t) {
      const before = await t.beforeRequest({});
      const after = await t.afterResponse(before, { status: 200, headers: { server: "nginx" } });
      t.equal(after.outcome, "continue");
      t.equal(after.patch?.headers.set["x-frame-options"], ["DENY"]);
      t.equal(after.patch?.headers.remove, ["server"]);
      t.equal(after.patch?.status, null, "the status is left alone");
    },
    async "an empty config changes nothing"(t) {
      const result = await t.beforeRequest({}, { config: {} });
      t.equal(result.patch?.headers, { set: {}, append: {}, remove: [] });
    },
  },
} satisfies TestSuite;
