//! Step 2, beside the request: mirrors. Each mirror of the rule whose share the request
//! draws gets a copy of the request as it goes upstream: its method, its path and query
//! after the rewrite (behind the mirror backend's own base path), its headers after the
//! rule's changes, and the `Host` the upstream is told. A task of the shard sends the
//! copy, so the request never waits for it; whatever comes of it (an answer, read and
//! dropped; a failure; the rule's request timeout running out) is counted in
//! `weir_mirror_requests_total`, logged at debug level, and changes nothing about the
//! request itself.
//!
//! A body the request keeps for retries is copied whole. A streamed body is teed: each
//! frame the upstream reads is queued for the mirror too (the bytes are shared, not
//! copied). A mirror more than [`MAX_QUEUED_BYTES`] behind, or a body that fails or is not
//! read to its end, costs the mirror its copy: its request is aborted, and the request's
//! own body streams on as if there were no mirror. Upgrade requests are not mirrored. A
//! shard has at most [`MAX_IN_FLIGHT`] mirror requests in flight; copies beyond that are
//! skipped.

use std::cell::Cell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;
use rand::RngExt;
use weir_crds::route::LoadBalancer;

use super::attempt::upstream_version;
use super::prepare::{Prepared, RequestBody};
use crate::body::{self, BoxError, ProxyBody};
use crate::loaded::{LoadedForward, LoadedMirror};
use crate::metrics::MirrorResult;
use crate::shard::Shard;
use crate::upstream::LoadedBackend;
use crate::upstream::client::{Connector, UpstreamError};
use crate::upstream::endpoint::now_ms;

/// Mirror requests one shard may have in flight at once. Each holds an upstream
/// connection and up to [`MAX_QUEUED_BYTES`] of body.
const MAX_IN_FLIGHT: usize = 256;

/// Bytes of a streamed request body queued for a mirror that has not sent them yet.
const MAX_QUEUED_BYTES: usize = 64 * 1024;

/// The mirror requests a shard has in flight, against its limit (`MAX_IN_FLIGHT`).
pub struct MirrorsInFlight {
    count: Rc<Cell<usize>>,
    limit: usize,
}

impl Default for MirrorsInFlight {
    fn default() -> Self {
        Self::new(MAX_IN_FLIGHT)
    }
}

impl MirrorsInFlight {
    fn new(limit: usize) -> Self {
        Self {
            count: Rc::new(Cell::new(0)),
            limit,
        }
    }

    /// A place for one more, held until dropped; `None` at the limit.
    fn take(&self) -> Option<Slot> {
        let count = self.count.get();
        (count < self.limit).then(|| {
            self.count.set(count + 1);
            Slot(self.count.clone())
        })
    }
}

/// A mirror request counted in flight.
struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Starts a copy of the request for each mirror of the rule its share draws. Called
/// before the first try, which then sends the teed body when it streams.
pub(super) fn start(shard: &Rc<Shard>, forward: &LoadedForward, prepared: &mut Prepared) {
    if forward.mirrors.is_empty() || prepared.upgrade() {
        return;
    }
    let metrics = &shard.gateway.metrics;
    let chosen: Vec<(&LoadedMirror, Slot)> = forward
        .mirrors
        .iter()
        .filter(|mirror| drawn(mirror))
        .filter_map(|mirror| match shard.mirrors.take() {
            Some(slot) => Some((mirror, slot)),
            None => {
                metrics.mirror(MirrorResult::Skipped);
                tracing::debug!(backend = %mirror.backend.id, "mirror skipped: too many mirror requests in flight");
                None
            }
        })
        .collect();
    if chosen.is_empty() {
        return;
    }
    let bodies = copies(&mut prepared.body, chosen.len());
    let timeout = Duration::from_millis(forward.policy.timeouts.request_ms);
    for ((mirror, slot), body) in chosen.into_iter().zip(bodies) {
        let copy = MirrorRequest {
            backend: mirror.backend.clone(),
            connector: mirror.connector.clone(),
            load_balancer: forward.policy.load_balancer,
            method: prepared.parts.method.clone(),
            path: prepared.path.clone(),
            headers: prepared.parts.headers.clone(),
            body,
        };
        tokio::task::spawn_local(send(shard.clone(), copy, timeout, slot));
    }
}

/// Whether a request is copied to `mirror`: `numerator` out of every `denominator`.
fn drawn(mirror: &LoadedMirror) -> bool {
    mirror.numerator >= mirror.denominator
        || (mirror.numerator > 0
            && rand::rng().random_range(0..mirror.denominator) < mirror.numerator)
}

/// `count` copies of the body; a streamed one is teed, the request keeping the tee.
fn copies(body: &mut RequestBody, count: usize) -> Vec<ProxyBody> {
    match body {
        RequestBody::Empty => (0..count).map(|_| body::empty()).collect(),
        RequestBody::Kept(bytes) => (0..count).map(|_| body::full(bytes.clone())).collect(),
        RequestBody::Streaming(streaming) => {
            // Mirrors start before the first try, which is what takes the body.
            let Some(inner) = streaming.take() else {
                return Vec::new();
            };
            let feeds: Vec<Arc<Mutex<Feed>>> = (0..count).map(|_| Arc::default()).collect();
            let copies = feeds
                .iter()
                .map(|feed| MirrorBody { feed: feed.clone() }.boxed_unsync())
                .collect();
            *streaming = Some(Tee { inner, feeds }.boxed_unsync());
            copies
        }
    }
}

/// A copy of a request, for one mirror.
struct MirrorRequest {
    backend: Arc<LoadedBackend>,
    connector: Connector,
    load_balancer: LoadBalancer,
    method: Method,
    /// Path and query, before the backend's base path.
    path: String,
    headers: HeaderMap,
    body: ProxyBody,
}

/// Why a mirror request came to nothing.
#[derive(Debug, thiserror::Error)]
enum MirrorError {
    #[error("the backend cannot be used: {0}")]
    Unresolved(String),
    #[error("no endpoint of the backend is available")]
    NoEndpoint,
    #[error("the path: {0}")]
    Path(#[from] http::uri::InvalidUri),
    #[error("an endpoint is not a valid address")]
    Address,
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("reading the answer: {0}")]
    Answer(hyper::Error),
    #[error("no answer within the request timeout ({0:?})")]
    Timeout(Duration),
}

/// Sends a copy and reads its answer to the end, within `timeout`; counts the result.
async fn send(shard: Rc<Shard>, copy: MirrorRequest, timeout: Duration, _slot: Slot) {
    let backend = copy.backend.clone();
    let result = match tokio::time::timeout(timeout, exchange(&shard, copy)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(MirrorError::Timeout(timeout)),
    };
    let metrics = &shard.gateway.metrics;
    match result {
        Ok(()) => metrics.mirror(MirrorResult::Sent),
        Err(error) => {
            metrics.mirror(MirrorResult::Failed);
            tracing::debug!(backend = %backend.id, "mirror request failed: {error}");
        }
    }
}

/// Sends the copy to an endpoint of the mirror's backend and reads its answer to the end
/// (so an HTTP/1.1 connection goes back to the shard's pool).
async fn exchange(shard: &Shard, copy: MirrorRequest) -> Result<(), MirrorError> {
    let backend = &copy.backend;
    if let Some(why) = &backend.unresolved {
        return Err(MirrorError::Unresolved(why.clone()));
    }
    let index = backend
        .pick(copy.load_balancer, &[], now_ms())
        .ok_or(MirrorError::NoEndpoint)?;
    let path = backend.upstream_path(&copy.path)?;
    let uri = backend.uri(index, &path).ok_or(MirrorError::Address)?;
    let mut request = Request::new(copy.body);
    *request.method_mut() = copy.method;
    *request.uri_mut() = uri;
    *request.version_mut() = upstream_version(backend.protocol, false);
    *request.headers_mut() = copy.headers;
    let _in_flight = backend.endpoints[index].start_request();
    let mut answer = shard
        .send_upstream(&copy.connector, request, false)
        .await?
        .into_body();
    while let Some(frame) = answer.frame().await {
        frame.map_err(MirrorError::Answer)?;
    }
    Ok(())
}

/// What a teed body has queued for one mirror, and how far it got.
#[derive(Default)]
struct Feed {
    queue: VecDeque<Frame<Bytes>>,
    queued_bytes: usize,
    state: FeedState,
    /// The mirror's body, waiting for a frame.
    waker: Option<Waker>,
}

#[derive(Clone, Copy, Debug, Default)]
enum FeedState {
    /// Frames may come.
    #[default]
    Open,
    /// The body ended; the queue is the rest of it.
    Ended,
    /// The mirror's copy was given up.
    GivenUp(GiveUp),
    /// The mirror no longer reads.
    Closed,
}

/// Why a mirror's copy of a streamed body was given up.
#[derive(Clone, Copy, Debug, thiserror::Error)]
enum GiveUp {
    #[error("the mirror fell more than {MAX_QUEUED_BYTES} bytes behind the request body")]
    Behind,
    #[error("the request body failed")]
    Failed,
    #[error("the request body was not read to its end")]
    Unfinished,
}

fn lock(feed: &Mutex<Feed>) -> MutexGuard<'_, Feed> {
    feed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Feed {
    /// Queues a copy of `frame`, unless that would put the mirror too far behind.
    fn push(&mut self, frame: &Frame<Bytes>) {
        if !matches!(self.state, FeedState::Open) {
            return;
        }
        let copy = match (frame.data_ref(), frame.trailers_ref()) {
            (Some(data), _) => Frame::data(data.clone()),
            (None, Some(trailers)) => Frame::trailers(trailers.clone()),
            (None, None) => return,
        };
        let queued = self.queued_bytes + copy.data_ref().map_or(0, Bytes::len);
        if queued > MAX_QUEUED_BYTES {
            self.finish(FeedState::GivenUp(GiveUp::Behind));
            return;
        }
        self.queued_bytes = queued;
        self.queue.push_back(copy);
        self.wake();
    }

    /// Ends the feed (if still open) in `state`; a copy given up drops what it queued.
    fn finish(&mut self, state: FeedState) {
        if !matches!(self.state, FeedState::Open) {
            return;
        }
        self.state = state;
        if matches!(state, FeedState::GivenUp(_) | FeedState::Closed) {
            self.queue.clear();
            self.queued_bytes = 0;
        }
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

pin_project! {
    /// The request's body, queuing a copy of each frame for its mirrors as it streams.
    struct Tee<B: Body> {
        #[pin]
        inner: B,
        feeds: Vec<Arc<Mutex<Feed>>>,
    }

    impl<B: Body> PinnedDrop for Tee<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // A body that said it ended is not polled again: that is its end.
            let end = if this.inner.is_end_stream() {
                FeedState::Ended
            } else {
                FeedState::GivenUp(GiveUp::Unfinished)
            };
            for feed in this.feeds.iter() {
                lock(feed).finish(end);
            }
        }
    }
}

impl<B> Body for Tee<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let end = match &frame {
            Some(Ok(frame)) => {
                for feed in this.feeds.iter() {
                    lock(feed).push(frame);
                }
                // Clients stop polling once a body says it has ended.
                this.inner.is_end_stream().then_some(FeedState::Ended)
            }
            Some(Err(_)) => Some(FeedState::GivenUp(GiveUp::Failed)),
            None => Some(FeedState::Ended),
        };
        if let Some(end) = end {
            for feed in this.feeds.iter() {
                lock(feed).finish(end);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A mirror's copy of a streamed request body: the frames the request's upstream read.
struct MirrorBody {
    feed: Arc<Mutex<Feed>>,
}

impl Body for MirrorBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut feed = lock(&self.feed);
        if let Some(frame) = feed.queue.pop_front() {
            feed.queued_bytes -= frame.data_ref().map_or(0, Bytes::len);
            return Poll::Ready(Some(Ok(frame)));
        }
        match feed.state {
            FeedState::Open => {
                feed.waker = Some(cx.waker().clone());
                Poll::Pending
            }
            FeedState::Ended | FeedState::Closed => Poll::Ready(None),
            FeedState::GivenUp(why) => Poll::Ready(Some(Err(Box::new(why)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        let feed = lock(&self.feed);
        feed.queue.is_empty() && matches!(feed.state, FeedState::Ended)
    }
}

impl Drop for MirrorBody {
    fn drop(&mut self) {
        lock(&self.feed).finish(FeedState::Closed);
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    type Sender = futures::channel::mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

    /// A streamed body fed through `tx`, teed for one mirror.
    fn teed() -> (Sender, ProxyBody, ProxyBody) {
        let (tx, rx) = futures::channel::mpsc::channel(16);
        let mut body = RequestBody::Streaming(Some(StreamBody::new(rx).boxed_unsync()));
        let mut copies = copies(&mut body, 1);
        let RequestBody::Streaming(Some(request)) = body else {
            panic!("the request keeps its streamed body")
        };
        (tx, request, copies.remove(0))
    }

    async fn send_data(tx: &mut Sender, bytes: Bytes) {
        futures::SinkExt::send(tx, Ok(Frame::data(bytes)))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_mirror_gets_the_frames_the_request_reads() {
        let (mut tx, request, copy) = teed();
        send_data(&mut tx, Bytes::from_static(b"hello ")).await;
        send_data(&mut tx, Bytes::from_static(b"mirror")).await;
        drop(tx);
        assert_eq!(request.collect().await.unwrap().to_bytes(), "hello mirror");
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello mirror");
    }

    #[tokio::test]
    async fn a_mirror_too_far_behind_loses_its_copy_and_the_request_streams_on() {
        let (mut tx, mut request, copy) = teed();
        let chunk = Bytes::from(vec![b'x'; MAX_QUEUED_BYTES / 2 + 1]);
        for _ in 0..3 {
            send_data(&mut tx, chunk.clone()).await;
        }
        drop(tx);
        let mut read = 0;
        while let Some(frame) = request.frame().await {
            read += frame.unwrap().into_data().unwrap().len();
        }
        assert_eq!(read, chunk.len() * 3, "the request reads all of its body");
        let error = copy.collect().await.unwrap_err();
        assert!(
            error.to_string().contains("behind"),
            "the mirror's body fails: {error}"
        );
    }

    #[tokio::test]
    async fn a_request_body_not_read_to_its_end_fails_the_copy() {
        let (mut tx, mut request, copy) = teed();
        send_data(&mut tx, Bytes::from_static(b"part")).await;
        assert!(request.frame().await.is_some());
        drop(request);
        let error = copy.collect().await.unwrap_err();
        assert!(error.to_string().contains("not read to its end"), "{error}");
    }

    #[tokio::test]
    async fn a_failed_request_body_fails_the_copy() {
        let (mut tx, mut request, copy) = teed();
        futures::SinkExt::send(&mut tx, Err("broken".into()))
            .await
            .unwrap();
        assert!(request.frame().await.unwrap().is_err());
        assert!(copy.collect().await.is_err());
    }

    #[test]
    fn a_feed_whose_mirror_is_gone_queues_nothing() {
        let mut feed = Feed::default();
        feed.finish(FeedState::Closed);
        feed.push(&Frame::data(Bytes::from_static(b"x")));
        assert!(feed.queue.is_empty());
        assert_eq!(feed.queued_bytes, 0);
    }

    #[test]
    fn slots_are_limited_and_given_back() {
        let in_flight = MirrorsInFlight::new(2);
        let first = in_flight.take().unwrap();
        let _second = in_flight.take().unwrap();
        assert!(in_flight.take().is_none(), "at the limit");
        drop(first);
        assert!(
            in_flight.take().is_some(),
            "a slot given back is free again"
        );
    }
}
