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
    async "user templates read ctx.user as an earlier plugin left it"(t) {
      const user = {
        id: "alice",
        org: { name: "Acme", id: 7 },
        roles: ["admin", "dev"],
        active: true,
        score: 1.5,
        tags: [],
        groups: [{ id: 1 }],
        profile: { email: "alice@example.com" },
      };
      const config = {
        request: {
          set: {
            "X-User-Id": "${user.id}",
            "x-org": "${user.org.name} (${user.org.id})",
            "x-roles": "${user.roles}",
            "x-second-role": "${user.roles.1}",
            "x-active": "${user.active}",
            "x-score": "${user.score}",
            "x-tags": "[${user.tags}]",
            "x-groups": "${user.groups}",
            "x-profile": "${user.profile}",
            "x-who": "${user.id}@${request.header.x-tenant}",
          },
        },
      };
      const result = await t.beforeRequest({ user, headers: { "x-user-id": "root", "x-tenant": "acme" } }, { config });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.headers.set, {
        "x-user-id": ["alice"],
        "x-org": ["Acme (7)"],
        "x-roles": ["admin,dev"],
        "x-second-role": ["dev"],
        "x-active": ["true"],
        "x-score": ["1.5"],
        "x-tags": ["[]"],
        "x-groups": ['[{"id":1}]'],
        "x-profile": ['{"email":"alice@example.com"}'],
        "x-who": ["alice@acme"],
      });
      t.equal(result.patch?.headers.remove, []);
      t.equal(result.patch?.user, user, "the user is left as it was");
    },
    async "falsy user values are values"(t) {
      const config = { request: { set: { "x-id": "${user.id}", "x-flag": "${user.flag}", "x-name": "${user.name}" } } };
      const headers = await edits(t, { user: { id: 0, flag: false, name: "" } }, config);
      t.equal(headers?.set, { "x-id": ["0"], "x-flag": ["false"], "x-name": [""] });
      t.equal(headers?.remove, []);
    },
    async "without a user, or without the field, a user template is missing"(t) {
      const config = { request: { set: { "x-user-id": "${user.id}", "x-org": "org-${user.org.name}", "x-role": "${user.roles.3}", "x-fixed": "on" } } };
      const requests: { what: string; user?: Json }[] = [
        { what: "no user" },
        { what: "a user that is no object", user: "alice" },
        { what: "null fields", user: { id: null, org: null, roles: null } },
        { what: "other fields", user: { name: "alice", org: { id: 7 }, roles: ["a"] } },
        { what: "a field under a scalar", user: { id: "alice", org: "acme", roles: "a,b,c,d" } },
      ];
      for (const { what, user } of requests) {
        const removed = await edits(t, { user, headers: { "x-user-id": "root", "x-org": "org-root" } }, config);
        const keptId = what === "a field under a scalar" ? { "x-user-id": ["alice"] } : {};
        t.equal(removed?.set, { ...keptId, "x-fixed": ["on"] }, what);
        t.equal(removed?.remove, what === "a field under a scalar" ? ["x-org", "x-role"] : ["x-org", "x-role", "x-user-id"], what);
        const empty = await edits(t, { user }, { ...config, missing: "empty" });
        t.equal(empty?.set, { "x-user-id": [what === "a field under a scalar" ? "alice" : ""], "x-org": ["org-"], "x-role": [""], "x-fixed": ["on"] }, what);
      }
    },
    async "control characters are dropped from user values"(t) {
      const headers = await edits(t, { user: { id: "ali\r\nce\u0000", tab: "a\tb", roles: ["x\ny", "z"] } }, {
        request: { set: { "x-user-id": "${user.id}", "x-tab": "${user.tab}", "x-roles": "${user.roles}" } },
      });
      t.equal(headers?.set, { "x-user-id": ["alice"], "x-tab": ["a\tb"], "x-roles": ["xy,z"] });
    },
    async "response templates see the user too, whoever answers"(t) {
      const config = { response: { set: { "x-user": "${user.id}", "x-scopes": "${user.scopes}" } } };
      const before = await t.beforeRequest({ user: { id: "ci", scopes: ["orders:read", "orders:write"] } }, { config });
      const after = await t.afterResponse(before, { status: 502, headers: { "x-user": "upstream's" } });
      t.equal(after.patch?.headers.set, { "x-user": ["ci"], "x-scopes": ["orders:read,orders:write"] });
      t.equal(after.patch?.headers.remove, []);
    },
    async "a header both set and removed is removed"(t) {
      const headers = await edits(t, { user: { id: "alice" } }, { request: { set: { "x-user-id": "${user.id}" }, remove: ["X-User-Id"] } });
      t.equal(headers?.set, {});
      t.equal(headers?.remove, ["x-user-id"]);
    },
    async "names of members every object has are names like others"(t) {
      const config = {
        request: {
          set: {
            "x-q": "${request.query.constructor}",
            "x-h": "${request.header.constructor}",
            "x-p": "${request.pathParam.toString}",
            "x-u": "${user.constructor}",
            "x-v": "${user.__proto__}",
            "x-w": "${user.valueOf}",
          },
        },
      };
      const missing = await edits(t, { user: { id: "alice" } }, config);
      t.equal(missing?.set, {});
      t.equal(missing?.remove, ["x-h", "x-p", "x-q", "x-u", "x-v", "x-w"]);
      const present = await edits(
        t,
        {
          query: "constructor=q",
          headers: { constructor: "h" },
          pathParams: { toString: "p" },
          user: { constructor: "u", valueOf: 1 },
        },
        config,
      );
      t.equal(present?.set, { "x-q": ["q"], "x-h": ["h"], "x-p": ["p"], "x-u": ["u"], "x-w": ["1"] });
      t.equal(present?.remove, ["x-v"]);
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
