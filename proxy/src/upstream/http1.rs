//! HTTP/1.1 to plain-text upstreams, driven by the request's own task: a shard keeps its
//! idle keep-alive connections per endpoint, a request checks one out (or connects),
//! and the connection's I/O is polled by the request's future and then by its response
//! body, so a proxied request sends nothing over a channel and wakes no other task. When
//! the response body has been read to its end, the connection goes back to the shard's
//! idle list. (hyper-util's pooled client instead drives each connection in a task of
//! its own, reached over a channel: a hand-off per request.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt as _;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ProxyBody;

/// Idle connections kept per endpoint and shard (nginx's `keepalive` is per worker too).
const MAX_IDLE_PER_ENDPOINT: usize = 128;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How often idle connections the upstream closed are let go of.
const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

type Driver = http1::Connection<TokioIo<TcpStream>, ProxyBody>;

/// One connection: the request side and the I/O driver. Large (hyper's buffers and
/// state), so it is boxed once, when it is made, and moved as a box from then on.
struct Conn {
    sender: http1::SendRequest<ProxyBody>,
    driver: Driver,
}

impl Conn {
    /// Polls the connection once without waiting: lets it take in a close or finish a
    /// message, then says whether it can carry another request.
    fn reusable(&mut self) -> bool {
        if (&mut self.driver).now_or_never().is_some() {
            return false;
        }
        !self.sender.is_closed() && self.sender.is_ready()
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Where a pooled connection goes: an upstream address, with the connect timeout it was
/// made with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// `host:port` of the endpoint.
    pub authority: Authority,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// No connection could be made in time.
    #[error("connecting to {authority}: {reason}")]
    Connect {
        /// The endpoint.
        authority: Authority,
        /// Why.
        reason: String,
    },
    /// The exchange failed.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl Http1Error {
    /// Whether no connection was made.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }
}

thread_local! {
    /// The pool of the shard running on this thread, which finished response bodies
    /// give their connections back to. Bodies must be `Send` (hyper's types ask it), so
    /// they cannot hold the shard's `Rc`; they never leave the shard, so they find its
    /// pool here.
    static SHARD_POOL: RefCell<Weak<Http1Pool>> = const { RefCell::new(Weak::new()) };
}

/// A shard's idle HTTP/1.1 upstream connections.
#[derive(Default)]
pub struct Http1Pool {
    idle: RefCell<HashMap<PoolKey, Vec<Idle>, foldhash::fast::RandomState>>,
}

impl Http1Pool {
    /// The calling shard's pool, whose idle connections are swept for closed and
    /// expired ones by a task of the shard.
    pub fn start() -> Rc<Self> {
        let pool = Rc::new(Self::default());
        let weak = Rc::downgrade(&pool);
        SHARD_POOL.with(|slot| *slot.borrow_mut() = weak.clone());
        tokio::task::spawn_local(async move {
            let mut sweeps = tokio::time::interval(SWEEP_INTERVAL);
            sweeps.tick().await;
            loop {
                sweeps.tick().await;
                let Some(pool) = weak.upgrade() else { return };
                pool.sweep();
            }
        });
        pool
    }

    fn sweep(&self) {
        let mut idle = self.idle.borrow_mut();
        for conns in idle.values_mut() {
            conns.retain_mut(|i| i.since.elapsed() < IDLE_TIMEOUT && i.conn.reusable());
        }
        idle.retain(|_, conns| !conns.is_empty());
    }

    /// Sends `request` (origin-form URI, `Host` set) over an idle connection to `key`, or
    /// a new one; a request that an idle connection could not take, because the upstream
    /// had closed it, goes over a new connection.
    pub async fn send(
        &self,
        key: &PoolKey,
        request: Request<ProxyBody>,
    ) -> Result<Response<PooledBody>, Http1Error> {
        let (request, reused) = match self.checkout(key) {
            Some(conn) => match exchange(conn, request).await {
                Exchange::Done(result) => return self.finish(key, result),
                Exchange::NotSent(request) => (request, true),
            },
            None => (request, false),
        };
        let conn = connect(key).await?;
        match exchange(conn, request).await {
            Exchange::Done(result) => self.finish(key, result),
            Exchange::NotSent(_) => Err(Http1Error::Connect {
                authority: key.authority.clone(),
                reason: format!(
                    "a new connection could not take the request{}",
                    if reused {
                        " (nor could an idle one)"
                    } else {
                        ""
                    }
                ),
            }),
        }
    }

    fn finish(
        &self,
        key: &PoolKey,
        result: Result<(Response<Incoming>, Box<Conn>), hyper::Error>,
    ) -> Result<Response<PooledBody>, Http1Error> {
        let (response, conn) = result?;
        let returning = Returning {
            conn,
            key: key.clone(),
        };
        Ok(response.map(|body| PooledBody {
            body,
            conn: Some(returning),
        }))
    }

    /// The most recently used idle connection that can still carry a request.
    fn checkout(&self, key: &PoolKey) -> Option<Box<Conn>> {
        let mut idle = self.idle.borrow_mut();
        let conns = idle.get_mut(key)?;
        while let Some(mut candidate) = conns.pop() {
            if candidate.since.elapsed() < IDLE_TIMEOUT && candidate.conn.reusable() {
                return Some(candidate.conn);
            }
        }
        None
    }

    fn give_back(&self, key: PoolKey, mut conn: Box<Conn>) {
        if !conn.reusable() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let conns = idle.entry(key).or_default();
        if conns.len() >= MAX_IDLE_PER_ENDPOINT {
            // Keep the most recent; the oldest is likeliest to be closed by the upstream.
            conns.remove(0);
        }
        conns.push(Idle {
            conn,
            since: Instant::now(),
        });
    }
}

/// Largest read buffer of an upstream connection (hyper's default is about 400 KiB): a
/// response head must fit in it, and a body that the client is slow to take waits here
/// for at most this much, per request in flight.
const READ_BUFFER_BYTES: usize = 64 * 1024;

async fn connect(key: &PoolKey) -> Result<Box<Conn>, Http1Error> {
    let failed = |reason: String| Http1Error::Connect {
        authority: key.authority.clone(),
        reason,
    };
    let address = (key.authority.host(), key.authority.port_u16().unwrap_or(80));
    let host = address.0.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::time::timeout(key.connect_timeout, TcpStream::connect((host, address.1)))
        .await
        .map_err(|_| failed(format!("timed out after {:?}", key.connect_timeout)))?
        .map_err(|e| failed(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (sender, driver) = http1::Builder::new()
        .max_buf_size(READ_BUFFER_BYTES)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(Box::new(Conn { sender, driver }))
}

/// What became of a request handed to a connection.
enum Exchange {
    /// The exchange ran: the response head and the connection, or why it failed.
    Done(Result<(Response<Incoming>, Box<Conn>), hyper::Error>),
    /// The connection could not take the request (it was closed); here it is back.
    NotSent(Request<ProxyBody>),
}

/// Sends `request` over `conn` and waits for the response head, driving the connection
/// meanwhile.
async fn exchange(mut conn: Box<Conn>, request: Request<ProxyBody>) -> Exchange {
    let mut sending = std::pin::pin!(conn.sender.try_send_request(request));
    let mut driver_ended = false;
    let driver = &mut conn.driver;
    let sent = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = sending.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if !driver_ended && driver.poll_unpin(cx).is_ready() {
            // The connection ended: the request's answer is an error now, or soon.
            driver_ended = true;
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await;
    match sent {
        Ok(response) => Exchange::Done(Ok((response, conn))),
        Err(mut error) => match error.take_message() {
            Some(request) => Exchange::NotSent(request),
            None => Exchange::Done(Err(error.into_error())),
        },
    }
}

/// A connection on its way back to the pool once its response body ends.
struct Returning {
    conn: Box<Conn>,
    key: PoolKey,
}

/// A response body from a pooled connection: polling it drives the connection, and when
/// it has been read to its end the connection returns to the shard's idle list.
pub struct PooledBody {
    body: Incoming,
    conn: Option<Returning>,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(returning) = &mut this.conn
            && returning.conn.driver.poll_unpin(cx).is_ready()
        {
            // Closed (or failed, which the body reports): it goes nowhere.
            this.conn = None;
        }
        let frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        if frame.is_none() {
            this.release();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl PooledBody {
    /// Returns the connection to the pool if the body was read to its end.
    fn release(&mut self) {
        if !self.body.is_end_stream() {
            return;
        }
        if let Some(Returning { conn, key }) = self.conn.take()
            && let Some(pool) = SHARD_POOL.with(|slot| slot.borrow().upgrade())
        {
            pool.give_back(key, conn);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body that was never polled to its end (no body at all, say) may be complete.
        self.release();
    }
}
