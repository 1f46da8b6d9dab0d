//! Step 5: the upstream's response on its way to the client: hop-by-hop headers removed,
//! the body watched for silence, the concurrency permit and in-flight count held until
//! it ends. A `101 Switching Protocols` starts a tunnel between the two upgraded
//! connections, as a task of the shard.

use std::time::Duration;

use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::body::{self, BoxError, IdleTimeout, Observed, ProxyBody};
use crate::headers;
use crate::upstream::client::UpstreamBody;
use crate::upstream::endpoint::InFlight;

/// The response to send to the client, or the tunnel it asked for.
pub(super) fn respond(
    mut response: Response<UpstreamBody>,
    upgrade_requested: bool,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    idle: Duration,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    in_flight: InFlight,
) -> Response<ProxyBody> {
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS && upgrade_requested;
    if switching && let Some(client_upgrade) = client_upgrade {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::task::spawn_local(async move {
            let held = (permit, in_flight);
            if let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
            drop(held);
        });
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
