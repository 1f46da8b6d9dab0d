//! What the compiler says about each Route and Plugin: diagnostics naming the field, and
//! the conditions they add up to.

use std::fmt;

use serde::Serialize;

use crate::condition::{ConditionType, DesiredCondition, Reason};

/// Longest condition message written; the API server allows 32768 bytes.
const MAX_MESSAGE_LEN: usize = 4096;

/// The kinds of object the compiler reports on.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// A `Route`.
    Route,
    /// A `Plugin`.
    Plugin,
    /// A Kubernetes `Ingress`.
    Ingress,
    /// A Gateway API `GatewayClass` (cluster-scoped: its namespace is empty).
    GatewayClass,
    /// A Gateway API `Gateway`.
    Gateway,
    /// A Gateway API `HTTPRoute`.
    HTTPRoute,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Route => "Route",
            Self::Plugin => "Plugin",
            Self::Ingress => "Ingress",
            Self::GatewayClass => "GatewayClass",
            Self::Gateway => "Gateway",
            Self::HTTPRoute => "HTTPRoute",
        })
    }
}

/// Kind, namespace and name of an object.
#[derive(Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// The kind.
    pub kind: ObjectKind,
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// The object of `kind` a snapshot names as `namespace/name`.
    pub fn namespaced(kind: ObjectKind, namespaced: &str) -> Self {
        let (namespace, name) = namespaced.split_once('/').unwrap_or(("", namespaced));
        Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One problem with one field of one object.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Path of the field, e.g. `spec.rules[0].backends[1].name`.
    pub field: String,
    /// The condition this problem sets to `False`.
    pub condition: ConditionType,
    /// Why, in CamelCase.
    pub reason: Reason,
    /// What is wrong, for humans.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// How much of an object made it into the snapshot.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub enum InSnapshot {
    /// All of it.
    Whole,
    /// Some matches lost a conflict; the rest is in.
    Partly,
    /// (Plugins) the current spec failed; the last good version keeps serving.
    LastGood {
        /// `metadata.generation` of the version serving, when known.
        generation: Option<i64>,
        /// Its code hash.
        code_hash: String,
    },
    /// None of it.
    No,
}

/// Everything the compiler found about one object.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ObjectReport {
    /// Which object.
    pub object: ObjectRef,
    /// Its `metadata.generation`, for `observedGeneration`.
    pub generation: Option<i64>,
    /// Problems found, in field order.
    pub diagnostics: Vec<Diagnostic>,
    /// How much of it is in the snapshot.
    pub in_snapshot: InSnapshot,
}

impl ObjectReport {
    pub(crate) fn new(
        kind: ObjectKind,
        namespace: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Self {
        Self {
            object: ObjectRef {
                kind,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            generation,
            diagnostics: Vec::new(),
            in_snapshot: InSnapshot::No,
        }
    }

    pub(crate) fn push(
        &mut self,
        field: impl Into<String>,
        condition: ConditionType,
        reason: Reason,
        message: impl Into<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            field: field.into(),
            condition,
            reason,
            message: message.into(),
        });
    }

    /// Records an invalid field (`Accepted=False`, reason `Invalid`), once per field: the
    /// schema and the compiler's own checks may both catch the same mistake.
    pub(crate) fn invalid(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let field = field.into();
        let known = self
            .diagnostics
            .iter()
            .any(|d| d.reason == Reason::Invalid && d.field == field);
        if !known {
            self.push(field, ConditionType::Accepted, Reason::Invalid, message);
        }
    }

    /// The diagnostics on `field` or one of its sub-fields (`spec.listeners[0]` holds
    /// `spec.listeners[0].tls.certificateRefs[1]`, not `spec.listeners[01]`).
    pub fn diagnostics_under<'r>(&'r self, field: &'r str) -> impl Iterator<Item = &'r Diagnostic> {
        self.diagnostics.iter().filter(move |d| {
            d.field
                .strip_prefix(field)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }

    /// Whether any diagnostic sets `condition` to `False` with one of `reasons`.
    pub fn has(&self, condition: ConditionType, reasons: &[Reason]) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.condition == condition && reasons.contains(&d.reason))
    }

    /// Whether the object has an invalid field.
    pub fn is_invalid(&self) -> bool {
        self.has(ConditionType::Accepted, &[Reason::Invalid])
    }

    /// The `Accepted`, `ResolvedRefs` and (for Plugins) `Compiled` conditions these
    /// diagnostics add up to. `Programmed` depends on the proxies and is not here.
    pub fn conditions(&self) -> Vec<DesiredCondition> {
        let mut kinds = vec![ConditionType::Accepted, ConditionType::ResolvedRefs];
        if self.object.kind == ObjectKind::Plugin {
            kinds.push(ConditionType::Compiled);
        }
        kinds.into_iter().map(|kind| self.condition(kind)).collect()
    }

    fn condition(&self, kind: ConditionType) -> DesiredCondition {
        let failures: Vec<&Diagnostic> = self
            .diagnostics
            .iter()
            .filter(|d| d.condition == kind)
            .collect();
        let last_good = match &self.in_snapshot {
            InSnapshot::LastGood {
                code_hash,
                generation,
            } => {
                let version = generation.map_or_else(String::new, |g| format!("generation {g}, "));
                Some(format!(
                    "the last good version ({version}{code_hash}) keeps serving"
                ))
            }
            _ => None,
        };
        condition_of(kind, &failures, last_good)
    }
}

/// Condition `kind` for the diagnostics that set it (all of that condition), with
/// `afterword` added to a failure's message; notes fail nothing and are added to the
/// message of a condition that holds. `Conflicted` and `PartiallyInvalid` are the
/// conditions that are `True` when something is wrong.
pub(crate) fn condition_of(
    kind: ConditionType,
    diagnostics: &[&Diagnostic],
    afterword: Option<String>,
) -> DesiredCondition {
    let (notes, failures): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        diagnostics.iter().partition(|d| d.reason.is_note());
    if failures.is_empty() && !notes.is_empty() {
        let mut holds = condition_of(kind, &[], None);
        let notes: Vec<String> = notes.iter().map(|d| d.to_string()).collect();
        holds.message = truncate(format!("{}; {}", holds.message, notes.join("; ")));
        return holds;
    }
    let Some(first) = failures.first() else {
        let (reason, message) = match kind {
            ConditionType::Accepted => (Reason::Accepted, "valid"),
            ConditionType::ResolvedRefs => (Reason::ResolvedRefs, "all references resolved"),
            ConditionType::Compiled => (Reason::Compiled, "compiled"),
            ConditionType::Programmed => (Reason::Programmed, "programmed"),
            ConditionType::Conflicted => {
                return DesiredCondition::failed(kind, Reason::NoConflicts, "no conflicts");
            }
            ConditionType::PartiallyInvalid => {
                return DesiredCondition::failed(kind, Reason::Accepted, "every rule is valid");
            }
            ConditionType::Ready | ConditionType::Reconciling | ConditionType::Stalled => {
                (Reason::Ready, "ready")
            }
        };
        return DesiredCondition::ok(kind, reason, message);
    };
    let mut message = failures
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(afterword) = afterword {
        message.push_str("; ");
        message.push_str(&afterword);
    }
    let message = truncate(message);
    if matches!(
        kind,
        ConditionType::Conflicted | ConditionType::PartiallyInvalid
    ) {
        DesiredCondition::ok(kind, first.reason, message)
    } else {
        DesiredCondition::failed(kind, first.reason, message)
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}
