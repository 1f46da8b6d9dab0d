//! What plugins changed, as data the proxy applies: header edits, a path rewrite, an
//! upstream choice, the user, and response changes. `docs/plugins.md` describes the
//! format for people.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Edits of a header list. Applying them removes `remove`, replaces every name in `set`
/// with its values, then adds `append`; [`HeaderEdits::merge`] keeps that meaning when
/// edits of several plugins are combined.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HeaderEdits {
    /// Names (lower case) replaced by these values.
    pub set: BTreeMap<String, Vec<String>>,
    /// Values added after the existing ones (e.g. `set-cookie`).
    pub append: BTreeMap<String, Vec<String>>,
    /// Names removed.
    pub remove: BTreeSet<String>,
}

impl From<&weir_crds::snapshot::HeaderChanges> for HeaderEdits {
    /// A rule's header changes (from its Route), applied the way plugins' edits are.
    fn from(changes: &weir_crds::snapshot::HeaderChanges) -> Self {
        let one = |(name, value): (&String, &String)| (name.clone(), vec![value.clone()]);
        Self {
            set: changes.set.iter().map(one).collect(),
            append: changes.add.iter().map(one).collect(),
            remove: changes.remove.iter().cloned().collect(),
        }
    }
}

impl HeaderEdits {
    /// Whether applying these edits changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.append.is_empty() && self.remove.is_empty()
    }

    /// Combines `later` into `self`, as if `later` were applied after `self`.
    pub fn merge(&mut self, later: HeaderEdits) {
        for name in later.remove {
            self.set.remove(&name);
            self.append.remove(&name);
            self.remove.insert(name);
        }
        for (name, values) in later.set {
            self.append.remove(&name);
            self.set.insert(name, values);
        }
        for (name, values) in later.append {
            match self.set.get_mut(&name) {
                Some(set) => set.extend(values),
                None => self.append.entry(name).or_default().extend(values),
            }
        }
    }

    /// Records `name: value` replacing the name's values (as `HeaderEditor.set` in JS).
    pub(crate) fn set_value(&mut self, name: String, value: String) {
        self.append.remove(&name);
        self.set.insert(name, vec![value]);
    }

    /// Records a value added after the name's existing ones.
    pub(crate) fn append_value(&mut self, name: String, value: String) {
        match self.set.get_mut(&name) {
            Some(values) => values.push(value),
            None => self.append.entry(name).or_default().push(value),
        }
    }

    /// Records the removal of every value of `name`.
    pub(crate) fn remove_name(&mut self, name: String) {
        self.set.remove(&name);
        self.append.remove(&name);
        self.remove.insert(name);
    }

    /// The value of `name` after these edits, given its value before (`None`: absent).
    pub(crate) fn current(&self, name: &str, before: Option<String>) -> Option<String> {
        if let Some(values) = self.set.get(name) {
            return Some(values.join(", "));
        }
        let before = before.filter(|_| !self.remove.contains(name));
        let added = self.append.get(name).map(|values| values.join(", "));
        match (before, added) {
            (Some(before), Some(added)) => Some(format!("{before}, {added}")),
            (before, added) => before.or(added),
        }
    }

    /// Applies the edits to a header list (names lower case).
    pub fn apply(&self, headers: &mut Vec<(String, String)>) {
        headers.retain(|(name, _)| !self.remove.contains(name) && !self.set.contains_key(name));
        for (name, values) in self.set.iter().chain(&self.append) {
            headers.extend(values.iter().map(|value| (name.clone(), value.clone())));
        }
    }

    /// Applies the edits to a `HeaderMap`. Names and values were checked when the plugin
    /// made them, so nothing is skipped in practice.
    pub fn apply_to_map(&self, headers: &mut HeaderMap) {
        for name in self.remove.iter().chain(self.set.keys()) {
            headers.remove(name.as_str());
        }
        for (name, values) in self.set.iter().chain(&self.append) {
            let Ok(name) = HeaderName::try_from(name.as_str()) else {
                continue;
            };
            for value in values {
                if let Ok(value) = HeaderValue::try_from(value.as_str()) {
                    headers.append(name.clone(), value);
                }
            }
        }
    }

    /// The first name or value that is not valid HTTP, described for the plugin's author.
    pub(crate) fn invalid_entry(&self) -> Option<String> {
        let names = self
            .remove
            .iter()
            .chain(self.set.keys())
            .chain(self.append.keys());
        for name in names {
            if HeaderName::try_from(name.as_str()).is_err()
                || name.bytes().any(|b| b.is_ascii_uppercase())
            {
                return Some(format!("invalid header name {name:?}"));
            }
        }
        for (name, values) in self.set.iter().chain(&self.append) {
            if let Some(value) = values
                .iter()
                .find(|v| HeaderValue::try_from(v.as_str()).is_err())
            {
                return Some(format!("invalid value {value:?} for header {name:?}"));
            }
        }
        None
    }
}

/// Where the request goes instead of the rule's own backend choice.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", content = "value")]
pub enum Upstream {
    /// Another backend of the matched rule, by id.
    Backend(String),
    /// An allow-listed URL (`forwardAllowList`).
    Url(String),
}

/// What the `beforeRequest` hooks changed, to apply before going upstream.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RequestPatch {
    /// Edits of the headers sent upstream.
    pub headers: HeaderEdits,
    /// The path (with query, if the plugin gave one) sent upstream instead of the client's.
    pub path: Option<String>,
    /// The query (without `?`; empty: none) sent upstream instead of the client's, after
    /// whatever path is sent (the rule's rewrite, or `path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// A body sent upstream instead of the client's (the proxy fixes `content-length`).
    #[serde(skip)]
    pub body: Option<Bytes>,
    /// A validated upstream choice (`ctx.forward`).
    pub upstream: Option<Upstream>,
    /// Edits of the response headers the client will get, whoever answers.
    pub response_headers: HeaderEdits,
    /// `ctx.user` as the last plugin left it (for access logs and `afterResponse`).
    pub user: Option<serde_json::Value>,
}

/// A response made by a plugin in `beforeRequest` (`ctx.reject` or setting
/// `ctx.response.status`): the proxy sends it and does not go upstream.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalResponse {
    /// Id (`namespace/name`) of the plugin that answered.
    pub plugin: String,
    /// Whether the plugin called `ctx.reject` (counted as `rejected` in metrics).
    pub rejected: bool,
    /// Status code.
    pub status: u16,
    /// Headers, names lower case (including response headers earlier plugins set).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// What the `afterResponse` hooks changed, to apply before the response leaves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponsePatch {
    /// A new status code.
    pub status: Option<u16>,
    /// Edits of the response headers.
    pub headers: HeaderEdits,
    /// A new body replacing the upstream's (the proxy fixes `content-length`).
    pub body: Option<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits(json: serde_json::Value) -> HeaderEdits {
        serde_json::from_value(json).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn merged_edits_equal_edits_applied_in_turn() {
        let start = headers(&[("a", "1"), ("b", "2"), ("c", "3"), ("set-cookie", "s=1")]);
        let first = edits(serde_json::json!({
            "set": {"a": ["10"], "d": ["4"]},
            "append": {"set-cookie": ["t=2"]},
            "remove": ["b"],
        }));
        let second = edits(serde_json::json!({
            "set": {"b": ["20"]},
            "append": {"a": ["11"], "set-cookie": ["u=3"]},
            "remove": ["d", "c"],
        }));
        let mut in_turn = start.clone();
        first.apply(&mut in_turn);
        second.apply(&mut in_turn);

        let mut merged = first.clone();
        merged.merge(second);
        let mut at_once = start;
        merged.apply(&mut at_once);

        in_turn.sort();
        at_once.sort();
        assert_eq!(in_turn, at_once);
        assert_eq!(
            at_once,
            headers(&[
                ("a", "10"),
                ("a", "11"),
                ("b", "20"),
                ("set-cookie", "s=1"),
                ("set-cookie", "t=2"),
                ("set-cookie", "u=3")
            ])
        );
    }

    #[test]
    fn recorded_edits_read_back_as_applied() {
        let mut edits = HeaderEdits::default();
        edits.append_value("a".into(), "2".into());
        assert_eq!(
            edits.current("a", Some("1".into())).as_deref(),
            Some("1, 2")
        );
        edits.remove_name("a".into());
        assert_eq!(edits.current("a", Some("1".into())), None);
        edits.append_value("a".into(), "3".into());
        assert_eq!(edits.current("a", Some("1".into())).as_deref(), Some("3"));
        edits.set_value("a".into(), "4".into());
        edits.append_value("a".into(), "5".into());
        assert_eq!(edits.current("a", None).as_deref(), Some("4, 5"));
        let mut applied = vec![("a".to_owned(), "1".to_owned())];
        edits.apply(&mut applied);
        assert_eq!(applied, headers(&[("a", "4"), ("a", "5")]));
    }

    #[test]
    fn header_maps_get_the_same_edits() {
        let mut map = HeaderMap::new();
        map.insert("a", HeaderValue::from_static("1"));
        map.insert("b", HeaderValue::from_static("2"));
        edits(
            serde_json::json!({"set": {"a": ["x", "y"]}, "remove": ["b"], "append": {"c": ["z"]}}),
        )
        .apply_to_map(&mut map);
        let a: Vec<_> = map.get_all("a").iter().collect();
        assert_eq!(a, ["x", "y"]);
        assert!(map.get("b").is_none());
        assert_eq!(map["c"], "z");
    }

    #[test]
    fn invalid_names_and_values_are_named() {
        let bad_name = edits(serde_json::json!({"set": {"bad name": ["x"]}}));
        assert!(bad_name.invalid_entry().unwrap().contains("bad name"));
        let upper = edits(serde_json::json!({"remove": ["X-Upper"]}));
        assert!(upper.invalid_entry().is_some());
        let bad_value = edits(serde_json::json!({"append": {"x": ["a\r\nb"]}}));
        assert!(bad_value.invalid_entry().unwrap().contains("header \"x\""));
        assert_eq!(
            edits(serde_json::json!({"set": {"x-ok": ["fine"]}})).invalid_entry(),
            None
        );
    }
}
