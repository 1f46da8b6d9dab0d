//! What the proxy knows about a client connection, shared by the requests on it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::framing::ConnectionFraming;
use crate::headers::Peer;

/// A client connection, as its requests see it.
#[derive(Debug)]
pub struct ConnInfo {
    /// The peer, as forwarding headers name it.
    pub peer: Peer,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// Request framing seen on the wire (HTTP/1).
    pub framing: Arc<ConnectionFraming>,
}

impl ConnInfo {
    /// A connection from `peer`.
    pub fn new(peer: SocketAddr, tls: bool, framing: Arc<ConnectionFraming>) -> Self {
        Self {
            peer: Peer::new(peer, tls),
            tls,
            framing,
        }
    }
}
