// Run with `weir-proxy plugin test examples/gitops/base/plugins`.
import type { TestContext, TestSuite } from "weir";

async function respond(t: TestContext, config: object, headers = {}) {
  const before = await t.beforeRequest({}, { config });
  return t.afterResponse(before, { status: 200, headers });
}

export default {
  tests: {
    async "sets the basic headers and hides the upstream's software"(t) {
      const after = await respond(t, {}, { server: "nginx/1.25", "x-powered-by": "Express" });
      t.equal(after.outcome, "continue");
      const set = after.patch?.headers.set ?? {};
      t.equal(set["x-content-type-options"], ["nosniff"]);
      t.equal(set["x-frame-options"], ["DENY"]);
      t.equal(set["referrer-policy"], ["strict-origin-when-cross-origin"]);
      t.equal(after.patch?.headers.remove, ["server", "x-powered-by"]);
    },
    async "no HSTS or CSP unless configured"(t) {
      const set = (await respond(t, { hstsMaxAgeSeconds: 0 })).patch?.headers.set ?? {};
      t.equal(set["strict-transport-security"], undefined);
      t.equal(set["content-security-policy"], undefined);
    },
    async "HSTS, CSP and frame options from the config"(t) {
      const config = {
        hstsMaxAgeSeconds: 31536000,
        contentSecurityPolicy: "default-src 'self'",
        frameOptions: "SAMEORIGIN",
      };
      const set = (await respond(t, config)).patch?.headers.set ?? {};
      t.equal(set["strict-transport-security"], ["max-age=31536000; includeSubDomains"]);
      t.equal(set["content-security-policy"], ["default-src 'self'"]);
      t.equal(set["x-frame-options"], ["SAMEORIGIN"]);
    },
  },
} satisfies TestSuite;
