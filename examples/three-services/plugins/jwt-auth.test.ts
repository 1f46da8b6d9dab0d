// Run with `weir-proxy plugin test examples/three-services/plugins`.
//
// The tokens are signed with the suite's secret by `make_jwt` in ../run (the test API
// has no crypto of its own); all but EXPIRED expire in 2100. Claims:
// {"iss":"user-service","sub":"alice","name":"Alice","roles":["user"],"exp":4102444800}
// and, for ROOT, sub "root", name "Root", roles ["admin"].
import type { TestContext, TestSuite } from "weir";

const ALICE =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ1c2VyLXNlcnZpY2UiLCJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsInJvbGVzIjpbInVzZXIiXSwiZXhwIjo0MTAyNDQ0ODAwfQ.nuL_tfTuozLiXS01K-URR1cIVxvqYekTIzLuR7PR4Tw";
const ROOT =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ1c2VyLXNlcnZpY2UiLCJzdWIiOiJyb290IiwibmFtZSI6IlJvb3QiLCJyb2xlcyI6WyJhZG1pbiJdLCJleHAiOjQxMDI0NDQ4MDB9.txXJMrYG9Fryc_x05I-rwBjw2WxDrON7mgRg2bzW6oo";
// exp 1000 (1970).
const EXPIRED =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ1c2VyLXNlcnZpY2UiLCJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsInJvbGVzIjpbInVzZXIiXSwiZXhwIjoxMDAwfQ.O_8MnP6I2lsA1y28oM3CIQAhLrUL3GkpPRBYY1Exds0";
// nbf a second before exp.
const NOT_YET =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ1c2VyLXNlcnZpY2UiLCJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsInJvbGVzIjpbInVzZXIiXSwiZXhwIjo0MTAyNDQ0ODAwLCJuYmYiOjQxMDI0NDQ3OTl9.3ZBtme6JNIB9zFVqgww4RzOh9GXCebwJEY3nS6qQhZg";
// ALICE's claims signed with another secret.
const FORGED =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJ1c2VyLXNlcnZpY2UiLCJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsInJvbGVzIjpbInVzZXIiXSwiZXhwIjo0MTAyNDQ0ODAwfQ.kV2jSI42uPU6sjOLO_20jywRDAk4-kW5GWJZS4EsIS0";
// ALICE's claims, correctly signed, under a header saying alg "none".
const ALG_NONE =
  "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJ1c2VyLXNlcnZpY2UiLCJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsInJvbGVzIjpbInVzZXIiXSwiZXhwIjo0MTAyNDQ0ODAwfQ.HB1-0m25o6ZZuqEgfQyBjxaOOCRju8mEx1El0SOdeeY";
// iss "elsewhere".
const OTHER_ISSUER =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJlbHNld2hlcmUiLCJzdWIiOiJhbGljZSIsIm5hbWUiOiJBbGljZSIsInJvbGVzIjpbInVzZXIiXSwiZXhwIjo0MTAyNDQ0ODAwfQ.3Kot16h9djzFukGQVSnKQwADO23pUef7yX6yZzfJ0do";

const CONFIG = { secret: "test-secret-0123456789", issuer: "user-service" };

function bearer(token: string) {
  return { headers: { authorization: `Bearer ${token}` } };
}

/** Asserts a 401 whose JSON body says `message`. */
async function refused(t: TestContext, token: string | null, message: RegExp) {
  const result = await t.beforeRequest(token === null ? {} : bearer(token));
  t.equal(result.outcome, "respond");
  t.equal(result.response?.status, 401);
  t.equal(result.response?.headers["www-authenticate"], 'Bearer realm="api"');
  const body = JSON.parse(result.response?.body ?? "{}");
  t.equal(body.error, "unauthorized");
  t.match(body.message, message);
}

export default {
  config: CONFIG,
  tests: {
    async "passes a valid token on as ctx.user and x-user-id"(t) {
      const result = await t.beforeRequest(bearer(ALICE));
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.user, { id: "alice", name: "Alice", roles: ["user"] });
      t.equal(result.patch?.headers.set["x-user-id"], ["alice"]);
    },
    async "refuses a request without a token"(t) {
      await refused(t, null, /bearer token is required/);
    },
    async "refuses a token signed with another secret"(t) {
      await refused(t, FORGED, /signature/);
    },
    async "refuses an expired token"(t) {
      await refused(t, EXPIRED, /expired/);
    },
    async "refuses a token before its nbf"(t) {
      await refused(t, NOT_YET, /not valid yet/);
    },
    async "refuses a token whose header is not HS256"(t) {
      await refused(t, ALG_NONE, /not HS256/);
    },
    async "refuses a token of another issuer"(t) {
      await refused(t, OTHER_ISSUER, /issuer/);
    },
    async "refuses a malformed authorization header"(t) {
      const result = await t.beforeRequest({ headers: { authorization: "Basic YWxpY2U6eA==" } });
      t.equal(result.response?.status, 401);
    },
    async "never lets a client's own x-user-id through"(t) {
      const result = await t.beforeRequest({ headers: { "x-user-id": "root" } }, { config: { ...CONFIG, required: false } });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.headers.remove, ["x-user-id"]);
      t.equal(result.patch?.headers.set["x-user-id"], undefined);
      t.equal(result.patch?.user, null);
    },
    async "an optional token still identifies the user when valid"(t) {
      const result = await t.beforeRequest(bearer(ALICE), { config: { ...CONFIG, required: false } });
      t.equal(result.patch?.headers.set["x-user-id"], ["alice"]);
    },
    async "an optional token that is not valid makes the request anonymous"(t) {
      const result = await t.beforeRequest(bearer(EXPIRED), { config: { ...CONFIG, required: false } });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.user, null);
    },
    async "a required role lets its holders through"(t) {
      const result = await t.beforeRequest(bearer(ROOT), { config: { ...CONFIG, requiredRole: "admin" } });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.headers.set["x-user-id"], ["root"]);
    },
    async "a required role refuses other users with 403"(t) {
      const result = await t.beforeRequest(bearer(ALICE), { config: { ...CONFIG, requiredRole: "admin" } });
      t.equal(result.response?.status, 403);
      t.equal(JSON.parse(result.response?.body ?? "{}").error, "forbidden");
    },
  },
} satisfies TestSuite;
