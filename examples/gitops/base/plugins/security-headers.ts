// security-headers: the response headers browsers use to protect a site's users, on
// every answer (the upstream's, a plugin's or the proxy's own). HSTS and the content
// security policy are set only when the config asks for them, so staging can go without.
import type { Plugin } from "weir";

interface Config {
  /** `x-frame-options`; DENY unless set. */
  frameOptions?: "DENY" | "SAMEORIGIN";
  /** `strict-transport-security: max-age=N; includeSubDomains` when above 0. */
  hstsMaxAgeSeconds?: number;
  /** `content-security-policy`, as given. */
  contentSecurityPolicy?: string;
}

export default {
  afterResponse(ctx) {
    const config = ctx.config as Config;
    const headers = ctx.response.headers;
    headers.set("x-content-type-options", "nosniff");
    headers.set("referrer-policy", "strict-origin-when-cross-origin");
    headers.set("x-frame-options", config.frameOptions ?? "DENY");
    if ((config.hstsMaxAgeSeconds ?? 0) > 0) {
      headers.set("strict-transport-security", `max-age=${config.hstsMaxAgeSeconds}; includeSubDomains`);
    }
    if (config.contentSecurityPolicy) {
      headers.set("content-security-policy", config.contentSecurityPolicy);
    }
    // What the upstream runs on is nobody's business.
    headers.delete("server");
    headers.delete("x-powered-by");
  },
} satisfies Plugin;
