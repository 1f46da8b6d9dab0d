//! Routing: a snapshot's virtual hosts turned into lookups, and the choice of the entry a
//! request matches. Hosts go from most to least specific (exact, longest wildcard, `*`);
//! within a host the snapshot already orders entries most specific first.

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Method};
use regex::{Regex, RegexBuilder};
use weir_crds::path::{self, Template};
use weir_crds::route::ValueMatchType;
use weir_crds::snapshot::{MatchEntry, PathPattern, ValueCondition, VirtualHost};

/// Regular expressions from snapshots are compiled with this size limit.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a snapshot's routes cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("rule {rule}: {message}")]
pub struct RouterError {
    /// The rule id whose entry failed.
    pub rule: String,
    /// What failed.
    pub message: String,
}

/// The routes of one snapshot. `R` is what a matched entry leads to.
pub struct Router<R> {
    exact: HashMap<String, Vec<Entry<R>>>,
    /// Wildcard hosts by the suffix after `*.`.
    wildcard: HashMap<String, Vec<Entry<R>>>,
    any: Vec<Entry<R>>,
}

struct Entry<R> {
    target: Arc<R>,
    path: PathMatcher,
    methods: Vec<Method>,
    headers: Vec<ValueMatcher>,
    query: Vec<ValueMatcher>,
    /// Over TLS only (`true`), plain HTTP only (`false`), or both.
    tls: Option<bool>,
}

enum PathMatcher {
    Exact(String),
    Prefix(String),
    Template(Template),
    Regex(Regex),
}

struct ValueMatcher {
    name: String,
    test: ValueTest,
}

enum ValueTest {
    Exact(String),
    Regex(Regex),
    Present,
}

/// What a request looks like to the router.
#[derive(Clone, Copy, Debug)]
pub struct RequestHead<'a> {
    /// Lower-case host without port.
    pub host: &'a str,
    /// Normalized path.
    pub path: &'a str,
    /// The raw query string, if any.
    pub query: Option<&'a str>,
    /// The method.
    pub method: &'a Method,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// Whether the request came over TLS.
    pub tls: bool,
}

/// A matched entry.
pub struct Match<'r, R> {
    /// Where the entry leads.
    pub target: &'r Arc<R>,
    /// Template parameters captured from the path, in template order.
    pub params: Vec<(String, String)>,
    /// The `Prefix` or `Exact` value that matched, for prefix rewrites.
    pub matched_prefix: Option<&'r str>,
}

impl<R> Router<R> {
    /// Builds the router of `hosts`, resolving each entry's rule id with `target`.
    /// Entries whose rule `target` does not know are left out; entries that cannot be
    /// built are left out and returned as errors, so one bad entry costs only itself.
    pub fn build(
        hosts: &[VirtualHost],
        mut target: impl FnMut(&str) -> Option<Arc<R>>,
    ) -> (Self, Vec<RouterError>) {
        let mut router = Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: Vec::new(),
        };
        let mut errors = Vec::new();
        for host in hosts {
            let entries = host
                .entries
                .iter()
                .filter_map(|entry| {
                    let rule = target(&entry.rule)?;
                    Entry::build(entry, rule).map_err(|e| errors.push(e)).ok()
                })
                .collect();
            if host.host == "*" {
                router.any = entries;
            } else if let Some(suffix) = host.host.strip_prefix("*.") {
                router.wildcard.insert(suffix.to_owned(), entries);
            } else {
                router.exact.insert(host.host.clone(), entries);
            }
        }
        (router, errors)
    }

    /// The entry `request` matches, if any: hosts from most to least specific (exact,
    /// longest wildcard, `*`), entries in order within each.
    pub fn route<'r>(&'r self, request: &RequestHead<'_>) -> Option<Match<'r, R>> {
        let mut query_pairs = None;
        let mut first_match = |entries: &'r Vec<Entry<R>>| {
            entries
                .iter()
                .find_map(|entry| entry.matches(request, &mut query_pairs))
        };
        let host = request.host;
        if let Some(found) = self.exact.get(host).and_then(&mut first_match) {
            return Some(found);
        }
        for (i, _) in host.char_indices().filter(|(_, c)| *c == '.') {
            if let Some(found) = self.wildcard.get(&host[i + 1..]).and_then(&mut first_match) {
                return Some(found);
            }
        }
        first_match(&self.any)
    }
}

impl<R> Entry<R> {
    fn build(entry: &MatchEntry, target: Arc<R>) -> Result<Self, RouterError> {
        let error = |message: String| RouterError {
            rule: entry.rule.clone(),
            message,
        };
        let path = match &entry.path {
            PathPattern::Exact(v) => PathMatcher::Exact(v.clone()),
            PathPattern::Prefix(v) => PathMatcher::Prefix(v.clone()),
            PathPattern::Template(v) => PathMatcher::Template(
                Template::parse(v).map_err(|e| error(format!("template {v:?}: {e}")))?,
            ),
            PathPattern::Regex(v) => PathMatcher::Regex(whole_match(v).map_err(error)?),
        };
        let methods = entry
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.as_bytes()).map_err(|e| error(format!("method {m:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let values = |conditions: &[ValueCondition]| {
            conditions
                .iter()
                .map(|c| {
                    let test = match (c.kind, &c.value) {
                        (ValueMatchType::Present, _) => ValueTest::Present,
                        (ValueMatchType::Exact, Some(v)) => ValueTest::Exact(v.clone()),
                        (ValueMatchType::Regex, Some(v)) => {
                            ValueTest::Regex(whole_match(v).map_err(error)?)
                        }
                        (_, None) => {
                            return Err(error(format!("condition on {:?} has no value", c.name)));
                        }
                    };
                    Ok(ValueMatcher {
                        name: c.name.clone(),
                        test,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            target,
            path,
            methods,
            headers: values(&entry.headers)?,
            query: values(&entry.query)?,
            tls: entry.tls,
        })
    }

    fn matches<'r>(
        &'r self,
        request: &RequestHead<'_>,
        query_pairs: &mut Option<Vec<(String, String)>>,
    ) -> Option<Match<'r, R>> {
        if self.tls.is_some_and(|tls| tls != request.tls) {
            return None;
        }
        let (params, matched_prefix) = match &self.path {
            PathMatcher::Exact(v) => {
                (v == request.path).then_some((Vec::new(), Some(v.as_str())))?
            }
            PathMatcher::Prefix(v) => {
                path::prefix_matches(v, request.path).then_some((Vec::new(), Some(v.as_str())))?
            }
            PathMatcher::Template(t) => {
                let captures = t.captures(request.path)?;
                (
                    captures
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    None,
                )
            }
            PathMatcher::Regex(r) => r.is_match(request.path).then_some((Vec::new(), None))?,
        };
        if !self.methods.is_empty() && !self.methods.contains(request.method) {
            return None;
        }
        let headers_hold = self.headers.iter().all(|m| {
            let values = request
                .headers
                .get_all(m.name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok());
            m.test.holds_for_any(values)
        });
        if !headers_hold {
            return None;
        }
        if !self.query.is_empty() {
            let pairs = query_pairs.get_or_insert_with(|| {
                url::form_urlencoded::parse(request.query.unwrap_or_default().as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            });
            let query_holds = self.query.iter().all(|m| {
                let values = pairs
                    .iter()
                    .filter(|(k, _)| *k == m.name)
                    .map(|(_, v)| v.as_str());
                m.test.holds_for_any(values)
            });
            if !query_holds {
                return None;
            }
        }
        Some(Match {
            target: &self.target,
            params,
            matched_prefix,
        })
    }
}

impl ValueTest {
    fn holds_for_any<'v>(&self, mut values: impl Iterator<Item = &'v str>) -> bool {
        match self {
            Self::Present => values.next().is_some(),
            Self::Exact(expected) => values.any(|v| v == expected),
            Self::Regex(regex) => values.any(|v| regex.is_match(v)),
        }
    }
}

fn whole_match(regex: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("regular expression {regex:?}: {e}"))
}

/// Why the host a request is for cannot be told (answered 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Two or more `Host` headers.
    #[error("more than one Host header")]
    Repeated,
    /// An HTTP/1.1 request without `Host` (RFC 9112, section 3.2).
    #[error("an HTTP/1.1 request needs a Host header")]
    Missing,
    /// A `Host` header that names another authority than the request target (an
    /// absolute-form target, or HTTP/2's `:authority`).
    #[error("the Host header {host:?} differs from the request target's authority {authority:?}")]
    Disagrees {
        /// The `Host` header.
        host: String,
        /// The request target's authority.
        authority: String,
    },
}

/// The host a request is for, lower case, without port or trailing dot: the request
/// target's authority (absolute form, HTTP/2 `:authority`) or else the `Host` header.
/// Requests whose host is ambiguous are refused, so that what is routed and what the
/// upstream is told cannot differ.
pub fn request_host(
    version: http::Version,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<String, HostError> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(HostError::Repeated);
    }
    let raw = match (uri.authority(), host) {
        (Some(authority), Some(host))
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes()) =>
        {
            return Err(HostError::Disagrees {
                host: String::from_utf8_lossy(host.as_bytes()).into_owned(),
                authority: authority.as_str().to_owned(),
            });
        }
        (Some(authority), _) => authority.host(),
        (None, Some(host)) => host.to_str().unwrap_or_default(),
        (None, None) if version == http::Version::HTTP_11 => return Err(HostError::Missing),
        (None, None) => "",
    };
    let without_port = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.rsplit_once(':').map_or(raw, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                raw
            }
        })
    };
    Ok(without_port.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_crds::snapshot::{MatchEntry, VirtualHost};

    fn entry(rule: &str, path: PathPattern) -> MatchEntry {
        MatchEntry {
            rule: rule.into(),
            path,
            methods: vec![],
            headers: vec![],
            query: vec![],
            tls: None,
        }
    }

    fn router(hosts: Vec<VirtualHost>) -> Router<String> {
        let (router, errors) = Router::build(&hosts, |id| Some(Arc::new(id.to_owned())));
        assert!(errors.is_empty());
        router
    }

    fn route(router: &Router<String>, host: &str, path: &str) -> Option<String> {
        let headers = HeaderMap::new();
        let head = RequestHead {
            host,
            path,
            query: None,
            method: &Method::GET,
            headers: &headers,
            tls: false,
        };
        router.route(&head).map(|m| (**m.target).clone())
    }

    #[test]
    fn hosts_go_from_exact_to_longest_wildcard_to_any() {
        let r = router(vec![
            VirtualHost {
                host: "*".into(),
                entries: vec![entry("any", PathPattern::Prefix("/".into()))],
            },
            VirtualHost {
                host: "*.example.com".into(),
                entries: vec![entry("wild", PathPattern::Prefix("/".into()))],
            },
            VirtualHost {
                host: "*.api.example.com".into(),
                entries: vec![entry("api-wild", PathPattern::Prefix("/v1".into()))],
            },
            VirtualHost {
                host: "www.example.com".into(),
                entries: vec![entry("www", PathPattern::Exact("/".into()))],
            },
        ]);
        assert_eq!(route(&r, "www.example.com", "/").as_deref(), Some("www"));
        assert_eq!(
            route(&r, "www.example.com", "/x").as_deref(),
            Some("wild"),
            "falls through to the wildcard"
        );
        assert_eq!(
            route(&r, "a.api.example.com", "/v1/x").as_deref(),
            Some("api-wild")
        );
        assert_eq!(
            route(&r, "a.api.example.com", "/v2").as_deref(),
            Some("wild")
        );
        assert_eq!(
            route(&r, "deep.a.example.com", "/").as_deref(),
            Some("wild")
        );
        assert_eq!(
            route(&r, "example.com", "/").as_deref(),
            Some("any"),
            "*.example.com is not example.com"
        );
    }

    #[test]
    fn bad_entries_are_left_out_and_reported() {
        let hosts = vec![VirtualHost {
            host: "*".into(),
            entries: vec![
                entry("bad", PathPattern::Regex("(".into())),
                entry("good", PathPattern::Prefix("/".into())),
            ],
        }];
        let (router, errors) = Router::<String>::build(&hosts, |id| Some(Arc::new(id.to_owned())));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].rule, "bad");
        assert_eq!(route(&router, "x", "/a").as_deref(), Some("good"));
    }

    #[test]
    fn templates_capture_and_conditions_filter() {
        let mut templated = entry("user", PathPattern::Template("/users/{id}".into()));
        templated.methods = vec!["GET".into()];
        let mut canary = entry("canary", PathPattern::Prefix("/".into()));
        canary.headers = vec![ValueCondition {
            name: "x-canary".into(),
            kind: ValueMatchType::Regex,
            value: Some("yes|true".into()),
        }];
        canary.query = vec![ValueCondition {
            name: "v".into(),
            kind: ValueMatchType::Exact,
            value: Some("2".into()),
        }];
        let r = router(vec![VirtualHost {
            host: "*".into(),
            entries: vec![templated, canary],
        }]);

        let headers = HeaderMap::new();
        let head = RequestHead {
            host: "x",
            path: "/users/42",
            query: None,
            method: &Method::GET,
            headers: &headers,
            tls: false,
        };
        let matched = r.route(&head).unwrap();
        assert_eq!(matched.params, [("id".to_owned(), "42".to_owned())]);
        let post = RequestHead {
            method: &Method::POST,
            ..head
        };
        assert!(r.route(&post).is_none());

        let mut headers = HeaderMap::new();
        headers.insert("x-canary", "true".parse().unwrap());
        let head = RequestHead {
            host: "x",
            path: "/a",
            query: Some("a=1&v=2"),
            method: &Method::GET,
            headers: &headers,
            tls: false,
        };
        assert_eq!(**r.route(&head).unwrap().target, "canary");
        let wrong_query = RequestHead {
            query: Some("v=3"),
            ..head
        };
        assert!(r.route(&wrong_query).is_none());
    }

    #[test]
    fn entries_of_one_kind_of_connection_match_only_it() {
        let mut plain = entry("plain", PathPattern::Prefix("/".into()));
        plain.tls = Some(false);
        let mut secure = entry("secure", PathPattern::Prefix("/".into()));
        secure.tls = Some(true);
        let r = router(vec![VirtualHost {
            host: "*".into(),
            entries: vec![plain, secure],
        }]);
        let headers = HeaderMap::new();
        let head = RequestHead {
            host: "x",
            path: "/a",
            query: None,
            method: &Method::GET,
            headers: &headers,
            tls: false,
        };
        assert_eq!(**r.route(&head).unwrap().target, "plain");
        let over_tls = RequestHead { tls: true, ..head };
        assert_eq!(**r.route(&over_tls).unwrap().target, "secure");
    }

    #[test]
    fn hosts_are_read_without_port_or_case() {
        let v11 = http::Version::HTTP_11;
        let host = |uri: &str, hosts: &[&str]| {
            let mut headers = HeaderMap::new();
            for h in hosts {
                headers.append(http::header::HOST, h.parse().unwrap());
            }
            request_host(v11, &uri.parse().unwrap(), &headers)
        };
        assert_eq!(
            host("/x", &["API.Example.com:8080"]).unwrap(),
            "api.example.com"
        );
        assert_eq!(host("http://[::1]:80/x", &[]).unwrap(), "[::1]");
        assert_eq!(host("/x", &["example.com."]).unwrap(), "example.com");
        assert_eq!(
            host("http://A.example/x", &["a.EXAMPLE"]).unwrap(),
            "a.example",
            "the same authority in another case"
        );
        assert_eq!(
            request_host(
                http::Version::HTTP_10,
                &"/x".parse().unwrap(),
                &HeaderMap::new()
            )
            .unwrap(),
            "",
            "HTTP/1.0 may leave Host out"
        );
    }

    #[test]
    fn ambiguous_hosts_are_refused() {
        let v11 = http::Version::HTTP_11;
        let mut two = HeaderMap::new();
        two.append(http::header::HOST, "a.example".parse().unwrap());
        two.append(http::header::HOST, "b.example".parse().unwrap());
        assert_eq!(
            request_host(v11, &"/x".parse().unwrap(), &two),
            Err(HostError::Repeated)
        );
        assert_eq!(
            request_host(v11, &"/x".parse().unwrap(), &HeaderMap::new()),
            Err(HostError::Missing)
        );
        let mut other = HeaderMap::new();
        other.insert(http::header::HOST, "b.example".parse().unwrap());
        assert!(matches!(
            request_host(v11, &"http://a.example/x".parse().unwrap(), &other),
            Err(HostError::Disagrees { .. })
        ));
    }
}
