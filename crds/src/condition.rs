//! Status conditions: the vocabulary weir reports on its objects and the pure rule for
//! updating them (keep `lastTransitionTime` unless the status flips, so an unchanged
//! status compares equal and is not written again).

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::{Deserialize, Serialize};

/// The conditions of an object, one per type.
pub type Conditions = Vec<Condition>;

/// The condition types weir writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionType {
    /// The object is valid and not in conflict with another.
    Accepted,
    /// Everything the object refers to exists and is usable.
    ResolvedRefs,
    /// (Plugins) the source transpiled and passed the compile-time checks.
    Compiled,
    /// The object is in the snapshot applied by every proxy.
    Programmed,
    /// (Gateway listeners) the listener conflicts with another of its Gateway; `True`
    /// when it does.
    Conflicted,
    /// (HTTPRoutes) some rules are not served and the others are; present only while
    /// `True`.
    PartiallyInvalid,
    /// Summary for tools that read kstatus (Flux, `kubectl wait --for=condition=Ready`,
    /// Argo CD): the current generation is valid, resolved, compiled and served by every
    /// proxy.
    Ready,
    /// kstatus "abnormal-true": present, `True`, only while proxies catch up.
    Reconciling,
    /// kstatus "abnormal-true": present, `True`, only while the object cannot be served
    /// as written (invalid, unresolved, not compiling, failing to load) until it or what
    /// it refers to changes.
    Stalled,
}

impl ConditionType {
    /// Every condition type weir writes on its own kinds (Route, Plugin); types not
    /// listed are other writers' and kept.
    pub const ALL: [Self; 7] = [
        Self::Accepted,
        Self::ResolvedRefs,
        Self::Compiled,
        Self::Programmed,
        Self::Ready,
        Self::Reconciling,
        Self::Stalled,
    ];

    /// The condition type as written in `status.conditions[].type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::Compiled => "Compiled",
            Self::Programmed => "Programmed",
            Self::Conflicted => "Conflicted",
            Self::PartiallyInvalid => "PartiallyInvalid",
            Self::Ready => "Ready",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }

    /// Whether the type summarizes the others (kstatus) rather than reporting on its own.
    pub fn is_summary(self) -> bool {
        matches!(self, Self::Ready | Self::Reconciling | Self::Stalled)
    }
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a condition has its status: a CamelCase reason, as Kubernetes conventions ask.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// `Accepted=True`.
    Accepted,
    /// A field is invalid; the object is left out.
    Invalid,
    /// Another, older Route claims the same host and match.
    Conflicted,
    /// A host belongs to another namespace (its oldest Route claimed it first), which has
    /// not delegated it to this Route's namespace.
    HostNotOwned,
    /// Every host (`hosts: []`) or a wildcard broader than one label below a registrable
    /// domain, from a namespace the operator does not trust with them.
    HostNotPermitted,
    /// `ResolvedRefs=True`.
    ResolvedRefs,
    /// A backend Service, or its port, does not exist.
    BackendNotFound,
    /// A backend URL is not allowed where this snapshot is built.
    RefNotPermitted,
    /// A Plugin named by a Route does not exist.
    PluginNotFound,
    /// A Plugin named by a Route exists but has no version that can run.
    PluginNotReady,
    /// A TLS Secret does not exist.
    SecretNotFound,
    /// A TLS Secret holds no usable certificate chain and private key.
    InvalidCertificate,
    /// A source ConfigMap does not exist.
    ConfigMapNotFound,
    /// A source ConfigMap has no such key.
    KeyNotFound,
    /// `Compiled=True`.
    Compiled,
    /// The source does not parse; the message carries `line:col`.
    SyntaxError,
    /// The module has no `export default`.
    MissingDefaultExport,
    /// The module imports a package or a path: plugins import only their own files.
    ImportNotSupported,
    /// The module imports a file (`./name`) the plugin does not have.
    ModuleNotFound,
    /// `Programmed=True`.
    Programmed,
    /// The snapshot holding the object is not yet applied by every proxy.
    Pending,
    /// A proxy failed to load the object.
    LoadFailed,
    /// The object was left out of the snapshot.
    NotProgrammed,
    /// `Ready=True`.
    Ready,
    /// (Ingresses) an annotation weir does not implement is ignored.
    UnsupportedAnnotation,
    /// (Ingresses) a canary path has no Ingress without the canary annotation to split.
    NoMainIngress,
    /// (HTTPRoutes) no listener of the parent Gateway admits the Route (by namespace or kind).
    NotAllowedByListeners,
    /// (HTTPRoutes) no hostname of the Route intersects a hostname of the parent's listeners.
    NoMatchingListenerHostname,
    /// (HTTPRoutes) the parent Gateway has no listener of the `sectionName` or `port` named.
    NoMatchingParent,
    /// (HTTPRoutes) a reference names a kind weir does not serve (a backend that is not a Service, a filter that is not a weir Plugin).
    InvalidKind,
    /// (Gateway API) a value weir does not implement (a filter type, a match type); the part using it is not served.
    UnsupportedValue,
    /// (Gateways) one or more listeners are not valid.
    ListenersNotValid,
    /// (Gateways) `spec.addresses` asks for addresses, which weir's proxies do not assign.
    UnsupportedAddress,
    /// (GatewayClasses) `parametersRef` is set: weir's classes take no parameters.
    InvalidParameters,
    /// (listeners) a protocol other than HTTP and HTTPS.
    UnsupportedProtocol,
    /// (listeners) a port the proxies do not listen on for the listener's protocol.
    PortUnavailable,
    /// (listeners) another listener of the Gateway has the same port and hostname.
    HostnameConflict,
    /// (listeners) another listener of the Gateway has the same port and another protocol.
    ProtocolConflict,
    /// (listeners) a certificate reference is not a Secret, or the Secret holds no usable certificate.
    InvalidCertificateRef,
    /// (listeners) `allowedRoutes.kinds` names a kind other than HTTPRoute.
    InvalidRouteKinds,
    /// (listeners) `Conflicted=False`.
    NoConflicts,
    /// A note, not a failure: the object keeps a match that a newer object of another
    /// kind also claims (the newer one is told `Conflicted`). Said in the kept object's
    /// `Accepted=True` message.
    KeptOverNewer,
}

impl Reason {
    /// Whether a diagnostic of this reason is a warning: the object is served as if the
    /// named part were not there, and nothing is wrong with the rest (an Ingress
    /// annotation weir does not map).
    pub fn is_warning(self) -> bool {
        self == Self::UnsupportedAnnotation
    }

    /// Whether a diagnostic of this reason is a note: nothing is wrong with the object,
    /// and its condition stays `True`, the note added to the message.
    pub fn is_note(self) -> bool {
        self == Self::KeptOverNewer
    }

    /// The reason as written in `status.conditions[].reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "Accepted",
            Self::Invalid => "Invalid",
            Self::Conflicted => "Conflicted",
            Self::HostNotOwned => "HostNotOwned",
            Self::HostNotPermitted => "HostNotPermitted",
            Self::ResolvedRefs => "ResolvedRefs",
            Self::BackendNotFound => "BackendNotFound",
            Self::RefNotPermitted => "RefNotPermitted",
            Self::PluginNotFound => "PluginNotFound",
            Self::PluginNotReady => "PluginNotReady",
            Self::SecretNotFound => "SecretNotFound",
            Self::InvalidCertificate => "InvalidCertificate",
            Self::ConfigMapNotFound => "ConfigMapNotFound",
            Self::KeyNotFound => "KeyNotFound",
            Self::Compiled => "Compiled",
            Self::SyntaxError => "SyntaxError",
            Self::MissingDefaultExport => "MissingDefaultExport",
            Self::ImportNotSupported => "ImportNotSupported",
            Self::ModuleNotFound => "ModuleNotFound",
            Self::Programmed => "Programmed",
            Self::Pending => "Pending",
            Self::LoadFailed => "LoadFailed",
            Self::NotProgrammed => "NotProgrammed",
            Self::Ready => "Ready",
            Self::UnsupportedAnnotation => "UnsupportedAnnotation",
            Self::NoMainIngress => "NoMainIngress",
            Self::NotAllowedByListeners => "NotAllowedByListeners",
            Self::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Self::NoMatchingParent => "NoMatchingParent",
            Self::InvalidKind => "InvalidKind",
            Self::UnsupportedValue => "UnsupportedValue",
            Self::ListenersNotValid => "ListenersNotValid",
            Self::UnsupportedAddress => "UnsupportedAddress",
            Self::InvalidParameters => "InvalidParameters",
            Self::UnsupportedProtocol => "UnsupportedProtocol",
            Self::PortUnavailable => "PortUnavailable",
            Self::HostnameConflict => "HostnameConflict",
            Self::ProtocolConflict => "ProtocolConflict",
            Self::InvalidCertificateRef => "InvalidCertificateRef",
            Self::InvalidRouteKinds => "InvalidRouteKinds",
            Self::NoConflicts => "NoConflicts",
            Self::KeptOverNewer => "KeptOverNewer",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition as weir wants it, before it meets the object's current status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    /// The condition type.
    pub kind: ConditionType,
    /// `True` or `False`.
    pub status: bool,
    /// Why.
    pub reason: Reason,
    /// For humans, e.g. `applied on 3/3 proxies`.
    pub message: String,
}

impl DesiredCondition {
    /// A `True` condition.
    pub fn ok(kind: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// A `False` condition.
    pub fn failed(kind: ConditionType, reason: Reason, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

impl DesiredCondition {
    /// Whether turning to this condition deserves a Warning Event: rejections and load
    /// failures do; `Programmed=False` while proxies catch up (`Pending`) or because another
    /// condition already failed (`NotProgrammed`) would only repeat or be transient.
    pub fn warrants_event(&self) -> bool {
        !self.status
            && !self.kind.is_summary()
            && !matches!(self.reason, Reason::Pending | Reason::NotProgrammed)
    }
}

/// The kstatus summary of an object's own conditions (`Accepted`, `ResolvedRefs`,
/// `Compiled`, `Programmed`), for tools that wait on kstatus (Flux, `kubectl wait`):
/// `Ready` always; `Reconciling=True` while the only thing missing is proxies catching
/// up; `Stalled=True` while a condition failed for any other reason. Both abnormal-true
/// conditions are left out when they would be `False`, as kstatus expects.
pub fn summary(conditions: &[DesiredCondition]) -> Vec<DesiredCondition> {
    let failed = conditions
        .iter()
        .filter(|c| !c.kind.is_summary())
        .find(|c| !c.status && c.reason != Reason::Pending)
        .or_else(|| conditions.iter().find(|c| !c.status));
    let Some(failed) = failed else {
        let message = conditions
            .iter()
            .find(|c| c.kind == ConditionType::Programmed)
            .map_or_else(|| "ready".to_owned(), |c| c.message.clone());
        return vec![DesiredCondition::ok(
            ConditionType::Ready,
            Reason::Ready,
            message,
        )];
    };
    let message = format!("{}: {}", failed.kind, failed.message);
    let abnormal = if failed.reason == Reason::Pending {
        ConditionType::Reconciling
    } else {
        ConditionType::Stalled
    };
    vec![
        DesiredCondition::failed(ConditionType::Ready, failed.reason, message.clone()),
        DesiredCondition::ok(abnormal, failed.reason, message),
    ]
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The object's conditions after applying `desired` at `generation`.
///
/// A condition whose status does not change keeps its `lastTransitionTime`, so when
/// nothing changed the result equals `current` and the caller can skip the write.
/// Conditions of weir's types not in `desired` are dropped (an abnormal-true condition
/// that no longer holds); other writers' conditions are kept as they are.
pub fn merge_conditions(
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Conditions {
    let others = current
        .iter()
        .filter(|c| !ConditionType::ALL.iter().any(|t| t.as_str() == c.type_))
        .cloned()
        .collect();
    apply_conditions(others, current, desired, generation, now)
}

/// The conditions `desired` at `generation`, for a list weir alone writes (a Gateway
/// API object of weir's class): nothing else is kept, and a condition whose status does
/// not change keeps its `lastTransitionTime` from `current`.
pub fn replace_conditions(
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Conditions {
    apply_conditions(Vec::new(), current, desired, generation, now)
}

/// `kept` plus `desired`, transition times taken from `current` where the status holds.
fn apply_conditions(
    kept: Conditions,
    current: &[Condition],
    desired: &[DesiredCondition],
    generation: Option<i64>,
    now: &Time,
) -> Conditions {
    let mut merged = kept;
    for want in desired {
        let status = status_str(want.status);
        let last_transition_time = current
            .iter()
            .find(|c| c.type_ == want.kind.as_str() && c.status == status)
            .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
        merged.push(Condition {
            type_: want.kind.as_str().to_owned(),
            status: status.to_owned(),
            reason: want.reason.as_str().to_owned(),
            message: want.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

/// Whether two condition lists say the same thing, whatever their order.
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x == y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn accepted(status: bool) -> DesiredCondition {
        if status {
            DesiredCondition::ok(ConditionType::Accepted, Reason::Accepted, "valid")
        } else {
            DesiredCondition::failed(
                ConditionType::Accepted,
                Reason::Invalid,
                "spec.hosts[0]: bad",
            )
        }
    }

    #[test]
    fn new_condition_gets_now_and_generation() {
        let merged = merge_conditions(&[], &[accepted(true)], Some(3), &at(100));
        assert_eq!(merged.len(), 1);
        let c = &merged[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Accepted", "True", "Accepted")
        );
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(c.last_transition_time, at(100));
    }

    #[test]
    fn unchanged_status_keeps_transition_time_and_compares_equal() {
        let first = merge_conditions(&[], &[accepted(true)], Some(3), &at(100));
        let again = merge_conditions(&first, &[accepted(true)], Some(3), &at(200));
        assert_eq!(again, first);
        assert!(same_conditions(&again, &first));
    }

    #[test]
    fn flipped_status_moves_transition_time() {
        let first = merge_conditions(&[], &[accepted(true)], Some(3), &at(100));
        let flipped = merge_conditions(&first, &[accepted(false)], Some(4), &at(200));
        assert_eq!(flipped[0].status, "False");
        assert_eq!(flipped[0].reason, "Invalid");
        assert_eq!(flipped[0].last_transition_time, at(200));
        assert!(!same_conditions(&flipped, &first));
    }

    #[test]
    fn new_generation_alone_is_a_change() {
        let first = merge_conditions(&[], &[accepted(true)], Some(3), &at(100));
        let next = merge_conditions(&first, &[accepted(true)], Some(4), &at(200));
        assert_eq!(next[0].last_transition_time, at(100));
        assert!(!same_conditions(&next, &first));
    }

    #[test]
    fn rejections_and_load_failures_warrant_events() {
        assert!(accepted(false).warrants_event());
        assert!(!accepted(true).warrants_event());
        let load = DesiredCondition::failed(ConditionType::Programmed, Reason::LoadFailed, "x");
        assert!(load.warrants_event());
        let pending = DesiredCondition::failed(ConditionType::Programmed, Reason::Pending, "x");
        assert!(!pending.warrants_event());
    }

    #[test]
    fn other_writers_conditions_are_kept_and_weirs_left_out_are_dropped() {
        let programmed = DesiredCondition::ok(ConditionType::Programmed, Reason::Programmed, "ok");
        let mut first = merge_conditions(&[], &[programmed], Some(1), &at(100));
        first.push(Condition {
            type_: "Audited".into(),
            status: "True".into(),
            reason: "Audited".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(50),
        });
        let merged = merge_conditions(&first, &[accepted(true)], Some(1), &at(200));
        let types: Vec<_> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Accepted", "Audited"]);
    }

    fn programmed(status: bool, reason: Reason) -> DesiredCondition {
        DesiredCondition {
            kind: ConditionType::Programmed,
            status,
            reason,
            message: "applied on 2/3 proxies".into(),
        }
    }

    fn summarized(conditions: &[DesiredCondition]) -> Vec<(&'static str, bool, Reason)> {
        summary(conditions)
            .into_iter()
            .map(|c| (c.kind.as_str(), c.status, c.reason))
            .collect()
    }

    #[test]
    fn the_kstatus_summary_follows_the_conditions() {
        let served = [accepted(true), programmed(true, Reason::Programmed)];
        assert_eq!(
            summarized(&served),
            [("Ready", true, Reason::Ready)],
            "no abnormal-true condition when all is well"
        );
        assert_eq!(summary(&served)[0].message, "applied on 2/3 proxies");

        let catching_up = [accepted(true), programmed(false, Reason::Pending)];
        assert_eq!(
            summarized(&catching_up),
            [
                ("Ready", false, Reason::Pending),
                ("Reconciling", true, Reason::Pending)
            ]
        );

        // A rejection stalls, whatever Programmed says, and is what the summary names.
        let rejected = [accepted(false), programmed(false, Reason::NotProgrammed)];
        assert_eq!(
            summarized(&rejected),
            [
                ("Ready", false, Reason::Invalid),
                ("Stalled", true, Reason::Invalid)
            ]
        );
        assert_eq!(
            summary(&rejected)[1].message,
            "Accepted: spec.hosts[0]: bad"
        );
        let load_failed = [accepted(true), programmed(false, Reason::LoadFailed)];
        assert_eq!(
            summarized(&load_failed),
            [
                ("Ready", false, Reason::LoadFailed),
                ("Stalled", true, Reason::LoadFailed)
            ]
        );
        // A plugin whose new version does not compile is not ready, although its last
        // good version is programmed.
        let last_good = [
            accepted(true),
            DesiredCondition::failed(ConditionType::Compiled, Reason::SyntaxError, "1:3"),
            programmed(true, Reason::Programmed),
        ];
        assert_eq!(
            summarized(&last_good),
            [
                ("Ready", false, Reason::SyntaxError),
                ("Stalled", true, Reason::SyntaxError)
            ]
        );
        assert!(summary(&last_good).iter().all(|c| !c.warrants_event()));
    }

    #[test]
    fn an_abnormal_condition_that_no_longer_holds_is_dropped() {
        let pending = [accepted(true), programmed(false, Reason::Pending)];
        let mut desired = pending.to_vec();
        desired.extend(summary(&pending));
        let first = merge_conditions(&[], &desired, Some(1), &at(100));
        assert!(first.iter().any(|c| c.type_ == "Reconciling"));
        let served = [accepted(true), programmed(true, Reason::Programmed)];
        let mut desired = served.to_vec();
        desired.extend(summary(&served));
        let next = merge_conditions(&first, &desired, Some(1), &at(200));
        let types: Vec<_> = next.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Accepted", "Programmed", "Ready"]);
    }
}
