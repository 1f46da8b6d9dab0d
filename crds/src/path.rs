//! Request paths: the one normalization every match and every upstream request sees, and
//! the segment-wise comparisons behind `Prefix` and `Template` matches.
//!
//! The proxy normalizes each request path with [`normalize`] before routing and forwards
//! the normalized path, so the route that matched and the upstream agree on what was
//! asked for: `/a/../admin`, `//admin` and `/%61dmin` are all `/admin`.

use std::fmt::{self, Write as _};

use thiserror::Error;

/// Why a path cannot be normalized; the proxy answers 400.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// A `%` is not followed by two hex digits.
    #[error("malformed percent-encoding at byte {0}")]
    BadEscape(usize),
    /// A backslash (raw or `%5C`), which some backends treat as a separator.
    #[error("backslash in path")]
    Backslash,
    /// A NUL byte (`%00`) or other control character.
    #[error("control character in path")]
    ControlCharacter,
    /// A raw `;`: path parameters, which servlet containers and Spring strip before
    /// matching (`/admin;x` is their `/admin`, `/public/..;/admin` reaches `/admin`), so
    /// a path with one would be routed as one thing and served as another.
    #[error("path parameters (';') are not accepted")]
    Semicolon,
}

/// The normal form of a request path (without query):
///
/// - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) and of `/` are
///   decoded, other escapes keep their encoding with upper-case hex digits;
/// - runs of `/` become one;
/// - `.` and `..` segments are resolved (never above the root);
/// - a trailing `/` is kept.
///
/// Backslashes and control characters, raw or encoded, and raw `;` (path parameters) are
/// refused: they are the stuff of path-confusion attacks and no legitimate route needs
/// them. (`%3B` stays encoded: backends read it as data, not as a parameter.)
pub fn normalize(raw: &str) -> Result<String, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let decoded = decode_for_matching(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut parts = decoded.split('/').skip(1).peekable();
    let mut trailing_slash = false;
    while let Some(segment) = parts.next() {
        let last = parts.peek().is_none();
        match segment {
            "" => {
                // Repeated slashes collapse; a final empty segment is a trailing slash.
                if last {
                    trailing_slash = true;
                }
            }
            "." => trailing_slash = last,
            ".." => {
                segments.pop();
                trailing_slash = last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Whether `path` is already in normal form.
pub fn is_normalized(path: &str) -> bool {
    normalize(path).is_ok_and(|n| n == path)
}

fn decode_for_matching(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape(i))?;
            let value = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PathError::BadEscape(i))?;
            match value {
                b'\\' => return Err(PathError::Backslash),
                0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                b'/' => out.push('/'),
                v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => {
                    out.push(char::from(v));
                }
                v => {
                    let _ = write!(out, "%{v:02X}");
                }
            }
            i += 3;
        } else {
            match b {
                b'\\' => return Err(PathError::Backslash),
                b';' => return Err(PathError::Semicolon),
                0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                _ => {}
            }
            // Copy the whole UTF-8 character: only ASCII bytes are special above.
            let len = utf8_len(b);
            out.push_str(&raw[i..i + len]);
            i += len;
        }
    }
    Ok(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Whether a normalized `path` lies under `prefix`, segment by segment: `/api` matches
/// `/api` and `/api/users` but not `/apis`; `/` matches everything.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// What a path looks like after the part matched by a `Prefix` match is replaced by
/// `replacement` (`/` strips the prefix).
pub fn replace_prefix(prefix: &str, replacement: &str, path: &str) -> String {
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    let rest = rest.trim_start_matches('/');
    let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
    out.push_str(replacement);
    if !rest.is_empty() {
        if !out.ends_with('/') {
            out.push('/');
        }
        out.push_str(rest);
    } else if path.ends_with('/') && !out.ends_with('/') && path.len() > prefix.len() {
        out.push('/');
    }
    out
}

/// A path template such as `/users/{id}/orders/{order}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    segments: Vec<TemplateSegment>,
}

/// One segment of a [`Template`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSegment {
    /// This exact text.
    Literal(String),
    /// Any one non-empty segment, captured under this name.
    Param(String),
}

/// Why a template is invalid.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The template is not an absolute path in normal form.
    #[error("template must be an absolute path in normal form (like {0:?})")]
    NotNormalized(String),
    /// A segment mixes braces with text, or has an unbalanced brace.
    #[error("segment {0:?} must be either literal text or a whole {{name}}")]
    BadSegment(String),
    /// A parameter name is not an identifier.
    #[error("parameter name {0:?} must be an identifier (letters, digits, _)")]
    BadName(String),
    /// Two parameters have the same name.
    #[error("parameter {0:?} appears twice")]
    Duplicate(String),
    /// The template has no parameter at all: use an `Exact` match.
    #[error("template has no {{parameter}}; use an Exact match")]
    NoParameter,
}

impl Template {
    /// Parses and checks a template.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        // Braces are not changed by normalization, so the template's literal parts must
        // already be what a normalized request path can contain.
        let normal =
            normalize(template).map_err(|_| TemplateError::NotNormalized("/a/{b}".into()))?;
        if normal != template {
            return Err(TemplateError::NotNormalized(normal));
        }
        let mut segments = Vec::new();
        for raw in template.split('/').skip(1) {
            if let Some(name) = raw.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let mut chars = name.chars();
                let identifier = chars
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !identifier {
                    return Err(TemplateError::BadName(name.to_owned()));
                }
                if segments.contains(&TemplateSegment::Param(name.to_owned())) {
                    return Err(TemplateError::Duplicate(name.to_owned()));
                }
                segments.push(TemplateSegment::Param(name.to_owned()));
            } else if raw.contains(['{', '}']) {
                return Err(TemplateError::BadSegment(raw.to_owned()));
            } else {
                segments.push(TemplateSegment::Literal(raw.to_owned()));
            }
        }
        if !segments
            .iter()
            .any(|s| matches!(s, TemplateSegment::Param(_)))
        {
            return Err(TemplateError::NoParameter);
        }
        Ok(Self { segments })
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[TemplateSegment] {
        &self.segments
    }

    /// The captured parameters if the normalized `path` matches, in template order.
    pub fn captures<'p>(&self, path: &'p str) -> Option<Vec<(&str, &'p str)>> {
        let mut parts = path.split('/').skip(1);
        let mut params = Vec::new();
        for segment in &self.segments {
            let part = parts.next()?;
            match segment {
                TemplateSegment::Literal(text) if text == part => {}
                TemplateSegment::Literal(_) => return None,
                TemplateSegment::Param(_) if part.is_empty() => return None,
                TemplateSegment::Param(name) => params.push((name.as_str(), part)),
            }
        }
        parts.next().is_none().then_some(params)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                TemplateSegment::Literal(text) => write!(f, "/{text}")?,
                TemplateSegment::Param(name) => write!(f, "/{{{name}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_cannot_escape_a_prefix() {
        for raw in [
            "/a/../admin",
            "/a/./../admin",
            "//admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "/public%2F..%2Fadmin",
            "/../../admin",
            "/%61dmin",
            "/./admin",
        ] {
            assert_eq!(normalize(raw).unwrap(), "/admin", "{raw}");
        }
    }

    #[test]
    fn trailing_slash_and_root_are_kept() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/api/").unwrap(), "/api/");
        assert_eq!(normalize("/api//").unwrap(), "/api/");
        assert_eq!(normalize("/api/.").unwrap(), "/api/");
        assert_eq!(normalize("/api/x/..").unwrap(), "/api/");
        assert_eq!(normalize("/..").unwrap(), "/");
    }

    #[test]
    fn reserved_escapes_stay_encoded_in_upper_case() {
        assert_eq!(normalize("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(normalize("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(normalize("/café").unwrap(), "/café");
        assert_eq!(normalize("/a%20b").unwrap(), "/a%20b");
    }

    #[test]
    fn confusing_paths_are_refused() {
        assert_eq!(normalize("admin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape(2)));
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape(2)));
        assert_eq!(normalize("/a\\..\\admin"), Err(PathError::Backslash));
        assert_eq!(normalize("/a%5c..%5cadmin"), Err(PathError::Backslash));
        assert_eq!(normalize("/a%00"), Err(PathError::ControlCharacter));
        assert_eq!(normalize("/public/..;/admin"), Err(PathError::Semicolon));
        assert_eq!(normalize("/admin;x"), Err(PathError::Semicolon));
        assert_eq!(
            normalize("/a%3bb").as_deref(),
            Ok("/a%3Bb"),
            "encoded, it is data"
        );
    }

    #[test]
    fn normal_form_is_a_fixed_point() {
        for raw in ["/a/../b//c/%2e/d%2fe", "/x/%41/", "/"] {
            let once = normalize(raw).unwrap();
            assert!(is_normalized(&once), "{raw} -> {once}");
        }
        assert!(!is_normalized("/a//b"));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/users"));
        assert!(!prefix_matches("/api", "/apis"));
        assert!(prefix_matches("/api/", "/api/users"));
        assert!(!prefix_matches("/api/", "/api"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn prefix_replacement() {
        assert_eq!(replace_prefix("/api", "/", "/api/users"), "/users");
        assert_eq!(replace_prefix("/api", "/", "/api"), "/");
        assert_eq!(replace_prefix("/api", "/v2", "/api/users/"), "/v2/users/");
        assert_eq!(replace_prefix("/api", "/v2/", "/api/users"), "/v2/users");
        assert_eq!(replace_prefix("/api", "/v2", "/api"), "/v2");
        assert_eq!(replace_prefix("/api", "/v2", "/api/"), "/v2/");
        assert_eq!(replace_prefix("/", "/base", "/x"), "/base/x");
    }

    #[test]
    fn templates_capture_whole_segments() {
        let t = Template::parse("/users/{id}/orders/{order_id}").unwrap();
        assert_eq!(
            t.captures("/users/42/orders/7"),
            Some(vec![("id", "42"), ("order_id", "7")])
        );
        assert_eq!(t.captures("/users/42/orders"), None);
        assert_eq!(t.captures("/users/42/orders/7/x"), None);
        assert_eq!(t.captures("/users//orders/7"), None);
        assert_eq!(t.captures("/accounts/42/orders/7"), None);
        assert_eq!(t.to_string(), "/users/{id}/orders/{order_id}");
    }

    #[test]
    fn bad_templates_say_why() {
        assert_eq!(
            Template::parse("/users/{id"),
            Err(TemplateError::BadSegment("{id".into()))
        );
        assert_eq!(
            Template::parse("/users/x{id}"),
            Err(TemplateError::BadSegment("x{id}".into()))
        );
        assert_eq!(
            Template::parse("/users/{1d}"),
            Err(TemplateError::BadName("1d".into()))
        );
        assert_eq!(
            Template::parse("/a/{x}/{x}"),
            Err(TemplateError::Duplicate("x".into()))
        );
        assert_eq!(Template::parse("/users"), Err(TemplateError::NoParameter));
        assert_eq!(
            Template::parse("/users//{id}"),
            Err(TemplateError::NotNormalized("/users/{id}".into()))
        );
    }
}
