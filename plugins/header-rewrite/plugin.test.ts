// Run with `weir-proxy plugin test plugins/header-rewrite`.
import type { Json, TestContext, TestRequest, TestSuite } from "weir";

/** The upstream header edits for `request` under `config`. */
async function edits(t: TestContext, request: TestRequest, config: Json) {
  const result = await t.beforeRequest(request, { config });
  t.equal(result.outcome, "continue");
  return result.patch?.headers;
}

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
    async "templates insert values of the request"(t) {
      const config = {
        request: {
          set: {
            "x-forwarded-method": "${request.method}",
            "x-original": "${request.method} ${request.path}?page=${request.query.page} from ${request.clientIp}",
            "x-tenant": "tenant-${request.header.X-Tenant}",
            "x-order": "${request.pathParam.id}",
            "x-trace": "${request.requestId}@${route}",
            "x-url": "${ request.url }",
          },
        },
      };
      const headers = await edits(
        t,
        {
          method: "post",
          path: "/orders/42",
          query: "page=2&q=x",
          headers: { "x-tenant": "acme" },
          clientIp: "203.0.113.9",
          pathParams: { id: "42" },
          route: "shop/orders",
          requestId: "r-1",
        },
        config,
      );
      t.equal(headers?.set, {
        "x-forwarded-method": ["POST"],
        "x-original": ["POST /orders/42?page=2 from 203.0.113.9"],
        "x-tenant": ["tenant-acme"],
        "x-order": ["42"],
        "x-trace": ["r-1@shop/orders"],
        "x-url": ["http://test.local/orders/42?page=2&q=x"],
      });
      t.equal(headers?.remove, []);
    },
    async "a header whose value is missing is removed, so a client cannot supply it"(t) {
      const config = { request: { set: { "x-user-id": "${user.id}", "x-tenant": "t-${request.header.x-tenant}", "x-fixed": "on" } } };
      const headers = await edits(t, { headers: { "x-user-id": "root" } }, config);
      t.equal(headers?.set, { "x-fixed": ["on"] });
      t.equal(headers?.remove, ["x-tenant", "x-user-id"]);
    },
    async "missing: empty sets the header with the value left empty"(t) {
      const config = { request: { set: { "x-user-id": "${user.id}", "x-tenant": "t-${request.header.x-tenant}" } }, missing: "empty" };
      const headers = await edits(t, {}, config);
      t.equal(headers?.set, { "x-user-id": [""], "x-tenant": ["t-"] });
    },
    async "an unknown client address is missing"(t) {
      const headers = await edits(t, {}, { request: { set: { "x-client": "${request.clientIp}" } } });
      t.equal(headers?.remove, ["x-client"]);
    },
    async "an empty value is a value"(t) {
      const headers = await edits(t, { query: "tag=", headers: { "x-a": "" } }, { request: { set: { "x-tag": "[${request.query.tag}]", "x-b": "${request.header.x-a}" } } });
      t.equal(headers?.set, { "x-tag": ["[]"], "x-b": [""] });
    },
    async "$${ is a literal ${, and text without templates is as written"(t) {
      const headers = await edits(t, { method: "GET" }, { request: { set: { "x-a": "$${request.method} is ${request.method}", "x-b": "50% $ {x}" } } });
      t.equal(headers?.set, { "x-a": ["${request.method} is GET"], "x-b": ["50% $ {x}"] });
    },
    async "control characters are dropped, other text kept"(t) {
      const headers = await edits(t, { query: "name=a%0D%0Ab%00c&city=Z%C3%BCrich" }, { request: { set: { "x-name": "${request.query.name}", "x-city": "${request.query.city}" } } });
      t.equal(headers?.set, { "x-name": ["abc"], "x-city": ["Zürich"] });
    },
    async "response headers may use templates too"(t) {
      const config = { response: { set: { "x-served-for": "${request.header.x-tenant}", "x-user": "${user.id}" } } };
      const before = await t.beforeRequest({ headers: { "x-tenant": "acme" } }, { config });
      const after = await t.afterResponse(before, { status: 200, headers: { "x-user": "leaked" } });
      t.equal(after.patch?.headers.set, { "x-served-for": ["acme"] });
      t.equal(after.patch?.headers.remove, ["x-user"]);
    },
    async "a template naming no known value fails the hook, naming it"(t) {
      for (const bad of ["${user}", "${request.cookie.a}", "${request.header.}", "${nope}", "${request.method", "${user..id}"]) {
        const result = await t.beforeRequest({}, { config: { request: { set: { "x-ok": "fine", "x-bad": bad } } } });
        t.equal(result.outcome, "failed", bad);
        t.match(result.failure?.detail, /config\.request\.set\["x-bad"\]/, bad);
      }
    },
    async "an empty config changes nothing"(t) {
      const result = await t.beforeRequest({}, { config: {} });
      t.equal(result.patch?.headers, { set: {}, append: {}, remove: [] });
    },
  },
} satisfies TestSuite;
