//! An upgraded connection (a WebSocket, or another protocol the rule allows): bytes are
//! copied both ways until either side closes, or until neither side has sent anything
//! for the rule's tunnel idle timeout. The tunnel is a task of its shard's drain, so
//! shutdown lets it finish (up to the drain timeout), and it keeps its client
//! connection counted against the connection limits until it ends.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::connection::ConnInfo;
use crate::server::Drain;

/// The client's side of an upgrade the rule allows.
pub(super) struct ClientUpgrade {
    /// Resolves to the client's connection once the `101` has been sent.
    pub(super) upgrade: OnUpgrade,
    /// The connection, held while the tunnel lasts.
    pub(super) connection: Rc<ConnInfo>,
}

/// Starts the tunnel between the client and the upstream once both have switched;
/// `held` (the request's concurrency permit and in-flight count) is kept until it ends.
pub(super) fn start(
    drain: &Drain,
    client: ClientUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    held: impl Sized + 'static,
) {
    drain.connections.spawn_local(async move {
        let (Ok(client_io), Ok(upstream_io)) = tokio::join!(client.upgrade, upstream) else {
            return;
        };
        let last_read = Rc::new(Cell::new(Instant::now()));
        let mut client_io = Stamped::new(TokioIo::new(client_io), &last_read);
        let mut upstream_io = Stamped::new(TokioIo::new(upstream_io), &last_read);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io) => {}
            () = silent_for(&last_read, idle_timeout) => {
                tracing::debug!(
                    peer = %client.connection.peer.ip,
                    ?idle_timeout,
                    "tunnel idle for its timeout: closing"
                );
            }
        }
        drop((held, client.connection));
    });
}

/// Resolves once nothing has been read for `timeout` since `last_read`.
async fn silent_for(last_read: &Cell<Instant>, timeout: Duration) {
    loop {
        let until = last_read.get() + timeout;
        if Instant::now() >= until {
            return;
        }
        tokio::time::sleep_until(until).await;
    }
}

/// A side of a tunnel that notes when it last gave bytes.
struct Stamped<T> {
    io: T,
    last_read: Rc<Cell<Instant>>,
}

impl<T> Stamped<T> {
    fn new(io: T, last_read: &Rc<Cell<Instant>>) -> Self {
        Self {
            io,
            last_read: last_read.clone(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Stamped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_read.set(Instant::now());
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Stamped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
