//! What the proxy knows about a client connection, shared by the requests on it.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

use crate::admission::Admitted;
use crate::framing::ConnectionFraming;
use crate::headers::Peer;

/// A client connection, as its requests see it. It lives as long as the connection, or
/// the tunnel the connection became (a WebSocket holds it).
#[derive(Debug)]
pub struct ConnInfo {
    /// The peer, as forwarding headers name it.
    pub peer: Peer,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// Request framing seen on the wire (HTTP/1).
    pub framing: Arc<ConnectionFraming>,
    /// Its place among the open connections, given back when it ends.
    _open: OpenConnection,
}

impl ConnInfo {
    /// A connection from `peer`.
    pub fn new(
        peer: SocketAddr,
        tls: bool,
        framing: Arc<ConnectionFraming>,
        open: OpenConnection,
    ) -> Self {
        Self {
            peer: Peer::new(peer, tls),
            tls,
            framing,
            _open: open,
        }
    }
}

/// A connection counted as open: in the connection limits and in the
/// `weir_active_connections` gauge, until it is dropped.
#[derive(Debug)]
pub struct OpenConnection {
    _admitted: Admitted,
    gauge: Gauge,
}

impl OpenConnection {
    /// Counts an admitted connection in `gauge`.
    pub fn new(admitted: Admitted, gauge: Gauge) -> Self {
        gauge.inc();
        Self {
            _admitted: admitted,
            gauge,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
