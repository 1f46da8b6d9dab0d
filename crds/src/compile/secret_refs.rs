//! Plugin config values from Secrets (`secretRefs` of Plugins and of Routes' plugin
//! overrides): the text of each Secret key put at its JSON Pointer in the config before
//! the config is checked. The places filled are remembered, so no message about them
//! shows the value: Secrets never reach status or Events.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use super::Index;
use super::report::ObjectReport;
use super::tls::secret_value;
use crate::condition::{ConditionType, Reason};
use crate::plugin::ConfigSecretRef;

/// Annotation the operator's Secret store puts on a Secret whose data it did not keep
/// (nothing read it when it was listed); the Secrets are listed again once something
/// reads it.
pub const DATA_NOT_KEPT: &str = "weir.dev/data-not-kept";

/// Whether a Secret's data is still to be read: the store kept only its metadata.
pub(crate) fn is_being_read(secret: &Secret) -> bool {
    secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|annotations| annotations.contains_key(DATA_NOT_KEPT))
}

/// The places of a config whose values came from Secrets: JSON Pointer → `Secret
/// ns/name, key k` (kept in the bundle as [`crate::snapshot::PluginBundle::secret_paths`]).
pub(crate) type FromSecrets = BTreeMap<String, String>;

/// The Secret whose value the config's value at `pointer` is, is part of, or holds: a
/// message showing that value would show the Secret.
pub(crate) fn source_of<'a>(filled: &'a FromSecrets, pointer: &str) -> Option<&'a str> {
    let under = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    filled.iter().find_map(|(path, source)| {
        (under(pointer, path) || under(path, pointer)).then_some(source.as_str())
    })
}

/// Puts the values `refs` name into `config`; `None` when one cannot be resolved (the
/// reasons are in `report`, under `field`, e.g. `spec.secretRefs`).
pub(crate) fn resolve(
    config: &mut Value,
    refs: &[ConfigSecretRef],
    namespace: &str,
    index: &Index<'_>,
    field: &str,
    report: &mut ObjectReport,
) -> Option<FromSecrets> {
    let mut filled = FromSecrets::default();
    let mut complete = true;
    for (i, reference) in refs.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let source = format!(
            "Secret {namespace}/{}, key {}",
            reference.secret_name, reference.key
        );
        let Some(secret) = index
            .secrets
            .get(&(namespace, reference.secret_name.as_str()))
        else {
            report.push(
                format!("{field}.secretName"),
                ConditionType::ResolvedRefs,
                Reason::SecretNotFound,
                format!("Secret {namespace}/{} not found", reference.secret_name),
            );
            complete = false;
            continue;
        };
        if is_being_read(secret) {
            report.push(
                format!("{field}.secretName"),
                ConditionType::ResolvedRefs,
                Reason::Pending,
                format!(
                    "Secret {namespace}/{} is being read (the operator lists Secrets again when one is newly referenced)",
                    reference.secret_name
                ),
            );
            complete = false;
            continue;
        }
        let Some(bytes) = secret_value(secret, &reference.key) else {
            report.push(
                format!("{field}.key"),
                ConditionType::ResolvedRefs,
                Reason::KeyNotFound,
                format!(
                    "Secret {namespace}/{} has no key {:?}",
                    reference.secret_name, reference.key
                ),
            );
            complete = false;
            continue;
        };
        let Ok(text) = String::from_utf8(bytes) else {
            report.invalid(
                format!("{field}.key"),
                format!("the value of {source} is not UTF-8 text (base64-encode binary keys)"),
            );
            complete = false;
            continue;
        };
        match put(config, &reference.path, Value::String(text)) {
            Ok(()) => {
                filled.insert(reference.path.clone(), source);
            }
            Err(problem) => {
                report.invalid(format!("{field}.path"), problem);
                complete = false;
            }
        }
    }
    complete.then_some(filled)
}

/// Sets `value` at the JSON Pointer `path` of `config`, creating missing objects on the
/// way; array elements must exist.
fn put(config: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let Some(pointer) = path.strip_prefix('/') else {
        return Err(format!(
            "{path:?} is not a JSON Pointer (it starts with \"/\")"
        ));
    };
    let tokens: Vec<String> = pointer
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = tokens.split_last().unwrap_or((&tokens[0], &[]));
    let mut at = config;
    let mut walked = String::new();
    for token in parents {
        walked.push('/');
        walked.push_str(token);
        at = match at {
            Value::Object(map) => map
                .entry(token.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(items) => token
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| format!("{path}: the config has no array element {walked}"))?,
            _ => {
                return Err(format!(
                    "{path}: {walked} is not an object or array in the config"
                ));
            }
        };
    }
    match at {
        Value::Object(map) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(items) => {
            let slot = last
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| format!("{path}: the config has no array element {path}"))?;
            *slot = value;
            Ok(())
        }
        _ => Err(format!(
            "{path}: its parent is not an object or array in the config"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_go_where_pointers_say_creating_objects_on_the_way() {
        let mut config = json!({"keys": [{"kid": "a"}], "other": 1});
        put(&mut config, "/keys/0/secret", json!("s1")).unwrap();
        put(&mut config, "/upstream/auth/token", json!("s2")).unwrap();
        put(&mut config, "/a~1b~0c", json!("s3")).unwrap();
        assert_eq!(
            config,
            json!({
                "keys": [{"kid": "a", "secret": "s1"}],
                "other": 1,
                "upstream": {"auth": {"token": "s2"}},
                "a/b~c": "s3",
            })
        );
        assert!(put(&mut config, "/keys/3/secret", json!("x")).is_err());
        assert!(put(&mut config, "/other/x", json!("x")).is_err());
        assert!(put(&mut config, "keys", json!("x")).is_err());
    }

    #[test]
    fn places_within_a_secret_value_are_found() {
        let filled = FromSecrets::from([("/keys/0/secret".into(), "Secret a/b, key k".into())]);
        assert_eq!(
            source_of(&filled, "/keys/0/secret"),
            Some("Secret a/b, key k")
        );
        assert_eq!(
            source_of(&filled, "/keys/0/secret/x"),
            Some("Secret a/b, key k")
        );
        assert_eq!(source_of(&filled, "/keys/0/secretary"), None);
        assert_eq!(source_of(&filled, "/keys/1"), None);
        assert_eq!(
            source_of(&filled, "/keys/0"),
            Some("Secret a/b, key k"),
            "the object holding the value would show it"
        );
        assert_eq!(source_of(&filled, ""), Some("Secret a/b, key k"));
    }
}
