//! Bodies: the one body type responses carry, and wrappers that stream a body while
//! watching it (silence longer than the idle timeout; bytes and outcome when it ends).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

/// Errors bodies carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the proxy sends, and of every request it forwards.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `data`.
pub fn full(data: impl Into<Bytes>) -> ProxyBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// The body of a client's request on its way through the pipeline: as received, or as
/// handed back by plugins (which may have read part of it).
pub enum ClientBody {
    /// Straight from the connection (rules without plugins).
    Incoming(hyper::body::Incoming),
    /// After plugins saw the request.
    Boxed(ProxyBody),
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Incoming(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(Into::into))),
            Self::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Incoming(body) => body.is_end_stream(),
            Self::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Incoming(body) => body.size_hint(),
            Self::Boxed(body) => body.size_hint(),
        }
    }
}

/// The stream fell silent for longer than the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}")]
pub struct IdleTimeoutError(pub Duration);

pin_project! {
    /// Streams `inner`, failing when no frame arrives for `timeout`.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
    }
}

impl<B> IdleTimeout<B> {
    /// Watches `inner` for silences longer than `timeout`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(timeout),
            timeout,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                let timeout = *this.timeout;
                this.sleep.as_mut().reset(Instant::now() + timeout);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(this.sleep.poll(cx));
                Poll::Ready(Some(Err(Box::new(IdleTimeoutError(*this.timeout)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a watched body ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyEnd {
    /// Data bytes that went through.
    pub bytes: u64,
    /// Whether the stream ended normally (not with an error, not dropped half-way).
    pub complete: bool,
}

pin_project! {
    /// Streams `inner` and calls `on_end` once when it ends, fails or is dropped.
    pub struct Observed<B: Body, F: FnOnce(BodyEnd)> {
        #[pin]
        inner: B,
        bytes: u64,
        on_end: Option<F>,
    }

    impl<B: Body, F: FnOnce(BodyEnd)> PinnedDrop for Observed<B, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.take() {
                // A body that was over before anyone polled it (empty, or all sent with
                // its head) is complete; anything else was cut short.
                on_end(BodyEnd { bytes: *this.bytes, complete: this.inner.is_end_stream() });
            }
        }
    }
}

impl<B: Body, F: FnOnce(BodyEnd)> Observed<B, F> {
    /// Watches `inner`.
    pub fn new(inner: B, on_end: F) -> Self {
        Self {
            inner,
            bytes: 0,
            on_end: Some(on_end),
        }
    }
}

impl<B, F> Body for Observed<B, F>
where
    B: Body<Data = Bytes>,
    F: FnOnce(BodyEnd),
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let finished = match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
                // Servers stop polling once a body says it has ended.
                this.inner.is_end_stream().then_some(true)
            }
            Some(Err(_)) => Some(false),
            None => Some(true),
        };
        if let Some(complete) = finished
            && let Some(on_end) = this.on_end.take()
        {
            on_end(BodyEnd {
                bytes: *this.bytes,
                complete,
            });
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_longer_than_the_timeout_fails_the_stream() {
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let body = http_body_util::StreamBody::new(rx);
        let mut watched = std::pin::pin!(IdleTimeout::new(body, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_secs(4)).await;
        futures::SinkExt::send(&mut tx, Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        assert!(
            watched.frame().await.unwrap().is_ok(),
            "4 s of silence is within the limit"
        );
        let error = watched.frame().await.unwrap().unwrap_err();
        assert!(error.is::<IdleTimeoutError>(), "{error}");
    }

    #[tokio::test]
    async fn observed_reports_bytes_once() {
        let ends = Arc::new(Mutex::new(Vec::new()));
        let seen = ends.clone();
        let body = Observed::new(Full::new(Bytes::from_static(b"hello")), move |end| {
            seen.lock().unwrap().push(end)
        });
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "hello");
        assert_eq!(
            *ends.lock().unwrap(),
            [BodyEnd {
                bytes: 5,
                complete: true
            }]
        );
    }

    #[tokio::test]
    async fn dropping_half_way_is_reported_as_incomplete() {
        let ends = Arc::new(Mutex::new(Vec::new()));
        let seen = ends.clone();
        drop(Observed::new(
            Full::new(Bytes::from_static(b"x")),
            move |end| seen.lock().unwrap().push(end),
        ));
        assert_eq!(
            *ends.lock().unwrap(),
            [BodyEnd {
                bytes: 0,
                complete: false
            }]
        );
    }

    #[tokio::test]
    async fn bodies_that_say_they_ended_are_complete_without_a_final_poll() {
        let ends = Arc::new(Mutex::new(Vec::new()));
        let seen = ends.clone();
        // Servers poll a `Full` body once and stop: it reports its end with the data.
        let mut body = std::pin::pin!(Observed::new(
            Full::new(Bytes::from_static(b"abc")),
            move |end| { seen.lock().unwrap().push(end) }
        ));
        assert!(body.frame().await.unwrap().is_ok());
        assert_eq!(
            *ends.lock().unwrap(),
            [BodyEnd {
                bytes: 3,
                complete: true
            }]
        );
        let seen = ends.clone();
        drop(Observed::new(Empty::<Bytes>::new(), move |end| {
            seen.lock().unwrap().push(end)
        }));
        assert_eq!(
            ends.lock().unwrap()[1],
            BodyEnd {
                bytes: 0,
                complete: true
            }
        );
    }
}
