//! CORS by route: preflight requests are answered by the proxy and never reach the
//! upstream; actual requests from an allowed origin get the response headers browsers
//! need.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use weir_crds::snapshot::Cors;

use crate::body::{self, ProxyBody};
use crate::headers;

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether `origin` is allowed by the policy.
fn origin_allowed(cors: &Cors, origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    cors.allow_origins.iter().any(|allowed| {
        if allowed == "*" || *allowed == origin {
            return true;
        }
        // `https://*.example.com` allows `https://a.example.com` and deeper subdomains.
        let Some((scheme, pattern)) = allowed.split_once("://*.") else {
            return false;
        };
        let Some((origin_scheme, host)) = origin.split_once("://") else {
            return false;
        };
        origin_scheme == scheme && host.len() > pattern.len() + 1 && host.ends_with(pattern) && {
            let dot = host.len() - pattern.len() - 1;
            host.as_bytes()[dot] == b'.'
        }
    })
}

/// The value of `Access-Control-Allow-Origin` for an allowed origin.
fn allow_origin_value(cors: &Cors, origin: &HeaderValue) -> HeaderValue {
    if cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials {
        HeaderValue::from_static("*")
    } else {
        origin.clone()
    }
}

/// The proxy's answer to a preflight: 204, with the allow headers only when the origin,
/// method and headers asked for are allowed (a browser treats their absence as a refusal).
pub fn preflight(cors: &Cors, request: &HeaderMap) -> Response<ProxyBody> {
    let mut response = Response::new(body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    let Some(origin) = request.get(header::ORIGIN) else {
        return response;
    };
    let method = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    let asked_headers = headers::list_tokens(request, header::ACCESS_CONTROL_REQUEST_HEADERS);
    let any_header = cors.allow_headers.iter().any(|h| h == "*");
    let allowed = origin.to_str().is_ok_and(|o| origin_allowed(cors, o))
        && cors.allow_methods.iter().any(|m| m == method)
        && asked_headers
            .iter()
            .all(|h| any_header || cors.allow_headers.contains(h));
    if !allowed {
        return response;
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        allow_origin_value(cors, origin),
    );
    if let Ok(methods) = HeaderValue::from_str(&cors.allow_methods.join(", ")) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    if !asked_headers.is_empty()
        && let Ok(value) = HeaderValue::from_str(&asked_headers.join(", "))
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
    }
    if cors.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(max_age) = cors.max_age_seconds {
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(max_age));
    }
    response
}

/// Adds CORS headers to the response of an actual request from an allowed origin.
pub fn decorate(cors: &Cors, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
    response.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin.filter(|o| o.to_str().is_ok_and(|o| origin_allowed(cors, o))) else {
        return;
    };
    response.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        allow_origin_value(cors, origin),
    );
    if cors.allow_credentials {
        response.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cors.expose_headers.is_empty()
        && let Ok(value) = HeaderValue::from_str(&cors.expose_headers.join(", "))
    {
        response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str], credentials: bool) -> Cors {
        Cors {
            allow_origins: origins.iter().map(|o| o.to_string()).collect(),
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["x-total".into()],
            allow_credentials: credentials,
            max_age_seconds: Some(600),
        }
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard_subdomain() {
        let cors = policy(&["https://app.example.com", "https://*.example.org"], false);
        assert!(origin_allowed(&cors, "https://app.example.com"));
        assert!(origin_allowed(&cors, "HTTPS://APP.EXAMPLE.COM"));
        assert!(!origin_allowed(&cors, "http://app.example.com"));
        assert!(origin_allowed(&cors, "https://a.example.org"));
        assert!(origin_allowed(&cors, "https://a.b.example.org"));
        assert!(!origin_allowed(&cors, "https://example.org"));
        assert!(!origin_allowed(&cors, "https://evilexample.org"));
    }

    #[test]
    fn allowed_preflight_gets_the_allow_headers() {
        let cors = policy(&["https://app.example.com"], true);
        let response = preflight(
            &cors,
            &request(&[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "Authorization, Content-Type",
                ),
            ]),
        );
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let h = response.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-methods"], "GET, POST");
        assert_eq!(
            h["access-control-allow-headers"],
            "authorization, content-type"
        );
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-max-age"], "600");
    }

    #[test]
    fn refused_preflights_get_no_allow_headers() {
        let cors = policy(&["https://app.example.com"], false);
        for asked in [
            [
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
                ("x", "y"),
            ],
            [
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "DELETE"),
                ("x", "y"),
            ],
            [
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret"),
            ],
        ] {
            let response = preflight(&cors, &request(&asked));
            assert!(
                !response
                    .headers()
                    .contains_key("access-control-allow-origin"),
                "{asked:?}"
            );
        }
    }

    #[test]
    fn star_origin_without_credentials_answers_star() {
        let cors = policy(&["*"], false);
        let mut response = HeaderMap::new();
        decorate(
            &cors,
            Some(&HeaderValue::from_static("https://any.example")),
            &mut response,
        );
        assert_eq!(response["access-control-allow-origin"], "*");
        assert_eq!(response["access-control-expose-headers"], "x-total");
        assert_eq!(response["vary"], "Origin");
    }
}
