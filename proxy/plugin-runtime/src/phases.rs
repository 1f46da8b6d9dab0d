//! Running a chain's hooks for one request, on its shard: order, failure policy,
//! `onError` answers, patch merging and `ctx.forward` validation.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::engine::{CallScope, EngineFailure, HookInput, HookReport};
use crate::forward_allow::ForwardAllowList;
use crate::outcome::{AfterResponse, BeforeRequest, Carry, FailureKind, Hook, PluginFailure};
use crate::patch::{LocalResponse, RequestPatch, ResponsePatch, Upstream};
use crate::plugin_set::Link;
use crate::request::{RequestScope, ResponseInfo};
use crate::services::crypto::{self, Encoding};
use crate::services::{ResponseBody, ResponseView};
use crate::shard::Worker;

/// What one hook call came to.
enum Step {
    /// The hook ran (its report), or the plugin has no such hook (`None`).
    Ran(Option<HookReport>),
    /// The hook failed; with what `onError` answered, if it did.
    Failed(PluginFailure, Option<HookReport>),
}

async fn step(
    worker: &Worker,
    link: &Link,
    hook: Hook,
    input: impl FnOnce(Instant) -> HookInput,
) -> Step {
    let metrics = &worker.shared.metrics;
    let failure = |kind: FailureKind, detail: String| PluginFailure {
        plugin: link.plugin.to_string(),
        hook,
        kind,
        detail,
    };
    let Some(version) = link.entry.as_ref().and_then(|e| e.version.as_deref()) else {
        metrics.error(&link.plugin, FailureKind::NotLoaded.as_str());
        return Step::Failed(
            failure(
                FailureKind::NotLoaded,
                "the plugin has no loaded version".into(),
            ),
            None,
        );
    };
    let ready = worker.ready_isolate(version);
    let isolate = match ready {
        Some(isolate) => Ok(isolate),
        None => worker.isolate_for(version).await,
    };
    let isolate = match isolate {
        Ok(isolate) => isolate,
        Err(detail) => {
            metrics.error(&link.plugin, FailureKind::Exception.as_str());
            return Step::Failed(failure(FailureKind::Exception, detail), None);
        }
    };
    if !isolate.has_hook(hook) {
        return Step::Ran(None);
    }
    let started = Instant::now();
    let result = isolate.call(input(started)).finished().await;
    link.observe(hook, started.elapsed().as_secs_f64());
    match result {
        Ok(report) if report.ok => match checked(report) {
            Ok(report) => {
                if report.rejected {
                    metrics.error(&link.plugin, "rejected");
                }
                Step::Ran(Some(report))
            }
            Err(detail) => {
                metrics.error(&link.plugin, FailureKind::Exception.as_str());
                Step::Failed(failure(FailureKind::Exception, detail), None)
            }
        },
        Ok(report) => {
            let thrown = report.thrown.as_deref().cloned().unwrap_or_default();
            let kind = if thrown.kind.as_deref() == Some("memory") {
                FailureKind::Memory
            } else {
                FailureKind::Exception
            };
            metrics.error(&link.plugin, kind.as_str());
            let mut detail = thrown.error.unwrap_or_default();
            if let Some(on_error) = &thrown.on_error {
                detail = format!("{detail}; onError threw too: {on_error}");
            }
            let answer = (report.answer)
                .then_some(report)
                .and_then(|r| checked(r).ok());
            Step::Failed(failure(kind, detail), answer)
        }
        Err(EngineFailure { kind, detail }) => {
            metrics.error(&link.plugin, kind.as_str());
            Step::Failed(failure(kind, detail), None)
        }
    }
}

/// Refuses a report whose header edits are not valid HTTP.
fn checked(report: HookReport) -> Result<HookReport, String> {
    let edits = [
        report.upstream.as_deref(),
        report.response.as_ref().and_then(|r| r.headers.as_ref()),
    ];
    for edits in edits.into_iter().flatten() {
        if let Some(problem) = edits.invalid_entry() {
            return Err(format!("TypeError: {problem}"));
        }
    }
    Ok(report)
}

/// A body a hook gave: text, or base64 (bytes).
fn decoded(body: Option<String>, base64: bool) -> Option<Bytes> {
    let body = body?;
    if base64 {
        crypto::decode(&body, Encoding::Base64)
            .ok()
            .map(Bytes::from)
    } else {
        Some(Bytes::from(body))
    }
}

/// Runs the `beforeRequest` hooks of a chain.
pub(crate) async fn before(
    worker: &Worker,
    chain: &crate::plugin_set::Chain,
    request: Arc<RequestScope>,
) -> (BeforeRequest, Carry) {
    let mut carry = Carry {
        request: request.clone(),
        state: None,
        user: None,
        ran: Vec::with_capacity(chain.links.len()),
    };
    let mut patch = RequestPatch::default();
    for (index, link) in chain.links.iter().enumerate() {
        let step = step(worker, link, Hook::BeforeRequest, |started| HookInput {
            hook: Hook::BeforeRequest,
            config_id: link.config_id,
            config_json: link.config_json.clone(),
            state: carry.state.clone(),
            user: carry.user.clone(),
            timeout: link.entry.as_ref().map(|e| e.timeout).unwrap_or_default(),
            cpu_budget: worker.shared.cpu_budget,
            started,
            scope: CallScope {
                plugin: link.plugin.clone(),
                request: Some(request.clone()),
                response: None,
            },
        })
        .await;
        let report = match step {
            Step::Ran(None) => {
                carry.ran.push(index);
                continue;
            }
            Step::Ran(Some(report)) => report,
            Step::Failed(failure, Some(answer)) => {
                tracing::warn!(%failure, request_id = %request.info.request_id, "plugin failed; its onError answered");
                return (answer_with(link, answer, &mut patch), carry);
            }
            Step::Failed(failure, None) => {
                tracing::warn!(%failure, request_id = %request.info.request_id, open = link.fails_open(), "plugin failed");
                if link.fails_open() {
                    continue;
                }
                return (BeforeRequest::Failed(failure), carry);
            }
        };
        if let Some(state) = &report.state {
            carry.state = Some(state.clone());
        }
        if let Some(user) = &report.user {
            carry.user = Some(user.clone());
        }
        if report.answer {
            return (answer_with(link, report, &mut patch), carry);
        }
        if let Some(edits) = report.upstream {
            patch.headers.merge(*edits);
        }
        let steering = report.steering.map(|s| *s).unwrap_or_default();
        if let Some(path) = steering.path {
            patch.path = Some(path);
        }
        if let Some(query) = steering.query {
            patch.query = Some(query);
        }
        if let Some(body) = decoded(steering.body, steering.body_base64) {
            patch.body = Some(body);
        }
        if let Some(target) = steering.forward {
            match validate_forward(
                &target,
                &request.info.backends,
                &worker.shared.forward_allow_list,
            ) {
                Some(upstream) => patch.upstream = Some(upstream),
                None => tracing::warn!(
                    plugin = %link.plugin,
                    request_id = %request.info.request_id,
                    route = %request.info.route,
                    target,
                    "ctx.forward target is neither a backend of the route nor allow-listed; ignored"
                ),
            }
        }
        if let Some(edits) = report.response.and_then(|r| r.headers) {
            patch.response_headers.merge(edits);
        }
        carry.ran.push(index);
    }
    patch.user = carry
        .user
        .as_deref()
        .and_then(|u| serde_json::from_str(u).ok());
    (BeforeRequest::Continue(patch), carry)
}

/// A local response from a plugin's answer, with the response headers earlier plugins set.
fn answer_with(link: &Link, report: HookReport, patch: &mut RequestPatch) -> BeforeRequest {
    let response = report.response.unwrap_or_default();
    let mut edits = std::mem::take(&mut patch.response_headers);
    if let Some(own) = response.headers {
        edits.merge(own);
    }
    let mut headers = Vec::new();
    edits.apply(&mut headers);
    BeforeRequest::Respond(LocalResponse {
        plugin: link.plugin.to_string(),
        rejected: report.rejected,
        status: response.status.unwrap_or(200),
        body: decoded(response.body, response.body_base64).unwrap_or_default(),
        headers,
    })
}

/// A `ctx.forward` target the proxy may use: a backend of the rule, or a URL under an
/// allow-listed prefix (normalized, see [`ForwardAllowList`]).
pub(crate) fn validate_forward(
    target: &str,
    backends: &[String],
    allow_list: &ForwardAllowList,
) -> Option<Upstream> {
    if backends.iter().any(|backend| backend == target) {
        return Some(Upstream::Backend(target.to_owned()));
    }
    allow_list
        .permits(target)
        .map(|url| Upstream::Url(url.into()))
}

/// Runs the `afterResponse` hooks of the plugins that took part in `beforeRequest`.
pub(crate) async fn after(
    worker: &Worker,
    chain: &crate::plugin_set::Chain,
    carry: Carry,
    response: ResponseInfo,
) -> AfterResponse {
    let mut view = ResponseView {
        status: response.status,
        headers: response.headers,
        body: ResponseBody::Source(response.body),
    };
    let mut patch = ResponsePatch::default();
    let mut state = carry.state;
    let mut user = carry.user;
    for &index in &carry.ran {
        let Some(link) = chain.links.get(index) else {
            continue;
        };
        let shared_view = Arc::new(view.clone());
        let step = step(worker, link, Hook::AfterResponse, |started| HookInput {
            hook: Hook::AfterResponse,
            config_id: link.config_id,
            config_json: link.config_json.clone(),
            state: state.clone(),
            user: user.clone(),
            timeout: link.entry.as_ref().map(|e| e.timeout).unwrap_or_default(),
            cpu_budget: worker.shared.cpu_budget,
            started,
            scope: CallScope {
                plugin: link.plugin.clone(),
                request: Some(carry.request.clone()),
                response: Some(shared_view),
            },
        })
        .await;
        let report = match step {
            Step::Ran(None) => continue,
            Step::Ran(Some(report)) => report,
            Step::Failed(failure, Some(answer)) => {
                tracing::warn!(%failure, request_id = %carry.request.info.request_id, "plugin failed; its onError answered");
                answer
            }
            Step::Failed(failure, None) => {
                tracing::warn!(%failure, request_id = %carry.request.info.request_id, open = link.fails_open(), "plugin failed");
                if link.fails_open() {
                    continue;
                }
                return AfterResponse::Failed(failure);
            }
        };
        if let Some(new_state) = report.state.clone() {
            state = Some(new_state);
        }
        if let Some(new_user) = report.user.clone() {
            user = Some(new_user);
        }
        if let Some(changes) = report.response {
            if let Some(status) = changes.status {
                patch.status = Some(status);
                view.status = status;
            }
            if let Some(body) = decoded(changes.body, changes.body_base64) {
                patch.body = Some(body.clone());
                view.body = ResponseBody::Replaced(body);
            }
            if let Some(edits) = changes.headers {
                edits.apply(&mut view.headers);
                patch.headers.merge(edits);
            }
        }
        if report.rejected {
            break;
        }
    }
    AfterResponse::Continue(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_targets_must_be_backends_or_allow_listed() {
        let backends = vec!["service:shop/api-v2:80".to_owned()];
        let allow = ForwardAllowList::new(&["https://x.example/api/".to_owned()]).unwrap();
        assert_eq!(
            validate_forward("service:shop/api-v2:80", &backends, &allow),
            Some(Upstream::Backend("service:shop/api-v2:80".into()))
        );
        assert_eq!(
            validate_forward("https://x.example/api/./v1", &backends, &allow),
            Some(Upstream::Url("https://x.example/api/v1".into()))
        );
        for refused in ["service:shop/admin:80", "https://x.example/api/../admin"] {
            assert_eq!(
                validate_forward(refused, &backends, &allow),
                None,
                "{refused}"
            );
        }
    }

    #[test]
    fn invalid_header_edits_fail_the_hook() {
        let report = HookReport {
            ok: true,
            upstream: Some(
                serde_json::from_value(serde_json::json!({"set": {"x-ok": ["bad\nvalue"]}}))
                    .unwrap(),
            ),
            ..HookReport::default()
        };
        assert!(checked(report).unwrap_err().contains("x-ok"));
    }
}
