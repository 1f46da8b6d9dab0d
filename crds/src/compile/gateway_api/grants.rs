//! ReferenceGrants: a reference from one namespace to an object in another is valid only
//! when a grant in the referent's namespace allows it.

use crate::gateway::ReferenceGrant;

/// The referrer side of a reference: what refers, from where.
pub(crate) struct Referrer<'a> {
    /// API group of the referring kind.
    pub group: &'a str,
    /// The referring kind (`HTTPRoute`, `Gateway`).
    pub kind: &'a str,
    /// The referrer's namespace.
    pub namespace: &'a str,
}

/// The referent side: what is referred to.
pub(crate) struct Referent<'a> {
    /// API group of the referent's kind (`""` for the core group).
    pub group: &'a str,
    /// The referent's kind (`Service`, `Secret`).
    pub kind: &'a str,
    /// The referent's namespace.
    pub namespace: &'a str,
    /// The referent's name.
    pub name: &'a str,
}

/// Whether `from` may refer to `to`: always within a namespace, else when a grant in
/// `to`'s namespace lists `from`'s kind and namespace and `to`'s kind (and name, if it
/// names one).
pub(crate) fn permits(grants: &[&ReferenceGrant], from: &Referrer<'_>, to: &Referent<'_>) -> bool {
    if from.namespace == to.namespace {
        return true;
    }
    grants
        .iter()
        .filter(|grant| super::super::namespace_of(&grant.metadata) == to.namespace)
        .any(|grant| {
            let from_listed = grant.spec.from.iter().any(|f| {
                f.group == from.group && f.kind == from.kind && f.namespace == from.namespace
            });
            let to_listed = grant.spec.to.iter().any(|t| {
                t.group == to.group
                    && t.kind == to.kind
                    && t.name.as_deref().is_none_or(|name| name == to.name)
            });
            from_listed && to_listed
        })
}

/// Why `from` may not refer to `to`, for the referrer's status.
pub(crate) fn refusal(from: &Referrer<'_>, to: &Referent<'_>) -> String {
    format!(
        "{} {}/{} is in another namespace and no ReferenceGrant there lets {}s of namespace {} \
         use it",
        to.kind, to.namespace, to.name, from.kind, from.namespace
    )
}
