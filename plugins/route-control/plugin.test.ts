// Run with `weir-proxy plugin test plugins/route-control`.
import type { BeforeResult, Json, TestContext, TestRequest, TestSuite } from "weir";

const STABLE = "service:shop/api:8080";
const CANARY = "service:shop/api-canary:8080";
const BETA = "service:shop/api-beta:8080";
const BACKENDS = [STABLE, CANARY, BETA];

const CONFIG = {
  rules: [
    { header: { name: "X-Beta", value: "1" }, backend: BETA },
    { cookie: { name: "tester", regex: "^(alice|bob)$" }, backend: BETA },
    { weight: 10, backend: CANARY },
  ],
  sticky: { header: "x-user-id" },
};

/** Where a request goes: the backend the plugin chose, or null for the Route's choice. */
async function target(t: TestContext, request: TestRequest, config?: Json): Promise<string | null> {
  const result: BeforeResult = await t.beforeRequest({ backends: BACKENDS, ...request }, config === undefined ? undefined : { config });
  t.equal(result.outcome, "continue");
  const upstream = result.patch?.upstream ?? null;
  if (upstream !== null) t.equal(upstream.type, "Backend");
  return upstream?.value ?? null;
}

/** How many of `count` users (x-user-id user-0 ...) each target gets. */
async function shares(t: TestContext, count: number, config?: Json): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < count; i++) {
    const chosen = String(await target(t, { headers: { "x-user-id": `user-${i}` } }, config));
    out[chosen] = (out[chosen] ?? 0) + 1;
  }
  return out;
}

function near(t: TestContext, actual: number | undefined, expected: number, tolerance: number, what: string) {
  t.ok(actual !== undefined && Math.abs(actual - expected) <= tolerance, `${what}: ${actual}, expected ${expected} ± ${tolerance}`);
}

export default {
  config: CONFIG,
  tests: {
    async "a matching header sends the request to its backend"(t) {
      t.equal(await target(t, { headers: { "x-beta": "1" } }), BETA);
      t.equal(await target(t, { headers: { "x-beta": "2", "x-user-id": "user-1" } }), null, "another value");
    },
    async "a matching cookie sends the request to its backend"(t) {
      t.equal(await target(t, { headers: { cookie: "session=s1; tester=alice; theme=dark", "x-user-id": "user-1" } }), BETA);
      t.equal(await target(t, { headers: { cookie: 'tester="bob"', "x-user-id": "user-1" } }), BETA, "quoted");
      t.equal(await target(t, { headers: { cookie: "tester=alice2", "x-user-id": "user-1" } }), null, "anchored regex");
      t.equal(await target(t, { headers: { cookie: "mytester=alice", "x-user-id": "user-1" } }), null, "another cookie");
    },
    async "other requests keep the Route's choice, but for the weighted share"(t) {
      const counts = await shares(t, 1000);
      near(t, counts[CANARY], 100, 35, "canary");
      t.equal((counts[CANARY] ?? 0) + (counts["null"] ?? 0), 1000);
    },
    async "a sticky user always goes the same way"(t) {
      const first = new Map<string, string | null>();
      for (let i = 0; i < 50; i++) first.set(`user-${i}`, await target(t, { headers: { "x-user-id": `user-${i}` } }));
      for (let round = 0; round < 3; round++) {
        for (const [user, chosen] of first) {
          t.equal(await target(t, { headers: { "x-user-id": user } }), chosen, user);
        }
      }
    },
    async "first match wins"(t) {
      const config: Json = {
        rules: [
          { header: { name: "x-beta" }, backend: BETA },
          { header: { name: "x-beta", value: "1" }, backend: CANARY },
        ],
      };
      t.equal(await target(t, { headers: { "x-beta": "1" } }, config), BETA);
      t.equal(await target(t, { headers: { "x-beta": "" } }, config), BETA, "presence: an empty value is there");
      t.equal(await target(t, {}, config), null);
    },
    async "every condition of a rule must hold"(t) {
      const config = {
        rules: [{ header: { name: "x-team", regex: "^payments" }, cookie: { name: "canary", value: "yes" }, backend: CANARY }],
      };
      t.equal(await target(t, { headers: { "x-team": "payments-eu", cookie: "canary=yes" } }, config), CANARY);
      t.equal(await target(t, { headers: { "x-team": "payments-eu" } }, config), null);
      t.equal(await target(t, { headers: { "x-team": "search", cookie: "canary=yes" } }, config), null);
    },
    async "weights of 0 and 100"(t) {
      const none = { rules: [{ weight: 0, backend: CANARY }], sticky: { header: "x-user-id" } };
      const counts = await shares(t, 200, none);
      t.equal(counts, { null: 200 });
      const all = { rules: [{ weight: 100, backend: CANARY }], sticky: { header: "x-user-id" } };
      t.equal(await shares(t, 200, all), { [CANARY]: 200 });
    },
    async "weighted rules take consecutive bands, so their shares add up"(t) {
      const config = {
        rules: [
          { weight: 20, backend: CANARY },
          { weight: 30, backend: BETA },
        ],
        sticky: { header: "x-user-id" },
      };
      const counts = await shares(t, 1000, config);
      near(t, counts[CANARY], 200, 45, "canary");
      near(t, counts[BETA], 300, 50, "beta");
      near(t, counts["null"], 500, 55, "stable");
    },
    async "a conditional weighted rule takes its share of the requests that match"(t) {
      const config = {
        rules: [{ header: { name: "x-tier", value: "free" }, weight: 50, backend: CANARY }],
        sticky: { header: "x-user-id" },
      };
      let canary = 0;
      for (let i = 0; i < 400; i++) {
        if ((await target(t, { headers: { "x-tier": "free", "x-user-id": `u${i}` } }, config)) === CANARY) canary++;
        t.equal(await target(t, { headers: { "x-tier": "paid", "x-user-id": `u${i}` } }, config), null);
      }
      near(t, canary, 200, 45, "canary");
    },
    async "a salt reshuffles the users"(t) {
      const base = { rules: [{ weight: 50, backend: CANARY }], sticky: { header: "x-user-id" } };
      const salted = { ...base, sticky: { header: "x-user-id", salt: "experiment-2" } };
      let moved = 0;
      for (let i = 0; i < 200; i++) {
        const request = { headers: { "x-user-id": `user-${i}` } };
        if ((await target(t, request, base)) !== (await target(t, request, salted))) moved++;
      }
      near(t, moved, 100, 35, "users on another side");
    },
    async "without a sticky value, the bucket is random"(t) {
      const config = { rules: [{ weight: 50, backend: CANARY }] };
      let canary = 0;
      for (let i = 0; i < 400; i++) if ((await target(t, {}, config)) === CANARY) canary++;
      near(t, canary, 200, 60, "canary");
      // A sticky header the request lacks: random as well.
      let withSticky = 0;
      for (let i = 0; i < 400; i++) if ((await target(t, {}, { ...config, sticky: { header: "x-user-id" } })) === CANARY) withSticky++;
      near(t, withSticky, 200, 60, "canary");
    },
    async "a sticky cookie"(t) {
      const config = { rules: [{ weight: 50, backend: CANARY }], sticky: { cookie: "uid" } };
      for (let i = 0; i < 30; i++) {
        const request = { headers: { cookie: `a=1; uid=${i}` } };
        const chosen = await target(t, request, config);
        t.equal(await target(t, request, config), chosen);
      }
      const result = await t.beforeRequest({ backends: BACKENDS, headers: { cookie: "uid=7" } }, { config });
      t.equal(result.patch?.responseHeaders.append, {}, "no cookie is set without setCookie");
    },
    async "setCookie gives a client without the sticky cookie one"(t) {
      const config = { rules: [{ weight: 50, backend: CANARY }], sticky: { cookie: "canary-id", setCookie: true, maxAgeSeconds: 3600 } };
      const first = await t.beforeRequest({ backends: BACKENDS }, { config });
      const cookies = first.patch?.responseHeaders.append["set-cookie"] ?? [];
      t.equal(cookies.length, 1);
      const match = /^canary-id=([0-9a-f-]{36}); Path=\/; Max-Age=3600; HttpOnly; SameSite=Lax$/.exec(cookies[0]);
      t.ok(match, cookies[0]);
      // With the cookie it was given, the client gets the same answer every time, and no new cookie.
      const id = match?.[1];
      const chosen = first.patch?.upstream?.value ?? null;
      for (let i = 0; i < 5; i++) {
        const again = await t.beforeRequest({ backends: BACKENDS, headers: { cookie: `canary-id=${id}` } }, { config });
        t.equal(again.patch?.upstream?.value ?? null, chosen);
        t.equal(again.patch?.responseHeaders.append, {});
      }
      // Also when no rule is weighted: the client keeps its side for later experiments.
      const unweighted = await t.beforeRequest({ backends: BACKENDS }, { config: { ...config, rules: [] } });
      t.equal(unweighted.patch?.responseHeaders.append["set-cookie"]?.length, 1);
    },
    async "a sticky user field without a user is random, not an error"(t) {
      const config = { rules: [{ weight: 100, backend: CANARY }, { weight: 0, backend: BETA }], sticky: { user: "id" } };
      t.equal(await target(t, {}, config), CANARY);
    },
    async "a sticky user always lands on the same side"(t) {
      const config = { rules: [{ weight: 50, backend: CANARY }], sticky: { user: "id" } };
      const first = new Map<string, string | null>();
      for (let i = 0; i < 60; i++) first.set(`user-${i}`, await target(t, { user: { id: `user-${i}` } }, config));
      for (let round = 0; round < 3; round++) {
        for (const [id, chosen] of first) {
          // Other fields of the user do not matter.
          t.equal(await target(t, { user: { id, scopes: [`round-${round}`] } }, config), chosen, id);
        }
      }
      const sides = new Set(first.values());
      t.equal(sides.size, 2, "both sides have users");
    },
    async "different users spread over the bands"(t) {
      const config = {
        rules: [
          { weight: 20, backend: CANARY },
          { weight: 30, backend: BETA },
        ],
        sticky: { user: "id" },
      };
      const counts: Record<string, number> = {};
      for (let i = 0; i < 1000; i++) {
        const chosen = String(await target(t, { user: { id: `user-${i}` } }, config));
        counts[chosen] = (counts[chosen] ?? 0) + 1;
      }
      near(t, counts[CANARY], 200, 45, "canary");
      near(t, counts[BETA], 300, 50, "beta");
      near(t, counts["null"], 500, 55, "stable");
    },
    async "a sticky user buckets as a sticky header of the same value would"(t) {
      const byUser = { rules: [{ weight: 50, backend: CANARY }], sticky: { user: "account.id", salt: "s1" } };
      const byHeader = { rules: [{ weight: 50, backend: CANARY }], sticky: { header: "x-account", salt: "s1" } };
      for (let i = 0; i < 100; i++) {
        const fromUser = await target(t, { user: { account: { id: i } } }, byUser);
        t.equal(await target(t, { headers: { "x-account": String(i) } }, byHeader), fromUser, `account ${i}`);
      }
    },
    async "a user field that is missing, empty or no scalar gives a random bucket"(t) {
      const config = { rules: [{ weight: 50, backend: CANARY }], sticky: { user: "id" } };
      const users: (Json | undefined)[] = [undefined, { name: "no id" }, { id: "" }, { id: null }, { id: { nested: 1 } }, { id: ["a"] }, "alice"];
      for (const user of users) {
        let canary = 0;
        for (let i = 0; i < 200; i++) if ((await target(t, { user }, config)) === CANARY) canary++;
        near(t, canary, 100, 40, JSON.stringify(user) ?? "no user");
      }
    },
    async "a salt reshuffles sticky users"(t) {
      const base = { rules: [{ weight: 50, backend: CANARY }], sticky: { user: "id" } };
      const salted = { ...base, sticky: { user: "id", salt: "experiment-2" } };
      let moved = 0;
      for (let i = 0; i < 200; i++) {
        const request = { user: { id: `user-${i}` } };
        if ((await target(t, request, base)) !== (await target(t, request, salted))) moved++;
      }
      near(t, moved, 100, 35, "users on another side");
    },
    async "setCookie gives a client whose sticky cookie is empty a new one"(t) {
      const config = { rules: [{ weight: 50, backend: CANARY }], sticky: { cookie: "canary-id", setCookie: true } };
      const result = await t.beforeRequest({ backends: BACKENDS, headers: { cookie: "canary-id=; theme=dark" } }, { config });
      const cookies = result.patch?.responseHeaders.append["set-cookie"] ?? [];
      t.equal(cookies.length, 1, "a new cookie");
      const id = /^canary-id=([0-9a-f-]{36});/.exec(cookies[0] ?? "")?.[1];
      t.ok(id, cookies[0]);
      const chosen = result.patch?.upstream?.value ?? null;
      const again = await t.beforeRequest({ backends: BACKENDS, headers: { cookie: `canary-id=${id}` } }, { config });
      t.equal(again.patch?.upstream?.value ?? null, chosen, "the side of the cookie it was given");
    },
    async "names of members every object has are names like others"(t) {
      const config: Json = { rules: [{ header: { name: "constructor" }, backend: BETA }, { weight: 50, backend: CANARY }], sticky: { header: "toString" } };
      t.equal(await target(t, { headers: { constructor: "x" } }, config), BETA);
      t.notEqual(await target(t, { headers: { "toString": "u" } }, config), BETA, "a request without the header");
      const sticky = await target(t, { headers: { "toString": "u" } }, config);
      for (let i = 0; i < 10; i++) t.equal(await target(t, { headers: { "toString": "u" } }, config), sticky);
      const byUser = { rules: [{ weight: 50, backend: CANARY }], sticky: { user: "constructor" } };
      const chosen = await target(t, { user: { constructor: "alice" } }, byUser);
      for (let i = 0; i < 10; i++) t.equal(await target(t, { user: { constructor: "alice" } }, byUser), chosen);
    },
    async "a backend the Route does not have is ignored by the proxy"(t) {
      const result = await t.beforeRequest({ backends: [STABLE], headers: { "x-beta": "1" } });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.upstream, null);
    },
    async "a route's override replaces the rules"(t) {
      const config = { rules: [{ header: { name: "x-canary" }, backend: CANARY }] };
      t.equal(await target(t, { headers: { "x-canary": "yes" } }, config), CANARY);
      t.equal(await target(t, { headers: { "x-beta": "1" } }, config), null);
    },
    async "no rules: the Route decides"(t) {
      t.equal(await target(t, { headers: { "x-beta": "1" } }, {}), null);
    },
    async "a bad regular expression fails the hook, naming it"(t) {
      const result = await t.beforeRequest({}, { config: { rules: [{ backend: BETA }, { header: { name: "x", regex: "(" }, backend: BETA }] } });
      t.equal(result.outcome, "failed");
      t.match(result.failure?.detail, /config\.rules\[1\]\.header\.regex "\(" is not a regular expression/);
    },
  },
} satisfies TestSuite;
