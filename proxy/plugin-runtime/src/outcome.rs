//! What a phase of a request's plugins comes to: go on with a patch, answer locally, or a
//! typed failure the proxy turns into its 503 response.

use std::sync::Arc;

use serde::Serialize;

use crate::patch::{LocalResponse, RequestPatch, ResponsePatch};
use crate::plugin_set::Chain;
use crate::request::RequestScope;

/// A plugin hook the proxy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Hook {
    /// Once per isolate per plugin version.
    OnLoad,
    /// Before the upstream call.
    BeforeRequest,
    /// After the upstream response.
    AfterResponse,
    /// Once per isolate when its plugin version is retired (replaced or removed).
    OnUnload,
}

impl Hook {
    /// The hook's number in the prelude (`HOOKS` in `prelude.js`).
    pub(crate) fn index(self) -> u8 {
        match self {
            Hook::OnLoad => 0,
            Hook::BeforeRequest => 1,
            Hook::AfterResponse => 2,
            Hook::OnUnload => 3,
        }
    }

    /// The name of the hook in the plugin module (and in metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::OnLoad => "onLoad",
            Hook::BeforeRequest => "beforeRequest",
            Hook::AfterResponse => "afterResponse",
            Hook::OnUnload => "onUnload",
        }
    }
}

/// The result of [`crate::PluginRuntime::before_request`].
#[derive(Debug)]
pub enum BeforeRequest {
    /// Go upstream after applying the patch.
    Continue(RequestPatch),
    /// A plugin answered; do not go upstream.
    Respond(LocalResponse),
    /// A plugin failed with `failurePolicy: Closed`: answer with
    /// [`PluginFailure::STATUS`] and [`PluginFailure::response_body`].
    Failed(PluginFailure),
}

/// The result of [`crate::PluginRuntime::after_response`].
#[derive(Debug)]
pub enum AfterResponse {
    /// Send the response after applying the patch.
    Continue(ResponsePatch),
    /// A plugin failed with `failurePolicy: Closed`: answer with
    /// [`PluginFailure::STATUS`] and [`PluginFailure::response_body`] instead.
    Failed(PluginFailure),
}

/// What `beforeRequest` hands on to `afterResponse` for one request: the request,
/// `ctx.state` and `ctx.user`, and which plugins took part.
#[derive(Debug, Clone)]
pub struct Carry {
    pub(crate) request: Arc<RequestScope>,
    pub(crate) state: Option<String>,
    pub(crate) user: Option<String>,
    /// Positions in the chain of plugins whose `afterResponse` runs: those whose
    /// `beforeRequest` completed (or that have none), up to a plugin that answered.
    pub(crate) ran: Vec<usize>,
}

impl Carry {
    /// `ctx.user` as the plugins that ran left it, as JSON text, whatever the phase came
    /// to (for the access log, also of requests a plugin answered or failed).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether `afterResponse` has anything to run for this request in `chain`: a plugin
    /// that took part has the hook (or has no loaded version, which fails there by
    /// policy). When none has, the response can go on untouched.
    pub fn after_response_runs(&self, chain: &Chain) -> bool {
        self.ran.iter().any(|index| {
            chain
                .links
                .get(*index)
                .is_some_and(|link| link.runs(Hook::AfterResponse))
        })
    }
}

/// Why a plugin failed a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// The hook overran its time budget and was interrupted.
    Timeout,
    /// The hook threw (and `onError`, if any, did not answer).
    Exception,
    /// The isolate ran out of memory.
    Memory,
    /// The plugin has no loaded version (it never loaded successfully).
    NotLoaded,
}

impl FailureKind {
    /// The `kind` label of the errors metric.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Exception => "exception",
            FailureKind::Memory => "memory",
            FailureKind::NotLoaded => "not_loaded",
        }
    }
}

/// A plugin failure that fails the request (`failurePolicy: Closed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginFailure {
    /// `namespace/name` of the plugin.
    pub plugin: String,
    /// The hook that failed.
    pub hook: Hook,
    /// What went wrong.
    pub kind: FailureKind,
    /// Details for logs (an exception's message); never sent to the client.
    pub detail: String,
}

impl PluginFailure {
    /// The status the proxy answers a failed request with.
    pub const STATUS: u16 = 503;

    /// The JSON body the proxy answers a failed request with: it names the plugin, never
    /// its stack or message, which may carry secrets.
    pub fn response_body(&self) -> String {
        serde_json::json!({
            "error": "plugin_failed",
            "message": format!("plugin {} failed", self.plugin),
            "plugin": self.plugin,
        })
        .to_string()
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin {} failed in {} ({}): {}",
            self.plugin,
            self.hook.as_str(),
            self.kind.as_str(),
            self.detail
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_body_names_the_plugin_but_not_the_detail() {
        let failure = PluginFailure {
            plugin: "shop/jwt".into(),
            hook: Hook::BeforeRequest,
            kind: FailureKind::Exception,
            detail: "TypeError: secret-key-material".into(),
        };
        let body: serde_json::Value = serde_json::from_str(&failure.response_body()).unwrap();
        assert_eq!(body["error"], "plugin_failed");
        assert_eq!(body["plugin"], "shop/jwt");
        assert!(!failure.response_body().contains("secret"));
        assert!(
            failure.to_string().contains("secret"),
            "logs keep the detail"
        );
    }
}
