//! Forwarding a request upstream, as named steps, each in a module of its own:
//!
//! ```text
//! prepare (path, headers, body) ─> target (steered, or by weight; concurrency permit)
//!   ─> mirror (copies sent by tasks of their own, never waited for)
//!   ─> attempt (endpoint, send within the try's time) ─> retry? (policy, budget, backoff)
//!   ─> respond (stream the body back, or tunnel an upgrade)
//! ```

mod attempt;
mod mirror;
mod prepare;
mod respond;
mod retry;
mod target;
mod tunnel;

use std::rc::Rc;
use std::time::Duration;

use http::Response;
use tokio::time::Instant;
use weir_crds::route::RetryOn;
use weir_plugin_runtime::Upstream;

use crate::access_log::AccessRecord;
use crate::body::{ClientBody, ProxyBody};
use crate::connection::ConnInfo;
use crate::error::ProxyError;
use crate::loaded::{LoadedForward, LoadedRule};
use crate::shard::Shard;
use crate::upstream::retry::Failure;
use attempt::{Answered, Destination, Timing};
pub use mirror::MirrorsInFlight;

/// A request on its way upstream.
pub struct ForwardRequest<'a> {
    /// The client's request.
    pub request: http::Request<ClientBody>,
    /// Its normalized path.
    pub path: &'a str,
    /// The `Prefix`/`Exact` value that matched, for prefix rewrites.
    pub matched_prefix: Option<&'a str>,
    /// The host it asked for.
    pub host: &'a str,
    /// Its connection.
    pub conn: &'a Rc<ConnInfo>,
    /// What plugins chose instead of the rule's own rewrite and backend choice.
    pub steering: Steering,
}

/// A path and an upstream chosen by plugins (`ctx.upstream.path`, `ctx.forward`).
#[derive(Debug, Default)]
pub struct Steering {
    /// The path (and query, if it has one) sent upstream instead of the rule's rewrite of
    /// the client's; without a query, the client's query is kept.
    pub path: Option<String>,
    /// The query sent upstream instead of the client's (empty: none), after whatever
    /// path is sent.
    pub query: Option<String>,
    /// Another backend of the rule, or an allow-listed URL (validated by the runtime).
    pub upstream: Option<Upstream>,
}

/// Sends the request to one of the rule's backends and returns the upstream's response.
pub async fn forward(
    shard: &Rc<Shard>,
    rule: &LoadedRule,
    forward: &LoadedForward,
    request: ForwardRequest<'_>,
    record: &mut AccessRecord,
) -> Result<Response<ProxyBody>, ProxyError> {
    let gateway = &*shard.gateway;
    let policy = &forward.policy;
    let (mut prepared, steered) = prepare::prepare(gateway, forward, request).await?;
    let chosen = target::choose(gateway, forward, steered.as_ref(), &mut prepared);
    let target = chosen.target();
    let path = target
        .backend
        .upstream_path(&prepared.path)
        .map_err(|e| ProxyError::BadRequest(format!("upstream path: {e}")))?;
    let permit = target::permit(gateway, target)?;
    mirror::start(shard, forward, &mut prepared);

    let request_timeout = Duration::from_millis(policy.timeouts.request_ms);
    let timing = Timing {
        deadline: Instant::now() + request_timeout,
        per_try: match &policy.retries {
            Some(retries) if retries.retry_on.contains(&RetryOn::Timeout) => {
                request_timeout / (retries.attempts + 1)
            }
            _ => request_timeout,
        },
    };
    let idle = Duration::from_millis(policy.timeouts.idle_ms);
    let _request_in_flight = forward.budget.start_request();
    let mut _retry_in_flight = None;
    let mut tried = Vec::new();
    let first_try = Instant::now();
    let destination = Destination {
        forward,
        target,
        path: &path,
    };
    loop {
        let attempted = attempt::attempt(
            shard,
            &destination,
            &mut prepared,
            &mut tried,
            &timing,
            record,
        )
        .await?;
        let failure = match attempted {
            Ok(Answered {
                response,
                in_flight,
            }) => {
                let status = response.status().as_u16();
                if status >= 500
                    && let Some(guard) = retry::may_retry(
                        forward,
                        &prepared.parts.method,
                        Failure::Status(status),
                        tried.len(),
                        &prepared.body,
                    )
                {
                    _retry_in_flight = Some(guard);
                    drop(response);
                    rule.metrics.retry();
                    retry::backoff(forward, tried.len(), timing.deadline).await;
                    continue;
                }
                record.upstream_ms = Some(first_try.elapsed().as_secs_f64() * 1000.0);
                return Ok(respond::respond(
                    shard,
                    response,
                    prepared.client_upgrade,
                    idle,
                    Duration::from_millis(policy.timeouts.tunnel_idle_ms),
                    permit,
                    in_flight,
                ));
            }
            Err(failure) => failure,
        };
        let out_of_time = Instant::now() >= timing.deadline;
        if !out_of_time
            && let Some(guard) = retry::may_retry(
                forward,
                &prepared.parts.method,
                failure,
                tried.len(),
                &prepared.body,
            )
        {
            _retry_in_flight = Some(guard);
            rule.metrics.retry();
            retry::backoff(forward, tried.len(), timing.deadline).await;
            continue;
        }
        let backend = target.backend.id.clone();
        return Err(match failure {
            Failure::Connect => ProxyError::UpstreamUnreachable {
                backend,
                reason: "connection failed".into(),
            },
            Failure::Timeout => ProxyError::UpstreamTimeout {
                backend,
                timeout_ms: if out_of_time {
                    policy.timeouts.request_ms
                } else {
                    u64::try_from(timing.per_try.as_millis()).unwrap_or(u64::MAX)
                },
            },
            _ => ProxyError::UpstreamFailed {
                backend,
                reason: "the connection closed before a response".into(),
            },
        });
    }
}
