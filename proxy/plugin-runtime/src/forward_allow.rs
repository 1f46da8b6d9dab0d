//! The URLs `ctx.forward(url)` may send a request to, besides the route's own backends:
//! those under an allow-listed prefix. Target and prefixes are compared parsed and
//! normalized, never as strings: the URL is parsed as browsers do (host case, default
//! ports, backslashes as slashes) and its path normalized as request paths are for
//! routing (dot segments resolved, `%2F` decoded, `;` refused), so
//! `https://x.example/api/../admin` or `https://x.example/api/..%2Fadmin` is not under
//! `https://x.example/api/`. The proxy sends the normalized URL, the one that was checked.

use url::Url;

/// Allow-listed URL prefixes, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ForwardAllowList {
    prefixes: Vec<Url>,
}

impl ForwardAllowList {
    /// The allow-list of `prefixes`; a prefix that is not an absolute http(s) URL without
    /// credentials, query or fragment is an error naming it.
    pub(crate) fn new(prefixes: &[String]) -> Result<Self, String> {
        let prefixes = prefixes
            .iter()
            .map(|prefix| {
                normalized(prefix)
                    .filter(|url| url.query().is_none())
                    .ok_or_else(|| {
                        format!(
                            "forward allow-list: {prefix:?} is not an http(s) URL prefix such as https://api.example.com/v1/"
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { prefixes })
    }

    /// The normalized `target` if it is under an allow-listed prefix (on a path
    /// boundary, so `https://a.example/api` admits neither `https://a.example/apiv2` nor
    /// `https://a.example.evil`).
    pub(crate) fn permits(&self, target: &str) -> Option<Url> {
        let url = normalized(target)?;
        self.prefixes
            .iter()
            .any(|prefix| is_under(&url, prefix))
            .then_some(url)
    }
}

/// `raw` parsed, with its path normalized; `None` unless it is an absolute http(s) URL
/// with a host and without credentials, with a path routing would accept.
fn normalized(raw: &str) -> Option<Url> {
    let mut url = Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let path = weir_crds::path::normalize(url.path()).ok()?;
    url.set_path(&path);
    url.set_fragment(None);
    Some(url)
}

fn is_under(url: &Url, prefix: &Url) -> bool {
    let same_origin = url.scheme() == prefix.scheme()
        && url.host() == prefix.host()
        && url.port_or_known_default() == prefix.port_or_known_default();
    same_origin
        && url.path().strip_prefix(prefix.path()).is_some_and(|rest| {
            prefix.path().ends_with('/') || rest.is_empty() || rest.starts_with('/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> ForwardAllowList {
        ForwardAllowList::new(&[
            "https://canary.example.com".to_owned(),
            "https://x.example/api/".to_owned(),
            "http://y.example:8080/v1".to_owned(),
        ])
        .unwrap()
    }

    #[test]
    fn urls_under_a_prefix_pass_normalized() {
        let allow = allow();
        let permitted = |target: &str| allow.permits(target).map(String::from);
        assert_eq!(
            permitted("https://canary.example.com/a?b=c").as_deref(),
            Some("https://canary.example.com/a?b=c")
        );
        assert_eq!(
            permitted("https://CANARY.example.com:443/a").as_deref(),
            Some("https://canary.example.com/a")
        );
        assert_eq!(
            permitted("https://x.example/api/v1/./users//1").as_deref(),
            Some("https://x.example/api/v1/users/1")
        );
        assert!(permitted("http://y.example:8080/v1").is_some());
        assert!(permitted("http://y.example:8080/v1/z").is_some());
    }

    #[test]
    fn urls_that_only_look_under_a_prefix_are_refused() {
        let allow = allow();
        for refused in [
            "https://x.example/api/../admin",
            "https://x.example/api/..%2Fadmin",
            "https://x.example/api/%2e%2e/admin",
            "https://x.example/api/..\\admin",
            "https://x.example/api/x/../../admin",
            "https://x.example/api/..;/admin",
            "https://x.example/apiv2",
            "https://canary.example.com.evil.net/",
            "https://canary.example.com@evil.net/",
            "https://user@canary.example.com/",
            "http://canary.example.com/",
            "https://canary.example.com:8443/",
            "http://y.example:8080/v10",
            "http://y.example/v1",
            "http://169.254.169.254/",
            "not a url",
        ] {
            assert_eq!(allow.permits(refused), None, "{refused}");
        }
    }

    #[test]
    fn prefixes_that_are_not_urls_are_named() {
        for bad in [
            "canary.example.com",
            "ftp://x.example/",
            "https://x.example/?a=b",
        ] {
            let error = ForwardAllowList::new(&[bad.to_owned()]).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }
}
