//! Step 5: the upstream's response on its way to the client: hop-by-hop headers removed,
//! the body watched for silence, the concurrency permit and in-flight count held until
//! it ends. A `101 Switching Protocols` to an upgrade the rule allows starts a tunnel
//! between the two upgraded connections (see [`tunnel`](super::tunnel)).

use std::time::Duration;

use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::tunnel::{self, ClientUpgrade};
use crate::body::{self, BoxError, IdleTimeout, Observed, ProxyBody};
use crate::headers;
use crate::shard::Shard;
use crate::upstream::client::UpstreamBody;
use crate::upstream::endpoint::InFlight;

/// The response to send to the client, or the tunnel it asked for.
#[allow(clippy::too_many_arguments)]
pub(super) fn respond(
    shard: &Shard,
    mut response: Response<UpstreamBody>,
    client_upgrade: Option<ClientUpgrade>,
    idle: Duration,
    tunnel_idle: Duration,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tunnel::start(
            &shard.drain,
            client_upgrade,
            upstream_upgrade,
            tunnel_idle,
            (permit, in_flight),
        );
        let (mut parts, _) = response.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers, true);
        return Response::from_parts(parts, body::empty());
    }
    let (mut parts, incoming) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    let held = (permit, in_flight);
    let body = Observed::new(IdleTimeout::new(incoming, idle), move |_| drop(held))
        .map_err(|e: BoxError| e)
        .boxed_unsync();
    Response::from_parts(parts, body)
}
