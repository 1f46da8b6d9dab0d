//! The annotations of an Ingress: the ingress-nginx ones people migrate with, mapped onto
//! Route fields, and `weir.dev/plugins`. An annotation weir does not implement is named
//! in the report (and so in a Warning Event); one that would inject raw proxy
//! configuration, or asks for authentication weir would not perform, keeps the whole
//! Ingress out of the snapshot, so that its backends are never exposed without it.

use std::collections::BTreeMap;

use crate::condition::{ConditionType, Reason};
use crate::route::{
    ClientLimits, CorsPolicy, HttpMethod, LoadBalancer, RedirectStatus, RetryOn, RetryPolicy,
    ServiceProtocol, SourceRanges, Timeouts,
};

use super::super::report::ObjectReport;

/// Prefix of the ingress-nginx annotations.
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

/// Annotation listing the weir Plugins run for an Ingress's paths (`name1,name2`).
pub const PLUGINS_ANNOTATION: &str = "weir.dev/plugins";

/// ingress-nginx's default `cors-allow-methods`.
const CORS_DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";

/// ingress-nginx's default `cors-allow-headers`.
const CORS_DEFAULT_HEADERS: &str = "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";

/// ingress-nginx's default `cors-max-age`, in seconds.
const CORS_DEFAULT_MAX_AGE: &str = "1728000";

/// What an Ingress's annotations ask for.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    /// Paths are case-insensitive regular expressions matched from the start
    /// (`use-regex`, or implied by `rewrite-target`).
    pub regex_paths: bool,
    /// `rewrite-target`: the new path, `$n` for the path's groups.
    pub rewrite_target: Option<String>,
    /// `ssl-redirect` as written (default: redirect when the host has TLS).
    pub ssl_redirect: Option<bool>,
    /// `force-ssl-redirect`: redirect even without TLS on the Ingress.
    pub force_ssl_redirect: bool,
    /// `permanent-redirect` / `temporal-redirect`: every path answers with this redirect.
    pub redirect: Option<FixedRedirect>,
    /// `backend-protocol`.
    pub backend_protocol: Option<ServiceProtocol>,
    /// `proxy-body-size`, in bytes (`u64::MAX` for `0`, no limit).
    pub max_body_bytes: Option<u64>,
    /// `proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout`.
    pub timeouts: Option<Timeouts>,
    /// `enable-cors` and the `cors-*` family.
    pub cors: Option<CorsPolicy>,
    /// `whitelist-source-range` / `allowlist-source-range` and `denylist-source-range`.
    pub source_ranges: Option<SourceRanges>,
    /// `limit-rps` (with `limit-burst-multiplier`) and `limit-connections`.
    pub client_limits: Option<ClientLimits>,
    /// `upstream-vhost`.
    pub upstream_vhost: Option<String>,
    /// `app-root`.
    pub app_root: Option<String>,
    /// `x-forwarded-prefix`: the `X-Forwarded-Prefix` header sent upstream.
    pub forwarded_prefix: Option<String>,
    /// `proxy-next-upstream` and `proxy-next-upstream-tries`.
    pub retries: Option<RetryPolicy>,
    /// `load-balance`.
    pub load_balancer: Option<LoadBalancer>,
    /// `server-alias`: more host names for the Ingress's hosts.
    pub aliases: Vec<String>,
    /// `from-to-www-redirect`: `www.` and bare host names redirect to each other.
    pub www_redirect: bool,
    /// `weir.dev/plugins`.
    pub plugins: Vec<String>,
    /// The `canary` family, when `canary: "true"`.
    pub canary: Option<Canary>,
}

/// A redirect every path of an Ingress answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FixedRedirect {
    /// The target URL, whole.
    pub url: url::Url,
    /// Its status code.
    pub status: RedirectStatus,
    /// The annotation it came from.
    pub annotation: &'static str,
}

/// How a canary Ingress takes requests from the Ingress serving the same host and path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Canary {
    /// `canary-weight`, out of `weight_total`.
    pub weight: u32,
    /// `canary-weight-total` (default 100).
    pub weight_total: u32,
    /// `canary-by-header`: the header that routes to the canary (`always`) or away from it
    /// (`never`).
    pub header: Option<String>,
    /// `canary-by-header-value`: the value that routes to the canary instead of `always`.
    pub header_value: Option<String>,
    /// `canary-by-header-pattern`: a regular expression instead of a value.
    pub header_pattern: Option<String>,
    /// `canary-by-cookie`: the cookie that routes to the canary (`always`) or away (`never`).
    pub cookie: Option<String>,
}

/// The field path of an annotation, as reports name it.
pub(crate) fn field(annotation: &str) -> String {
    format!("metadata.annotations[{annotation}]")
}

/// Reads the annotations of one Ingress, reporting what is wrong or not implemented.
pub(crate) fn read(annotations: &BTreeMap<String, String>, report: &mut ObjectReport) -> Settings {
    let mut reader = Reader {
        annotations,
        report,
        settings: Settings::default(),
    };
    reader.read_all();
    reader.settings
}

struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
    report: &'a mut ObjectReport,
    settings: Settings,
}

impl Reader<'_> {
    /// The value of an ingress-nginx annotation, trimmed.
    fn nginx(&self, name: &str) -> Option<&str> {
        self.annotations
            .get(&format!("{NGINX_PREFIX}{name}"))
            .map(|v| v.trim())
    }

    fn invalid(&mut self, name: &str, message: impl Into<String>) {
        self.report
            .invalid(field(&format!("{NGINX_PREFIX}{name}")), message);
    }

    fn boolean(&mut self, name: &str) -> Option<bool> {
        let value = self.nginx(name)?;
        match value.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                let message = format!("{value:?} is not true or false");
                self.invalid(name, message);
                None
            }
        }
    }

    fn number(&mut self, name: &str) -> Option<u32> {
        let value = self.nginx(name)?;
        match value.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                let message = format!("{value:?} is not a whole number");
                self.invalid(name, message);
                None
            }
        }
    }

    /// A timeout in seconds (`60`, or `60s`), as a Route duration.
    fn seconds(&mut self, name: &str) -> Option<String> {
        let value = self.nginx(name)?;
        match value.strip_suffix('s').unwrap_or(value).parse::<u32>() {
            Ok(n) if n > 0 => Some(format!("{n}s")),
            _ => {
                let message = format!("{value:?} is not a number of seconds above 0");
                self.invalid(name, message);
                None
            }
        }
    }

    fn list(&self, name: &str) -> Option<Vec<String>> {
        self.nginx(name).map(|value| {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    fn read_all(&mut self) {
        for (key, value) in self.annotations {
            if key == PLUGINS_ANNOTATION {
                self.settings.plugins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned)
                    .collect();
            } else if let Some(name) = key.strip_prefix(NGINX_PREFIX) {
                self.classify(key, name);
            } else if key.starts_with("weir.dev/") {
                self.report.push(
                    field(key),
                    ConditionType::Accepted,
                    Reason::UnsupportedAnnotation,
                    "weir has no such annotation (weir.dev/plugins is the one Ingresses take); ignored",
                );
            }
        }
        self.settings.regex_paths = self.boolean("use-regex").unwrap_or(false);
        self.rewrite();
        self.settings.ssl_redirect = self.boolean("ssl-redirect");
        self.settings.force_ssl_redirect = self.boolean("force-ssl-redirect").unwrap_or(false);
        self.fixed_redirect();
        self.backend_protocol();
        self.body_size();
        self.timeouts();
        self.cors();
        self.source_ranges();
        self.client_limits();
        self.upstream_vhost();
        self.app_root();
        self.settings.forwarded_prefix = self.nginx("x-forwarded-prefix").map(str::to_owned);
        self.retries();
        self.load_balancer();
        self.settings.www_redirect = self.boolean("from-to-www-redirect").unwrap_or(false);
        self.settings.aliases = self
            .list("server-alias")
            .unwrap_or_default()
            .into_iter()
            .map(|alias| alias.to_ascii_lowercase())
            .collect();
        self.canary();
    }

    /// Reports an ingress-nginx annotation weir does not implement: refused when it
    /// injects configuration or asks for authentication, otherwise ignored with a warning.
    fn classify(&mut self, key: &str, name: &str) {
        if SUPPORTED.contains(&name) {
            return;
        }
        if name.ends_with("-snippet") {
            self.report.invalid(
                field(key),
                "raw nginx configuration is refused: weir runs no proxy configuration from \
                 objects; move what the snippet does into a weir Plugin (weir.dev/plugins) or \
                 Route fields. The Ingress is not served until the annotation is removed",
            );
        } else if name.starts_with("auth-") || name == "satisfy" {
            self.report.invalid(
                field(key),
                "authentication by annotation is not implemented; it is refused rather than \
                 ignored, so the backends are never exposed without it. Authenticate with a \
                 weir Plugin (weir.dev/plugins: jwt-auth, api-key, ...) instead",
            );
        } else {
            self.report.push(
                field(key),
                ConditionType::Accepted,
                Reason::UnsupportedAnnotation,
                "not implemented by weir; ignored (docs/ingress.md lists the annotations weir maps)",
            );
        }
    }

    fn rewrite(&mut self) {
        let Some(target) = self.nginx("rewrite-target").map(str::to_owned) else {
            return;
        };
        if !target.starts_with('/') && !target.starts_with('$') {
            self.invalid(
                "rewrite-target",
                format!("{target:?} is not a path (it must start with / or a $ group)"),
            );
            return;
        }
        // As in ingress-nginx, a rewrite makes the paths regular expressions.
        self.settings.regex_paths = true;
        self.settings.rewrite_target = Some(target);
    }

    fn fixed_redirect(&mut self) {
        let mut chosen = None;
        for (name, code_name, default) in [
            (
                "permanent-redirect",
                "permanent-redirect-code",
                RedirectStatus::MovedPermanently,
            ),
            (
                "temporal-redirect",
                "temporal-redirect-code",
                RedirectStatus::Found,
            ),
        ] {
            let Some(value) = self.nginx(name).map(str::to_owned) else {
                continue;
            };
            let url = match url::Url::parse(&value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => url,
                _ => {
                    self.invalid(
                        name,
                        format!("{value:?} is not an absolute http or https URL"),
                    );
                    continue;
                }
            };
            let status = match self.number(code_name) {
                None => default,
                Some(code) => match RedirectStatus::try_from(u16::try_from(code).unwrap_or(0)) {
                    Ok(status) => status,
                    Err(message) => {
                        self.invalid(code_name, message);
                        continue;
                    }
                },
            };
            if chosen.is_some() {
                self.invalid(
                    name,
                    "set at most one of permanent-redirect and temporal-redirect",
                );
                continue;
            }
            chosen = Some(FixedRedirect {
                url,
                status,
                annotation: name,
            });
        }
        self.settings.redirect = chosen;
    }

    fn backend_protocol(&mut self) {
        let Some(value) = self.nginx("backend-protocol").map(str::to_owned) else {
            return;
        };
        self.settings.backend_protocol = match value.to_ascii_uppercase().as_str() {
            "HTTP" => Some(ServiceProtocol::Http),
            "HTTPS" | "GRPCS" => Some(ServiceProtocol::Https),
            "GRPC" => Some(ServiceProtocol::H2c),
            _ => {
                self.invalid(
                    "backend-protocol",
                    format!(
                        "{value:?}: weir speaks HTTP, HTTPS, GRPC and GRPCS to backends (not FCGI, AJP or AUTO_HTTP)"
                    ),
                );
                None
            }
        };
    }

    fn body_size(&mut self) {
        let Some(value) = self.nginx("proxy-body-size").map(str::to_owned) else {
            return;
        };
        match parse_size(&value) {
            Some(0) => self.settings.max_body_bytes = Some(u64::MAX),
            Some(bytes) => self.settings.max_body_bytes = Some(bytes),
            None => self.invalid(
                "proxy-body-size",
                format!("{value:?} is not a size like 8m, 512k, 1g or 0 (no limit)"),
            ),
        }
    }

    fn timeouts(&mut self) {
        let connect = self.seconds("proxy-connect-timeout");
        let read = self.seconds("proxy-read-timeout");
        let send = self.seconds("proxy-send-timeout");
        if connect.is_none() && read.is_none() && send.is_none() {
            return;
        }
        let longest = |a: &Option<String>, b: &Option<String>| {
            let secs = |d: &Option<String>| {
                d.as_deref()
                    .and_then(|d| d.trim_end_matches('s').parse::<u32>().ok())
            };
            secs(a).max(secs(b)).map(|n| format!("{n}s"))
        };
        self.settings.timeouts = Some(Timeouts {
            // nginx's read timeout also bounds the wait for the response headers.
            request: read.clone(),
            idle: longest(&read, &send),
            connect,
            tunnel_idle: None,
        });
    }

    fn cors(&mut self) {
        if self.boolean("enable-cors") != Some(true) {
            return;
        }
        let origins = self
            .list("cors-allow-origin")
            .unwrap_or_else(|| vec!["*".to_owned()]);
        let methods_text = self
            .nginx("cors-allow-methods")
            .unwrap_or(CORS_DEFAULT_METHODS)
            .to_owned();
        let mut methods = Vec::new();
        for method in methods_text
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            match serde_json::from_value::<HttpMethod>(serde_json::Value::String(
                method.to_ascii_uppercase(),
            )) {
                Ok(method) if !methods.contains(&method) => methods.push(method),
                Ok(_) => {}
                Err(_) => self.invalid(
                    "cors-allow-methods",
                    format!("{method:?} is not an HTTP method"),
                ),
            }
        }
        let headers = self
            .list("cors-allow-headers")
            .unwrap_or_else(|| CORS_DEFAULT_HEADERS.split(',').map(str::to_owned).collect());
        let expose = self.list("cors-expose-headers").unwrap_or_default();
        let credentials = self.boolean("cors-allow-credentials").unwrap_or(true);
        let max_age = self
            .nginx("cors-max-age")
            .unwrap_or(CORS_DEFAULT_MAX_AGE)
            .to_owned();
        let max_age = match max_age.parse::<u32>() {
            Ok(seconds) => Some(format!("{seconds}s")),
            Err(_) => {
                self.invalid(
                    "cors-max-age",
                    format!("{max_age:?} is not a number of seconds"),
                );
                None
            }
        };
        // Browsers refuse credentials with the `*` origin, so ingress-nginx's default (both)
        // never let credentials through: the `*` origin goes without them here.
        let any_origin = origins.iter().any(|o| o == "*");
        self.settings.cors = Some(CorsPolicy {
            allow_origins: origins,
            allow_methods: methods,
            allow_headers: headers,
            expose_headers: expose,
            allow_credentials: Some(credentials && !any_origin),
            max_age,
        });
    }

    fn source_ranges(&mut self) {
        let allow = self
            .list("whitelist-source-range")
            .into_iter()
            .chain(self.list("allowlist-source-range"))
            .flatten()
            .collect::<Vec<_>>();
        let deny = self.list("denylist-source-range").unwrap_or_default();
        for (name, ranges) in [
            ("allowlist-source-range", &allow),
            ("denylist-source-range", &deny),
        ] {
            for range in ranges {
                if super::super::routes::parse_range(range).is_none() {
                    let name = if name == "allowlist-source-range"
                        && self.nginx("allowlist-source-range").is_none()
                    {
                        "whitelist-source-range"
                    } else {
                        name
                    };
                    self.invalid(
                        name,
                        format!("{range:?} is not an address range like 10.0.0.0/8, or an address"),
                    );
                }
            }
        }
        if !allow.is_empty() || !deny.is_empty() {
            self.settings.source_ranges = Some(SourceRanges { allow, deny });
        }
    }

    fn client_limits(&mut self) {
        let rps = self.number("limit-rps").filter(|&n| n > 0);
        let multiplier = self.number("limit-burst-multiplier").unwrap_or(5);
        let connections = self.number("limit-connections").filter(|&n| n > 0);
        if rps.is_none() && connections.is_none() {
            return;
        }
        self.settings.client_limits = Some(ClientLimits {
            requests_per_second: rps,
            burst: rps.map(|rate| rate.saturating_mul(multiplier)),
            concurrent_requests: connections,
        });
    }

    /// `proxy-next-upstream` (what is tried again on another endpoint, default
    /// `error timeout`) and `proxy-next-upstream-tries` (tries in all, default 3).
    fn retries(&mut self) {
        let conditions = self.nginx("proxy-next-upstream").map(str::to_owned);
        let tries = self.number("proxy-next-upstream-tries");
        if conditions.is_none() && tries.is_none() {
            return;
        }
        let conditions = conditions.unwrap_or_else(|| "error timeout".to_owned());
        let mut retry_on = Vec::new();
        let mut statuses = Vec::new();
        let mut ignored = Vec::new();
        for condition in conditions.split_whitespace() {
            match condition {
                "off" => {
                    self.settings.retries = Some(RetryPolicy {
                        attempts: Some(0),
                        ..RetryPolicy::default()
                    });
                    return;
                }
                "error" => retry_on.extend([RetryOn::ConnectFailure, RetryOn::Reset]),
                "timeout" => retry_on.push(RetryOn::Timeout),
                other => match other
                    .strip_prefix("http_")
                    .and_then(|code| code.parse::<u16>().ok())
                {
                    Some(code @ 500..=599) => statuses.push(code),
                    _ => ignored.push(other.to_owned()),
                },
            }
        }
        if !ignored.is_empty() {
            self.report.push(
                field(&format!("{NGINX_PREFIX}proxy-next-upstream")),
                ConditionType::Accepted,
                Reason::UnsupportedAnnotation,
                format!(
                    "{} not retried by weir (it retries connection failures, resets, timeouts and 5xx statuses, and never non-idempotent requests); ignored",
                    ignored.join(", ")
                ),
            );
        }
        retry_on.sort();
        retry_on.dedup();
        // nginx counts tries (0: unlimited); weir counts retries after the first, at most 10.
        let attempts = match tries.unwrap_or(3) {
            0 => 10,
            tries => (tries - 1).min(10),
        };
        self.settings.retries = Some(RetryPolicy {
            attempts: Some(attempts),
            retry_on: Some(retry_on),
            statuses,
            ..RetryPolicy::default()
        });
    }

    fn load_balancer(&mut self) {
        let Some(value) = self.nginx("load-balance").map(str::to_owned) else {
            return;
        };
        match value.as_str() {
            "round_robin" => self.settings.load_balancer = Some(LoadBalancer::RoundRobin),
            "ewma" => self.settings.load_balancer = Some(LoadBalancer::LeastRequest),
            _ => self.report.push(
                field(&format!("{NGINX_PREFIX}load-balance")),
                ConditionType::Accepted,
                Reason::UnsupportedAnnotation,
                format!("{value:?}: weir balances round_robin, or by least requests (for ewma); the default, least requests, is used"),
            ),
        }
    }

    fn upstream_vhost(&mut self) {
        let Some(host) = self.nginx("upstream-vhost").map(str::to_owned) else {
            return;
        };
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
        if valid {
            self.settings.upstream_vhost = Some(host.to_ascii_lowercase());
        } else {
            self.invalid(
                "upstream-vhost",
                format!("{host:?} is not a host name (nginx variables are not supported)"),
            );
        }
    }

    fn app_root(&mut self) {
        let Some(root) = self.nginx("app-root").map(str::to_owned) else {
            return;
        };
        if crate::path::is_normalized(&root) && root != "/" {
            self.settings.app_root = Some(root);
        } else {
            self.invalid(
                "app-root",
                format!("{root:?} is not an absolute path in normal form other than /"),
            );
        }
    }

    fn canary(&mut self) {
        if self.boolean("canary") != Some(true) {
            return;
        }
        let weight_total = self.number("canary-weight-total").unwrap_or(100);
        let weight = self.number("canary-weight").unwrap_or(0);
        if weight_total == 0 || weight > weight_total {
            self.invalid(
                "canary-weight",
                format!("{weight} is not between 0 and canary-weight-total ({weight_total})"),
            );
        }
        let header = self.nginx("canary-by-header").map(str::to_owned);
        if let Some(header) = &header
            && !super::super::routes::is_token(header)
        {
            self.invalid(
                "canary-by-header",
                format!("{header:?} is not a header name"),
            );
        }
        let cookie = self.nginx("canary-by-cookie").map(str::to_owned);
        if let Some(cookie) = &cookie
            && !super::super::routes::is_token(cookie)
        {
            self.invalid(
                "canary-by-cookie",
                format!("{cookie:?} is not a cookie name"),
            );
        }
        self.settings.canary = Some(Canary {
            weight,
            weight_total,
            header,
            header_value: self.nginx("canary-by-header-value").map(str::to_owned),
            header_pattern: self.nginx("canary-by-header-pattern").map(str::to_owned),
            cookie,
        });
    }
}

/// The ingress-nginx annotations weir maps (docs/ingress.md).
const SUPPORTED: &[&str] = &[
    "rewrite-target",
    "use-regex",
    "ssl-redirect",
    "force-ssl-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
    "temporal-redirect",
    "temporal-redirect-code",
    "backend-protocol",
    "proxy-body-size",
    "proxy-connect-timeout",
    "proxy-read-timeout",
    "proxy-send-timeout",
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
    "whitelist-source-range",
    "allowlist-source-range",
    "denylist-source-range",
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
    "upstream-vhost",
    "app-root",
    "x-forwarded-prefix",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "load-balance",
    "server-alias",
    "from-to-www-redirect",
    "limit-rps",
    "limit-burst-multiplier",
    "limit-connections",
];

/// An nginx size: bytes, or a number with `k`, `m` or `g` (powers of 1024).
fn parse_size(value: &str) -> Option<u64> {
    let value = value.trim();
    let (digits, unit) = match value.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => (&value[..at], c.to_ascii_lowercase()),
        _ => (value, 'b'),
    };
    let number: u64 = digits.parse().ok()?;
    let scale: u64 = match unit {
        'b' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    number.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_nginx_reads_them() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("8m"), Some(8 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("8x"), None);
        assert_eq!(parse_size("m"), None);
        assert_eq!(parse_size(""), None);
    }
}
