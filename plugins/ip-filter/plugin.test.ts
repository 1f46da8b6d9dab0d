// Run with `weir-proxy plugin test plugins/ip-filter`.
import type { Json, TestContext, TestSuite } from "weir";

const CONFIG = {
  allow: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"],
  deny: ["10.66.0.0/16", "2001:db8:bad::/48"],
};

async function passes(t: TestContext, clientIp: string | undefined, config?: Json) {
  const result = await t.beforeRequest({ clientIp }, config === undefined ? undefined : { config });
  t.equal(result.outcome, "continue", `${clientIp} passes`);
}

async function refused(t: TestContext, clientIp: string | undefined, message: RegExp, config?: Json) {
  const result = await t.beforeRequest({ clientIp }, config === undefined ? undefined : { config });
  t.equal(result.outcome, "respond", `${clientIp} is refused`);
  t.equal(result.response?.status, 403);
  t.equal(result.response?.headers["content-type"], "application/json");
  const body = JSON.parse(result.response?.body ?? "{}");
  t.equal(body.error, "forbidden");
  t.match(body.message, message);
}

export default {
  config: CONFIG,
  tests: {
    async "lets clients of the allow list through, untouched"(t) {
      const result = await t.beforeRequest({ clientIp: "10.1.2.3" });
      t.equal(result.outcome, "continue");
      t.equal(result.patch?.headers, { set: {}, append: {}, remove: [] });
      t.equal(result.patch?.responseHeaders, { set: {}, append: {}, remove: [] });
      await passes(t, "10.255.255.255");
      await passes(t, "192.0.2.7");
      await passes(t, "2001:db8:1::42");
      await passes(t, "2001:db8::");
    },
    async "refuses clients outside the allow list with 403"(t) {
      await refused(t, "11.0.0.1", /11\.0\.0\.1 is not allowed/);
      await refused(t, "192.0.2.8", /not allowed/);
      await refused(t, "9.255.255.255", /not allowed/);
      await refused(t, "2001:db9::1", /2001:db9::1 is not allowed/);
    },
    async "deny wins over allow"(t) {
      await refused(t, "10.66.1.1", /not allowed/);
      await refused(t, "2001:db8:bad:1::1", /not allowed/);
      await passes(t, "10.67.0.1");
      await passes(t, "2001:db8:bad0::1");
    },
    async "a deny list alone lets everyone else through"(t) {
      const config = { deny: ["203.0.113.0/24", "2001:db8::/32"] };
      await refused(t, "203.0.113.9", /not allowed/, config);
      await refused(t, "2001:db8::5", /not allowed/, config);
      await passes(t, "203.0.114.1", config);
      await passes(t, "2001:db9::5", config);
    },
    async "an empty config lets every known client through"(t) {
      await passes(t, "198.51.100.1", {});
      await passes(t, "::1", {});
    },
    async "an unknown client address is refused, unless allowUnknown"(t) {
      await refused(t, undefined, /client address is unknown/);
      await refused(t, undefined, /client address is unknown/, { deny: ["10.0.0.0/8"] });
      await refused(t, undefined, /client address is unknown/, {});
      await passes(t, undefined, { ...CONFIG, allowUnknown: true });
    },
    async "IPv4-mapped IPv6 clients are judged as IPv4"(t) {
      await passes(t, "::ffff:10.1.2.3");
      await refused(t, "::ffff:10.66.0.1", /not allowed/);
      await refused(t, "::ffff:11.0.0.1", /not allowed/);
      // A mapped network in the config means the same IPv4 network.
      await passes(t, "10.9.9.9", { allow: ["::ffff:10.9.0.0/112"] });
      await refused(t, "10.8.9.9", /not allowed/, { allow: ["::ffff:10.9.0.0/112"] });
    },
    async "IPv4 networks never match IPv6 clients, nor the reverse"(t) {
      const config = { allow: ["0.0.0.0/0"] };
      await passes(t, "203.0.113.1", config);
      await refused(t, "2001:db8::1", /not allowed/, config);
      await refused(t, "203.0.113.1", /not allowed/, { allow: ["::/0"] });
      await passes(t, "fe80::1", { allow: ["::/0"] });
    },
    async "prefix lengths cut at any bit, host bits ignored"(t) {
      const config = { allow: ["192.168.1.129/25", "2001:db8:0:8000::/49"] };
      await passes(t, "192.168.1.128", config);
      await passes(t, "192.168.1.255", config);
      await refused(t, "192.168.1.127", /not allowed/, config);
      await passes(t, "2001:db8:0:ffff::1", config);
      await refused(t, "2001:db8:0:7fff::1", /not allowed/, config);
      await passes(t, "192.0.2.1", { allow: ["192.0.2.1/32"] });
      await refused(t, "192.0.2.2", /not allowed/, { allow: ["192.0.2.1/32"] });
    },
    async "IPv6 networks in any notation"(t) {
      const config = { allow: ["2001:0db8:0000:0000:0000:0000:0000:0001", "::1", "64:ff9b::192.0.2.0/120"] };
      await passes(t, "2001:db8::1", config);
      await passes(t, "::1", config);
      await passes(t, "64:ff9b::c000:2ff", config);
      await refused(t, "64:ff9b::c000:300", /not allowed/, config);
    },
    async "a route's override replaces the lists"(t) {
      await refused(t, "198.51.100.1", /not allowed/);
      await passes(t, "198.51.100.1", { allow: ["198.51.100.0/24"] });
      await refused(t, "10.1.2.3", /not allowed/, { allow: ["198.51.100.0/24"] });
    },
    async "an empty allow list lets no one in"(t) {
      await refused(t, "10.1.2.3", /10\.1\.2\.3 is not allowed/, { allow: [] });
      await refused(t, "::1", /not allowed/, { allow: [] });
    },
    async "a list that is no list fails the hook, naming it"(t) {
      for (const field of ["allow", "deny"]) {
        const result = await t.beforeRequest({ clientIp: "10.0.0.1" }, { config: { [field]: "10.0.0.0/8" } });
        t.equal(result.outcome, "failed", field);
        t.match(result.failure?.detail, new RegExp(`config\\.${field} must be a list of CIDRs`), field);
      }
    },
    async "a network that is no CIDR fails the hook, naming it"(t) {
      for (const bad of ["10.0.0.0/33", "10.0.0.256", "010.0.0.1", "2001:db8::/129", "1::2::3", "example.com", "10.0.0.0/", "::ffff:1.2.3"]) {
        const result = await t.beforeRequest({ clientIp: "10.0.0.1" }, { config: { allow: ["10.0.0.0/8", bad] } });
        t.equal(result.outcome, "failed", bad);
        t.equal(result.failure?.status, 503);
        t.match(result.failure?.detail, /config\.allow\[1\]/, bad);
        t.ok(result.failure?.detail.includes(JSON.stringify(bad)), bad);
      }
      const deny = await t.beforeRequest({ clientIp: "10.0.0.1" }, { config: { deny: ["10.0.0.0/8", "nope"] } });
      t.match(deny.failure?.detail, /config\.deny\[1\] "nope" is not an IPv4 or IPv6 address or CIDR/);
    },
  },
} satisfies TestSuite;
