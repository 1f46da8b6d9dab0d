//! Path rewrites made ready to serve: a snapshot's [`PathRewrite`] with its regular
//! expression compiled once, at load, and applied the same way when forwarding and when
//! redirecting.

use regex::{Regex, RegexBuilder};
use weir_crds::path::replace_prefix;
use weir_crds::snapshot::PathRewrite;

use crate::router::REGEX_SIZE_LIMIT;

/// A rule's path rewrite, ready to apply.
#[derive(Debug)]
pub enum Rewrite {
    /// Replace the matched `Prefix`/`Exact` value with this.
    ReplacePrefix(String),
    /// Replace the whole path with this.
    ReplaceFull(String),
    /// Replace the whole path with `substitution`, expanded with the groups of the
    /// pattern's first match, when the pattern matches.
    Regex {
        /// The pattern, searched in the normalized path.
        pattern: Regex,
        /// The new path, with `$n`/`${name}` for the groups.
        substitution: String,
    },
}

impl Rewrite {
    /// Compiles a snapshot's rewrite; fails on a pattern that does not compile within the
    /// router's size limit.
    pub fn load(rewrite: &PathRewrite) -> Result<Self, String> {
        Ok(match rewrite {
            PathRewrite::ReplacePrefix(with) => Self::ReplacePrefix(with.clone()),
            PathRewrite::ReplaceFull(full) => Self::ReplaceFull(full.clone()),
            PathRewrite::Regex(regex) => Self::Regex {
                pattern: RegexBuilder::new(&regex.pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("regular expression {:?}: {e}", regex.pattern))?,
                substitution: regex.substitution.clone(),
            },
        })
    }

    /// The new path of `path` (normalized, without its query), where `matched_prefix` is
    /// the `Prefix`/`Exact` value that matched, if any.
    pub fn apply(&self, path: &str, matched_prefix: Option<&str>) -> String {
        match self {
            Self::ReplacePrefix(with) => replace_prefix(matched_prefix.unwrap_or("/"), with, path),
            Self::ReplaceFull(full) => full.clone(),
            Self::Regex {
                pattern,
                substitution,
            } => {
                let Some(captures) = pattern.captures(path) else {
                    return path.to_owned();
                };
                // Like nginx's `rewrite`, the substitution is the whole new path, not a
                // replacement of the matched part.
                let mut expanded = String::with_capacity(substitution.len() + 1);
                captures.expand(substitution, &mut expanded);
                if !expanded.starts_with('/') {
                    expanded.insert(0, '/');
                }
                expanded
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_crds::snapshot::RegexSubstitution;

    use super::*;

    fn regex(pattern: &str, substitution: &str) -> Rewrite {
        Rewrite::load(&PathRewrite::Regex(RegexSubstitution {
            pattern: pattern.into(),
            substitution: substitution.into(),
        }))
        .unwrap()
    }

    #[test]
    fn regex_rewrites_replace_the_whole_path() {
        let numbered = regex("^/api/v(\\d+)/(.*)$", "/v$1/${2}");
        assert_eq!(numbered.apply("/api/v2/users/7", None), "/v2/users/7");
        let named = regex("/users/(?P<id>[0-9]+)", "/people/${id}/profile");
        // Only part of the path matched: the whole path is still replaced.
        assert_eq!(named.apply("/old/users/42/x", None), "/people/42/profile");
        assert_eq!(named.apply("/users/abc", None), "/users/abc");
    }

    #[test]
    fn regex_results_are_absolute() {
        assert_eq!(regex("^/(.*)$", "$1").apply("/a/b", None), "/a/b");
        assert_eq!(regex("^/x$", "$$y").apply("/x", None), "/$y");
    }

    #[test]
    fn bad_patterns_do_not_load() {
        let bad = PathRewrite::Regex(RegexSubstitution {
            pattern: "(".into(),
            substitution: "/".into(),
        });
        assert!(
            Rewrite::load(&bad)
                .unwrap_err()
                .contains("regular expression")
        );
    }

    #[test]
    fn prefix_and_full_rewrites() {
        let prefix = Rewrite::load(&PathRewrite::ReplacePrefix("/v2".into())).unwrap();
        assert_eq!(prefix.apply("/api/x", Some("/api")), "/v2/x");
        let full = Rewrite::load(&PathRewrite::ReplaceFull("/fixed".into())).unwrap();
        assert_eq!(full.apply("/anything", None), "/fixed");
    }
}
